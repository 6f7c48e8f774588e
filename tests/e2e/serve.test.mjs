// Conformance of `nightshift serve` with the official OpenAI SDK (the `openai` npm package,
// pinned in tests/e2e/package.json and installed by before() when node_modules lacks it).
//
//   node --test tests/e2e/serve.test.mjs
//
// See serve_lib.mjs for the environment variables. One random-weight model (gen-model) is
// served under the name 'tiny'; its output is gibberish, so no test looks at the text, only
// at shapes, counts and orderings. Two servers run for the whole file:
//   main    --parallel 8 --ctx 4096
//   strict  the same model with --api-key, --max-body 1KB, --max-file-size 1KB
// Batch work that a test leaves running (cancel, partial results, load) is cancelled and
// settled by that test, so the next one starts on an idle engine.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';

import {
    BIN,
    SPM_VOCAB,
    byCustomId,
    chatLine,
    completionLine,
    ensureNpmDeps,
    mkTmp,
    parseJsonl,
    pollUntil,
    rmTmp,
    sleep,
    startServer,
    toJsonl,
} from './serve_lib.mjs';

const MODEL_NAME = 'tiny';
const STRICT_KEY = 'sk-nightshift-e2e';
const MAX_BODY = 1000; // --max-body 1KB (KB = 1000)
const MAX_FILE = 1000; // --max-file-size 1KB
const TERMINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);

let sdk; // the `openai` module, imported once it is installed
let OpenAI;
let TMP;
let MAIN; // the servers (serve_lib.startServer)
let STRICT;
let client; // OpenAI clients
let strictClient;

function newClient(server, apiKey = 'test') {
    return new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0, timeout: 120_000 });
}

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN} (build it, or set NIGHTSHIFT_BIN)`);
    assert.ok(fs.existsSync(SPM_VOCAB), `the vocab file is missing: ${SPM_VOCAB} (set NIGHTSHIFT_VOCAB_DIR)`);
    await ensureNpmDeps();
    sdk = await import('openai');
    OpenAI = sdk.default;

    TMP = mkTmp();
    const model = path.join(TMP, 'tiny.gguf');
    await new Promise((resolve, reject) => {
        const c = spawn(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        c.stderr.on('data', (d) => (err += d));
        c.on('error', reject);
        c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`gen-model failed (exit ${code}):\n${err}`))));
    });
    const common = ['--model', `${MODEL_NAME}=${model}`, '--parallel', '8', '--ctx', '4096'];
    [MAIN, STRICT] = await Promise.all([
        startServer([...common, '--data-dir', path.join(TMP, 'data-main')], { name: 'main' }),
        startServer(
            [...common, '--data-dir', path.join(TMP, 'data-strict'), '--api-key', STRICT_KEY, '--max-body', '1KB',
                '--max-file-size', '1KB'],
            { name: 'strict' },
        ),
    ]);
    client = newClient(MAIN);
    strictClient = newClient(STRICT, STRICT_KEY);
});

after(async () => {
    const problems = [];
    for (const s of [MAIN, STRICT]) {
        if (!s) continue;
        const x = await s.stop();
        /* SIGTERM is a graceful shutdown: exit 0 */
        if (x.code !== 0) problems.push(`server on port ${s.port} exited with ${JSON.stringify(x)}\n${s.log()}`);
    }
    rmTmp(TMP);
    if (problems.length) throw new Error(problems.join('\n'));
});

/* ---- helpers ------------------------------------------------------------------------ */

/* await p, which must fail with an SDK error of class cls; the error's fields are checked
 * against want ({status, code, param, type}; undefined = not checked). Returns the error. */
async function expectApiError(p, cls, want) {
    let err;
    try {
        const v = await p;
        assert.fail(`expected ${cls.name}, got a result: ${JSON.stringify(v).slice(0, 500)}`);
    } catch (e) {
        err = e;
    }
    if (!(err instanceof cls)) throw new assert.AssertionError({ message: `expected ${cls.name}, got ${err?.constructor?.name}: ${err?.stack || err}` });
    for (const k of ['status', 'code', 'param', 'type'])
        if (want[k] !== undefined) assert.equal(err[k], want[k], `${cls.name}.${k} (error: ${JSON.stringify(err.error)})`);
    /* the body is an OpenAI error object */
    assert.equal(typeof err.error?.message, 'string', `error.message: ${JSON.stringify(err.error)}`);
    assert.ok(err.error.message.length > 0);
    return err;
}

/* raw fetch against a server; returns { status, headers, text, json } */
async function raw(server, method, p, { body, headers = {} } = {}) {
    const r = await fetch(`${server.url}${p}`, { method, body, headers });
    const text = await r.text();
    let json;
    try {
        json = JSON.parse(text);
    } catch {
        json = undefined;
    }
    return { status: r.status, headers: r.headers, text, json };
}

/* the OpenAI error shape: {"error": {message, type, param, code}} and nothing else */
function assertErrorShape(body, { code, param, type } = {}) {
    assert.ok(body && typeof body === 'object', `not a JSON object: ${JSON.stringify(body)}`);
    assert.deepEqual(Object.keys(body), ['error']);
    assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(typeof body.error.message, 'string');
    assert.ok(body.error.message.length > 0);
    assert.equal(typeof body.error.type, 'string');
    if (code !== undefined) assert.equal(body.error.code, code);
    if (param !== undefined) assert.equal(body.error.param, param);
    if (type !== undefined) assert.equal(body.error.type, type);
}

function nowS() {
    return Math.floor(Date.now() / 1000);
}

function assertRecent(ts, what) {
    assert.equal(typeof ts, 'number', `${what} is not a number: ${ts}`);
    assert.ok(Math.abs(ts - nowS()) < 600, `${what} = ${ts} is not close to now (${nowS()})`);
}

async function upload(c, text, name = 'input.jsonl', purpose = 'batch') {
    return c.files.create({ file: await sdk.toFile(Buffer.from(text), name), purpose });
}

async function createBatch(c, lines, { endpoint = '/v1/chat/completions', window = '24h', metadata, name } = {}) {
    const f = await upload(c, toJsonl(lines), name || 'batch.jsonl');
    const b = await c.batches.create({
        input_file_id: f.id,
        endpoint,
        completion_window: window,
        ...(metadata ? { metadata } : {}),
    });
    return { file: f, batch: b };
}

function waitBatch(c, id, done, { timeoutMs = 90_000, intervalMs = 100, what } = {}) {
    return pollUntil(() => c.batches.retrieve(id), done, { timeoutMs, intervalMs, what: what || `batch ${id}` });
}

const waitTerminal = (c, id, opts) => waitBatch(c, id, (b) => TERMINAL.has(b.status), { what: `batch ${id} to end`, ...opts });

async function fileText(c, id) {
    const r = await c.files.content(id);
    return r.text();
}

/* the output and error files of a finished batch, parsed; a null file id is no lines */
async function batchFiles(c, b) {
    const out = b.output_file_id ? parseJsonl(await fileText(c, b.output_file_id), 'output file') : [];
    const err = b.error_file_id ? parseJsonl(await fileText(c, b.error_file_id), 'error file') : [];
    return { out, err };
}

/* cancel b (if still running) and wait until it has settled; for tidying up after a test */
async function cancelAndSettle(c, id) {
    const b = await c.batches.retrieve(id);
    if (!TERMINAL.has(b.status)) {
        try {
            await c.batches.cancel(id);
        } catch (e) {
            if (!(e instanceof sdk.ConflictError)) throw e; /* it ended meanwhile */
        }
    }
    return (await waitTerminal(c, id, { timeoutMs: 60_000 })).value;
}

/* a success line of an output file */
function assertSuccessLine(l, { object = 'chat.completion' } = {}) {
    assert.match(l.id, /^batch_req_/, `line id: ${JSON.stringify(l)}`);
    assert.equal(l.error, null, `success line has an error: ${JSON.stringify(l)}`);
    assert.equal(l.response.status_code, 200, JSON.stringify(l));
    assert.equal(typeof l.response.request_id, 'string');
    assert.equal(l.response.body.object, object);
    assert.equal(l.response.body.model, MODEL_NAME);
    const u = l.response.body.usage;
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
}

/* a line that was never run: response null, error.code code */
function assertNotRunLine(l, code) {
    assert.match(l.id, /^batch_req_/);
    assert.equal(l.response, null, `line ${l.custom_id} has a response: ${JSON.stringify(l)}`);
    assert.equal(l.error?.code, code, `line ${l.custom_id}: ${JSON.stringify(l)}`);
    assert.equal(typeof l.error.message, 'string');
}

/* output + error files hold every custom_id of ids exactly once; returns the two maps */
function assertPartition(ids, out, err) {
    const o = byCustomId(out, 'the output file');
    const e = byCustomId(err, 'the error file');
    for (const id of o.keys()) assert.ok(!e.has(id), `custom_id ${id} is in both the output and the error file`);
    const all = new Set([...o.keys(), ...e.keys()]);
    const missing = ids.filter((id) => !all.has(id));
    const extra = [...all].filter((id) => !ids.includes(id));
    assert.deepEqual(missing, [], `custom_ids missing from both files (${missing.length})`);
    assert.deepEqual(extra, [], 'custom_ids that are not in the input');
    return { o, e };
}

/* n chat lines that keep the engine busy: ignore_eos makes each run max_tokens tokens */
function busyLines(prefix, n, maxTokens) {
    return Array.from({ length: n }, (_, i) =>
        chatLine(`${prefix}-${i}`, `Write a long story number ${i}.`, { max_tokens: maxTokens, ignore_eos: true }));
}

/* ---- 1. models, health, ready ------------------------------------------------------- */

test('models.list / models.retrieve; GET /health and /ready', async () => {
    const page = await client.models.list();
    assert.equal(page.data.length, 1);
    const m = page.data[0];
    assert.equal(m.id, MODEL_NAME);
    assert.equal(m.object, 'model');
    assert.equal(typeof m.created, 'number');
    /* issue 31.7: the model file's time, not 0 (1970 to clients) */
    assert.equal(m.created, Math.floor(fs.statSync(path.join(TMP, 'tiny.gguf')).mtimeMs / 1000));
    assert.equal(m.owned_by, 'nightshift');
    assert.deepEqual(await client.models.retrieve(MODEL_NAME), m);
    await expectApiError(client.models.retrieve('no-such-model'), sdk.NotFoundError, { status: 404, code: 'model_not_found' });

    const h = await raw(MAIN, 'GET', '/health');
    assert.equal(h.status, 200);
    assert.match(h.headers.get('content-type'), /^application\/json/);
    assert.deepEqual(h.json, { status: 'ok' });
    const r = await raw(MAIN, 'GET', '/ready');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { status: 'ready', models: 1 });
});

/* ---- 2. chat completions and completions --------------------------------------------- */

test('chat.completions.create, non-streaming', async () => {
    const t0 = nowS();
    const r = await client.chat.completions.create({
        model: MODEL_NAME,
        messages: [
            { role: 'system', content: 'You are terse.' },
            { role: 'user', content: 'Say something.' },
        ],
        max_tokens: 6,
        ignore_eos: true, // extension: run to max_tokens, so finish_reason is 'length'
    });
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, MODEL_NAME);
    assert.ok(r.created >= t0 - 1 && r.created <= nowS() + 1, `created ${r.created}`);
    assert.equal(r.choices.length, 1);
    const ch = r.choices[0];
    assert.equal(ch.index, 0);
    assert.equal(ch.message.role, 'assistant');
    assert.equal(typeof ch.message.content, 'string');
    assert.equal(ch.finish_reason, 'length');
    assert.ok(r.usage.prompt_tokens > 0, JSON.stringify(r.usage));
    assert.equal(r.usage.completion_tokens, 6);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);

    /* max_completion_tokens is the newer name of max_tokens */
    const r2 = await client.chat.completions.create({
        model: MODEL_NAME,
        messages: [{ role: 'user', content: 'Again.' }],
        max_completion_tokens: 3,
        ignore_eos: true,
    });
    assert.equal(r2.usage.completion_tokens, 3);
    assert.equal(r2.choices[0].finish_reason, 'length');
    assert.notEqual(r2.id, r.id);

    /* issue 31.4: every answer carries x-request-id, one per request, which the SDK shows as
     * _request_id (and requestID on an error) */
    assert.match(r._request_id, /^req_[A-Za-z0-9]{24}$/);
    assert.match(r2._request_id, /^req_[A-Za-z0-9]{24}$/);
    assert.notEqual(r._request_id, r2._request_id);
    const e = await expectApiError(client.models.retrieve('no-such-model'), sdk.NotFoundError, { status: 404 });
    assert.match(e.requestID, /^req_/);
    for (const [m, p] of [['GET', '/health'], ['GET', '/no/such/route'], ['DELETE', '/v1/models']]) {
        const h = await raw(MAIN, m, p);
        assert.match(h.headers.get('x-request-id') || '', /^req_[A-Za-z0-9]{24}$/, `${m} ${p}: ${h.status}`);
    }
});

test('chat.completions.create, streaming (with and without stream_options.include_usage)', async () => {
    for (const includeUsage of [false, true]) {
        const stream = await client.chat.completions.create({
            model: MODEL_NAME,
            messages: [{ role: 'user', content: 'Stream something.' }],
            max_tokens: 8,
            ignore_eos: true,
            stream: true,
            ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
        });
        const chunks = [];
        for await (const c of stream) chunks.push(c);
        const tag = `include_usage=${includeUsage}: ${JSON.stringify(chunks).slice(0, 3000)}`;
        assert.ok(chunks.length >= 3, tag);
        const id = chunks[0].id;
        assert.match(id, /^chatcmpl-/);
        for (const c of chunks) {
            assert.equal(c.id, id, 'every chunk has the same id');
            assert.equal(c.object, 'chat.completion.chunk');
            assert.equal(c.model, MODEL_NAME);
        }
        /* the first delta carries the role */
        assert.equal(chunks[0].choices[0].delta.role, 'assistant', tag);
        for (const c of chunks.slice(1)) for (const ch of c.choices) assert.equal(ch.delta.role, undefined, tag);

        const usageChunks = chunks.filter((c) => c.usage);
        const withChoices = chunks.filter((c) => c.choices.length > 0);
        const finished = withChoices.filter((c) => c.choices[0].finish_reason !== null);
        assert.equal(finished.length, 1, `one chunk has a finish_reason; ${tag}`);
        assert.equal(finished[0], withChoices.at(-1), 'the finish_reason chunk is the last with choices');
        assert.equal(finished[0].choices[0].finish_reason, 'length');
        const text = withChoices.map((c) => c.choices[0].delta.content ?? '').join('');
        assert.ok(text.length > 0, 'the streamed content is not empty');

        if (!includeUsage) {
            assert.equal(usageChunks.length, 0, tag);
            assert.equal(withChoices.length, chunks.length, 'without include_usage every chunk has choices');
        } else {
            /* one final chunk with usage and no choices; the others have usage null */
            assert.equal(usageChunks.length, 1, tag);
            const last = chunks.at(-1);
            assert.equal(usageChunks[0], last, 'the usage chunk is the last one');
            assert.deepEqual(last.choices, []);
            assert.ok(last.usage.prompt_tokens > 0);
            assert.equal(last.usage.completion_tokens, 8);
            assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + 8);
            /* issue 31.7: the same fields as the non-streamed usage, details included */
            const once = await client.chat.completions.create({ model: MODEL_NAME, messages: [{ role: 'user', content: 'x' }],
                max_tokens: 1 });
            assert.deepEqual(Object.keys(last.usage).sort(), Object.keys(once.usage).sort(), tag);
            assert.deepEqual(last.usage.completion_tokens_details, { reasoning_tokens: 0 }, tag);
            assert.equal(typeof last.usage.prompt_tokens_details.cached_tokens, 'number', tag);
            for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null, `chunk before the last: usage ${JSON.stringify(c.usage)}`);
        }
    }
});

test('completions.create (text_completion), non-streaming and streaming', async () => {
    const r = await client.completions.create({ model: MODEL_NAME, prompt: 'Once upon a time', max_tokens: 5, ignore_eos: true });
    assert.match(r.id, /^cmpl-/);
    assert.equal(r.object, 'text_completion');
    assert.equal(r.model, MODEL_NAME);
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].index, 0);
    assert.equal(typeof r.choices[0].text, 'string');
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.ok(r.usage.prompt_tokens > 0);
    assert.equal(r.usage.completion_tokens, 5);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 5);

    const stream = await client.completions.create({
        model: MODEL_NAME,
        prompt: 'Once upon a time',
        max_tokens: 5,
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    for (const c of chunks) assert.equal(c.object, 'text_completion');
    const withChoices = chunks.filter((c) => c.choices.length > 0);
    assert.equal(withChoices.at(-1).choices[0].finish_reason, 'length');
    assert.ok(withChoices.map((c) => c.choices[0].text).join('').length > 0);
    assert.equal(chunks.at(-1).choices.length, 0);
    assert.equal(chunks.at(-1).usage.completion_tokens, 5);
});

/* ---- 3. errors ---------------------------------------------------------------------- */

test('errors through the SDK: 404 model, 400 parameter, 400 context length', async () => {
    const msgs = [{ role: 'user', content: 'hi' }];
    await expectApiError(client.chat.completions.create({ model: 'no-such-model', messages: msgs, max_tokens: 1 }),
        sdk.NotFoundError, { status: 404, code: 'model_not_found', param: 'model', type: 'invalid_request_error' });
    await expectApiError(client.completions.create({ model: 'no-such-model', prompt: 'x', max_tokens: 1 }),
        sdk.NotFoundError, { status: 404, code: 'model_not_found' });
    const e = await expectApiError(client.chat.completions.create({ model: MODEL_NAME, messages: msgs, temperature: 5 }),
        sdk.BadRequestError, { status: 400, param: 'temperature', type: 'invalid_request_error' });
    assert.match(e.error.message, /temperature/);
    await expectApiError(client.chat.completions.create({ model: MODEL_NAME, messages: [] }),
        sdk.BadRequestError, { status: 400, param: 'messages' });
    await expectApiError(client.chat.completions.create({ model: MODEL_NAME, messages: msgs, max_tokens: 5000 }),
        sdk.BadRequestError, { status: 400, code: 'context_length_exceeded', param: 'messages' });
    await expectApiError(client.chat.completions.create({ model: MODEL_NAME, messages: msgs, max_tokens: 5000, stream: true }),
        sdk.BadRequestError, { status: 400, code: 'context_length_exceeded' });
    await expectApiError(client.completions.create({ model: MODEL_NAME, prompt: 'x', max_tokens: 5000 }),
        sdk.BadRequestError, { status: 400, code: 'context_length_exceeded', param: 'prompt' });
    /* unknown batch and file ids */
    await expectApiError(client.batches.retrieve('batch_doesnotexist'), sdk.NotFoundError, { status: 404 });
    await expectApiError(client.files.retrieve('file-doesnotexist'), sdk.NotFoundError, { status: 404 });
});

test('errors over plain HTTP: unknown route 404, bad JSON 400, wrong content type 415', async () => {
    const r = await raw(MAIN, 'GET', '/v1/no/such/route');
    assert.equal(r.status, 404);
    assertErrorShape(r.json, { code: 'unknown_url', param: null });
    assert.match(r.json.error.message, /\/v1\/no\/such\/route/);
    assert.match(r.headers.get('content-type'), /^application\/json/);

    const bad = await raw(MAIN, 'POST', '/v1/chat/completions', { body: '{"model": "tiny", ', headers: { 'content-type': 'application/json' } });
    assert.equal(bad.status, 400);
    assertErrorShape(bad.json, { type: 'invalid_request_error' });

    /* /v1/files takes multipart/form-data only */
    const f = await raw(MAIN, 'POST', '/v1/files', { body: '{"purpose":"batch"}', headers: { 'content-type': 'application/json' } });
    assert.equal(f.status, 415);
    assertErrorShape(f.json, { code: 'unsupported_media_type' });
    /* and a JSON endpoint JSON only */
    const t = await raw(MAIN, 'POST', '/v1/chat/completions', { body: 'model=tiny', headers: { 'content-type': 'text/plain' } });
    assert.equal(t.status, 415);
    assertErrorShape(t.json, { code: 'unsupported_media_type' });
});

test('API key: 401 without or with a wrong key, the right key works', async () => {
    const wrong = newClient(STRICT, 'sk-wrong');
    await expectApiError(wrong.models.list(), sdk.AuthenticationError, { status: 401, code: 'invalid_api_key', type: 'authentication_error' });
    await expectApiError(wrong.chat.completions.create({ model: MODEL_NAME, messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }),
        sdk.AuthenticationError, { status: 401 });
    const none = await raw(STRICT, 'GET', '/v1/models');
    assert.equal(none.status, 401);
    assertErrorShape(none.json, { code: 'invalid_api_key' });

    const page = await strictClient.models.list();
    assert.deepEqual(page.data.map((m) => m.id), [MODEL_NAME]);
    const r = await strictClient.chat.completions.create({ model: MODEL_NAME, messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    assert.equal(r.object, 'chat.completion');
});

test('413 for a JSON body over --max-body (1KB), at the exact limit', async () => {
    /* a body of exactly n bytes */
    const body = (n) => {
        const base = { model: MODEL_NAME, max_tokens: 1, messages: [{ role: 'user', content: '' }] };
        const pad = n - Buffer.byteLength(JSON.stringify(base));
        base.messages[0].content = 'a'.repeat(pad);
        const s = JSON.stringify(base);
        assert.equal(Buffer.byteLength(s), n);
        return s;
    };
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${STRICT_KEY}` };
    const atLimit = await raw(STRICT, 'POST', '/v1/chat/completions', { body: body(MAX_BODY), headers });
    assert.equal(atLimit.status, 200, `a body of exactly --max-body bytes is accepted: ${atLimit.text.slice(0, 500)}`);
    const over = await raw(STRICT, 'POST', '/v1/chat/completions', { body: body(MAX_BODY + 1), headers });
    assert.equal(over.status, 413, over.text.slice(0, 500));
    assertErrorShape(over.json, { code: 'request_too_large' });

    const e = await expectApiError(
        strictClient.chat.completions.create({ model: MODEL_NAME, messages: [{ role: 'user', content: 'b'.repeat(5000) }], max_tokens: 1 }),
        sdk.APIError, { status: 413, code: 'request_too_large' });
    assert.match(e.error.message, /1000 bytes/);
});

/* ---- 4. files ----------------------------------------------------------------------- */

test('files: create, retrieve, list (purpose, order, limit/after), content, delete', async () => {
    const t0 = nowS();
    /* three 'batch' files, each uploaded a different way, and one of another purpose */
    const textA = toJsonl([chatLine('a', 'héllo wörld ✓')]);
    const pathB = path.join(TMP, 'b-input.jsonl');
    const textB = toJsonl([chatLine('b1', 'one'), chatLine('b2', 'two')]);
    fs.writeFileSync(pathB, textB);
    const textC = '{"custom_id":"c"}\n';
    const A = await client.files.create({ file: await sdk.toFile(Buffer.from(textA), 'a.jsonl'), purpose: 'batch' });
    const B = await client.files.create({ file: fs.createReadStream(pathB), purpose: 'batch' });
    const C = await client.files.create({ file: await sdk.toFile(Readable.from([Buffer.from(textC)]), 'c.jsonl'), purpose: 'batch' });
    const U = await client.files.create({ file: await sdk.toFile(Buffer.from('user data'), 'u.txt'), purpose: 'user_data' });

    for (const [f, text, name, purpose] of [
        [A, textA, 'a.jsonl', 'batch'],
        [B, textB, 'b-input.jsonl', 'batch'],
        [C, textC, 'c.jsonl', 'batch'],
        [U, 'user data', 'u.txt', 'user_data'],
    ]) {
        assert.match(f.id, /^file-/);
        assert.equal(f.object, 'file');
        assert.equal(f.bytes, Buffer.byteLength(text), `${name}: bytes`);
        assert.equal(f.filename, name);
        assert.equal(f.purpose, purpose);
        assert.ok(f.created_at >= t0 - 1 && f.created_at <= nowS() + 1);
        assert.deepEqual(await client.files.retrieve(f.id), f, 'retrieve returns what create did');
        /* the content is the uploaded bytes exactly */
        const got = Buffer.from(await (await client.files.content(f.id)).arrayBuffer());
        assert.ok(got.equals(Buffer.from(text)), `${name}: content differs: ${JSON.stringify(got.toString())}`);
    }
    assert.equal(await fileText(client, A.id), textA);
    const ids = new Set([A.id, B.id, C.id, U.id]);
    assert.equal(ids.size, 4, 'file ids are unique');
    const ours = (page) => page.data.map((f) => f.id).filter((id) => ids.has(id));

    /* purpose filter; default order is newest first */
    const all = await client.files.list({ purpose: 'batch' });
    assert.ok(all.data.every((f) => f.purpose === 'batch'));
    assert.deepEqual(ours(all), [C.id, B.id, A.id]);
    assert.equal(all.has_more, false);
    const users = await client.files.list({ purpose: 'user_data' });
    assert.deepEqual(users.data.map((f) => f.id), [U.id]);
    assert.deepEqual(users.data[0], U);
    const asc = await client.files.list({ purpose: 'batch', order: 'asc' });
    assert.deepEqual(ours(asc), [A.id, B.id, C.id]);
    const desc = await client.files.list({ purpose: 'batch', order: 'desc' });
    assert.deepEqual(ours(desc), [C.id, B.id, A.id]);

    /* limit + after: no batch file is newer than C, none older than A in this test */
    const p1 = await client.files.list({ purpose: 'batch', order: 'asc', after: A.id, limit: 1 });
    assert.deepEqual(p1.data.map((f) => f.id), [B.id]);
    assert.equal(p1.has_more, true);
    const p2 = await client.files.list({ purpose: 'batch', order: 'asc', after: B.id, limit: 1 });
    assert.deepEqual(p2.data.map((f) => f.id), [C.id]);
    assert.equal(p2.has_more, false);
    const d1 = await client.files.list({ purpose: 'batch', order: 'desc', limit: 2 });
    assert.deepEqual(d1.data.map((f) => f.id), [C.id, B.id]);
    assert.equal(d1.has_more, true);
    const d2 = await d1.getNextPage(); // the SDK's cursor: after = the last id of the page
    assert.equal(d2.data[0].id, A.id);
    /* the SDK's auto-pagination walks every page */
    const walked = [];
    for await (const f of client.files.list({ purpose: 'batch', limit: 1 })) walked.push(f.id);
    assert.deepEqual(walked.filter((id) => ids.has(id)), [C.id, B.id, A.id]);
    assert.equal(new Set(walked).size, walked.length, 'auto-pagination repeats no file');
    /* bad parameters */
    await expectApiError(client.files.list({ order: 'sideways' }), sdk.BadRequestError, { status: 400, param: 'order' });
    await expectApiError(client.files.list({ limit: 0 }), sdk.BadRequestError, { status: 400, param: 'limit' });

    /* delete */
    const del = await client.files.delete(B.id);
    assert.deepEqual(del, { id: B.id, object: 'file', deleted: true });
    await expectApiError(client.files.retrieve(B.id), sdk.NotFoundError, { status: 404 });
    await expectApiError(client.files.content(B.id), sdk.NotFoundError, { status: 404 });
    await expectApiError(client.files.delete(B.id), sdk.NotFoundError, { status: 404 });
    assert.deepEqual(ours(await client.files.list({ purpose: 'batch' })), [C.id, A.id]);

    /* multipart errors */
    await expectApiError(client.files.create({ file: await sdk.toFile(Buffer.from('x'), 'x.txt'), purpose: 'nonsense' }),
        sdk.BadRequestError, { status: 400, param: 'purpose' });
});

test('files: expires_after sets expires_at; bad values and unknown form fields are 400s; an expired file is gone', async () => {
    const text = toJsonl([chatLine('e', 'expiring')]);
    const E = await client.files.create({ file: await sdk.toFile(Buffer.from(text), 'e.jsonl'), purpose: 'batch',
        expires_after: { anchor: 'created_at', seconds: 3600 } });
    assert.equal(E.expires_at, E.created_at + 3600);
    assert.deepEqual(await client.files.retrieve(E.id), E);
    assert.ok((await client.files.list({ purpose: 'batch' })).data.some((f) => f.id === E.id && f.expires_at === E.expires_at));
    /* without it: no expiry */
    const N = await upload(client, text, 'n.jsonl');
    assert.equal(N.expires_at, null);
    for (const bad of [{ anchor: 'created_at', seconds: 60 }, { anchor: 'created_at', seconds: 2592001 },
        { anchor: 'last_active_at', seconds: 3600 }, { anchor: 'created_at' }]) {
        await expectApiError(client.files.create({ file: await sdk.toFile(Buffer.from(text), 'bad.jsonl'), purpose: 'batch',
            expires_after: bad }), sdk.BadRequestError, { status: 400, param: 'expires_after' });
    }
    /* a NUL inside a value is no number cut short */
    const nul = new FormData();
    nul.append('purpose', 'batch');
    nul.append('expires_after[anchor]', 'created_at');
    nul.append('expires_after[seconds]', '3600\u00001');
    nul.append('file', new Blob([text]), 'nul.jsonl');
    const nr = await raw(MAIN, 'POST', '/v1/files', { body: nul });
    assert.equal(nr.status, 400, nr.text);
    assert.equal(nr.json.error.param, 'expires_after');
    /* a form field the upload does not know is refused, as a JSON route refuses one */
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('expiry', '3600');
    form.append('file', new Blob([text]), 'u.jsonl');
    const u = await raw(MAIN, 'POST', '/v1/files', { body: form });
    assert.equal(u.status, 400, u.text);
    assertErrorShape(u.json, { param: 'expiry', type: 'invalid_request_error' });
    assert.match(u.json.error.message, /Unrecognized request argument supplied: expiry/);
    /* past its expires_at a file is gone: not listed, 404, and no batch may read it (the
     * store's clock cannot be moved, so the row is; the PostgreSQL run skips this) */
    if (process.env.NIGHTSHIFT_E2E_STORE === 'postgres') return;
    const db = path.join(TMP, 'data-main', 'nightshift.db');
    execFileSync('sqlite3', [db, `UPDATE files SET expires_at = ${nowS() - 10} WHERE id = '${E.id}'`]);
    assert.ok(!(await client.files.list({ purpose: 'batch' })).data.some((f) => f.id === E.id));
    await expectApiError(client.batches.create({ input_file_id: E.id, endpoint: '/v1/chat/completions', completion_window: '24h' }),
        sdk.NotFoundError, { status: 404, param: 'input_file_id' });
    await expectApiError(client.files.retrieve(E.id), sdk.NotFoundError, { status: 404 });
    assert.equal(execFileSync('sqlite3', [db, `SELECT count(*) FROM files WHERE id = '${E.id}'`]).toString().trim(), '0',
        'the expired file was deleted when touched');
    /* the input of a batch still running expires: gone to clients, but not deleted under the
     * batch, which still reads it */
    const { file: R, batch: rb } = await createBatch(client, busyLines('exp', 4, 64), { name: 'r.jsonl' });
    execFileSync('sqlite3', [db, `UPDATE files SET expires_at = ${nowS() - 10} WHERE id = '${R.id}'`]);
    await expectApiError(client.files.retrieve(R.id), sdk.NotFoundError, { status: 404 });
    const live = (await client.batches.retrieve(rb.id)).status;
    if (!TERMINAL.has(live))
        assert.equal(execFileSync('sqlite3', [db, `SELECT count(*) FROM files WHERE id = '${R.id}'`]).toString().trim(), '1',
            `the input of a ${live} batch was deleted`);
    const ended = await cancelAndSettle(client, rb.id);
    assert.ok(TERMINAL.has(ended.status));
    await expectApiError(client.files.retrieve(R.id), sdk.NotFoundError, { status: 404 });
    assert.equal(execFileSync('sqlite3', [db, `SELECT count(*) FROM files WHERE id = '${R.id}'`]).toString().trim(), '0',
        'once the batch ended, the expired input was deleted when touched');
});

test('files: 413 for an upload over --max-file-size (1KB), at the exact limit', async () => {
    const ok = await strictClient.files.create({ file: await sdk.toFile(Buffer.alloc(MAX_FILE, 'x'), 'at-limit.txt'), purpose: 'user_data' });
    assert.equal(ok.bytes, MAX_FILE);
    const e = await expectApiError(
        strictClient.files.create({ file: await sdk.toFile(Buffer.alloc(MAX_FILE + 1, 'x'), 'over.txt'), purpose: 'user_data' }),
        sdk.APIError, { status: 413, code: 'request_too_large', param: 'file' });
    assert.ok(!(e instanceof sdk.BadRequestError));
    /* nothing of the rejected upload was kept */
    const list = await strictClient.files.list();
    assert.deepEqual(list.data.map((f) => f.filename), ['at-limit.txt']);
});

/* ---- 5. batch happy path ------------------------------------------------------------ */

test('batch: 40 lines run to completed; output file holds each custom_id once', { timeout: 150_000 }, async () => {
    const lines = Array.from({ length: 40 }, (_, i) => chatLine(`req-${String(i).padStart(2, '0')}`, `Question ${i}?`, { max_tokens: 4 }));
    const ids = lines.map((l) => l.custom_id);
    const metadata = { suite: 'serve.test.mjs', case: 'happy' };
    const { file, batch: created } = await createBatch(client, lines, { metadata });
    assert.match(created.id, /^batch_/);
    assert.equal(created.object, 'batch');
    assert.equal(created.endpoint, '/v1/chat/completions');
    assert.equal(created.input_file_id, file.id);
    assert.equal(created.completion_window, '24h');
    assert.equal(created.status, 'validating');
    assert.deepEqual(created.metadata, metadata);
    assert.equal(created.errors, null);
    assert.equal(created.output_file_id, null);
    assert.equal(created.error_file_id, null);
    assertRecent(created.created_at, 'created_at');
    assert.equal(created.expires_at, created.created_at + 24 * 3600);
    assert.deepEqual(created.request_counts, { total: 0, completed: 0, failed: 0 });

    const { value: b, seen } = await waitTerminal(client, created.id, { timeoutMs: 120_000 });
    assert.equal(b.status, 'completed', JSON.stringify(b));
    /* the statuses came in order */
    const order = ['validating', 'in_progress', 'finalizing', 'completed'];
    const idx = seen.map((x) => order.indexOf(x.status));
    assert.ok(idx.every((i) => i >= 0), `unexpected statuses: ${seen.map((x) => x.status)}`);
    assert.deepEqual(idx, [...idx].sort((x, y) => x - y), `statuses out of order: ${seen.map((x) => x.status)}`);
    /* the counts never went down and never exceeded the total */
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i].request_counts.completed >= seen[i - 1].request_counts.completed);

    assert.equal(b.model, MODEL_NAME);
    assert.deepEqual(b.request_counts, { total: 40, completed: 40, failed: 0 });
    assert.deepEqual(b.metadata, metadata);
    assert.equal(b.created_at, created.created_at);
    assert.ok(b.in_progress_at >= b.created_at);
    assert.ok(b.finalizing_at >= b.in_progress_at);
    assert.ok(b.completed_at >= b.finalizing_at);
    for (const k of ['failed_at', 'expired_at', 'cancelling_at', 'cancelled_at']) assert.equal(b[k], null, k);
    assert.ok(b.usage.input_tokens > 0);
    assert.ok(b.usage.output_tokens > 0);
    assert.ok(b.usage.output_tokens <= 40 * 4);
    assert.equal(b.usage.total_tokens, b.usage.input_tokens + b.usage.output_tokens);
    assert.equal(b.error_file_id, null, 'no line failed, so no error file');
    assert.match(b.output_file_id, /^file-/);

    const of = await client.files.retrieve(b.output_file_id);
    assert.equal(of.purpose, 'batch_output');
    assert.equal(of.object, 'file');
    const text = await fileText(client, b.output_file_id);
    assert.equal(of.bytes, Buffer.byteLength(text));
    const out = parseJsonl(text, 'output file');
    assert.equal(out.length, 40);
    const m = byCustomId(out, 'the output file');
    assert.deepEqual([...m.keys()].sort(), [...ids].sort());
    for (const l of out) assertSuccessLine(l);
    /* the batch's usage is the sum of its lines' */
    assert.equal(out.reduce((s, l) => s + l.response.body.usage.completion_tokens, 0), b.usage.output_tokens);
    assert.equal(out.reduce((s, l) => s + l.response.body.usage.prompt_tokens, 0), b.usage.input_tokens);
    /* batch outputs are listed under their purpose */
    const outs = await client.files.list({ purpose: 'batch_output' });
    assert.ok(outs.data.some((f) => f.id === b.output_file_id));

    /* a finished batch cannot be cancelled, and the SDK does not retry the 409 (issue 31.6:
     * x-should-retry: false; it retried such a 409 twice more, its default maxRetries) */
    let calls = 0;
    const counting = new OpenAI({ baseURL: `${MAIN.url}/v1`, apiKey: 'test', timeout: 120_000,
        fetch: (...args) => { calls++; return fetch(...args); } });
    await expectApiError(counting.batches.cancel(b.id), sdk.ConflictError, { status: 409, code: 'batch_not_cancellable' });
    assert.equal(calls, 1, 'the 409 was sent again');
    const again = await raw(MAIN, 'POST', `/v1/batches/${b.id}/cancel`);
    assert.equal(again.status, 409);
    assert.equal(again.headers.get('x-should-retry'), 'false');
});

test('batch: /v1/completions endpoint and request validation', { timeout: 60_000 }, async () => {
    const lines = [completionLine('c-0', 'Once', { max_tokens: 2 }), completionLine('c-1', 'Twice', { max_tokens: 2 })];
    /* metadata: at most 16 pairs, so 16 are fine */
    const metadata = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`key${i}`, `value ${i}`]));
    const { batch } = await createBatch(client, lines, { endpoint: '/v1/completions', metadata });
    assert.deepEqual(batch.metadata, metadata);
    assert.equal(batch.endpoint, '/v1/completions');
    const { value: b } = await waitTerminal(client, batch.id);
    assert.equal(b.status, 'completed', JSON.stringify(b));
    assert.deepEqual(b.request_counts, { total: 2, completed: 2, failed: 0 });
    const { out } = await batchFiles(client, b);
    assert.deepEqual(out.map((l) => l.custom_id).sort(), ['c-0', 'c-1']);
    for (const l of out) assertSuccessLine(l, { object: 'text_completion' });

    const f = await upload(client, toJsonl(lines));
    const base = { input_file_id: f.id, endpoint: '/v1/completions', completion_window: '24h' };
    await expectApiError(client.batches.create({ ...base, completion_window: '1w' }), sdk.BadRequestError, { status: 400, param: 'completion_window' });
    await expectApiError(client.batches.create({ ...base, endpoint: '/v1/audio/speech' }), sdk.BadRequestError, { status: 400, param: 'endpoint' });
    await expectApiError(client.batches.create({ ...base, input_file_id: 'file-nope' }), sdk.NotFoundError, { status: 404, param: 'input_file_id' });
    const md = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    await expectApiError(client.batches.create({ ...base, metadata: md }), sdk.BadRequestError, { status: 400, param: 'metadata' });
    const u = await upload(client, toJsonl(lines), 'u.jsonl', 'user_data');
    await expectApiError(client.batches.create({ ...base, input_file_id: u.id }), sdk.BadRequestError, { status: 400, param: 'input_file_id' });
});

/* ---- 6. batch validation failure ---------------------------------------------------- */

test('batch with invalid lines ends failed, errors.data names each bad line', { timeout: 60_000 }, async () => {
    const lines = [
        chatLine('a', 'fine', { max_tokens: 1 }), // 1
        '{"custom_id": "b", "method": "POST", ', // 2 invalid JSON
        chatLine('a', 'dup', { max_tokens: 1 }), // 3 duplicate custom_id
        chatLine('c', 'fine', { max_tokens: 1 }), // 4
        chatLine('d', 'wrong model', { max_tokens: 1 }, 'no-such-model'), // 5 model not served
        chatLine('e', 'fine', { max_tokens: 1 }), // 6
    ];
    const { batch } = await createBatch(client, lines);
    const { value: b } = await waitTerminal(client, batch.id, { timeoutMs: 30_000 });
    assert.equal(b.status, 'failed', JSON.stringify(b));
    assertRecent(b.failed_at, 'failed_at');
    assert.equal(b.in_progress_at, null);
    assert.equal(b.completed_at, null);
    assert.equal(b.output_file_id, null);
    assert.equal(b.error_file_id, null);
    assert.equal(b.request_counts.completed, 0);
    assert.equal(b.request_counts.failed, 0);
    assert.equal(b.errors.object, 'list');
    assert.deepEqual(
        b.errors.data.map((e) => ({ line: e.line, code: e.code })),
        [
            { line: 2, code: 'invalid_json_line' },
            { line: 3, code: 'duplicate_custom_id' },
            { line: 5, code: 'model_not_found' },
        ],
        JSON.stringify(b.errors),
    );
    for (const e of b.errors.data) {
        assert.deepEqual(Object.keys(e).sort(), ['code', 'line', 'message', 'param']);
        assert.match(e.message, new RegExp(`line ${e.line}\\b`));
    }
    assert.equal(b.errors.data[1].param, 'custom_id');
    assert.equal(b.errors.data[2].param, 'body.model');
    /* a failed batch cannot be cancelled */
    await expectApiError(client.batches.cancel(b.id), sdk.ConflictError, { status: 409 });
});

/* ---- 7. cancel ---------------------------------------------------------------------- */

test('batch cancel mid-way: cancelling -> cancelled; every custom_id once across both files', { timeout: 150_000 }, async () => {
    const lines = busyLines('cx', 200, 64);
    const ids = lines.map((l) => l.custom_id);
    const { batch } = await createBatch(client, lines);
    /* cancel soon after the first lines finished */
    await waitBatch(client, batch.id, (b) => b.status !== 'validating' && (b.request_counts.completed > 0 || TERMINAL.has(b.status)),
        { intervalMs: 50, what: 'the first finished line' });
    const c = await client.batches.cancel(batch.id);
    assert.equal(c.id, batch.id);
    assert.equal(c.status, 'cancelling');
    assertRecent(c.cancelling_at, 'cancelling_at');
    const { value: b, seen } = await waitTerminal(client, batch.id, { timeoutMs: 120_000 });
    const statuses = [...new Set(seen.map((x) => x.status))];
    assert.equal(b.status, 'cancelled', `statuses seen after cancel: ${statuses}`);
    assert.ok(statuses.every((s) => s === 'cancelling' || s === 'cancelled'), `statuses seen after cancel: ${statuses}`);
    assert.equal(b.cancelling_at, c.cancelling_at);
    assert.ok(b.cancelled_at >= b.cancelling_at);
    assert.equal(b.completed_at, null);
    assert.equal(b.request_counts.total, 200);
    assert.ok(b.request_counts.completed > 0);
    assert.ok(b.request_counts.completed < 200, 'the cancel came while most lines were still to run');
    assert.equal(b.request_counts.completed + b.request_counts.failed, 200, JSON.stringify(b.request_counts));

    const { out, err } = await batchFiles(client, b);
    assert.equal(out.length, b.request_counts.completed);
    assert.equal(err.length, b.request_counts.failed);
    assertPartition(ids, out, err);
    for (const l of out) assertSuccessLine(l);
    for (const l of err) assertNotRunLine(l, 'batch_cancelled');
    assert.equal((await client.files.retrieve(b.error_file_id)).purpose, 'batch_output');
    /* cancelling again is a conflict */
    await expectApiError(client.batches.cancel(b.id), sdk.ConflictError, { status: 409, code: 'batch_not_cancellable' });
});

test('batch cancelled while it is still validating ends cancelled (the cancel is not lost)', { timeout: 150_000 }, async () => {
    /* validating 20000 lines takes a few hundred ms: a cancel soon after create lands while
     * it runs. Three batches of the same file, cancelled 0, 60 and 150 ms after create, so
     * that one of them hits the validation whatever the speed of the machine. */
    const N = 20000;
    const lines = Array.from({ length: N }, (_, i) => chatLine(`v-${i}`, 'x', { max_tokens: 1 }));
    const ids = lines.map((l) => l.custom_id);
    const file = await upload(client, toJsonl(lines), 'validating.jsonl');
    const problems = [];
    for (const delayMs of [0, 60, 150]) {
        const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
        try {
            if (delayMs) await sleep(delayMs);
            const c = await client.batches.cancel(batch.id);
            assert.equal(c.status, 'cancelling');
            assertRecent(c.cancelling_at, 'cancelling_at');
            const wasValidating = c.in_progress_at === null;
            /* from here on only cancelling and cancelled are right; stop at anything else */
            const { value: b, seen } = await waitBatch(client, batch.id,
                (x) => TERMINAL.has(x.status) || !['cancelling', 'cancelled'].includes(x.status),
                { timeoutMs: 60_000, what: `batch ${batch.id} to be cancelled` });
            if (b.status !== 'cancelled') {
                const trail = [...new Set(seen.map((x) =>
                    `${x.status}(cancelling_at=${x.cancelling_at}, completed=${x.request_counts.completed}/${x.request_counts.total})`))];
                problems.push(`cancel ${delayMs} ms after create: POST /v1/batches/${batch.id}/cancel answered 'cancelling'` +
                    `${wasValidating ? ' (in_progress_at null: still validating)' : ''}, then GET showed ${trail.slice(0, 4).join(' -> ')}`);
                continue;
            }
            assert.equal(b.cancelling_at, c.cancelling_at);
            assert.ok(b.cancelled_at >= b.cancelling_at);
            const rc = b.request_counts;
            assert.equal(rc.completed + rc.failed, rc.total, JSON.stringify(rc));
            assert.ok(rc.total === 0 || rc.total === N, JSON.stringify(rc));
            assert.ok(rc.completed < N / 2, `the cancelled batch ran ${rc.completed} of ${N} lines`);
            const { out, err } = await batchFiles(client, b);
            assert.equal(out.length, rc.completed);
            assert.equal(err.length, rc.failed);
            if (rc.total) {
                assertPartition(ids, out, err);
                for (const l of err) assertNotRunLine(l, 'batch_cancelled');
            }
        } finally {
            await cancelAndSettle(client, batch.id);
        }
    }
    assert.deepEqual(problems, [], 'a cancel was lost');
});

/* ---- 8. expiry ---------------------------------------------------------------------- */

test('batch expiry: completion_window "10s" ends expired; finished lines kept', { timeout: 150_000 }, async () => {
    /* far more work than 10 s: 600 lines x 128 tokens */
    const lines = busyLines('ex', 600, 128);
    const ids = lines.map((l) => l.custom_id);
    const { batch } = await createBatch(client, lines, { window: '10s' });
    assert.equal(batch.completion_window, '10s');
    assert.equal(batch.expires_at, batch.created_at + 10);
    const { value: b, seen } = await waitTerminal(client, batch.id, { timeoutMs: 120_000, intervalMs: 250 });
    assert.equal(b.status, 'expired', JSON.stringify(b));
    assert.ok(seen.every((x) => ['validating', 'in_progress', 'expired'].includes(x.status)), `statuses: ${[...new Set(seen.map((x) => x.status))]}`);
    assert.ok(b.expired_at >= b.expires_at, `expired_at ${b.expired_at} before expires_at ${b.expires_at}`);
    assert.equal(b.completed_at, null);
    assert.equal(b.request_counts.total, 600);
    assert.ok(b.request_counts.completed > 0, 'some lines finished in 10 s');
    assert.ok(b.request_counts.completed < 600);
    assert.equal(b.request_counts.completed + b.request_counts.failed, 600);

    const { out, err } = await batchFiles(client, b);
    assert.equal(out.length, b.request_counts.completed);
    assert.equal(err.length, b.request_counts.failed);
    assertPartition(ids, out, err);
    for (const l of out) assertSuccessLine(l);
    for (const l of err) assertNotRunLine(l, 'batch_expired');
    /* an expired batch cannot be cancelled */
    await expectApiError(client.batches.cancel(b.id), sdk.ConflictError, { status: 409 });
});

/* ---- 9. list pagination ------------------------------------------------------------- */

test('batches.list: newest first, limit + after, has_more', { timeout: 90_000 }, async () => {
    const made = [];
    for (let i = 0; i < 3; i++) made.push((await createBatch(client, [chatLine(`p${i}`, 'x', { max_tokens: 1 })])).batch);
    const [b1, b2, b3] = made;

    const page = await client.batches.list({ limit: 2 });
    assert.deepEqual(page.data.map((b) => b.id), [b3.id, b2.id]);
    assert.equal(page.has_more, true);
    for (const b of page.data) assert.equal(b.object, 'batch');
    const next = await client.batches.list({ limit: 2, after: b2.id });
    assert.equal(next.data[0].id, b1.id);
    const viaSdk = await page.getNextPage();
    assert.deepEqual(viaSdk.data.map((b) => b.id), next.data.map((b) => b.id));

    /* raw: first_id / last_id */
    const r = await raw(MAIN, 'GET', '/v1/batches?limit=2');
    assert.equal(r.status, 200);
    assert.equal(r.json.object, 'list');
    assert.equal(r.json.first_id, b3.id);
    assert.equal(r.json.last_id, b2.id);
    assert.equal(r.json.has_more, true);

    /* every batch of this server, newest first, each once */
    const all = [];
    for await (const b of client.batches.list({ limit: 3 })) all.push(b);
    assert.equal(new Set(all.map((b) => b.id)).size, all.length);
    assert.deepEqual(all.slice(0, 3).map((b) => b.id), [b3.id, b2.id, b1.id]);
    for (let i = 1; i < all.length; i++) assert.ok(all[i - 1].created_at >= all[i].created_at, 'newest first');
    const last = await client.batches.list({ limit: 100, after: all.at(-1).id });
    assert.deepEqual(last.data, []);
    assert.equal(last.has_more, false);
    await expectApiError(client.batches.list({ limit: 101 }), sdk.BadRequestError, { status: 400, param: 'limit' });

    for (const b of made) assert.equal((await waitTerminal(client, b.id)).value.status, 'completed');
});

/* ---- 10. partial results ------------------------------------------------------------ */

test('GET /v1/batches/{id}/output and /errors: results so far while the batch runs', { timeout: 150_000 }, async () => {
    const lines = busyLines('pr', 300, 64);
    const ids = new Set(lines.map((l) => l.custom_id));
    const { batch } = await createBatch(client, lines);
    try {
        const { value: before } = await waitBatch(client, batch.id,
            (b) => TERMINAL.has(b.status) || (b.status === 'in_progress' && b.request_counts.completed >= 8),
            { intervalMs: 50, what: 'eight finished lines' });
        assert.equal(before.status, 'in_progress');
        const r = await raw(MAIN, 'GET', `/v1/batches/${batch.id}/output`);
        const e = await raw(MAIN, 'GET', `/v1/batches/${batch.id}/errors`);
        const afterB = await client.batches.retrieve(batch.id);
        assert.equal(r.status, 200);
        assert.match(r.headers.get('content-type'), /^application\/jsonl/);
        const got = parseJsonl(r.text, 'partial output');
        /* a snapshot between the two reads of the counters */
        assert.ok(got.length >= before.request_counts.completed, `${got.length} lines, but ${before.request_counts.completed} were done before`);
        assert.ok(got.length <= afterB.request_counts.completed, `${got.length} lines, but only ${afterB.request_counts.completed} done after`);
        assert.ok(got.length < 300, 'the batch was still running');
        byCustomId(got, 'the partial output');
        for (const l of got) {
            assert.ok(ids.has(l.custom_id), l.custom_id);
            assertSuccessLine(l);
        }
        assert.equal(e.status, 200);
        assert.equal(e.text, '', 'no line has failed');
        const nf = await raw(MAIN, 'GET', '/v1/batches/batch_nope/output');
        assert.equal(nf.status, 404);
        assertErrorShape(nf.json);

        /* after the end, /output and /errors are the output and error files */
        const b = await cancelAndSettle(client, batch.id);
        assert.equal(b.status, 'cancelled');
        const { out, err } = await batchFiles(client, b);
        assert.equal((await raw(MAIN, 'GET', `/v1/batches/${batch.id}/output`)).text, b.output_file_id ? await fileText(client, b.output_file_id) : '');
        assert.equal((await raw(MAIN, 'GET', `/v1/batches/${batch.id}/errors`)).text, b.error_file_id ? await fileText(client, b.error_file_id) : '');
        assert.ok(out.length >= got.length);
        assertPartition([...ids], out, err);
    } finally {
        await cancelAndSettle(client, batch.id);
    }
});

/* ---- 11. interactive under batch load ----------------------------------------------- */

test('a streaming chat completion gets its first token while a 300-line batch is in progress', { timeout: 150_000 }, async () => {
    const lines = busyLines('ld', 300, 128);
    const { batch } = await createBatch(client, lines);
    try {
        /* the engine is saturated: the batch runs and lines are finishing */
        await waitBatch(client, batch.id, (b) => TERMINAL.has(b.status) || (b.status === 'in_progress' && b.request_counts.completed > 0),
            { intervalMs: 50, what: 'the batch to run' });
        const stream = await client.chat.completions.create({
            model: MODEL_NAME,
            messages: [{ role: 'user', content: 'Are you there?' }],
            max_tokens: 16,
            ignore_eos: true,
            stream: true,
        });
        let atFirstToken = null;
        let text = '';
        let finish = null;
        for await (const c of stream) {
            const piece = c.choices[0]?.delta?.content;
            if (piece && atFirstToken === null) atFirstToken = await client.batches.retrieve(batch.id);
            if (piece) text += piece;
            if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
        }
        const atEnd = await client.batches.retrieve(batch.id);
        assert.ok(atFirstToken, 'the stream produced a token');
        assert.ok(text.length > 0);
        assert.equal(finish, 'length');
        assert.equal(atFirstToken.status, 'in_progress', 'the first token came while the batch was still running');
        const rc = atFirstToken.request_counts;
        assert.ok(rc.completed + rc.failed < rc.total, `batch lines were still to run at the first token: ${JSON.stringify(rc)}`);
        assert.equal(atEnd.status, 'in_progress', 'the whole interactive request finished before the batch');
    } finally {
        const b = await cancelAndSettle(client, batch.id);
        assert.equal(b.status, 'cancelled');
    }
});
