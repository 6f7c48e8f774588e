/* Unit tests: backend/circuit (the upstream circuit breaker and the retry backoff), driven
 * by made-up times: opens after N failed tries in a row, half-open when the cooldown is
 * over, a failed probe doubles the cooldown (at most 300 s), a success closes it and resets
 * the cooldown; 429s are the caller's business (they never reach circuit_failure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/backend/backend.h"
#include "../../src/backend/circuit.h"

static void test_open_probe_close(void **state)
{
    (void)state;
    struct circuit c;
    circuit_init(&c, 10);
    double t = 1000;
    assert_false(circuit_failure(&c, t, 3));
    assert_false(circuit_failure(&c, t, 3));
    assert_int_equal(c.state, BACKEND_CIRCUIT_CLOSED);
    assert_true(circuit_failure(&c, t, 3)); /* the third in a row opens it */
    assert_int_equal(c.state, BACKEND_CIRCUIT_OPEN);
    assert_true(c.open_until == t + 10);
    assert_false(circuit_tick(&c, t + 9.9));
    assert_true(circuit_tick(&c, t + 10));
    assert_int_equal(c.state, BACKEND_CIRCUIT_HALF_OPEN);
    /* a failed probe: open again, twice as long */
    assert_true(circuit_failure(&c, t + 10, 3));
    assert_true(c.open_until == t + 30);
    assert_true(circuit_tick(&c, t + 30));
    /* a successful probe closes it; the cooldown is the configured one again */
    assert_true(circuit_success(&c, 10));
    assert_int_equal(c.state, BACKEND_CIRCUIT_CLOSED);
    assert_int_equal(c.consec_fail, 0);
    assert_true(c.cooldown == 10);
    /* a success between failures resets the count */
    assert_false(circuit_failure(&c, t, 3));
    assert_false(circuit_success(&c, 10));
    assert_false(circuit_failure(&c, t, 3));
    assert_false(circuit_failure(&c, t, 3));
    assert_int_equal(c.state, BACKEND_CIRCUIT_CLOSED);
}

static void test_cooldown_cap(void **state)
{
    (void)state;
    struct circuit c;
    circuit_init(&c, 100);
    double t = 0;
    assert_true(circuit_failure(&c, t, 1));
    for (int i = 0; i < 5; i++) {
        t = c.open_until;
        assert_true(circuit_tick(&c, t));
        assert_true(circuit_failure(&c, t, 1));
    }
    assert_true(c.cooldown == CIRCUIT_COOLDOWN_MAX);
    assert_true(c.open_until == t + CIRCUIT_COOLDOWN_MAX);
}

static void test_backoff(void **state)
{
    (void)state;
    /* the cap doubles per try up to max; the wait is uniform below it */
    assert_true(backoff_full_jitter(1, 0.5, 30, 0.999) < 0.5);
    assert_true(backoff_full_jitter(3, 0.5, 30, 0.5) == 1.0); /* cap 2.0 */
    assert_true(backoff_full_jitter(20, 0.5, 30, 0.5) == 15.0); /* cap 30 */
    assert_true(backoff_full_jitter(4, 0.5, 30, 0.0) == 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_probe_close),
        cmocka_unit_test(test_cooldown_cap),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
