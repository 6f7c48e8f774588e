/*
 * toolwire.h — nightshift's own tool-call format, the fallback for chat templates llama.cpp
 * knows no tool format for (ChatML, and templates that never render tools: chat.h's
 * chat_templates_tools_native says which). A model whose template has a format is always
 * given that one (chat.h); this one exists so that tools still work, documented as the
 * fallback, on models without it.
 *
 * FORMAT
 * The tools are listed in a system message (put in front of the conversation's own, or as
 * a new first message) with an instruction; a call is written
 *     <tool_call>{"name": NAME, "arguments": {...}}</tool_call>
 * and held there by a grammar built with llama.cpp's JSON Schema converter over the tools'
 * parameters: lazy from "<tool_call>" on for tool_choice "auto" (the model may answer in
 * text instead), from the first token for "required" (one call). An assistant message's
 * earlier tool_calls are shown to the model in the same format, so it sees what it did.
 *
 * THREADS: none; reentrant. OWNERSHIP: out-params are malloc'd and the caller's.
 */
#ifndef NS_ENGINE_TOOLWIRE_H
#define NS_ENGINE_TOOLWIRE_H

#include "chat.h"

#include <stdbool.h>
#include <stddef.h>

#define TOOLWIRE_OPEN "<tool_call>"
#define TOOLWIRE_CLOSE "</tool_call>"

/* The chat JSON (chat.h INTERFACE) rewritten for a template without a tool format: tools
 * and tool_choice taken out, the instruction in a system message, earlier calls as text;
 * *grammar and *lazy hold the calls. *out NULL (NS_OK) when the request shows no tools (none
 * given, or tool_choice "none"): render it as it is. NS_ERR_INVALID with err for a tool
 * whose parameters llama.cpp's converter refuses. */
int toolwire_rewrite(const char *chat_json, char **out, char **grammar, bool *lazy, char *err, size_t errlen);

/* An output read back: calls in the format (a known shape: a name and an object of
 * arguments) become calls, the rest is content. cut: the output ended at max_tokens, so a
 * call left open is kept with its arguments as far as they went. */
int toolwire_parse(const char *text, size_t len, bool cut, struct chat_msg *out);

/* Streaming: text that may still become a call is held until it cannot; a call goes out
 * whole (id, name and arguments in one delta) once it closes. */
struct toolwire_stream;
struct toolwire_stream *toolwire_stream_new(void);
void toolwire_stream_free(struct toolwire_stream *s);
int toolwire_stream_feed(struct toolwire_stream *s, const char *text, size_t len, bool final, bool cut,
                         const struct chat_diff **diffs, int *n);
/* after final: the answer (as toolwire_parse's, with the final feed's cut), moved to *out */
void toolwire_stream_take(struct toolwire_stream *s, struct chat_msg *out);

#endif
