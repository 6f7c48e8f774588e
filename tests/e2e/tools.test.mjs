// Tool calls in each family's native format, end to end through the official OpenAI SDK:
//
//   node --test tests/e2e/tools.test.mjs
//
// Five random-weight models (gen-model --chat-template-file), each carrying a real family's
// chat template from llama.cpp's models/templates and a tokenizer that fits it: Qwen2.5
// (<tool_call> JSON), Llama 3.1 ({"name", "parameters"}), Mistral Nemo ([TOOL_CALLS][...]),
// DeepSeek R1 (llama.cpp's template: <｜tool▁calls▁begin｜>...) and Qwen3 (<think> then
// <tool_call>), served by one `nightshift serve`. Per family, tool_choice "required" and a
// named tool_choice, a few of each concurrently: every answer that finishes is a well-formed
// tool_calls entry (id, type function, a name of the tools) whose arguments JSON.parse and
// validate against the tool's schema (ajv); answers cut at max_tokens are only counted (see
// the note at the count: llama.cpp's forced-call grammar lets text come first). One streamed request per family through the SDK's stream helper: the
// chunks reassemble into the same call (id and name once) and validate.
// Also: gen-model refuses a missing --chat-template-file by name.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';

import { BIN, VOCAB_DIR, ensureNpmDeps, mkTmp, rmTmp, startServer } from './serve_lib.mjs';

const TEMPLATES = path.join(VOCAB_DIR, 'templates');
const FAMILIES = [
    { name: 'qwen25', vocab: 'qwen2', tmpl: 'Qwen-Qwen2.5-7B-Instruct' },
    { name: 'llama31', vocab: 'llama-bpe', tmpl: 'meta-llama-Llama-3.1-8B-Instruct' },
    { name: 'mistral', vocab: 'llama-spm', tmpl: 'mistralai-Mistral-Nemo-Instruct-2407' },
    // reasoning families: forced calls with thinking off (chat_template_kwargs), as a random
    // model that starts thinking rarely stops; their thinking is checked with real outputs in
    // tests/unit/test_chat.c. DeepSeek R1's template opens <think> whatever it is told, so
    // its forced calls are counted, not required to finish (a reasoning budget would bound it)
    { name: 'deepseek', vocab: 'qwen2', tmpl: 'llama-cpp-deepseek-r1', thinks: true, always: true },
    { name: 'qwen3', vocab: 'qwen2', tmpl: 'Qwen-Qwen3-0.6B', thinks: true },
];
const N = 2; // requests per family and tool_choice
const MAX_TOKENS = 160;

const WEATHER = {
    type: 'object',
    properties: { city: { type: 'string', maxLength: 8 }, days: { type: 'integer', minimum: 1, maximum: 7 } },
    required: ['city', 'days'],
    additionalProperties: false,
};
const TIME = {
    type: 'object',
    properties: { tz: { type: 'string', enum: ['UTC', 'CET', 'JST'] } },
    required: ['tz'],
    additionalProperties: false,
};
const TOOLS = [
    { type: 'function', function: { name: 'get_weather', description: 'Weather forecast', parameters: WEATHER } },
    { type: 'function', function: { name: 'get_time', description: 'Local time', parameters: TIME } },
];
const MESSAGES = [{ role: 'user', content: 'What is the weather in Paris for the next 3 days?' }];

let TMP, SERVER, client, ajv, validators;

function run(args) {
    return new Promise((resolve, reject) => {
        const c = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        c.stderr.on('data', (d) => (err += d));
        c.on('error', reject);
        c.on('close', (code) => resolve({ code, err }));
    });
}

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN}`);
    await ensureNpmDeps();
    const sdk = await import('openai');
    const Ajv = (await import('ajv')).default;
    ajv = new Ajv({ strict: true, allErrors: true });
    validators = { get_weather: ajv.compile(WEATHER), get_time: ajv.compile(TIME) };
    TMP = mkTmp('nightshift-tools-e2e-');
    const models = await Promise.all(FAMILIES.map(async (f, i) => {
        const out = path.join(TMP, `${f.name}.gguf`);
        const r = await run(['gen-model', '--vocab', path.join(VOCAB_DIR, `ggml-vocab-${f.vocab}.gguf`), '-o', out,
            '--seed', String(i + 1), '--chat-template-file', path.join(TEMPLATES, `${f.tmpl}.jinja`)]);
        assert.equal(r.code, 0, `gen-model ${f.name} failed:\n${r.err}`);
        return `${f.name}=${out}`;
    }));
    SERVER = await startServer([...models.flatMap((m) => ['--model', m]), '--parallel', '8', '--ctx', '8192',
        '--data-dir', path.join(TMP, 'data')], { name: 'tools' });
    client = new sdk.default({ baseURL: `${SERVER.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 120_000 });
});

after(async () => {
    const x = SERVER ? await SERVER.stop() : { code: 0 };
    rmTmp(TMP);
    if (x.code !== 0) throw new Error(`server exited with ${JSON.stringify(x)}\n${SERVER.log()}`);
});

/* a finished answer's first call: well-formed, its arguments valid for its tool */
function checkCall(what, call, wantName) {
    assert.ok(call, `${what}: no tool call`);
    assert.equal(typeof call.id, 'string', `${what}: id`);
    assert.ok(call.id.length > 0, `${what}: empty id`);
    assert.equal(call.type, 'function', `${what}: type`);
    assert.ok(validators[call.function.name], `${what}: unknown tool name ${call.function.name}`);
    if (wantName) assert.equal(call.function.name, wantName, `${what}: name`);
    let args;
    try {
        args = JSON.parse(call.function.arguments);
    } catch (e) {
        assert.fail(`${what}: arguments are not JSON: ${call.function.arguments} (${e.message})`);
    }
    const v = validators[call.function.name];
    assert.ok(v(args), `${what}: arguments ${call.function.arguments} invalid: ${ajv.errorsText(v.errors)}`);
}

const stats = {};

for (const f of FAMILIES) {
    test(`${f.name}: forced tool calls (required and named) are well-formed and valid`, async () => {
        const bodies = [];
        for (let i = 0; i < N; i++) {
            bodies.push({ tool_choice: 'required', want: null, seed: 100 + i });
            bodies.push({ tool_choice: { type: 'function', function: { name: 'get_weather' } }, want: 'get_weather', seed: 200 + i });
        }
        const answers = await Promise.all(bodies.map((b) => client.chat.completions.create({
            model: f.name, messages: MESSAGES, tools: TOOLS, tool_choice: b.tool_choice, max_tokens: MAX_TOKENS,
            temperature: 1, seed: b.seed, parallel_tool_calls: false, // one call: a random model would add calls forever
            ...(f.thinks ? { chat_template_kwargs: { enable_thinking: false } } : {}),
        })));
        let finished = 0;
        answers.forEach((a, i) => {
            const what = `${f.name} ${JSON.stringify(bodies[i].tool_choice)} #${i}`;
            const c = a.choices[0];
            assert.ok(['tool_calls', 'length'].includes(c.finish_reason), `${what}: finish_reason ${c.finish_reason}`);
            if (c.finish_reason === 'length') return;
            finished++;
            assert.ok(Array.isArray(c.message.tool_calls) && c.message.tool_calls.length >= 1,
                `${what}: no tool_calls in ${JSON.stringify(c.message)}`);
            checkCall(what, c.message.tool_calls[0], bodies[i].want);
        });
        stats[f.name] = { finished, total: answers.length };
        // required/named: the grammar holds the answer to the call from its first token (no free
        // text before it, no thinking when it is off: chat.cpp's require_calls), so most calls
        // finish on a random model too
        if (!f.always)
            assert.ok(finished * 2 > answers.length, `${f.name}: only ${finished} of ${answers.length} finished`);
    });

    test(`${f.name}: a streamed forced call reassembles (SDK stream helper)`, async () => {
        const stream = client.chat.completions.stream({
            model: f.name, messages: MESSAGES, tools: TOOLS, max_tokens: MAX_TOKENS, seed: 7, parallel_tool_calls: false,
            ...(f.thinks ? { chat_template_kwargs: { enable_thinking: false } } : {}),
            tool_choice: { type: 'function', function: { name: 'get_weather' } },
        });
        const calls = [];
        for await (const chunk of stream) {
            for (const d of chunk.choices[0]?.delta?.tool_calls ?? []) {
                if (!calls[d.index]) {
                    assert.ok(d.id && d.function?.name, `${f.name}: a call's first delta has no id or name`);
                    calls[d.index] = { id: d.id, name: d.function.name, args: '' };
                } else {
                    assert.ok(!d.id || d.id === calls[d.index].id, `${f.name}: the id changed`);
                    assert.ok(!d.function?.name, `${f.name}: the name came twice`);
                }
                calls[d.index].args += d.function?.arguments ?? '';
            }
        }
        const final = await stream.finalChatCompletion();
        const c = final.choices[0];
        assert.ok(['tool_calls', 'length'].includes(c.finish_reason), `${f.name}: finish_reason ${c.finish_reason}`);
        if (c.finish_reason === 'length') return; // cut: nothing to validate
        assert.ok(calls.length >= 1, `${f.name}: no call streamed`);
        const tc = c.message.tool_calls[0];
        assert.equal(tc.id, calls[0].id);
        assert.equal(tc.function.name, calls[0].name);
        assert.equal(tc.function.arguments, calls[0].args);
        checkCall(`${f.name} (stream)`, tc, 'get_weather');
    });
}

test('the counts', () => {
    // printed for the record (node --test shows diagnostics)
    for (const [name, s] of Object.entries(stats)) console.log(`# ${name}: ${s.finished}/${s.total} finished and validated`);
});

test('gen-model refuses a missing --chat-template-file by name', async () => {
    const missing = path.join(TMP, 'no-such.jinja');
    const r = await run(['gen-model', '--vocab', path.join(VOCAB_DIR, 'ggml-vocab-qwen2.gguf'), '-o',
        path.join(TMP, 'x.gguf'), '--chat-template-file', missing]);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /cannot read the chat template file/);
    assert.ok(r.err.includes(missing), r.err);
    assert.ok(!fs.existsSync(path.join(TMP, 'x.gguf')));
});
