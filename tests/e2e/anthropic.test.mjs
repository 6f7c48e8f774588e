// Conformance of `nightshift serve`'s Anthropic routes (/v1/messages and the Message Batches
// API) with the official Anthropic SDK (the `@anthropic-ai/sdk` npm package, pinned in
// tests/e2e/package.json and installed by before() when node_modules lacks it).
//
//   node --test tests/e2e/anthropic.test.mjs
//
// See serve_lib.mjs / lib.mjs for the environment variables. The models are random-weight
// (gen-model): their output is gibberish, so no test looks at the text, only at shapes,
// counts, orderings and error types. Three servers run for the whole file:
//   main   one model 'tiny', --parallel 4 --ctx 4096, --trusted-proxy 127.0.0.1
//   keyed  the same model with --api-key, --max-body 2KB and --public-url
//   multi  two models: 'a' (tiny.gguf) and 'b' (another seed)
// The SDK builds the /v1/... paths itself, so its baseURL is the server's bare URL.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { api, killHard, runNs } from './lib.mjs';
import { BIN, SPM_VOCAB, ensureNpmDeps, mkTmp, pollUntil, rmTmp, sleep, startServer } from './serve_lib.mjs';

const KEY = 'sk-nightshift-anthropic-e2e';
const PUBLIC_URL = 'https://api.example.com/anthropic/';
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

let Anthropic; // the SDK's client class and error classes, imported once installed
let SDK;
let TMP;
let MAIN;
let KEYED;
let MULTI;
let client;

const newClient = (server, apiKey = 'test') => new Anthropic({ baseURL: server.url, apiKey, maxRetries: 0, timeout: 120_000 });

async function genModel(out, seed) {
    const r = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', out, '--seed', String(seed)], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, `gen-model failed:\n${r.stderr}`);
}

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN} (build it, or set NIGHTSHIFT_BIN)`);
    assert.ok(fs.existsSync(SPM_VOCAB), `the vocab file is missing: ${SPM_VOCAB} (set NIGHTSHIFT_VOCAB_DIR)`);
    /* ensureNpmDeps checks every dependency of package.json at its pinned version, so it
     * installs @anthropic-ai/sdk too when it is missing */
    await ensureNpmDeps();
    SDK = await import('@anthropic-ai/sdk');
    Anthropic = SDK.default;

    TMP = mkTmp('nightshift-anthropic-e2e-');
    const tiny = path.join(TMP, 'tiny.gguf');
    const other = path.join(TMP, 'other.gguf');
    await Promise.all([genModel(tiny, 1), genModel(other, 7)]);
    const common = ['--parallel', '4', '--ctx', '4096'];
    [MAIN, KEYED, MULTI] = await Promise.all([
        startServer(['--model', `tiny=${tiny}`, ...common, '--data-dir', path.join(TMP, 'data-main'),
            '--trusted-proxy', '10.9.9.9, 127.0.0.1'], { name: 'main' }),
        startServer(['--model', `tiny=${tiny}`, ...common, '--data-dir', path.join(TMP, 'data-keyed'), '--api-key', KEY,
            '--max-body', '2KB', '--public-url', PUBLIC_URL],
            { name: 'keyed' }),
        startServer(['--model', `a=${tiny}`, '--model', `b=${other}`, ...common, '--data-dir', path.join(TMP, 'data-multi')],
            { name: 'multi' }),
    ]);
    client = newClient(MAIN);
});

after(async () => {
    for (const s of [MAIN, KEYED, MULTI]) {
        if (!s) continue;
        const x = await s.stop(5_000).catch(() => null);
        if (!x) await killHard(s);
    }
    rmTmp(TMP);
});

/* ---- helpers ------------------------------------------------------------------------ */

function checkUsage(u, what) {
    assert.ok(u && typeof u === 'object', `${what}: usage missing`);
    for (const k of ['input_tokens', 'output_tokens', 'cache_read_input_tokens', 'cache_creation_input_tokens'])
        assert.ok(Number.isInteger(u[k]) && u[k] >= 0, `${what}: usage.${k} = ${u[k]}`);
    assert.ok(u.input_tokens + u.cache_read_input_tokens > 0, `${what}: no prompt tokens counted`);
}

function checkMessage(m, { model = 'tiny', maxTokens } = {}) {
    const what = JSON.stringify(m).slice(0, 600);
    assert.match(m.id, /^msg_/, what);
    assert.equal(m.type, 'message', what);
    assert.equal(m.role, 'assistant', what);
    assert.equal(m.model, model, what);
    assert.ok(Array.isArray(m.content) && m.content.length === 1, what);
    assert.equal(m.content[0].type, 'text', what);
    assert.equal(typeof m.content[0].text, 'string', what);
    assert.ok(['end_turn', 'max_tokens', 'stop_sequence'].includes(m.stop_reason), what);
    assert.ok('stop_sequence' in m, what);
    if (m.stop_reason !== 'stop_sequence') assert.equal(m.stop_sequence, null, what);
    checkUsage(m.usage, what);
    if (maxTokens !== undefined) {
        assert.ok(m.usage.output_tokens <= maxTokens, what);
        if (m.stop_reason === 'max_tokens') assert.equal(m.usage.output_tokens, maxTokens, what);
    }
}

/* the SDK error: its class, status and Anthropic-shaped body */
async function expectApiError(promise, Cls, status, type, messageRe) {
    let err;
    try {
        await promise;
    } catch (e) {
        err = e;
    }
    assert.ok(err, `expected ${Cls.name}, but the call succeeded`);
    assert.ok(err instanceof Cls, `expected ${Cls.name}, got ${err?.constructor?.name}: ${err?.message}`);
    assert.equal(err.status, status, err.message);
    assert.equal(err.error?.type, 'error', `error body not in Anthropic's shape: ${JSON.stringify(err.error)}`);
    assert.equal(err.error?.error?.type, type, JSON.stringify(err.error));
    if (messageRe) assert.match(err.error.error.message, messageRe);
    return err;
}

function checkBatch(b) {
    const what = JSON.stringify(b).slice(0, 800);
    assert.match(b.id, /^msgbatch_/, what);
    assert.equal(b.type, 'message_batch', what);
    assert.ok(['in_progress', 'canceling', 'ended'].includes(b.processing_status), what);
    for (const k of ['processing', 'succeeded', 'errored', 'canceled', 'expired'])
        assert.ok(Number.isInteger(b.request_counts[k]) && b.request_counts[k] >= 0, `request_counts.${k}: ${what}`);
    assert.match(b.created_at, RFC3339, what);
    assert.match(b.expires_at, RFC3339, what);
    assert.ok(Date.parse(b.expires_at) > Date.parse(b.created_at), what);
    assert.equal(b.archived_at, null, what);
    if (b.processing_status === 'ended') {
        assert.match(b.ended_at, RFC3339, what);
        assert.ok(Date.parse(b.ended_at) >= Date.parse(b.created_at), what);
        assert.equal(typeof b.results_url, 'string', what);
        assert.ok(b.results_url.endsWith(`/v1/messages/batches/${b.id}/results`), what);
        assert.equal(b.request_counts.processing, 0, what);
    } else {
        assert.equal(b.ended_at, null, what);
        assert.equal(b.results_url, null, what);
    }
    if (b.processing_status === 'canceling') assert.match(b.cancel_initiated_at, RFC3339, what);
    if (b.cancel_initiated_at !== null) assert.match(b.cancel_initiated_at, RFC3339, what);
}

async function waitEnded(c, id, timeoutMs = 60_000) {
    const { value, seen } = await pollUntil(() => c.messages.batches.retrieve(id), (b) => b.processing_status === 'ended',
        { timeoutMs, intervalMs: 100, what: `message batch ${id} to end` });
    for (const b of seen) checkBatch(b);
    return { batch: value, seen };
}

async function allResults(c, id) {
    const out = [];
    for await (const r of await c.messages.batches.results(id)) out.push(r);
    return out;
}

const sum = (rc) => rc.succeeded + rc.errored + rc.canceled + rc.expired;

const params = (i, extra = {}) => ({
    model: 'tiny',
    max_tokens: 8,
    messages: [{ role: 'user', content: `Say something about the number ${i}.` }],
    ...extra,
});

/* ---- /v1/messages ------------------------------------------------------------------- */

test('messages.create, non-streaming: shape, max_tokens, usage, system and content blocks', async () => {
    const m = await client.messages.create({
        model: 'tiny',
        max_tokens: 5,
        system: 'You are terse.',
        messages: [{ role: 'user', content: 'Hello there, how are you?' }],
    });
    checkMessage(m, { maxTokens: 5 });
    /* a random-weight model hardly ever ends its turn within 5 tokens; it may, though */
    assert.ok(['max_tokens', 'end_turn'].includes(m.stop_reason), m.stop_reason);
    if (m.stop_reason === 'max_tokens') assert.equal(m.usage.output_tokens, 5);

    const one = await client.messages.create({ model: 'tiny', max_tokens: 1, messages: [{ role: 'user', content: 'Hi' }] });
    checkMessage(one, { maxTokens: 1 });

    /* system as text blocks, content as text blocks, a multi-turn conversation, sampling */
    const blocks = await client.messages.create({
        model: 'tiny',
        max_tokens: 6,
        system: [{ type: 'text', text: 'You are a helpful assistant.' }, { type: 'text', text: 'Answer briefly.' }],
        messages: [
            { role: 'user', content: [{ type: 'text', text: 'First question?' }] },
            { role: 'assistant', content: 'First answer.' },
            { role: 'user', content: [{ type: 'text', text: 'Second' }, { type: 'text', text: 'question?' }] },
        ],
        temperature: 0.7,
        top_p: 0.9,
        top_k: 40,
    });
    checkMessage(blocks, { maxTokens: 6 });
    const prompt = (x) => x.usage.input_tokens + x.usage.cache_read_input_tokens;
    assert.ok(prompt(blocks) > prompt(one), `${prompt(blocks)} prompt tokens for three turns and a system prompt, ${prompt(one)} for 'Hi'`);

    /* stop sequences that cannot match: the turn ends by length (or the model's own end) */
    const st = await client.messages.create({
        model: 'tiny',
        max_tokens: 7,
        stop_sequences: ['\u0001never-generated-\u0002', 'zzzz-no-such-text-zzzz'],
        messages: [{ role: 'user', content: 'Count to ten.' }],
    });
    checkMessage(st, { maxTokens: 7 });
    assert.ok(['max_tokens', 'end_turn'].includes(st.stop_reason), st.stop_reason);
    assert.equal(st.stop_sequence, null);

    /* concurrent requests: each its own message */
    const many = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => client.messages.create(params(i, { max_tokens: 4 }))));
    for (const x of many) checkMessage(x, { maxTokens: 4 });
    assert.equal(new Set(many.map((x) => x.id)).size, many.length);
});

test('messages.stream: event order, text deltas add up to finalMessage()', async () => {
    const stream = client.messages.stream({
        model: 'tiny',
        max_tokens: 12,
        temperature: 0,
        messages: [{ role: 'user', content: 'Tell me a story.' }],
    });
    const types = [];
    let text = '';
    let start;
    let delta;
    for await (const ev of stream) {
        types.push(ev.type);
        if (ev.type === 'message_start') start = structuredClone(ev.message); /* the SDK fills ev.message in as it goes */
        if (ev.type === 'content_block_start') {
            assert.equal(ev.index, 0);
            assert.deepEqual(ev.content_block, { type: 'text', text: '' });
        }
        if (ev.type === 'content_block_delta') {
            assert.equal(ev.index, 0);
            assert.equal(ev.delta.type, 'text_delta');
            assert.equal(typeof ev.delta.text, 'string');
            text += ev.delta.text;
        }
        if (ev.type === 'message_delta') delta = ev;
    }
    const final = await stream.finalMessage();
    /* message_start, content_block_start, content_block_delta*, content_block_stop, message_delta,
     * message_stop (the SDK swallows ping) */
    const squeezed = types.filter((t, i) => t !== 'content_block_delta' || types[i - 1] !== 'content_block_delta');
    const expect = ['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop'];
    if (!types.includes('content_block_delta')) expect.splice(2, 1);
    assert.deepEqual(squeezed, expect, types.join(','));
    assert.ok(start, 'no message_start');
    assert.match(start.id, /^msg_/);
    assert.equal(start.type, 'message');
    assert.equal(start.role, 'assistant');
    assert.equal(start.model, 'tiny');
    assert.deepEqual(start.content, []);
    assert.equal(start.stop_reason, null);
    assert.ok(Number.isInteger(start.usage.input_tokens) && start.usage.input_tokens > 0, JSON.stringify(start.usage));
    assert.ok(['max_tokens', 'end_turn'].includes(delta.delta.stop_reason), JSON.stringify(delta));
    assert.ok(Number.isInteger(delta.usage.output_tokens) && delta.usage.output_tokens <= 12, JSON.stringify(delta));
    if (delta.delta.stop_reason === 'max_tokens') assert.equal(delta.usage.output_tokens, 12);

    assert.equal(final.id, start.id);
    assert.equal(final.model, 'tiny');
    assert.equal(final.content.length, 1);
    assert.equal(final.content[0].type, 'text');
    assert.equal(final.content[0].text, text);
    assert.equal(final.stop_reason, delta.delta.stop_reason);
    assert.equal(final.usage.output_tokens, delta.usage.output_tokens);
    assert.equal(await stream.finalText(), text);
});

test('messages.create({stream: true}): raw events, and ping on the wire', async () => {
    const s = await client.messages.create({
        model: 'tiny', max_tokens: 6, stream: true, messages: [{ role: 'user', content: 'Go.' }],
    });
    const types = [];
    let text = '';
    for await (const ev of s) {
        types.push(ev.type);
        if (ev.type === 'content_block_delta') text += ev.delta.text;
    }
    assert.equal(types[0], 'message_start');
    assert.equal(types[1], 'content_block_start');
    assert.deepEqual(types.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
    assert.ok(types.slice(2, -3).every((t) => t === 'content_block_delta'), types.join(','));
    assert.equal(typeof text, 'string');

    /* over plain HTTP: the SSE event names, ping included, in Anthropic's order */
    const r = await api(MAIN, 'POST', '/v1/messages', JSON.stringify({
        model: 'tiny', max_tokens: 4, stream: true, messages: [{ role: 'user', content: 'Go.' }],
    }), { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' });
    assert.equal(r.status, 200, r.text);
    const events = r.text.split('\n\n').filter(Boolean).map((chunk) => {
        const ev = /^event: (.*)$/m.exec(chunk)?.[1];
        const data = JSON.parse(/^data: (.*)$/m.exec(chunk)[1]);
        assert.equal(data.type, ev, chunk);
        return ev;
    });
    const wire = events.filter((t, i) => t !== 'content_block_delta' || events[i - 1] !== 'content_block_delta');
    const want = ['message_start', 'content_block_start', 'ping', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop'];
    if (!events.includes('content_block_delta')) want.splice(3, 1);
    assert.deepEqual(wire, want, events.join(','));
});

/* issue 31.3: a prompt served from the prefix cache is counted the same streamed and not:
 * input_tokens (computed), cache_read_input_tokens (from the cache); message_start does not
 * contradict message_delta, whose usage the SDK's final message takes */
test('messages.stream usage agrees with messages.create, prefix cache hits included', async () => {
    const body = { model: 'tiny', max_tokens: 3, messages: [{ role: 'user', content: 'The same prompt, again and again, for the cache.' }] };
    await client.messages.create(body); /* the prompt is in the cache from now on */
    const plain = await client.messages.create(body);
    assert.ok(plain.usage.cache_read_input_tokens > 0, JSON.stringify(plain.usage));
    const stream = client.messages.stream(body);
    let start, delta;
    for await (const ev of stream) {
        if (ev.type === 'message_start') start = structuredClone(ev.message.usage);
        if (ev.type === 'message_delta') delta = ev.usage;
    }
    const final = await stream.finalMessage();
    const keys = ['input_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens'];
    const pick = (u, ks) => Object.fromEntries(ks.map((k) => [k, u[k]]));
    assert.deepEqual(pick(start, keys), pick(plain.usage, keys), `message_start ${JSON.stringify(start)}`);
    assert.deepEqual(pick(delta, [...keys, 'output_tokens']), pick(plain.usage, [...keys, 'output_tokens']),
        `message_delta ${JSON.stringify(delta)}`);
    assert.deepEqual(pick(final.usage, [...keys, 'output_tokens']), pick(plain.usage, [...keys, 'output_tokens']));
});

/* issue 31.2: POST /v1/messages/count_tokens counts as a Messages call with the same body */
test('messages.countTokens: the input tokens messages.create counts; errors in Anthropic\'s shape', async () => {
    const { BadRequestError, NotFoundError } = SDK;
    const bodies = [
        { model: 'tiny', messages: [{ role: 'user', content: 'Count me, please.' }] },
        { model: 'tiny', system: 'You are terse.', messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' },
            { role: 'user', content: [{ type: 'text', text: 'Blocks count too.' }] }] },
        { model: 'tiny', messages: [{ role: 'user', content: 'Weather in Oslo?' }],
            tools: [{ name: 'get_weather', description: 'The weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }],
            tool_choice: { type: 'auto' } },
    ];
    for (const b of bodies) {
        const c = await client.messages.countTokens(b);
        assert.deepEqual(Object.keys(c), ['input_tokens']);
        assert.match(c._request_id, /^req_[A-Za-z0-9]{24}$/); /* issue 31.4: request-id, as Anthropic's */
        const m = await client.messages.create({ ...b, max_tokens: 1 });
        assert.match(m._request_id, /^req_/);
        assert.notEqual(m._request_id, c._request_id);
        assert.equal(c.input_tokens, m.usage.input_tokens + m.usage.cache_read_input_tokens, JSON.stringify(b));
    }
    await expectApiError(client.messages.countTokens({ ...bodies[0], max_tokens: 5 }), BadRequestError, 400,
        'invalid_request_error', /max_tokens: Extra inputs are not permitted/);
    await expectApiError(client.messages.countTokens({ model: 'tiny' }), BadRequestError, 400, 'invalid_request_error',
        /messages: Field required/);
    await expectApiError(client.messages.countTokens({ ...bodies[0], model: 'no-such-model' }), NotFoundError, 404,
        'not_found_error', /no-such-model/);
    const r = await api(MAIN, 'POST', '/v1/messages/count_tokens', '{"model":', { 'content-type': 'application/json' });
    assert.equal(r.status, 400);
    assert.equal(r.json().error.type, 'invalid_request_error');
});

test('errors through the SDK: 400 missing max_tokens / temperature 1.5, 404 unknown model', async () => {
    const { BadRequestError, NotFoundError } = SDK;
    await expectApiError(client.messages.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }] }),
        BadRequestError, 400, 'invalid_request_error', /max_tokens: Field required/);
    await expectApiError(client.messages.create({ ...params(0), temperature: 1.5 }),
        BadRequestError, 400, 'invalid_request_error', /temperature/);
    await expectApiError(client.messages.create({ ...params(0), model: 'no-such-model' }),
        NotFoundError, 404, 'not_found_error', /no-such-model/);
    /* the same through a stream: the request fails before any event */
    await expectApiError(client.messages.create({ ...params(0), model: 'no-such-model', stream: true }),
        NotFoundError, 404, 'not_found_error');
    await expectApiError(client.messages.create({ ...params(0), messages: [] }), BadRequestError, 400, 'invalid_request_error');
    await expectApiError(client.messages.batches.retrieve('msgbatch_doesnotexist'), NotFoundError, 404, 'not_found_error');
});

test('API key: a wrong key is an AuthenticationError (401), the right key works (x-api-key)', async () => {
    const { AuthenticationError } = SDK;
    const wrong = newClient(KEYED, 'sk-wrong');
    for (const call of [() => wrong.messages.create(params(1)), () => wrong.messages.batches.list()]) {
        let err;
        await call().catch((e) => (err = e));
        assert.ok(err instanceof AuthenticationError, `expected AuthenticationError, got ${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.status, 401);
        assert.equal(err.type, 'authentication_error', JSON.stringify(err.error));
    }
    const right = newClient(KEYED, KEY);
    checkMessage(await right.messages.create(params(1)), { maxTokens: 8 });
    const page = await right.messages.batches.list({ limit: 5 });
    assert.deepEqual(page.data, []);
    assert.equal(page.has_more, false);
});

test('errors raised before the route handler (401 key, 413 body size, 415 content type) are in Anthropic\'s shape', async () => {
    const { APIError, AuthenticationError } = SDK;
    /* Anthropic's error body is {"type":"error","error":{"type":...,"message":...}}; every check
     * runs and the failures are reported together */
    const failures = [];
    const check = async (what, fn) => {
        try {
            await fn();
        } catch (e) {
            failures.push(`${what}: ${e.message.split('\n')[0]}`);
        }
    };
    await check('POST /v1/messages with a wrong x-api-key', () =>
        expectApiError(newClient(KEYED, 'sk-wrong').messages.create(params(1)), AuthenticationError, 401, 'authentication_error'));
    await check('GET /v1/messages/batches/{id} with a wrong x-api-key', () =>
        expectApiError(newClient(KEYED, 'sk-wrong').messages.batches.retrieve('msgbatch_x'), AuthenticationError, 401,
            'authentication_error'));
    await check('POST /v1/messages over --max-body 2KB', () =>
        expectApiError(newClient(KEYED, KEY).messages.create(params(1, { system: 'x'.repeat(3000) })), APIError, 413,
            'request_too_large'));
    await check('POST /v1/messages with content-type text/plain', async () => {
        const r = await api(KEYED, 'POST', '/v1/messages', JSON.stringify(params(1)), { 'content-type': 'text/plain', 'x-api-key': KEY });
        assert.ok(r.status === 400 || r.status === 415, `${r.status} ${r.text}`);
        assert.equal(r.json().type, 'error', `error body not in Anthropic's shape: ${r.text}`);
        assert.equal(r.json().error.type, 'invalid_request_error', r.text);
    });
    assert.deepEqual(failures, []);
});

/* ---- Message Batches ---------------------------------------------------------------- */

test('batches: create with bad requests inside, poll to ended, counts, results()', { timeout: 90_000 }, async () => {
    const good = [
        { custom_id: 'g0', params: params(0) },
        { custom_id: 'g1', params: params(1, { system: 'Be brief.' }) },
        { custom_id: 'g2', params: params(2, { system: [{ type: 'text', text: 'Be brief.' }] }) },
        { custom_id: 'g3', params: params(3, { messages: [{ role: 'user', content: [{ type: 'text', text: 'Blocks.' }] }] }) },
        { custom_id: 'g4', params: params(4, { temperature: 0.5, top_p: 0.8, top_k: 20 }) },
        { custom_id: 'g5', params: params(5, { stop_sequences: ['zzzz-no-such-text-zzzz'] }) },
        { custom_id: 'g6', params: params(6, { max_tokens: 1 }) },
    ];
    const { max_tokens: _drop, ...noMax } = params(7);
    const requests = [
        ...good,
        { custom_id: 'bad-no-max-tokens', params: noMax },
        { custom_id: 'g0', params: params(8) }, // a duplicate custom_id
        { custom_id: 'bad-model', params: params(9, { model: 'no-such-model' }) },
    ];
    const created = await client.messages.batches.create({ requests });
    checkBatch(created);
    assert.notEqual(created.processing_status, 'ended');
    assert.equal(created.cancel_initiated_at, null);

    const { batch: b, seen } = await waitEnded(client, created.id);
    assert.equal(b.id, created.id);
    assert.equal(b.created_at, created.created_at);
    for (const x of seen) assert.ok(sum(x.request_counts) + x.request_counts.processing <= requests.length, JSON.stringify(x));
    const rc = b.request_counts;
    assert.equal(rc.processing, 0);
    assert.equal(rc.canceled, 0);
    assert.equal(rc.expired, 0);
    assert.equal(rc.succeeded + rc.errored, requests.length, JSON.stringify(rc));
    assert.ok(rc.errored >= 3, JSON.stringify(rc));
    assert.equal(rc.succeeded, good.length, JSON.stringify(rc));
    assert.equal(b.cancel_initiated_at, null);

    const results = await allResults(client, b.id);
    assert.equal(results.length, requests.length, JSON.stringify(results).slice(0, 2000));
    const ids = new Set(results.map((r) => r.custom_id));
    for (const r of requests) assert.ok(ids.has(r.custom_id), `no result for ${r.custom_id}`);
    const byType = { succeeded: 0, errored: 0 };
    for (const r of results) {
        const what = JSON.stringify(r).slice(0, 800);
        assert.ok(['succeeded', 'errored'].includes(r.result.type), what);
        byType[r.result.type]++;
        if (r.result.type === 'succeeded') {
            const req = good.find((g) => g.custom_id === r.custom_id);
            assert.ok(req, `unexpected success: ${what}`);
            checkMessage(r.result.message, { maxTokens: req.params.max_tokens });
            assert.equal(r.result.message.content[0].type, 'text');
        } else {
            assert.equal(r.result.error.type, 'error', what);
            assert.equal(typeof r.result.error.error.type, 'string', what);
            assert.ok(r.result.error.error.message.length > 10, what);
        }
    }
    assert.deepEqual(byType, { succeeded: rc.succeeded, errored: rc.errored });
    const errOf = (cid) => results.filter((r) => r.custom_id === cid && r.result.type === 'errored').map((r) => r.result.error.error);
    const [noMaxErr] = errOf('bad-no-max-tokens');
    assert.ok(noMaxErr, 'bad-no-max-tokens did not error');
    assert.equal(noMaxErr.type, 'invalid_request_error');
    assert.match(noMaxErr.message, /max_tokens/);
    const [modelErr] = errOf('bad-model');
    assert.ok(modelErr, 'bad-model did not error');
    assert.equal(modelErr.type, 'not_found_error');
    assert.match(modelErr.message, /no-such-model/);
    /* g0 twice: the first one runs, the repeat is an errored result naming the duplicate */
    const g0 = results.filter((r) => r.custom_id === 'g0');
    assert.deepEqual(g0.map((r) => r.result.type).sort(), ['errored', 'succeeded'], JSON.stringify(g0));
    const [dupErr] = errOf('g0');
    assert.equal(dupErr.type, 'invalid_request_error');
    assert.match(dupErr.message, /custom_id|duplicate|unique/i);

    /* results over plain HTTP: JSONL, one line per request */
    const raw = await api(MAIN, 'GET', `/v1/messages/batches/${b.id}/results`);
    assert.equal(raw.status, 200, raw.text);
    assert.ok(raw.text.endsWith('\n'));
    assert.equal(raw.text.trim().split('\n').length, requests.length);
});

test('batches: a request list the API itself rejects (400, no batch created)', async () => {
    const { BadRequestError } = SDK;
    const before = await client.messages.batches.list({ limit: 1000 });
    await expectApiError(client.messages.batches.create({ requests: [] }), BadRequestError, 400, 'invalid_request_error');
    await expectApiError(client.messages.batches.create({ requests: [{ custom_id: 'x' }] }), BadRequestError, 400,
        'invalid_request_error');
    const after = await client.messages.batches.list({ limit: 1000 });
    assert.equal(after.data.length, before.data.length);
});

test('batches.list: newest first, limit, has_more, after_id / before_id, getNextPage()', { timeout: 60_000 }, async () => {
    const made = [];
    for (let i = 0; i < 3; i++)
        made.push(await client.messages.batches.create({ requests: [{ custom_id: `l${i}`, params: params(i, { max_tokens: 1 }) }] }));
    const [b1, b2, b3] = made;

    const p1 = await client.messages.batches.list({ limit: 2 });
    assert.deepEqual(p1.data.map((b) => b.id), [b3.id, b2.id]);
    assert.equal(p1.has_more, true);
    assert.equal(p1.first_id, b3.id);
    assert.equal(p1.last_id, b2.id);
    for (const b of p1.data) checkBatch(b);
    assert.equal(p1.hasNextPage(), true);

    const p2 = await client.messages.batches.list({ limit: 2, after_id: b2.id });
    assert.equal(p2.data[0].id, b1.id);
    assert.equal(p2.first_id, b1.id);
    const next = await p1.getNextPage();
    assert.deepEqual(next.data.map((b) => b.id), p2.data.map((b) => b.id));

    const up = await client.messages.batches.list({ limit: 2, before_id: b1.id });
    assert.deepEqual(up.data.map((b) => b.id), [b3.id, b2.id]);
    const top = await client.messages.batches.list({ limit: 5, before_id: b3.id });
    assert.deepEqual(top.data, []);
    assert.equal(top.has_more, false);

    /* the whole list, auto-paginated 2 at a time: every id once, newest first */
    const all = [];
    for await (const b of client.messages.batches.list({ limit: 2 })) all.push(b.id);
    assert.equal(new Set(all).size, all.length);
    assert.deepEqual(all.slice(0, 3), [b3.id, b2.id, b1.id]);
    const full = await client.messages.batches.list({ limit: 1000 });
    assert.deepEqual(full.data.map((b) => b.id), all);
    assert.equal(full.has_more, false);

    for (const b of made) await waitEnded(client, b.id);
});

test('batches: cancel a 200-request batch soon after creation -> canceling -> ended, canceled results', { timeout: 90_000 }, async (t) => {
    const n = 200;
    const requests = Array.from({ length: n }, (_, i) => ({ custom_id: `c${i}`, params: params(i, { max_tokens: 64 }) }));
    const created = await client.messages.batches.create({ requests });
    checkBatch(created);
    await sleep(300);
    const c = await client.messages.batches.cancel(created.id);
    checkBatch(c);
    assert.equal(c.processing_status, 'canceling', JSON.stringify(c));
    assert.match(c.cancel_initiated_at, RFC3339);

    const { batch: b } = await waitEnded(client, created.id);
    const rc = b.request_counts;
    assert.equal(sum(rc), n, JSON.stringify(rc));
    assert.ok(rc.canceled > 0, JSON.stringify(rc));
    assert.equal(rc.errored, 0, JSON.stringify(rc));
    assert.equal(rc.expired, 0, JSON.stringify(rc));
    assert.equal(b.cancel_initiated_at, c.cancel_initiated_at);
    t.diagnostic(`request_counts after the cancel: ${JSON.stringify(rc)}`);

    const results = await allResults(client, b.id);
    assert.equal(results.length, n);
    assert.equal(new Set(results.map((r) => r.custom_id)).size, n);
    const canceled = results.filter((r) => r.result.type === 'canceled');
    assert.equal(canceled.length, rc.canceled);
    assert.equal(results.filter((r) => r.result.type === 'succeeded').length, rc.succeeded);
    for (const r of canceled) assert.deepEqual(r.result, { type: 'canceled' });

    /* canceling an ended batch returns it as it is */
    const again = await client.messages.batches.cancel(b.id);
    assert.equal(again.processing_status, 'ended');
    assert.deepEqual(again.request_counts, rc);
});

test('batches: delete a running batch -> 400; once ended -> deleted, then 404', { timeout: 90_000 }, async () => {
    const { BadRequestError, NotFoundError } = SDK;
    const requests = Array.from({ length: 60 }, (_, i) => ({ custom_id: `d${i}`, params: params(i, { max_tokens: 64 }) }));
    const created = await client.messages.batches.create({ requests });
    assert.notEqual(created.processing_status, 'ended');
    await expectApiError(client.messages.batches.delete(created.id), BadRequestError, 400, 'invalid_request_error');
    /* no results while it runs */
    const early = await api(MAIN, 'GET', `/v1/messages/batches/${created.id}/results`);
    assert.equal(early.status, 400, early.text);
    assert.equal(early.json().type, 'error');
    assert.equal(early.json().error.type, 'invalid_request_error');

    await client.messages.batches.cancel(created.id);
    const { batch: b } = await waitEnded(client, created.id);
    assert.equal(sum(b.request_counts), requests.length);

    const del = await client.messages.batches.delete(b.id);
    assert.deepEqual(del, { id: b.id, type: 'message_batch_deleted' });
    await expectApiError(client.messages.batches.retrieve(b.id), NotFoundError, 404, 'not_found_error');
    await expectApiError(client.messages.batches.delete(b.id), NotFoundError, 404, 'not_found_error');
    await expectApiError(client.messages.batches.cancel(b.id), NotFoundError, 404, 'not_found_error');
    const gone = await api(MAIN, 'GET', `/v1/messages/batches/${b.id}/results`);
    assert.equal(gone.status, 404, gone.text);
    const list = await client.messages.batches.list({ limit: 1000 });
    assert.ok(!list.data.some((x) => x.id === b.id));
});

test('batches: one batch mixing two models; each result names its request\'s model', { timeout: 90_000 }, async () => {
    const mc = newClient(MULTI);
    /* interactive requests on both models, too */
    const g = params(0, { max_tokens: 16, temperature: 0 });
    const ia = await mc.messages.create({ ...g, model: 'a' });
    const ib = await mc.messages.create({ ...g, model: 'b' });
    checkMessage(ia, { model: 'a', maxTokens: 16 });
    checkMessage(ib, { model: 'b', maxTokens: 16 });
    /* two different weight files: the same greedy request gives different text */
    assert.notEqual(ia.content[0].text, ib.content[0].text);

    const requests = Array.from({ length: 12 }, (_, i) => ({
        custom_id: `m${i}`,
        params: params(i, { model: i % 3 === 0 ? 'a' : 'b', max_tokens: 6, temperature: 0 }),
    }));
    const created = await mc.messages.batches.create({ requests });
    const { batch: b } = await waitEnded(mc, created.id);
    assert.deepEqual(b.request_counts, { processing: 0, succeeded: requests.length, errored: 0, canceled: 0, expired: 0 });
    const results = await allResults(mc, b.id);
    assert.equal(results.length, requests.length);
    const want = new Map(requests.map((r) => [r.custom_id, r.params.model]));
    for (const r of results) {
        assert.equal(r.result.type, 'succeeded', JSON.stringify(r));
        assert.ok(want.has(r.custom_id), r.custom_id);
        checkMessage(r.result.message, { model: want.get(r.custom_id), maxTokens: 6 });
        want.delete(r.custom_id);
    }
    assert.equal(want.size, 0, `missing results: ${[...want.keys()]}`);
});

/* ---- results_url: how the client reached the server (issue 31.1) ---------------------- */

/* GET a path of server s with these headers (node's http: fetch would not send a Host of our
 * choosing); the JSON answer */
function getWith(s, p, headers) {
    const u = new URL(s.url);
    return new Promise((resolve, reject) => {
        const req = http.request({ host: u.hostname, port: u.port, path: p, headers }, (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => {
                try {
                    resolve(JSON.parse(body));
                } catch (e) {
                    reject(new Error(`${res.statusCode} ${body}`));
                }
            });
        });
        req.on('error', reject);
        req.end();
    });
}

/* a reverse proxy on localhost in front of MAIN, as nginx's proxy_pass: the upstream's own
 * Host, the client's in X-Forwarded-Host, and X-Forwarded-Proto; counts what it forwards */
function startProxy(target) {
    const t = new URL(target.url);
    const seen = [];
    const srv = http.createServer((req, res) => {
        seen.push(`${req.method} ${req.url}`);
        const headers = { ...req.headers, host: t.host, 'x-forwarded-host': req.headers.host, 'x-forwarded-proto': 'http' };
        const up = http.request({ host: t.hostname, port: t.port, path: req.url, method: req.method, headers }, (ur) => {
            res.writeHead(ur.statusCode, ur.headers);
            ur.pipe(res);
        });
        up.on('error', (e) => res.destroy(e));
        req.pipe(up);
    });
    return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({ srv, port: srv.address().port, seen })));
}

test('results_url: the Host; a trusted proxy\'s X-Forwarded-*; --public-url; an untrusted peer\'s forwarded headers ignored', { timeout: 90_000 }, async () => {
    const reqs = { requests: [{ custom_id: 'r', params: params(0, { max_tokens: 2 }) }] };
    const proxy = await startProxy(MAIN);
    try {
        /* through the proxy, with the SDK: results() fetches results_url, so it must lead
         * back through the proxy (the client knows no other address) */
        const viaProxy = new Anthropic({ baseURL: `http://localhost:${proxy.port}`, apiKey: 'test', maxRetries: 0, timeout: 60_000 });
        const created = await viaProxy.messages.batches.create(reqs);
        const { batch } = await waitEnded(viaProxy, created.id);
        const base = `http://localhost:${proxy.port}/v1/messages/batches/${batch.id}/results`;
        assert.equal(batch.results_url, base);
        const before = proxy.seen.length;
        const results = await allResults(viaProxy, batch.id);
        assert.equal(results.length, 1);
        assert.ok(proxy.seen.slice(before).includes(`GET /v1/messages/batches/${batch.id}/results`), proxy.seen.join('\n'));
        /* directly: the Host the client sent (a port mapping, 0.0.0.0 ...), http without TLS */
        const direct = await getWith(MAIN, `/v1/messages/batches/${batch.id}`, { host: '10.1.2.3:9999' });
        assert.equal(direct.results_url, `http://10.1.2.3:9999/v1/messages/batches/${batch.id}/results`);
        const https = await getWith(MAIN, `/v1/messages/batches/${batch.id}`,
            { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example.com, proxy2.internal' });
        assert.equal(https.results_url, `https://api.example.com/v1/messages/batches/${batch.id}/results`);
        /* a forwarded host that is no host is not believed */
        const junk = await getWith(MAIN, `/v1/messages/batches/${batch.id}`,
            { host: '10.1.2.3:9999', 'x-forwarded-host': 'evil.example/path?x' });
        assert.equal(junk.results_url, `http://10.1.2.3:9999/v1/messages/batches/${batch.id}/results`);
    } finally {
        proxy.srv.close();
    }
    /* MULTI trusts no proxy: the forwarded headers are anyone's, and ignored */
    const mc = newClient(MULTI);
    const m = await mc.messages.batches.create({ requests: [{ custom_id: 'r', params: params(0, { model: 'a', max_tokens: 2 }) }] });
    await waitEnded(mc, m.id);
    const untrusted = await getWith(MULTI, `/v1/messages/batches/${m.id}`,
        { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example.com' });
    assert.equal(untrusted.results_url, `${MULTI.url}/v1/messages/batches/${m.id}/results`);
    /* KEYED has --public-url: it wins, whatever the request says */
    const kc = newClient(KEYED, KEY);
    const k = await kc.messages.batches.create(reqs);
    const { batch: kb } = await waitEnded(kc, k.id);
    assert.equal(kb.results_url, `https://api.example.com/anthropic/v1/messages/batches/${kb.id}/results`);
    const listed = await kc.messages.batches.list();
    assert.equal(listed.data.find((b) => b.id === kb.id).results_url, kb.results_url);
});

test('--public-url and --trusted-proxy: bad values are refused at start, on the command line and in --config', async () => {
    const cases = [
        [['--public-url', 'api.example.com'], /--public-url must be an http:\/\/ or https:\/\/ URL/],
        [['--public-url', 'https://api.example.com/x?y=1'], /--public-url must be/],
        [['--public-url', 'https:///nohost'], /--public-url must be/],
        [['--trusted-proxy', '10.0.0.1,not-an-ip'], /--trusted-proxy: 'not-an-ip' is not an IP address or a CIDR block/],
        [['--trusted-proxy', '10.0.0.0/33'], /'10\.0\.0\.0\/33' is not an IP address or a CIDR block/],
    ];
    const ini = path.join(TMP, 'bad-proxy.ini');
    fs.writeFileSync(ini, '[server]\ntrusted-proxy = 127.0.0.1\ntrusted-proxy = ::1/129\n');
    cases.push([['--config', ini], /'::1\/129' is not an IP address or a CIDR block/]);
    for (const [args, want] of cases) {
        const r = await runNs(['serve', '--model', 'tiny=/nonexistent.gguf', '--data-dir', path.join(TMP, 'never'),
            '--listen', '127.0.0.1:0', ...args], { timeoutMs: 30_000 });
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, want, args.join(' '));
    }
});
