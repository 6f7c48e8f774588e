/*
 * circuit.h — the circuit breaker and the retry backoff of upstream backends, as plain
 * state and pure functions over a caller's clock (so tests drive them with made-up times).
 *
 * Circuit: after `failures` failed tries in a row (5xx, timeouts, connection errors; a 429
 * does not count: that upstream works as designed) it opens for a cooldown; when the
 * cooldown is over it is half-open and the next try is a probe: a success closes it (and
 * the cooldown goes back to the configured one), a failure opens it again for twice as long,
 * at most CIRCUIT_COOLDOWN_MAX.
 *
 * Backoff: full jitter (AWS architecture blog's "Exponential Backoff And Jitter"): uniform
 * in [0, min(max, base * 2^(try-1))], which keeps many clients from retrying in lockstep.
 *
 * THREADS: a struct circuit belongs to its backend's run() thread.
 */
#ifndef NS_BACKEND_CIRCUIT_H
#define NS_BACKEND_CIRCUIT_H

#include <stdbool.h>

#define CIRCUIT_COOLDOWN_MAX 300.0

struct circuit {
    int state;          /* enum backend_circuit (backend.h) */
    int consec_fail;    /* failed tries in a row */
    double open_until;  /* while open: when the probe may go (the caller's clock, seconds) */
    double cooldown;    /* the next opening's length */
};

void circuit_init(struct circuit *c, double cooldown);
/* a failed try at `now`: true when this opened the circuit */
bool circuit_failure(struct circuit *c, double now, int failures);
/* a try that answered: true when this closed the circuit; cooldown: the configured one */
bool circuit_success(struct circuit *c, double cooldown);
/* open and its time is up: half-open (the next try is the probe); true when it changed */
bool circuit_tick(struct circuit *c, double now);

/* the wait before try number `attempt` (1: the first retry): r01 uniform in [0, 1) */
double backoff_full_jitter(int attempt, double base, double max, double r01);

#endif
