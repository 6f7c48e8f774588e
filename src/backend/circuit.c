/*
 * circuit.c — see circuit.h.
 */
#include "circuit.h"

#include "backend.h"

#include <math.h>

void circuit_init(struct circuit *c, double cooldown)
{
    c->state = BACKEND_CIRCUIT_CLOSED;
    c->consec_fail = 0;
    c->open_until = 0;
    c->cooldown = cooldown;
}

bool circuit_failure(struct circuit *c, double now, int failures)
{
    c->consec_fail++;
    bool half = c->state == BACKEND_CIRCUIT_HALF_OPEN;
    if (!half && !(c->state == BACKEND_CIRCUIT_CLOSED && c->consec_fail >= failures))
        return false;
    if (half)
        c->cooldown = fmin(c->cooldown * 2, CIRCUIT_COOLDOWN_MAX);
    c->state = BACKEND_CIRCUIT_OPEN;
    c->open_until = now + c->cooldown;
    return true;
}

bool circuit_success(struct circuit *c, double cooldown)
{
    c->consec_fail = 0;
    if (c->state == BACKEND_CIRCUIT_CLOSED)
        return false;
    c->state = BACKEND_CIRCUIT_CLOSED;
    c->cooldown = cooldown;
    return true;
}

bool circuit_tick(struct circuit *c, double now)
{
    if (c->state != BACKEND_CIRCUIT_OPEN || now < c->open_until)
        return false;
    c->state = BACKEND_CIRCUIT_HALF_OPEN;
    return true;
}

double backoff_full_jitter(int attempt, double base, double max, double r01)
{
    double cap = fmin(max, base * pow(2, attempt - 1));
    return cap * r01;
}
