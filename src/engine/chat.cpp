// chat.cpp — see chat.h. The project's only C++: a thin layer over llama.cpp's common
// library (chat templates, tool-call formats, reasoning, JSON Schema -> GBNF). It mirrors
// what llama-server does with an OpenAI chat body (tools/server/server-common.cpp,
// oaicompat_chat_params_parse; server-task.cpp, update_chat_msg) so that a prompt rendered
// here is the prompt llama-server renders. Every entry point catches every exception.

#include "chat.h"

#include "../util/status.h"

// llama.cpp's common, by its path in the llama.cpp tree (its chat.h shares our header's name)
#include "common/chat.h"
#include "common/common.h"
#include "common/json-schema-to-grammar.h"
#include "llama.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <regex>
#include <string>
#include <vector>

struct chat_templates {
    common_chat_templates_ptr tmpls;
    std::string source;
    bool legacy = false;    // a llama.cpp built-in name: rendered by llama_chat_apply_template
    bool fallback = false;  // the GGUF has no template: ChatML
    bool thinking = false;  // the template can think (llama-server's default enable_thinking)
};

struct chat_parser {
    common_chat_parser_params params;
};

struct chat_stream {
    const chat_parser *p = nullptr;
    std::string text;
    common_chat_msg msg;
    std::vector<std::string> ids;          // tool call ids, kept across re-parses
    std::vector<common_chat_msg_diff> raw; // the last feed's diffs (the strings chat_diff points into)
    std::vector<chat_diff> diffs;
    std::vector<bool> named;               // a call's id and name went out already
    struct chat_msg out {};
};

namespace {

void set_err(char *err, size_t errlen, const char *what)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", what);
}

char *dup(const std::string &s)
{
    char *p = static_cast<char *>(malloc(s.size() + 1));
    if (!p)
        throw std::bad_alloc();
    memcpy(p, s.data(), s.size());
    p[s.size()] = '\0';
    return p;
}

char **dup_all(const std::vector<std::string> &v, int *n)
{
    *n = 0;
    if (v.empty())
        return nullptr;
    char **a = static_cast<char **>(calloc(v.size(), sizeof(char *)));
    if (!a)
        throw std::bad_alloc();
    for (size_t i = 0; i < v.size(); i++) {
        a[i] = dup(v[i]);
        (*n)++;
    }
    return a;
}

int32_t *dup_tokens(const std::vector<llama_token> &v, int *n)
{
    *n = 0;
    if (v.empty())
        return nullptr;
    int32_t *a = static_cast<int32_t *>(malloc(v.size() * sizeof(int32_t)));
    if (!a)
        throw std::bad_alloc();
    std::copy(v.begin(), v.end(), a);
    *n = static_cast<int>(v.size());
    return a;
}

// "call_" and 24 letters/digits, as OpenAI's ids look (llama-server makes 32 bare ones)
std::string tool_call_id()
{
    static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_int_distribution<int> pick(0, static_cast<int>(sizeof(abc)) - 2);
    std::string id = "call_";
    for (int i = 0; i < 24; i++)
        id += abc[pick(rng)];
    return id;
}

// tool_choice "required": llama.cpp's grammars let free text come before the calls
// ("root ::= ... until-N? tool-calls"), which a real model skips but a weak one wanders in
// until max_tokens. Required means the answer is calls (OpenAI answers content null), so the
// root rule loses that optional text; reasoning before the calls stays allowed unless thinking
// is turned off. A grammar of another shape is left as llama.cpp made it.
std::string require_calls(const std::string &g, bool thinking)
{
    size_t at = g.rfind("\nroot ::= ");
    size_t start = at == std::string::npos ? (g.compare(0, 9, "root ::= ") == 0 ? 0 : std::string::npos) : at + 1;
    if (start == std::string::npos)
        return g;
    size_t end = g.find('\n', start);
    std::string line = g.substr(start, end == std::string::npos ? std::string::npos : end - start);
    static const std::regex free_text(" until-[0-9]+\\? (tool-calls?)\\b");
    std::string tight = std::regex_replace(line, free_text, " $1");
    // thinking turned off (enable_thinking false): the optional think block goes too
    static const std::regex think(" \\(\"<think>\"[^()]*\\)\\?");
    if (!thinking)
        tight = std::regex_replace(tight, think, "");
    return g.substr(0, start) + tight + (end == std::string::npos ? "" : g.substr(end));
}

// parallel_tool_calls false: some of llama.cpp's formats repeat the call rule whatever the
// flag says ("tool-calls ::= (tool-call space)+"); one call it is
std::string one_call(const std::string &g)
{
    static const std::string many = "\ntool-calls ::= (tool-call space)+\n";
    size_t at = g.find(many);
    if (at == std::string::npos)
        return g;
    return g.substr(0, at) + "\ntool-calls ::= tool-call space\n" + g.substr(at + many.size());
}

// A tool whose schema proto/'s guard rewrote (a format as its pattern, a bounded number as
// the integers it can be, ...) carries the rewrite as function.held_parameters beside the
// parameters the client sent: the template shows the tools as sent, and the grammar and the
// parser are made from what the calls are held to. True (tools replaced) when any tool has one.
bool held_tools(const common_json &body, std::vector<common_chat_tool> *tools)
{
    if (!body.contains("tools") || !body.at("tools").is_array())
        return false;
    common_json held = body.at("tools");
    bool any = false;
    for (size_t i = 0; i < held.size(); i++) {
        common_json &t = held.at(i);
        if (t.is_object() && t.contains("function") && t.at("function").is_object() &&
            t.at("function").contains("held_parameters")) {
            common_json &f = t.at("function");
            f["parameters"] = f.at("held_parameters");
            any = true;
        }
    }
    if (any)
        *tools = common_chat_tools_parse_oaicompat(held);
    return any;
}

bool is_builtin_name(const char *name)
{
    const char *names[128];
    int32_t n = llama_chat_builtin_templates(names, sizeof(names) / sizeof(names[0]));
    for (int32_t i = 0; i < n && i < 128; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

// The status of the exception being handled, its words in err: out of memory, or `other`
// for anything else (a template that raises, a parse that fails, a non-standard throw).
// Every entry point ends in catch (...) { ...; return caught(...); }: nothing crosses.
int caught(char *err, size_t errlen, int other, const char *prefix = "")
{
    try {
        throw;
    } catch (const std::bad_alloc &) {
        set_err(err, errlen, "out of memory");
        return NS_ERR_NOMEM;
    } catch (const std::exception &e) {
        std::string m = std::string(prefix) + e.what();
        set_err(err, errlen, m.c_str());
        return other;
    } catch (...) {
        set_err(err, errlen, "llama.cpp failed without saying why");
        return other;
    }
}

void msg_release(struct chat_msg *m)
{
    free(m->content);
    free(m->reasoning);
    for (int i = 0; i < m->n_calls; i++) {
        free(m->calls[i].id);
        free(m->calls[i].name);
        free(m->calls[i].arguments);
    }
    free(m->calls);
    memset(m, 0, sizeof(*m));
}

void msg_fill(const common_chat_msg &src, struct chat_msg *out)
{
    memset(out, 0, sizeof(*out));
    out->content = dup(src.content);
    if (!src.reasoning_content.empty())
        out->reasoning = dup(src.reasoning_content);
    if (!src.tool_calls.empty()) {
        out->calls = static_cast<chat_tool_call *>(calloc(src.tool_calls.size(), sizeof(chat_tool_call)));
        if (!out->calls)
            throw std::bad_alloc();
        for (const auto &c : src.tool_calls) {
            chat_tool_call *d = &out->calls[out->n_calls++];
            d->id = dup(c.id);
            d->name = dup(c.name);
            d->arguments = dup(c.arguments.empty() ? std::string("{}") : c.arguments);
        }
    }
}

// the parts of an OpenAI chat body that shape the prompt -> common's inputs (as
// oaicompat_chat_params_parse does it, minus media and llama-server's own options)
common_chat_templates_inputs inputs_from(const chat_templates *t, const common_json &body)
{
    common_chat_templates_inputs in;
    in.use_jinja = !t->legacy;
    if (!body.contains("messages") || !body.at("messages").is_array())
        throw std::invalid_argument("'messages' must be an array");
    in.messages = common_chat_msgs_parse_oaicompat(body.at("messages"));
    if (body.contains("tools") && !body.at("tools").is_null())
        in.tools = common_chat_tools_parse_oaicompat(body.at("tools")); /* as shown: held_parameters aside */
    if (body.contains("tool_choice") && body.at("tool_choice").is_string())
        in.tool_choice = common_chat_tool_choice_parse_oaicompat(body.at("tool_choice").get<std::string>());
    if (body.contains("json_schema") && !body.at("json_schema").is_null()) {
        common_json schema = body.at("json_schema");
        if (schema.is_object() && schema.empty())
            schema["type"] = "object";  // an empty schema means any object
        in.json_schema = schema.dump();
    }
    auto caps = common_chat_templates_get_caps(t->tmpls.get());
    in.parallel_tool_calls = body.contains("parallel_tool_calls") && body.at("parallel_tool_calls").is_boolean()
                                 ? body.at("parallel_tool_calls").get<bool>()
                                 : caps["supports_parallel_tool_calls"];
    in.add_generation_prompt = !body.contains("add_generation_prompt") || body.at("add_generation_prompt").get<bool>();
    // a trailing assistant message is continued (llama-server's prefill_assistant)
    if (!in.messages.empty() && in.messages.back().role == "assistant" && in.add_generation_prompt) {
        if (in.messages.size() >= 2 && in.messages[in.messages.size() - 2].role == "assistant")
            throw std::invalid_argument("Cannot have 2 or more assistant messages at the end of the list.");
        if (!in.messages.back().tool_calls.empty())
            throw std::invalid_argument("Cannot continue an assistant message that contains tool calls.");
        in.continue_final_message = COMMON_CHAT_CONTINUATION_AUTO;
        in.add_generation_prompt = false;
    }
    in.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;  // llama-server's default
    if (body.contains("reasoning_format") && body.at("reasoning_format").is_string()) {
        std::string name = body.at("reasoning_format").get<std::string>();
        if (name != "none" && name != "auto" && name != "deepseek" && name != "deepseek-legacy")
            throw std::invalid_argument("reasoning_format must be one of \"none\", \"auto\", \"deepseek\" or "
                                        "\"deepseek-legacy\", but got \"" + name + "\"");
        in.reasoning_format = common_reasoning_format_from_name(name);
    }
    // llama-server's defaults: thinking where the template supports it, and past reasoning
    // kept in the history (preserve_reasoning "true" unless --no-reasoning-preserve), which
    // the request's chat_template_kwargs may override
    in.enable_thinking = t->thinking;
    in.chat_template_kwargs["preserve_reasoning"] = "true";
    if (body.contains("chat_template_kwargs") && body.at("chat_template_kwargs").is_object())
        for (const auto &item : body.at("chat_template_kwargs").items())
            in.chat_template_kwargs[item.key()] = item.value().dump();
    std::string thinking = in.chat_template_kwargs.count("enable_thinking") ? in.chat_template_kwargs["enable_thinking"] : "";
    if (thinking == "true")
        in.enable_thinking = true;
    else if (thinking == "false")
        in.enable_thinking = false;
    else if (!thinking.empty() && thinking[0] == '"')
        throw std::invalid_argument("invalid type for \"enable_thinking\" (expected boolean, got string)");
    if (body.contains("reasoning_effort") && body.at("reasoning_effort").is_string()) {
        std::string effort = body.at("reasoning_effort").get<std::string>();
        if (effort == "none") {
            in.enable_thinking = false;
            in.chat_template_kwargs.erase("reasoning_effort");
        } else if (!effort.empty()) {
            in.chat_template_kwargs["reasoning_effort"] = common_json(effort).dump();
        }
    }
    return in;
}

}  // namespace

extern "C" {

int chat_templates_init(const struct llama_model *model, const char *override, struct chat_templates **out,
                        char *err, size_t errlen)
{
    *out = nullptr;
    chat_templates *t = nullptr;
    try {
        t = new chat_templates();
        std::string src;
        if (override && *override) {
            t->legacy = is_builtin_name(override) && strcmp(override, "chatml") != 0;
            src = override;
        } else {
            t->fallback = llama_model_chat_template(model, nullptr) == nullptr &&
                          llama_model_chat_template(model, "tool_use") == nullptr;
        }
        t->tmpls = common_chat_templates_init(model, src);
        try {
            t->thinking = !t->legacy && common_chat_templates_support_enable_thinking(t->tmpls.get());
        } catch (const std::exception &) {
            t->thinking = false;  // it cannot render one user message: requests will say why
        }
        t->source = t->legacy ? src : common_chat_templates_source(t->tmpls.get());
        *out = t;
        return NS_OK;
    } catch (...) {
        delete t;
        return caught(err, errlen, NS_ERR_INVALID, "the chat template does not parse: ");
    }
}

void chat_templates_free(struct chat_templates *t) { delete t; }
const char *chat_templates_source(const struct chat_templates *t) { return t->source.c_str(); }
bool chat_templates_fallback(const struct chat_templates *t) { return t->fallback; }

bool chat_templates_tools_native(const struct chat_templates *t)
{
    if (t->legacy)
        return false;
    try {
        auto caps = common_chat_templates_get_caps(t->tmpls.get());
        return caps["supports_tool_calls"];
    } catch (...) {
        return false;
    }
}

void chat_prompt_release(struct chat_prompt *p)
{
    free(p->text);
    free(p->grammar);
    for (int i = 0; i < p->n_trigger_patterns; i++)
        free(p->trigger_patterns[i]);
    free(p->trigger_patterns);
    free(p->trigger_tokens);
    free(p->prefill);
    free(p->preserved);
    for (int i = 0; i < p->n_stops; i++)
        free(p->stops[i]);
    free(p->stops);
    delete p->parser;
    memset(p, 0, sizeof(*p));
}

int chat_render(const struct chat_templates *t, const struct llama_model *model, const char *request_json,
                struct chat_prompt *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    try {
        common_json body = common_json::parse(request_json ? request_json : "{}");
        common_chat_templates_inputs in = inputs_from(t, body);
        common_chat_params cp = common_chat_templates_apply(t->tmpls.get(), in);
        const llama_vocab *vocab = llama_model_get_vocab(model);
        out->text = dup(cp.prompt); /* the tools as the client sent them, as llama-server shows them */
        if (held_tools(body, &in.tools))
            cp = common_chat_templates_apply(t->tmpls.get(), in); /* grammar and parser from what is held */

        out->format = common_chat_format_name(cp.format);
        out->has_tools = !in.tools.empty() && in.tool_choice != COMMON_CHAT_TOOL_CHOICE_NONE;
        if (!cp.grammar.empty()) {
            std::string g = cp.grammar;
            if (out->has_tools && in.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED && !cp.grammar_lazy)
                g = require_calls(g, in.enable_thinking || cp.generation_prompt.find("<think>") != std::string::npos);
            if (out->has_tools && !in.parallel_tool_calls)
                g = one_call(g);
            out->grammar = dup(g);
        }
        out->grammar_lazy = cp.grammar_lazy;

        // preserved tokens: those that are one token stay text in the output
        std::vector<llama_token> preserved;
        for (const auto &s : cp.preserved_tokens) {
            auto ids = common_tokenize(vocab, s, false, true);
            if (ids.size() == 1)
                preserved.push_back(ids[0]);
        }
        // triggers, as llama-server and common_sampler_init turn them into the lazy
        // grammar's patterns and tokens
        std::vector<std::string> patterns;
        std::vector<llama_token> tokens;
        for (const auto &tr : cp.grammar_triggers) {
            switch (tr.type) {
            case COMMON_GRAMMAR_TRIGGER_TYPE_WORD: {
                auto ids = common_tokenize(vocab, tr.value, false, true);
                if (ids.size() == 1 && std::find(preserved.begin(), preserved.end(), ids[0]) != preserved.end())
                    tokens.push_back(ids[0]);
                else
                    patterns.push_back(regex_escape(tr.value));
                break;
            }
            case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN:
                patterns.push_back(tr.value);
                break;
            case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL: {
                const std::string &p = tr.value;
                std::string anchored = "^$";
                if (!p.empty())
                    anchored = (p.front() != '^' ? "^" : "") + p + (p.back() != '$' ? "$" : "");
                patterns.push_back(anchored);
                break;
            }
            case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN:
                tokens.push_back(tr.token);
                break;
            }
        }
        if (cp.grammar_lazy && patterns.empty() && tokens.empty())
            throw std::runtime_error("the format's lazy grammar has no trigger");
        out->trigger_patterns = dup_all(patterns, &out->n_trigger_patterns);
        out->trigger_tokens = dup_tokens(tokens, &out->n_trigger_tokens);
        out->preserved = dup_tokens(preserved, &out->n_preserved);
        out->stops = dup_all(cp.additional_stops, &out->n_stops);

        // the generation prompt's tokens, fed to an output-format or tool-call grammar first
        // (common_sampler_init: the template already wrote them into the prompt)
        if (!cp.grammar.empty() && !cp.grammar_lazy && !cp.generation_prompt.empty()) {
            std::vector<llama_token> prefill;
            auto ids = common_tokenize(vocab, cp.generation_prompt, false, true);
            for (size_t i = 0; i < ids.size(); i++) {
                std::string piece = common_token_to_piece(vocab, ids[i], true);
                if (i == 0 && !piece.empty() && isspace(static_cast<unsigned char>(piece[0])) &&
                    !isspace(static_cast<unsigned char>(cp.generation_prompt[0])))
                    continue;
                prefill.push_back(ids[i]);
            }
            out->prefill = dup_tokens(prefill, &out->n_prefill);
        }

        chat_parser *p = new chat_parser();
        out->parser = p;
        p->params = common_chat_parser_params(cp);
        p->params.reasoning_format = in.reasoning_format;
        p->params.parse_tool_calls = out->has_tools;
        if (!cp.parser.empty())
            p->params.parser.load(cp.parser);
        return NS_OK;
    } catch (...) {
        chat_prompt_release(out);
        return caught(err, errlen, NS_ERR_INVALID);
    }
}

int chat_parse(const struct chat_parser *p, const char *text, size_t len, bool cut, struct chat_msg *out, char *err,
               size_t errlen)
{
    memset(out, 0, sizeof(*out));
    try {
        std::string s(text ? text : "", text ? len : 0);
        common_chat_msg m;
        try {
            m = common_chat_parse(s, cut, p->params);
        } catch (const std::exception &) {
            // output the format cannot read (a random model, a cut-off call): all of it is content
            m = common_chat_msg();
            m.content = s;
        }
        for (auto &c : m.tool_calls)
            if (c.id.empty())
                c.id = tool_call_id();
        msg_fill(m, out);
        return NS_OK;
    } catch (...) {
        msg_release(out);
        return caught(err, errlen, NS_ERR_ENGINE);
    }
}

void chat_msg_release(struct chat_msg *m) { msg_release(m); }

struct chat_stream *chat_stream_new(const struct chat_parser *p)
{
    try {
        chat_stream *s = new chat_stream();
        s->p = p;
        return s;
    } catch (...) {
        return nullptr;
    }
}

void chat_stream_free(struct chat_stream *s)
{
    if (!s)
        return;
    msg_release(&s->out);
    delete s;
}

int chat_stream_feed(struct chat_stream *s, const char *text, size_t len, bool final, bool cut,
                     const struct chat_diff **diffs, int *n, char *err, size_t errlen)
{
    *diffs = nullptr;
    *n = 0;
    try {
        s->text.append(text ? text : "", text ? len : 0);
        common_chat_msg prev = s->msg, next;
        try {
            next = common_chat_parse(s->text, !final || cut, s->p->params);
        } catch (const std::exception &) {
            if (!final)
                return NS_OK;  // not readable yet: wait for more text
            next = common_chat_msg();
            next.content = s->text;
        }
        if (next.empty() && !final)
            return NS_OK;
        next.set_tool_call_ids(s->ids, tool_call_id);
        s->msg = next;
        s->raw = common_chat_msg_diff::compute_diffs(prev, next);
        s->diffs.clear();
        for (const auto &d : s->raw) {
            chat_diff c{};
            c.call_index = -1;
            if (!d.content_delta.empty())
                c.content = d.content_delta.c_str();
            if (!d.reasoning_content_delta.empty())
                c.reasoning = d.reasoning_content_delta.c_str();
            if (d.tool_call_index != std::string::npos) {
                size_t i = d.tool_call_index;
                if (s->named.size() <= i)
                    s->named.resize(i + 1, false);
                // a call goes out once its name is known: id and name first, then arguments
                if (!s->named[i]) {
                    if (s->msg.tool_calls[i].name.empty())
                        continue;
                    c.call_id = s->msg.tool_calls[i].id.c_str();
                    c.call_name = s->msg.tool_calls[i].name.c_str();
                    s->named[i] = true;
                }
                c.call_index = static_cast<int>(i);
                if (!d.tool_call_delta.arguments.empty())
                    c.call_args = d.tool_call_delta.arguments.c_str();
                if (!c.call_name && !c.call_args)
                    continue;
            }
            if (c.content || c.reasoning || c.call_index >= 0)
                s->diffs.push_back(c);
        }
        if (final) {
            msg_release(&s->out);
            msg_fill(s->msg, &s->out);
        }
        *diffs = s->diffs.empty() ? nullptr : s->diffs.data();
        *n = static_cast<int>(s->diffs.size());
        return NS_OK;
    } catch (...) {
        return caught(err, errlen, NS_ERR_ENGINE);
    }
}

void chat_stream_take(struct chat_stream *s, struct chat_msg *out)
{
    *out = s->out;
    memset(&s->out, 0, sizeof(s->out));
}

struct llama_sampler *chat_grammar_sampler(const struct llama_vocab *vocab, const char *grammar,
                                           const struct chat_prompt *p, char *err, size_t errlen)
{
    struct llama_sampler *g = nullptr;
    try {
        if (grammar || !p->grammar_lazy) {
            g = llama_sampler_init_grammar(vocab, grammar ? grammar : p->grammar, "root");
            for (int i = 0; g && !grammar && i < p->n_prefill; i++)
                llama_sampler_accept(g, p->prefill[i]);
        } else {
            g = llama_sampler_init_grammar_lazy_patterns(vocab, p->grammar, "root", (const char **)p->trigger_patterns,
                                                         (size_t)p->n_trigger_patterns, p->trigger_tokens,
                                                         (size_t)p->n_trigger_tokens);
        }
        if (!g)
            set_err(err, errlen, "the grammar does not compile");
        return g;
    } catch (...) {
        if (g)
            llama_sampler_free(g);
        caught(err, errlen, NS_ERR_INVALID);
        return nullptr;
    }
}

int chat_schema_grammar(const char *schema_json, char **out, char *err, size_t errlen)
{
    *out = nullptr;
    try {
        common_json schema = common_json::parse(schema_json ? schema_json : "{}");
        *out = dup(json_schema_to_grammar(schema));
        return NS_OK;
    } catch (...) {
        return caught(err, errlen, NS_ERR_INVALID);
    }
}

}  // extern "C"

// ---- JSON Schema pattern check (issue 29; see chat.h) -----------------------------------
// The converter turns a translated pattern into a root rule of its own ("\"" ( ... ) "\"");
// an untranslatable one falls back to `root ::= string` (json-schema-to-grammar.cpp,
// _visit_pattern). Converting {"type":"string","pattern":P} and looking at the root rule
// tells which, without reaching into common's internals. The fallback's stderr warning is
// printed on that path only, i.e. only for a pattern the caller then refuses.
extern "C" int chat_schema_pattern_ok(const char *pattern, bool *translatable, char *err, size_t errlen)
{
    *translatable = false;
    try {
        common_json schema = {{"type", "string"}, {"pattern", pattern ? pattern : ""}};
        std::string g = json_schema_to_grammar(schema);
        *translatable = g.find("root ::= string\n") == std::string::npos;
        return NS_OK;
    } catch (...) {
        return caught(err, errlen, NS_ERR_INVALID);
    }
}
// ---- end of the pattern check -----------------------------------------------------------

// ---- memory: the fit and the breakdown (issue 30; see chat.h) ---------------------------
#include "common/fit.h"
#include "src/llama-ext.h"

#include "ggml-backend.h"

extern "C" int chat_fit_params(const char *model_path, struct llama_model_params *mp, struct llama_context_params *cp,
                               float *tensor_split, void *overrides, size_t margin, uint32_t n_ctx_min, char *err,
                               size_t errlen)
{
    try {
        std::vector<size_t> margins(llama_max_devices(), margin);
        common_params_fit_status st =
            common_fit_params(model_path, mp, cp, tensor_split, static_cast<llama_model_tensor_buft_override *>(overrides),
                              margins.data(), n_ctx_min, nullptr, GGML_LOG_LEVEL_ERROR);
        if (st == COMMON_PARAMS_FIT_STATUS_ERROR) {
            snprintf(err, errlen, "cannot measure the memory '%s' needs (run with --verbose for llama.cpp's log)",
                     model_path);
            return NS_ERR_ENGINE;
        }
        return st == COMMON_PARAMS_FIT_STATUS_SUCCESS ? 0 : 1;
    } catch (...) {
        return caught(err, errlen, NS_ERR_ENGINE, "the memory fit failed: ");
    }
}

extern "C" int chat_memory_breakdown(const struct llama_context *ctx, struct chat_mem *out, int max)
{
    try {
        llama_memory_breakdown mb = llama_get_memory_breakdown(ctx);
        int n = 0;
        for (const auto &[buft, d] : mb) {
            if (n < max) {
                chat_mem *m = &out[n];
                memset(m, 0, sizeof(*m));
                snprintf(m->name, sizeof(m->name), "%s", ggml_backend_buft_name(buft));
                ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft);
                if (dev)
                    snprintf(m->device, sizeof(m->device), "%s", ggml_backend_dev_name(dev));
                m->host = ggml_backend_buft_is_host(buft);
                m->model = d.model;
                m->context = d.context;
                m->compute = d.compute;
            }
            n++;
        }
        return n;
    } catch (...) {
        return -1;
    }
}
// ---- end of memory ------------------------------------------------------------------------
