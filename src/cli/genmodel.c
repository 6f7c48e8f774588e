/*
 * genmodel.c — `nightshift gen-model`: a random-weight llama-architecture GGUF with a
 * real tokenizer (modelgen.h). No weights can be downloaded where nightshift is built
 * and tested; speed, batching and robustness do not depend on weight values.
 */
#include "cli.h"

#include "../engine/modelgen.h"
#include "../util/num.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void gen_usage(FILE *f)
{
    fputs("usage: nightshift gen-model --vocab ggml-vocab-NAME.gguf -o OUT.gguf [options]\n"
          "\n"
          "Writes a random-weight llama-architecture model whose tokenizer and chat template\n"
          "come from a real vocab file (llama.cpp's models/ggml-vocab-*.gguf).\n"
          "\n"
          "  --vocab FILE       tokenizer source (required)\n"
          "  -o, --output FILE  where to write the model (required)\n"
          "  --shape NAME       tiny (default), small (~60M), 0.5b (Qwen2-0.5B-like), 1b\n"
          "  --layers N --embd N --ff N --heads N --kv-heads N   override the shape\n"
          "  --ctx-train N      context length recorded in the model (default 4096)\n"
          "  --type T           f32, f16, q8_0 (default), q4_k\n"
          "  --seed N           weights seed (default 1): same seed, same bytes\n"
          "  --name NAME        general.name\n"
          "  --chat-template S  'chatml', a template string, or '' for none (default: the vocab's, else chatml)\n"
          "  --chat-template-file FILE  the template's text from FILE (a family's .jinja)\n"
          "\n"
          "usage: nightshift gen-model --lora-of BASE.gguf -o OUT.gguf [--rank N] [--alpha A] [--strength S] [--seed N]\n"
          "\n"
          "Writes a random LoRA adapter for BASE (attn_q, attn_v, attn_output, ffn_up, ffn_down of\n"
          "every layer), strong enough that greedy output under it differs from the base's: for\n"
          "tests of [model NAME] sections with base = and lora = (docs/USAGE.md).\n"
          "  --rank N           adapter rank (default 8)\n"
          "  --alpha A          adapter.lora.alpha (default: the rank)\n"
          "  --strength S       the delta's size against the base projection's (default 2)\n",
          f);
}

/* a whole text file (a template: at most 1 MiB), malloc'd; NULL with errno set */
static char *gen_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1u << 20, n = 0;
    char *p = malloc(cap + 1);
    if (p) {
        n = fread(p, 1, cap, f);
        if (ferror(f) || (n == cap && fgetc(f) != EOF)) {
            free(p);
            p = NULL;
            errno = ferror(f) ? EIO : EFBIG;
        } else {
            p[n] = '\0';
        }
    } else {
        errno = ENOMEM;
    }
    fclose(f);
    return p;
}

int cli_gen_model(int argc, char **argv)
{
    enum { O_VOCAB = 1000, O_SHAPE, O_LAYERS, O_EMBD, O_FF, O_HEADS, O_KV, O_CTX, O_TYPE, O_SEED, O_NAME, O_TMPL, O_TMPL_FILE,
           O_LORA_OF, O_RANK, O_ALPHA, O_STRENGTH };
    static const struct option lo[] = {
        {"vocab", required_argument, 0, O_VOCAB}, {"output", required_argument, 0, 'o'},
        {"shape", required_argument, 0, O_SHAPE}, {"layers", required_argument, 0, O_LAYERS},
        {"embd", required_argument, 0, O_EMBD},   {"ff", required_argument, 0, O_FF},
        {"heads", required_argument, 0, O_HEADS}, {"kv-heads", required_argument, 0, O_KV},
        {"ctx-train", required_argument, 0, O_CTX}, {"type", required_argument, 0, O_TYPE},
        {"seed", required_argument, 0, O_SEED},   {"name", required_argument, 0, O_NAME},
        {"chat-template", required_argument, 0, O_TMPL}, {"chat-template-file", required_argument, 0, O_TMPL_FILE},
        {"lora-of", required_argument, 0, O_LORA_OF}, {"rank", required_argument, 0, O_RANK},
        {"alpha", required_argument, 0, O_ALPHA}, {"strength", required_argument, 0, O_STRENGTH},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    struct modelgen_params p = modelgen_default_params();
    struct modelgen_lora_params lp = modelgen_lora_default_params();
    bool seed_given = false;
    p.type = MODELGEN_Q8_0;
    const char *shape = "tiny", *tmpl_file = NULL;
    long long layers = -1, embd = -1, ff = -1, heads = -1, kv = -1, v;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (ch) {
        case O_VOCAB: p.vocab_path = optarg; break;
        case 'o': p.out_path = optarg; break;
        case O_SHAPE: shape = optarg; break;
        case O_LAYERS:
        case O_EMBD:
        case O_FF:
        case O_HEADS:
        case O_KV:
        case O_CTX:
            if (num_parse_long(optarg, 1, 1 << 20, &v)) {
                const char *name = "?";
                for (int i = 0; lo[i].name; i++)
                    if (lo[i].val == ch)
                        name = lo[i].name;
                return cli_fail("--%s must be a positive integer, not '%s'", name, optarg);
            }
            if (ch == O_LAYERS) layers = v;
            else if (ch == O_EMBD) embd = v;
            else if (ch == O_FF) ff = v;
            else if (ch == O_HEADS) heads = v;
            else if (ch == O_KV) kv = v;
            else p.n_ctx_train = (int)v;
            break;
        case O_TYPE:
            if (modelgen_type_parse(optarg, &p.type))
                return cli_fail("--type must be f32, f16, q8_0 or q4_k, not '%s'", optarg);
            break;
        case O_SEED:
            if (num_parse_long(optarg, 0, INT64_MAX, &v))
                return cli_fail("--seed must be a non-negative integer, not '%s'", optarg);
            p.seed = (uint64_t)v;
            seed_given = true;
            break;
        case O_LORA_OF: lp.base_path = optarg; break;
        case O_RANK:
            if (num_parse_long(optarg, 1, 1024, &v))
                return cli_fail("--rank must be an integer from 1 to 1024, not '%s'", optarg);
            lp.rank = (int)v;
            break;
        case O_ALPHA:
        case O_STRENGTH: {
            double d;
            char *end;
            errno = 0;
            d = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(d >= 0 && d <= 1000) || (ch == O_STRENGTH && d <= 0))
                return cli_fail("--%s must be a number %s 0 to 1000, not '%s'", ch == O_ALPHA ? "alpha" : "strength",
                                ch == O_ALPHA ? "from" : "above", optarg);
            if (ch == O_ALPHA)
                lp.alpha = (float)d;
            else
                lp.strength = (float)d;
            break;
        }
        case O_NAME: p.name = optarg; break;
        case O_TMPL: p.chat_template = optarg; break;
        case O_TMPL_FILE: tmpl_file = optarg; break;
        case 'h': gen_usage(stdout); return 0;
        default: gen_usage(stderr); return 2;
        }
    }
    if (lp.base_path) {
        char lerr[512] = "";
        if (!p.out_path)
            return cli_fail("--lora-of needs -o OUT.gguf");
        lp.out_path = p.out_path;
        if (seed_given)
            lp.seed = p.seed;
        if (modelgen_lora_write(&lp, lerr, sizeof(lerr)))
            return cli_fail("%s", lerr);
        return 0;
    }
    if (!p.vocab_path || !p.out_path) {
        gen_usage(stderr);
        return cli_fail("--vocab and -o are required");
    }
    if (strcmp(shape, "tiny") == 0) {
        /* modelgen's defaults */
    } else if (strcmp(shape, "small") == 0) {
        p.n_layer = 4; p.n_embd = 512; p.n_ff = 1536; p.n_head = 8; p.n_head_kv = 4;
    } else if (strcmp(shape, "0.5b") == 0) {
        p.n_layer = 24; p.n_embd = 896; p.n_ff = 4864; p.n_head = 14; p.n_head_kv = 2;
    } else if (strcmp(shape, "1b") == 0) {
        p.n_layer = 16; p.n_embd = 2048; p.n_ff = 8192; p.n_head = 32; p.n_head_kv = 8;
    } else {
        return cli_fail("--shape must be tiny, small, 0.5b or 1b, not '%s'", shape);
    }
    if (layers > 0) p.n_layer = (int)layers;
    if (embd > 0) p.n_embd = (int)embd;
    if (ff > 0) p.n_ff = (int)ff;
    if (heads > 0) p.n_head = (int)heads;
    if (kv > 0) p.n_head_kv = (int)kv;
    char *tmpl = NULL;
    if (tmpl_file) {
        if (p.chat_template)
            return cli_fail("give --chat-template or --chat-template-file, not both");
        if (!(tmpl = gen_read_file(tmpl_file)))
            return cli_fail("cannot read the chat template file '%s': %s", tmpl_file, strerror(errno));
        p.chat_template = tmpl;
    }
    char err[512] = "";
    int rc = modelgen_write(&p, err, sizeof(err));
    free(tmpl);
    if (rc != 0) {
        cli_fail("%s", err);
        return 1;
    }
    return 0;
}
