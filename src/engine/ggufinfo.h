/*
 * ggufinfo.h — what a GGUF model file is, read from its header without loading it: the
 * facts `nightshift models show`, Ollama's /api/tags and /api/show give for a model in the
 * model store (backend/modelstore.h) that no engine has loaded.
 *
 * DESIGN
 * gguf_init_from_file() with no_alloc reads the key/value pairs and the tensor shapes, not
 * the weights: milliseconds and a few MB of memory for a multi-GB file. A split model
 * (NAME-00001-of-0000N.gguf) is read split by split for its parameter count and size; the
 * other facts are in the first split. The chat template's name is a guess from the
 * template's marker tokens (the engine, once it loads the model, applies the template
 * itself and does not rely on the guess).
 *
 * THREADS: none of its own; any thread.
 */
#ifndef NS_ENGINE_GGUFINFO_H
#define NS_ENGINE_GGUFINFO_H

#include "request.h"

#include <stddef.h>
#include <stdint.h>

/* Fill out from path's header: name (general.name, else the file's base name), arch,
 * file_type (general.file_type; -1 when absent), n_params (every split), n_ctx_train
 * (ARCH.context_length), n_vocab, chat_template (the guessed template name: "chatml",
 * "llama3", ...; "jinja" for one not recognised; "none" when the file has none), desc
 * ("llama 494.03M Q8_0"). *bytes (may be NULL): the file sizes of all splits. The rest of
 * out is zero. NS_OK, or NS_ERR_INVALID with err naming the file. */
int ggufinfo_read(const char *path, struct engine_info *out, uint64_t *bytes, char *err, size_t errlen);

/* the template name ggufinfo_read() guesses for a Jinja chat template's text */
const char *ggufinfo_template_name(const char *jinja);

#endif
