/*
 * clock.h — the process's clocks, one of each (Redis monotonic.h): every duration, deadline
 * and rate is measured on clock_now(); clock_wall() is for timestamps people read and for
 * wall-clock samples (the dashboard's history). Before, eight files kept their own copy.
 *
 * THREADS: any.
 */
#ifndef NS_UTIL_CLOCK_H
#define NS_UTIL_CLOCK_H

/* seconds on CLOCK_MONOTONIC: never steps back, unrelated to the date */
double clock_now(void);
/* seconds since the epoch (CLOCK_REALTIME), with a fraction */
double clock_wall(void);

#endif
