/*
 * cli.h — the sub-commands of the nightshift program. Each returns the process exit
 * status: 0 ok, 1 the job failed, 2 bad usage or input.
 */
#ifndef NS_CLI_CLI_H
#define NS_CLI_CLI_H

#ifndef NIGHTSHIFT_VERSION
#define NIGHTSHIFT_VERSION "0.1.0" /* CMake sets it from project(VERSION) */
#endif

int cli_run(int argc, char **argv);
int cli_gen_model(int argc, char **argv);
int cli_serve(int argc, char **argv);
/* keys.c: API keys for the server */
int cli_keys(int argc, char **argv);
/* client.c: commands that talk to a running `nightshift serve` over HTTP */
int cli_submit(int argc, char **argv);
int cli_batches(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_results(int argc, char **argv);
int cli_cancel(int argc, char **argv);
/* doctor.c: check the data dir, store, models, CPU and disk; say what to fix */
int cli_doctor(int argc, char **argv);
/* backup.c: a data dir copied out while a server may run on it, and back */
int cli_backup(int argc, char **argv);
int cli_restore(int argc, char **argv);

/* pull.c: the model store (`nightshift pull REF`, `nightshift models list|show|rm`) */
int cli_pull(int argc, char **argv);
int cli_models(int argc, char **argv);

/* print "nightshift: <message>" to stderr; returns 2 (the usage-error status) */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
