/*
 * pull.h — `nightshift pull` and `nightshift models` (pull.c), and how `run`/`serve --model`
 * turn a model store reference into the GGUF file to load (backend/modelstore.h).
 *
 * Nothing is downloaded unless asked: a reference not in the store is an error that names
 * `nightshift pull REF` and --pull; with --pull the model is pulled first, saying so.
 */
#ifndef NS_CLI_PULL_H
#define NS_CLI_PULL_H

#include <stdbool.h>
#include <stddef.h>

/* What --model's value names. A GGUF file path (an existing file, or one ending in .gguf):
 * path = arg, name = "". A store reference (hf.co/ORG/REPO[:QUANT], ORG/REPO[:QUANT], a
 * URL, a pulled NAME): path = its file in the store, name = its store name; when it is not
 * in the store, pulled first if pull is set, else an error. 0 ok, else the exit status
 * after the message (cli_fail). */
int pull_model_resolve(const char *arg, bool pull, char *path, size_t pn, char *name, size_t nn);

#endif
