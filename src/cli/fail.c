/*
 * fail.c — cli_fail(), the one way a command says what went wrong (cli.h).
 */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("nightshift: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 2;
}
