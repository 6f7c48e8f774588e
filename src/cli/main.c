/*
 * main.c — the nightshift program: dispatches to a sub-command (cli.h).
 */
#include "cli.h"

#include "../engine/engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

static void usage(FILE *f)
{
    fputs("usage: nightshift COMMAND [options]\n"
          "\n"
          "commands:\n"
          "  run        run an OpenAI Batch input file (JSONL) on a local GGUF model\n"
          "  serve      OpenAI-compatible server: files, batches, chat completions\n"
          "  keys       keys create --name NAME [--admin]: API keys for serve\n"
          "  submit     upload a batch input file to a server and create a batch (--wait: follow it)\n"
          "  batches    list the batches of a server\n"
          "  status     show a batch of a server\n"
          "  results    download the results of a batch\n"
          "  cancel     cancel a batch\n"
          "  doctor     check a data dir, its store, model files, the CPU and free disk; say what to fix\n"
          "  backup     copy a data dir (store and files) into a directory, also while a server runs\n"
          "  restore    restore a backup into a data dir\n"
          "  gen-model  write a small random-weight GGUF model with a real tokenizer (tests, demos)\n"
          "  version    print the version of nightshift and of llama.cpp (also --version)\n"
          "\n"
          "'nightshift COMMAND --help' describes each.\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0)
        return cli_run(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0)
        return cli_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "keys") == 0)
        return cli_keys(argc - 1, argv + 1);
    if (strcmp(cmd, "submit") == 0)
        return cli_submit(argc - 1, argv + 1);
    if (strcmp(cmd, "batches") == 0)
        return cli_batches(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return cli_status(argc - 1, argv + 1);
    if (strcmp(cmd, "results") == 0)
        return cli_results(argc - 1, argv + 1);
    if (strcmp(cmd, "cancel") == 0)
        return cli_cancel(argc - 1, argv + 1);
    if (strcmp(cmd, "gen-model") == 0)
        return cli_gen_model(argc - 1, argv + 1);
    if (strcmp(cmd, "doctor") == 0)
        return cli_doctor(argc - 1, argv + 1);
    if (strcmp(cmd, "backup") == 0)
        return cli_backup(argc - 1, argv + 1);
    if (strcmp(cmd, "restore") == 0)
        return cli_restore(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        const char *commit = engine_llama_commit();
        printf("nightshift %s (llama.cpp %s%s%s)\n", NIGHTSHIFT_VERSION, engine_llama_version(), *commit ? ", commit " : "",
               commit);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return cli_fail("unknown command '%s'", cmd);
}
