/*
 * main.c — the nightshift program: one table of sub-commands (as git.c's commands[]), and
 * the dispatch through it. Adding a command adds a row; the usage text is made from the
 * table, so it cannot forget one.
 */
#include "cli.h"

#include "../engine/engine.h"

#include <stdio.h>
#include <string.h>

static int cli_version(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs("usage: nightshift version (or nightshift --version)\n"
              "\n"
              "Prints the version of nightshift and of the llama.cpp it is built with (its commit).\n",
              stdout);
        return 0;
    }
    if (argc > 1)
        return cli_fail("version: unexpected argument '%s'", argv[1]);
    const char *commit = engine_llama_commit();
    printf("nightshift %s (llama.cpp %s%s%s)\n", NIGHTSHIFT_VERSION, engine_llama_version(), *commit ? ", commit " : "",
           commit);
    return 0;
}

static const struct cli_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"run", cli_run, "run an OpenAI Batch input file (JSONL) on a local GGUF model"},
    {"serve", cli_serve, "OpenAI-compatible server: files, batches, chat completions"},
    {"pull", cli_pull, "download a GGUF model from Hugging Face (hf.co/ORG/REPO:QUANT) or a URL into the model store"},
    {"models", cli_models, "the model store: list, show NAME, rm NAME"},
    {"keys", cli_keys, "API keys for serve: create, list, revoke, rotate"},
    {"submit", cli_submit, "upload a batch input file to a server and create a batch (--wait: follow it)"},
    {"batches", cli_batches, "list the batches of a server"},
    {"status", cli_status, "show a batch of a server"},
    {"results", cli_results, "download the results of a batch"},
    {"cancel", cli_cancel, "cancel a batch"},
    {"doctor", cli_doctor, "check a data dir, its store, model files, the CPU and free disk; say what to fix"},
    {"backup", cli_backup, "copy a data dir (store and files) into a directory, also while a server runs"},
    {"restore", cli_restore, "restore a backup into a data dir"},
    {"gen-model", cli_gen_model, "write a small random-weight GGUF model with a real tokenizer (tests, demos)"},
    {"version", cli_version, "print the version of nightshift and of llama.cpp (also --version)"},
};

static void usage(FILE *f)
{
    fputs("usage: nightshift COMMAND [options]\n\ncommands:\n", f);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fputs("\n'nightshift COMMAND --help' describes each.\n", f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0)
        cmd = "version";
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    usage(stderr);
    return cli_fail("unknown command '%s'", cmd);
}
