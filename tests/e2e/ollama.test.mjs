// Conformance of `nightshift serve`'s Ollama API (/api/chat, /api/generate, /api/tags,
// /api/show, /api/ps, /api/version) with the official Ollama JavaScript client (the `ollama`
// npm package, pinned in tests/e2e/package.json and installed by before() when missing).
//
//   node --test tests/e2e/ollama.test.mjs
//
// See serve_lib.mjs / lib.mjs for the environment variables. The model is random-weight
// (gen-model): its output is gibberish, so no test looks at the text, only at shapes,
// counts and errors (and that a stream adds up to the same text as one answer, greedily).
// Two servers run for the whole file:
//   main   one model 'tiny', --parallel 2 --ctx 4096
//   keyed  the same model with --api-key and --max-body 2KB
// The client is created with a custom host, as a tool pointed at nightshift would be.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { api, killHard, runNs, submitBatch, waitBatch } from './lib.mjs';
import { BIN, SPM_VOCAB, ensureNpmDeps, mkTmp, rmTmp, startServer } from './serve_lib.mjs';

const KEY = 'sk-nightshift-ollama-e2e';
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

let Ollama; // the client class, imported once installed
let TMP;
let MAIN;
let KEYED;
let client;

const chatReq = (extra = {}) => ({
    model: 'tiny',
    messages: [{ role: 'user', content: 'Say something about llamas.' }],
    options: { num_predict: 8 },
    ...extra,
});

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN} (build it, or set NIGHTSHIFT_BIN)`);
    assert.ok(fs.existsSync(SPM_VOCAB), `the vocab file is missing: ${SPM_VOCAB} (set NIGHTSHIFT_VOCAB_DIR)`);
    await ensureNpmDeps();
    ({ Ollama } = await import('ollama'));

    TMP = mkTmp('nightshift-ollama-e2e-');
    const tiny = path.join(TMP, 'tiny.gguf');
    const r = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', tiny, '--seed', '1'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, `gen-model failed:\n${r.stderr}`);
    const common = ['--model', `tiny=${tiny}`, '--parallel', '2', '--ctx', '4096'];
    [MAIN, KEYED] = await Promise.all([
        startServer([...common, '--data-dir', path.join(TMP, 'data-main')], { name: 'main' }),
        startServer([...common, '--data-dir', path.join(TMP, 'data-keyed'), '--api-key', KEY, '--max-body', '2KB'],
            { name: 'keyed' }),
    ]);
    client = new Ollama({ host: MAIN.url });
});

after(async () => {
    const problems = [];
    for (const s of [MAIN, KEYED]) {
        if (!s) continue;
        const x = await s.stop().catch(() => null);
        if (!x) await killHard(s);
        /* SIGTERM is a graceful shutdown: exit 0 (under ASan, a leak or an error is not) */
        else if (x.code !== 0) problems.push(`server on port ${s.port} exited with ${JSON.stringify(x)}\n${s.log()}`);
    }
    rmTmp(TMP);
    if (problems.length) throw new Error(problems.join('\n'));
});

/* ---- helpers ------------------------------------------------------------------------ */

/* the last object of a stream, or a whole answer */
function checkFinal(r, { chat, numPredict, model = 'tiny' }) {
    const what = JSON.stringify(r).slice(0, 600);
    assert.equal(r.model, model, what);
    assert.match(r.created_at, RFC3339, what);
    assert.equal(r.done, true, what);
    assert.ok(['stop', 'length'].includes(r.done_reason), what);
    for (const k of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration', 'prompt_eval_count', 'eval_count'])
        assert.ok(Number.isInteger(r[k]) && r[k] >= 0, `${k}: ${what}`);
    assert.ok(r.prompt_eval_count > 0, what);
    assert.ok(r.total_duration > 0 && r.total_duration >= r.eval_duration + r.prompt_eval_duration, what);
    if (numPredict !== undefined) {
        assert.ok(r.eval_count <= numPredict, what);
        if (r.done_reason === 'length') assert.equal(r.eval_count, numPredict, what);
    }
    if (chat) {
        assert.equal(r.message.role, 'assistant', what);
        assert.equal(typeof r.message.content, 'string', what);
    } else {
        assert.equal(typeof r.response, 'string', what);
    }
}

/* consume a stream: every object but the last is done: false; returns {text, last, n} */
async function drain(stream, chat) {
    let text = '';
    let last = null;
    let n = 0;
    for await (const part of stream) {
        assert.ok(!last || !last.done, 'an object after the done one');
        assert.match(part.created_at, RFC3339);
        text += chat ? part.message.content : part.response;
        last = part;
        n++;
    }
    assert.ok(last?.done, 'the stream did not end with done: true');
    return { text, last, n };
}

/* the client's ResponseError: HTTP status and Ollama's {"error"} message */
async function expectError(promise, status, messageRe) {
    let err;
    try {
        await promise;
    } catch (e) {
        err = e;
    }
    assert.ok(err, 'expected an error, but the call succeeded');
    assert.equal(err.name, 'ResponseError', `${err.name}: ${err.message}`);
    assert.equal(err.status_code, status, err.message);
    if (messageRe) assert.match(err.error, messageRe);
    return err;
}

/* ---- models ------------------------------------------------------------------------- */

test('version, list (tags), ps and show describe the served model', async () => {
    const v = await client.version();
    assert.match(v.version, /^\d+\.\d+\.\d+$/);

    const tags = await client.list();
    assert.equal(tags.models.length, 1, JSON.stringify(tags));
    const m = tags.models[0];
    assert.equal(m.name, 'tiny');
    assert.equal(m.model, 'tiny');
    assert.match(m.digest, /^[0-9a-f]{64}$/);
    assert.equal(m.size, fs.statSync(path.join(TMP, 'tiny.gguf')).size);
    assert.match(m.modified_at, RFC3339);
    assert.deepEqual(m.details, {
        parent_model: '',
        format: 'gguf',
        family: 'llama',
        families: ['llama'],
        parameter_size: m.details.parameter_size,
        quantization_level: 'Q8_0',
    });
    assert.match(m.details.parameter_size, /^\d+(\.\d+)?[KMB]?$/);
    assert.equal((await client.list()).models[0].digest, m.digest, 'the digest is stable');

    const ps = await client.ps();
    assert.equal(ps.models.length, 1);
    const p = ps.models[0];
    assert.equal(p.name, 'tiny');
    assert.equal(p.digest, m.digest);
    assert.deepEqual(p.details, m.details);
    assert.match(p.expires_at, RFC3339);
    assert.equal(p.size_vram, 0);
    assert.ok(Number.isInteger(p.context_length) && p.context_length > 0, JSON.stringify(p));

    for (const model of ['tiny', 'tiny:latest']) {
        const s = await client.show({ model });
        assert.match(s.modelfile, /^FROM \/.*tiny\.gguf$/m, s.modelfile);
        assert.match(s.parameters, new RegExp(`^num_ctx\\s+${p.context_length}$`), s.parameters);
        assert.equal(typeof s.template, 'string');
        assert.ok(s.template.length > 0);
        assert.deepEqual(s.details, m.details);
        assert.equal(s.model_info['general.architecture'], 'llama');
        assert.ok(s.model_info['llama.context_length'] > 0, JSON.stringify(s.model_info));
        assert.ok(s.model_info['general.parameter_count'] > 0);
        assert.deepEqual(s.capabilities, ['completion']);
        assert.equal(s.modified_at, m.modified_at);
    }
});

/* ---- chat and generate -------------------------------------------------------------- */

test('chat, not streamed: the whole answer with done_reason and durations', async () => {
    const r = await client.chat(chatReq({ options: { num_predict: 6, temperature: 0.7, top_k: 20, top_p: 0.8, seed: 5 } }));
    checkFinal(r, { chat: true, numPredict: 6 });
    assert.ok(r.message.content.length > 0 || r.done_reason === 'stop', JSON.stringify(r));
    /* a system message and a conversation go through the model's chat template */
    const r2 = await client.chat({
        model: 'tiny:latest',
        messages: [
            { role: 'system', content: 'You are terse.' },
            { role: 'user', content: 'Hi.' },
            { role: 'assistant', content: 'Hello.' },
            { role: 'user', content: 'And now?' },
        ],
        options: { num_predict: 3, stop: ['zzzz-never'] },
        keep_alive: '5m',
    });
    checkFinal(r2, { chat: true, numPredict: 3, model: 'tiny:latest' });
    assert.ok(r2.prompt_eval_count > r.prompt_eval_count, 'the longer conversation has more prompt tokens');
});

test('chat, streamed (the default for Ollama): pieces, then done; the same text as one answer', async () => {
    const greedy = chatReq({ options: { num_predict: 12, temperature: 0 } });
    const { text, last, n } = await drain(await client.chat({ ...greedy, stream: true }), true);
    checkFinal(last, { chat: true, numPredict: 12 });
    assert.equal(last.message.content, '', 'the done object carries no text when streamed');
    assert.ok(n >= 2, `only ${n} objects`);
    const whole = await client.chat(greedy);
    assert.equal(text, whole.message.content);
    assert.equal(last.eval_count, whole.eval_count);
    assert.equal(last.prompt_eval_count, whole.prompt_eval_count);

    /* without "stream", Ollama streams: ndjson, one object a line */
    const res = await fetch(`${MAIN.url}/api/chat`, { method: 'POST', body: JSON.stringify(chatReq()) });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
    const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.length >= 2);
    assert.ok(lines.slice(0, -1).every((o) => o.done === false));
    checkFinal(lines.at(-1), { chat: true, numPredict: 8 });
});

test('generate: the prompt through the chat template, system, raw; streamed and not', async () => {
    const greedy = { model: 'tiny', prompt: 'Why is the sky blue?', system: 'Be brief.', options: { num_predict: 10, temperature: 0 } };
    const whole = await client.generate(greedy);
    checkFinal(whole, { chat: false, numPredict: 10 });
    const { text, last } = await drain(await client.generate({ ...greedy, stream: true }), false);
    checkFinal(last, { chat: false, numPredict: 10 });
    assert.equal(last.response, '');
    assert.equal(text, whole.response);

    /* raw: the prompt as it is, without the template's tokens around it */
    const raw = await client.generate({ model: 'tiny', prompt: 'Why is the sky blue?', raw: true, options: { num_predict: 4 } });
    checkFinal(raw, { chat: false, numPredict: 4 });
    assert.ok(raw.prompt_eval_count < whole.prompt_eval_count, `${raw.prompt_eval_count} vs ${whole.prompt_eval_count}`);
});

test('a request without prompt or messages loads the model: done_reason "load"', async () => {
    const c = await client.chat({ model: 'tiny', messages: [] });
    assert.equal(c.done, true);
    assert.equal(c.done_reason, 'load');
    assert.deepEqual(c.message, { role: 'assistant', content: '' });
    const g = await client.generate({ model: 'tiny', prompt: '', keep_alive: 0 });
    assert.equal(g.done_reason, 'load');
    assert.equal(g.response, '');
});

test('options.num_ctx: up to the loaded per-request context, a clear 400 above it', async () => {
    const ctx = (await client.ps()).models[0].context_length;
    checkFinal(await client.chat(chatReq({ options: { num_predict: 2, num_ctx: ctx } })), { chat: true, numPredict: 2 });
    await expectError(client.chat(chatReq({ options: { num_ctx: ctx + 1 } })), 400,
        new RegExp(`options\\.num_ctx: ${ctx + 1} is more than the ${ctx} tokens`));
});

test('Ollama requests share the engine with batch work (interactive lane)', { timeout: 90_000 }, async () => {
    const lines = Array.from({ length: 8 }, (_, i) => ({
        custom_id: `b${i}`,
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model: 'tiny', messages: [{ role: 'user', content: `line ${i}` }], max_tokens: 64 },
    }));
    const batch = await submitBatch(MAIN, lines);
    const r = await client.chat(chatReq({ options: { num_predict: 4 } }));
    checkFinal(r, { chat: true, numPredict: 4 });
    const done = await waitBatch(MAIN, batch.id, (b) => ['completed', 'failed'].includes(b.status), 60_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.request_counts.completed, 8);
});

/* ---- errors ------------------------------------------------------------------------- */

/* ---- format (structured output) ----------------------------------------------------- */

test('format: "json" gives a JSON object, a JSON schema an object of that shape (chat and generate, streamed too)', async () => {
    const schema = {
        type: 'object',
        properties: { name: { type: 'string', maxLength: 8 }, age: { type: 'integer' }, ok: { type: 'boolean' } },
        required: ['name', 'age', 'ok'],
        additionalProperties: false,
    };
    let finished = 0;
    for (let i = 0; i < 4; i++) {
        const r = await client.chat(chatReq({ format: 'json', options: { num_predict: 120, seed: i } }));
        if (r.done_reason !== 'stop') continue;
        const v = JSON.parse(r.message.content);
        assert.equal(typeof v, 'object');
        assert.ok(v && !Array.isArray(v), r.message.content);
        finished++;
    }
    for (let i = 0; i < 4; i++) {
        const r = await client.generate({ model: 'tiny', prompt: `person ${i}`, format: schema, options: { num_predict: 120, seed: i } });
        if (r.done_reason !== 'stop') continue;
        const v = JSON.parse(r.response);
        assert.deepEqual(Object.keys(v), ['name', 'age', 'ok'], r.response);
        assert.ok(typeof v.name === 'string' && v.name.length <= 8 && Number.isInteger(v.age) && typeof v.ok === 'boolean', r.response);
        finished++;
    }
    assert.ok(finished >= 4, `only ${finished} of 8 outputs finished within num_predict`);
    const parts = [];
    let last;
    for await (const part of await client.chat(chatReq({ format: schema, stream: true, options: { num_predict: 120, seed: 9 } }))) {
        parts.push(part.message.content);
        last = part;
    }
    if (last.done_reason === 'stop') assert.deepEqual(Object.keys(JSON.parse(parts.join(''))), ['name', 'age', 'ok']);
    await expectError(client.chat(chatReq({ format: 'yaml' })), 400, /format: expected "json" or a JSON schema/);
    await expectError(client.generate({ model: 'tiny', prompt: 'x', format: { type: 'string', pattern: '^(?=a)$' } }), 400,
        /format: 'pattern' at '#' is not supported/);
});

test('errors in Ollama\'s shape: unknown model 404, bad options 400', async () => {
    await expectError(client.chat(chatReq({ model: 'no-such-model' })), 404, /^model "no-such-model" not found$/);
    await expectError(client.chat(chatReq({ model: 'no-such-model', stream: true })), 404, /not found/);
    await expectError(client.generate({ model: 'no-such-model', prompt: 'x' }), 404, /not found/);
    await expectError(client.show({ model: 'no-such-model' }), 404, /^model "no-such-model" not found$/);
    await expectError(client.chat(chatReq({ model: '' })), 400, /^model is required$/);
    await expectError(client.chat(chatReq({ options: { temperature: 'hot' } })), 400, /options\.temperature: expected a number/);
    await expectError(client.chat(chatReq({ options: { top_p: 3 } })), 400, /options\.top_p/);
    await expectError(client.chat(chatReq({ options: { temprature: 0.1 } })), 400, /unknown option "temprature"/);
    await expectError(client.chat(chatReq({ options: { mirostat: 2 } })), 400, /options\.mirostat: Mirostat sampling is not supported/);
    await expectError(client.chat(chatReq({ options: { stop: ['a', 'b', 'c', 'd', 'e'] } })), 400, /at most 4 stop sequences/);
    await expectError(client.chat(chatReq({ tools: [{ type: 'function', function: {} }] })), 400, /tools\[0\]\.function\.name: required/);
    await expectError(client.chat(chatReq({ think: 'very' })), 400, /think: expected true, false/);
    await expectError(client.chat({ model: 'tiny', messages: [{ role: 'user', content: 'x', images: ['aGk='] }] }), 400,
        /messages\[0\]\.images/);
    await expectError(client.generate({ model: 'tiny', prompt: 'x', raw: true, system: 'y' }), 400, /raw mode does not support/);
    await expectError(client.generate({ model: 'tiny', prompt: 'x', suffix: 'y' }), 400, /suffix: fill-in-the-middle/);
    /* embeddings are served by --embedding models (embeddings.test.mjs); this one is not */
    await expectError(client.embed({ model: 'tiny', input: 'x' }), 400, /^model "tiny" does not support embeddings: .*--embedding/);
    await expectError(client.embeddings({ model: 'tiny', prompt: 'x' }), 400, /does not support embeddings/);
    await expectError(client.embed({ model: 'no-such-model', input: 'x' }), 404, /not found/);
    /* pull goes to the model store (pull.test.mjs); Ollama's library names are not Hugging Face's */
    await expectError(client.pull({ model: 'llama3' }), 400, /'llama3' is not something to pull: give hf\.co\/ORG\/REPO/);
    await expectError(client.delete({ model: 'tiny' }), 400, /model management is not supported/);
    /* a prompt over the context is refused before the stream starts */
    await expectError(client.generate({ model: 'tiny', prompt: 'llama '.repeat(3000), stream: true }), 400, /context length/);
});

test('curl-style calls: any content type is read as JSON; bad bodies and unknown routes in Ollama\'s shape', async () => {
    /* Ollama's documented calls are `curl -d '{...}'`, sent as form-encoded */
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const ok = await api(MAIN, 'POST', '/api/generate', JSON.stringify({ model: 'tiny', prompt: 'x', stream: false, options: { num_predict: 2 } }), form);
    assert.equal(ok.status, 200, ok.text);
    checkFinal(ok.json(), { chat: false, numPredict: 2 });
    const cases = [
        ['POST', '/api/chat', '', 400, /^missing request body$/],
        ['POST', '/api/chat', '{"model":', 400, /not valid JSON/],
        ['POST', '/api/chat', '{"model":"tiny","messages":[],"extra":1}', 400, /unknown field "extra"/],
        ['POST', '/api/show', '{}', 400, /^model is required$/],
        ['GET', '/api/chat', undefined, 405, /not allowed/],
        ['GET', '/api/nothing-here', undefined, 404, /Invalid URL/],
    ];
    for (const [method, p, body, status, re] of cases) {
        const r = await api(MAIN, method, p, body, form);
        assert.equal(r.status, status, `${method} ${p}: ${r.text}`);
        assert.deepEqual(Object.keys(r.json()), ['error'], r.text);
        assert.match(r.json().error, re, `${method} ${p}`);
    }
    /* tools find an Ollama server by GET or HEAD / */
    const root = await api(MAIN, 'GET', '/');
    assert.equal(root.status, 200);
    assert.equal(root.text, 'Ollama is running');
    assert.equal((await api(MAIN, 'HEAD', '/')).status, 200);
    assert.equal((await api(MAIN, 'HEAD', '/api/tags')).status, 200);
});

test('API key: without it 401 in Ollama\'s shape; with Authorization: Bearer through the client\'s headers, it works', async () => {
    const anon = new Ollama({ host: KEYED.url });
    await expectError(anon.list(), 401, /unauthorized/);
    await expectError(anon.chat(chatReq()), 401, /unauthorized/);
    await expectError(anon.chat(chatReq({ stream: true })), 401, /unauthorized/);
    await expectError(new Ollama({ host: KEYED.url, headers: { Authorization: 'Bearer sk-wrong' } }).version(), 401, /unauthorized/);

    const keyed = new Ollama({ host: KEYED.url, headers: { Authorization: `Bearer ${KEY}` } });
    assert.equal((await keyed.list()).models[0].name, 'tiny');
    checkFinal(await keyed.chat(chatReq()), { chat: true, numPredict: 8 });
    const { last } = await drain(await keyed.generate({ model: 'tiny', prompt: 'x', stream: true, options: { num_predict: 3 } }), false);
    checkFinal(last, { chat: false, numPredict: 3 });
    /* the body limit, in Ollama's shape too */
    await expectError(keyed.chat(chatReq({ messages: [{ role: 'user', content: 'x'.repeat(3000) }] })), 413, /larger than the limit/);
});
