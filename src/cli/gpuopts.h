/*
 * gpuopts.h — the options that say where a local model runs and how its KV cache is stored,
 * shared by `run` and `serve` (and a serve config's [server] keys): --gpu-layers, --device,
 * --list-devices, --main-gpu, --split-mode, --flash-attn, --cache-type-k/-v, --fit,
 * --fit-target. One table, one parser, one usage text, so the two commands cannot drift.
 *
 * Use: put GPUOPTS_LONG_OPTIONS in the command's struct option table, and hand every
 * getopt_long result to gpuopts_parse() before the command's own switch.
 */
#ifndef NS_CLI_GPUOPTS_H
#define NS_CLI_GPUOPTS_H

#include "../engine/engine.h"

#include <getopt.h>
#include <stdio.h>

enum {
    GPUOPT_LAYERS = 3000, GPUOPT_DEVICE, GPUOPT_LIST, GPUOPT_MAIN, GPUOPT_SPLIT, GPUOPT_FA, GPUOPT_CTK, GPUOPT_CTV,
    GPUOPT_FIT, GPUOPT_FIT_TARGET
};

#define GPUOPTS_LONG_OPTIONS                                                                                          \
    {"gpu-layers", required_argument, 0, GPUOPT_LAYERS}, {"device", required_argument, 0, GPUOPT_DEVICE},          \
        {"list-devices", no_argument, 0, GPUOPT_LIST}, {"main-gpu", required_argument, 0, GPUOPT_MAIN},            \
        {"split-mode", required_argument, 0, GPUOPT_SPLIT}, {"flash-attn", required_argument, 0, GPUOPT_FA},       \
        {"cache-type-k", required_argument, 0, GPUOPT_CTK}, {"cache-type-v", required_argument, 0, GPUOPT_CTV},    \
        {"fit", required_argument, 0, GPUOPT_FIT}, {"fit-target", required_argument, 0, GPUOPT_FIT_TARGET}

/* The usage lines of these options, in the commands' --help style. */
extern const char gpuopts_usage[];

/* One getopt_long result: GPUOPTS_NOT_MINE (the caller's own option), GPUOPTS_OK (stored
 * in *p), GPUOPTS_EXIT_OK (--list-devices: printed, exit 0), or 2 after a message naming
 * the bad value. */
enum { GPUOPTS_OK = 0, GPUOPTS_NOT_MINE = 1, GPUOPTS_EXIT_OK = 3 };
int gpuopts_parse(int ch, const char *arg, struct engine_params *p);

/* copy the fields these options set from `from` (parsed into engine_default_params()) */
void gpuopts_apply(const struct engine_params *from, struct engine_params *to);

/* the devices llama.cpp sees, one a line, with the build's kind and any backend warning;
 * 0, or 1 when the libraries are refused */
int gpuopts_list_devices(FILE *f);

#endif
