/*
 * batch_preset.c — see batch_preset.h. Every number below says where it comes from; where
 * the providers' documents disagree with each other, the smaller value is taken (a smaller
 * file only means one more upstream batch; a larger one is refused whole).
 */
#include "batch_preset.h"

#include "../util/status.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MB (1000LL * 1000LL) /* the smaller reading of the providers' "MB" */

/* OpenAI (platform.openai.com/docs/guides/batch, docs/api-reference/batch/create):
 * "Currently only 24h is supported"; up to 50,000 requests and 200 MB per input file;
 * /v1/chat/completions, /v1/completions (and embeddings, responses, which nightshift does
 * not send upstream). */
static const struct batch_window openai_windows[] = {{24 * 3600, "24h"}};

/* Groq (console.groq.com/docs/batch and docs/api-reference#batches-create):
 * completion_window "Durations from 24h to 7d are supported"; the documents spell only
 * "24h" and "7d", so the days between are sent in hours, the unit "24h" shows Groq reads.
 * Lines: "The Files API supports JSONL files up to 50,000 lines and 200MB in size" (batch
 * guide) but "The Batch API only supports .jsonl files up to 100 MB" (API reference, Upload
 * file): 100 MB taken. Endpoints: /v1/chat/completions, /v1/audio/transcriptions,
 * /v1/audio/translations (no /v1/completions). Expired and failed requests are written to
 * the error file; a 429 carries retry-after in seconds (docs/rate-limits). */
static const struct batch_window groq_windows[] = {
    {24 * 3600, "24h"},  {48 * 3600, "48h"},  {72 * 3600, "72h"}, {96 * 3600, "96h"},
    {120 * 3600, "120h"}, {144 * 3600, "144h"}, {7 * 86400, "7d"},
};

/* kluster.ai (docs.kluster.ai/api-reference/reference, Submit a Batch job): "The supported
 * completion windows are 1, 3, 6, 12, and 24 hours" (spelt like the documented "24h");
 * "The file can contain up to 50,000 requests and currently a maximum of 6GB per file",
 * but the batch guide and the limits table (get-started/start-building/batch, setup) say
 * the batch file may not exceed 100 MB on any tier: 100 MB taken. The trial tier takes
 * fewer than 1,000 lines: set batch_max_lines = 999 there. Endpoint: "Currently, only
 * /v1/chat/completions is supported". Its batch object gives timestamps as strings and its
 * status table spells "finalising". */
static const struct batch_window kluster_windows[] = {
    {1 * 3600, "1h"}, {3 * 3600, "3h"}, {6 * 3600, "6h"}, {12 * 3600, "12h"}, {24 * 3600, "24h"},
};

#define N(a) (int)(sizeof(a) / sizeof((a)[0]))

static const struct batch_preset batch_presets[] = {
    {"groq", "Groq", "openai-batch", "https://api.groq.com/openai/v1", "GROQ_API_KEY", groq_windows, N(groq_windows),
     50000, 100 * MB, false},
    {"kluster", "kluster.ai", "openai-batch", "https://api.kluster.ai/v1", "KLUSTER_API_KEY", kluster_windows,
     N(kluster_windows), 50000, 100 * MB, false},
    {"openai", "OpenAI", "openai-batch", "https://api.openai.com/v1", "OPENAI_API_KEY", openai_windows,
     N(openai_windows), 50000, 200 * MB, true},
};

const struct batch_preset *batch_preset_find(const char *name)
{
    for (int i = 0; name && i < N(batch_presets); i++)
        if (strcmp(batch_presets[i].name, name) == 0)
            return &batch_presets[i];
    return NULL;
}

const char *batch_preset_names(void) { return "groq, kluster, openai"; }

const struct batch_preset *batch_preset_default(void) { return batch_preset_find("openai"); }

const struct batch_window *batch_preset_window(const struct batch_preset *p, int64_t seconds)
{
    const struct batch_window *w = &p->windows[0];
    for (int i = 1; i < p->n_windows; i++)
        if (p->windows[i].seconds <= seconds)
            w = &p->windows[i];
    return w;
}

int batch_preset_parse_window(const char *s, int64_t *seconds)
{
    char *end = NULL;
    if (!s || *s < '0' || *s > '9')
        return NS_ERR_INVALID;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || v <= 0 || v > 1000000 || end[0] == '\0' || end[1] != '\0')
        return NS_ERR_INVALID;
    long long unit = end[0] == 'm' ? 60 : end[0] == 'h' ? 3600 : end[0] == 'd' ? 86400 : 0;
    if (!unit)
        return NS_ERR_INVALID;
    *seconds = v * unit;
    return NS_OK;
}
