/*
 * gpuopts.c — see gpuopts.h. Values are checked here, with the option and the accepted
 * values named in the message; whether a device exists is the engine's to say (at load),
 * since the devices are only known once the backends are loaded.
 */
#include "gpuopts.h"
#include "cli.h"

#include "../util/num.h"
#include "../util/status.h"

#include <string.h>

const char gpuopts_usage[] =
    "      --gpu-layers N|all|auto  layers on the GPU (default auto: all when a GPU backend is\n"
    "                           loaded, as many as fit with --fit; 0 keeps the model on the CPU)\n"
    "      --device NAME[,NAME] the devices to use (default: every GPU); see --list-devices\n"
    "      --list-devices       print the devices llama.cpp sees (name, type, memory) and exit\n"
    "      --main-gpu N         with --split-mode none, the GPU (0-based) that holds the model\n"
    "      --split-mode M       several GPUs: layer (default), row or none\n"
    "      --flash-attn on|off|auto  flash attention (default auto: where the backend has it)\n"
    "      --cache-type-k T     K cache type: f16 (default), q8_0 or q4_0 (half/a quarter the\n"
    "                           memory: about twice the sequences fit)\n"
    "      --cache-type-v T     V cache type: f16, q8_0 or q4_0 (quantized needs flash attention)\n"
    "      --fit on|off|auto    size --parallel/--ctx and the layers to the free memory before\n"
    "                           loading, and say so (default auto: when a GPU is used)\n"
    "      --fit-target MIB     memory the fit leaves free per device (default 1024)\n";

int gpuopts_parse(int ch, const char *arg, struct engine_params *p)
{
    long long v;
    int x;
    switch (ch) {
    case GPUOPT_LAYERS:
        if ((x = engine_gpu_layers_parse(arg)) == -3)
            return cli_fail("--gpu-layers must be a number of layers (0 to 10000), 'all' or 'auto', not '%s'", arg);
        p->n_gpu_layers = x;
        return GPUOPTS_OK;
    case GPUOPT_DEVICE:
        if (!*arg)
            return cli_fail("--device needs a device name (see --list-devices)");
        p->devices = arg;
        return GPUOPTS_OK;
    case GPUOPT_LIST: return gpuopts_list_devices(stdout) == 0 ? GPUOPTS_EXIT_OK : 2;
    case GPUOPT_MAIN:
        if (num_parse_long(arg, 0, 255, &v))
            return cli_fail("--main-gpu must be a device index from 0 to 255, not '%s'", arg);
        p->main_gpu = (int)v;
        return GPUOPTS_OK;
    case GPUOPT_SPLIT:
        if ((x = engine_split_mode_parse(arg)) == -3)
            return cli_fail("--split-mode must be layer, row or none, not '%s'", arg);
        p->split_mode = x;
        return GPUOPTS_OK;
    case GPUOPT_FA:
        if ((x = engine_flash_attn_parse(arg)) == -3)
            return cli_fail("--flash-attn must be on, off or auto, not '%s'", arg);
        p->flash_attn = x;
        return GPUOPTS_OK;
    case GPUOPT_CTK:
    case GPUOPT_CTV:
        if ((x = engine_cache_type_parse(arg)) == -3)
            return cli_fail("--cache-type-%c must be f16, q8_0 or q4_0, not '%s'", ch == GPUOPT_CTK ? 'k' : 'v', arg);
        *(ch == GPUOPT_CTK ? &p->cache_type_k : &p->cache_type_v) = x;
        return GPUOPTS_OK;
    case GPUOPT_FIT:
        if ((x = engine_flash_attn_parse(arg)) == -3)
            return cli_fail("--fit must be on, off or auto, not '%s'", arg);
        p->fit = x;
        return GPUOPTS_OK;
    case GPUOPT_FIT_TARGET:
        if (num_parse_long(arg, 0, 1 << 24, &v))
            return cli_fail("--fit-target must be MiB from 0 to 16777216, not '%s'", arg);
        p->fit_margin_mib = (int)v;
        return GPUOPTS_OK;
    default: return GPUOPTS_NOT_MINE;
    }
}

void gpuopts_apply(const struct engine_params *from, struct engine_params *to)
{
    to->n_gpu_layers = from->n_gpu_layers;
    to->devices = from->devices;
    to->main_gpu = from->main_gpu;
    to->split_mode = from->split_mode;
    to->flash_attn = from->flash_attn;
    to->cache_type_k = from->cache_type_k;
    to->cache_type_v = from->cache_type_v;
    to->fit = from->fit;
    to->fit_margin_mib = from->fit_margin_mib;
}

int gpuopts_list_devices(FILE *f)
{
    char note[512];
    int rc = engine_backends_check(note, sizeof(note));
    fprintf(f, "llama.cpp %s, %s build\n", engine_llama_version(), engine_build_kind());
    if (rc != NS_OK) {
        cli_fail("%s", note);
        return 1;
    }
    if (note[0])
        fprintf(f, "warning: %s\n", note);
    struct engine_device d[32];
    int n = engine_devices_list(d, 32);
    for (int i = 0; i < n && i < 32; i++)
        fprintf(f, "%-10s %-5s %-8s %8.0f MiB free of %8.0f MiB  %s\n", d[i].name, d[i].type, d[i].backend,
                (double)d[i].mem_free / 1048576.0, (double)d[i].mem_total / 1048576.0, d[i].desc);
    return 0;
}
