// Provider batch backends (issue 5): `openai-batch` and `anthropic-batch` offload lines to an
// upstream's own batch API. The upstream is a second `nightshift serve` (a local generated
// model, --api-key), which speaks both the OpenAI Batch API (files + batches) and Anthropic's
// Message Batches — real implementations of those protocols, driven here through nightshift's
// client side.
//
//   node --test tests/e2e/upstream_batch.test.mjs
//
// Checked: batches complete with every line once and OpenAI-shaped bodies carrying the
// client's model name; lines the upstream cancelled are resubmitted in a new upstream batch;
// a request the upstream rejects is the line's error as it came; requests that cannot be
// mapped to Anthropic fail with a clear error; real-time calls are refused with a pointer to
// the Batch API; the key is sent (Bearer / x-api-key) and never leaks.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { api, runNs, submitBatch, waitBatch } from './lib.mjs';
import { BIN, SPM_VOCAB, mkTmp, parseJsonl, pollUntil, rmTmp, sleep, startServer } from './serve_lib.mjs';

const KEY = 'sk-provider-batch-key-31c7';
let TMP;
let UP; // the upstream nightshift
let NS; // the one under test

const auth = { authorization: `Bearer ${KEY}` };

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN}`);
    TMP = mkTmp('nightshift-upbatch-e2e-');
    const model = path.join(TMP, 'tiny.gguf');
    const g = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', model, '--seed', '5'], { timeoutMs: 60_000 });
    assert.equal(g.code, 0, g.stderr);
    UP = await startServer(['--model', `tiny=${model}`, '--data-dir', path.join(TMP, 'up'), '--parallel', '8', '--ctx', '4096',
        '--api-key', KEY], { name: 'upstream' });
    const ini = path.join(TMP, 'ns.ini');
    const common = `url = ${UP.url}/v1\napi_key_env = PROVIDER_KEY\nupstream_model = tiny\npoll_interval = 0.1\npoll_max = 0.5\nflush_after = 0.5\nretry_base = 0.05\n`;
    fs.writeFileSync(ini, `[server]\ndata-dir = ${path.join(TMP, 'ns')}\n\n[model cheap]\nbackend = openai-batch\n${common}\n` +
        `[model claude]\nbackend = anthropic-batch\n${common}`);
    NS = await startServer(['--config', ini], { env: { PROVIDER_KEY: KEY }, name: 'ns' });
});

after(async () => {
    if (NS) await NS.stop();
    if (UP) await UP.stop();
    rmTmp(TMP);
});

const chat = (i, model, extra = {}) => ({
    custom_id: `q-${i}`,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model, messages: [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: `question ${i}` }], max_tokens: 4, temperature: 0, ...extra },
});

async function results(batch) {
    const read = async (id) => (id ? parseJsonl((await api(NS, 'GET', `/v1/files/${id}/content`)).text) : []);
    return { out: await read(batch.output_file_id), errs: await read(batch.error_file_id) };
}

const upstreamBatches = async () => (await api(UP, 'GET', '/v1/batches?limit=100', undefined, auth)).json().data;

test('openai-batch: a batch goes upstream as one OpenAI batch and every line comes back once', async () => {
    const N = 120;
    const before = (await upstreamBatches()).length;
    const b = await submitBatch(NS, Array.from({ length: N }, (_, i) => chat(i, 'cheap')));
    const done = await waitBatch(NS, b.id, (x) => ['completed', 'failed'].includes(x.status), 180_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.deepEqual(done.request_counts, { total: N, completed: N, failed: 0 });
    const { out, errs } = await results(done);
    assert.equal(errs.length, 0);
    assert.equal(new Set(out.map((l) => l.custom_id)).size, N);
    for (const l of out) {
        assert.equal(l.response.status_code, 200);
        assert.equal(l.response.body.object, 'chat.completion');
        assert.equal(l.response.body.model, 'cheap');
        assert.ok(l.response.body.usage.prompt_tokens > 0);
    }
    const ups = (await upstreamBatches()).slice(0, (await upstreamBatches()).length - before);
    assert.equal(ups.length, 1, 'one upstream batch for the lot');
    assert.equal(ups[0].metadata?.source, 'nightshift');
    assert.equal(ups[0].request_counts.total, N);
});

test('openai-batch: lines the upstream cancelled are resubmitted; a rejected line is the upstream\'s error', async () => {
    const N = 80;
    const known = new Set((await upstreamBatches()).map((x) => x.id));
    /* long enough answers that the first upstream batch is still running when it is cancelled */
    const lines = Array.from({ length: N }, (_, i) => chat(i, 'cheap', { max_tokens: 48 }));
    lines[3] = chat(3, 'cheap', { max_tokens: 100000 }); /* over the upstream's context: its 400 */
    const b = await submitBatch(NS, lines);
    const first = await pollUntil(async () => (await upstreamBatches()).find((x) => !known.has(x.id)), (x) => !!x,
        { timeoutMs: 30_000, intervalMs: 20, what: 'the upstream batch' });
    const c = await api(UP, 'POST', `/v1/batches/${first.value.id}/cancel`, undefined, auth);
    assert.equal(c.status, 200, c.text);
    const done = await waitBatch(NS, b.id, (x) => ['completed', 'failed'].includes(x.status), 180_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    const { out, errs } = await results(done);
    assert.equal(out.length + errs.length, N, 'every line once');
    assert.equal(new Set([...out, ...errs].map((l) => l.custom_id)).size, N);
    assert.equal(errs.length, 1, JSON.stringify(errs));
    assert.equal(errs[0].custom_id, 'q-3');
    assert.equal(errs[0].response.status_code, 400);
    assert.equal(errs[0].response.body.error.code, 'context_length_exceeded', 'the upstream\'s own error body');
    const cancelled = (await api(UP, 'GET', `/v1/batches/${first.value.id}`, undefined, auth)).json();
    if (cancelled.request_counts.completed + cancelled.request_counts.failed < N) {
        const mine = (await upstreamBatches()).filter((x) => !known.has(x.id));
        assert.ok(mine.length >= 2, `the cancelled lines went upstream again (${mine.length} upstream batches)`);
    }
});

test('anthropic-batch: Message Batches upstream, OpenAI chat.completion bodies back', async () => {
    const N = 40;
    const lines = Array.from({ length: N }, (_, i) => chat(i, 'claude'));
    lines[5] = chat(5, 'claude', { tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }] });
    const b = await submitBatch(NS, lines);
    const done = await waitBatch(NS, b.id, (x) => ['completed', 'failed'].includes(x.status), 180_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    const { out, errs } = await results(done);
    assert.equal(out.length, N - 1);
    assert.equal(errs.length, 1);
    assert.equal(errs[0].custom_id, 'q-5');
    assert.equal(errs[0].response.status_code, 400);
    assert.match(errs[0].response.body.error.message, /'tools' cannot be mapped to Anthropic's Message Batches/);
    for (const l of out) {
        const body = l.response.body;
        assert.equal(body.object, 'chat.completion');
        assert.equal(body.model, 'claude');
        assert.match(body.id, /^chatcmpl-msg_/);
        assert.equal(typeof body.choices[0].message.content, 'string');
        assert.ok(['stop', 'length'].includes(body.choices[0].finish_reason));
        assert.ok(body.usage.prompt_tokens > 0 && body.usage.completion_tokens > 0);
    }
    const ant = (await api(UP, 'GET', '/v1/messages/batches', undefined, { 'x-api-key': KEY, 'anthropic-version': '2023-06-01' })).json();
    assert.ok(ant.data.some((x) => x.request_counts.succeeded === N - 1), 'one Message Batch upstream with the lines');
});

test('nightshift run does not drive a provider batch backend, and says what to use', async () => {
    const input = path.join(TMP, 'run-in.jsonl');
    fs.writeFileSync(input, JSON.stringify(chat(1, 'cheap')) + '\n');
    const r = await runNs(['run', input, '-o', path.join(TMP, 'run-out.jsonl'), '--config', path.join(TMP, 'ns.ini'),
        '--model', 'cheap'], { timeoutMs: 30_000, env: { PROVIDER_KEY: KEY } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /model 'cheap' runs on openai-batch, which `nightshift run` does not drive: use `nightshift serve`/);
});

test('batch backends refuse real-time calls and never leak the key', async () => {
    for (const model of ['cheap', 'claude']) {
        const r = await api(NS, 'POST', '/v1/chat/completions', JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }] }),
            { 'content-type': 'application/json' });
        assert.equal(r.status, 400, r.text);
        assert.match(r.json().error.message, /served through a provider's batch API .*send it in a batch/);
    }
    await sleep(100);
    assert.ok(!NS.stderr().includes(KEY));
    const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
    for (const f of walk(path.join(TMP, 'ns'))) assert.ok(!fs.readFileSync(f).includes(Buffer.from(KEY)), `the key is in ${f}`);
});

test('"service_tier": "flex" calls wait for the upstream batch; deferred requests answer 202 and are polled', async () => {
    const known = new Set((await upstreamBatches()).map((x) => x.id));
    const flex = await Promise.all([0, 1, 2].map((i) => api(NS, 'POST', '/v1/chat/completions',
        JSON.stringify({ model: 'cheap', service_tier: 'flex', messages: [{ role: 'user', content: `flex ${i}` }], max_tokens: 3 }),
        { 'content-type': 'application/json' })));
    for (const r of flex) {
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json().object, 'chat.completion');
        assert.equal(r.json().model, 'cheap');
    }
    const mid = (await upstreamBatches()).filter((x) => !known.has(x.id));
    assert.ok(mid.length >= 1 && mid.length <= 2, `flex calls accumulated into ${mid.length} upstream batch(es)`);

    const ids = [];
    for (let i = 0; i < 5; i++) {
        const r = await api(NS, 'POST', '/v1/deferred/chat/completions',
            JSON.stringify({ model: 'cheap', messages: [{ role: 'user', content: `deferred ${i}` }], max_tokens: 3 }),
            { 'content-type': 'application/json' });
        assert.equal(r.status, 202, r.text);
        assert.equal(r.json().object, 'deferred.request');
        assert.ok(['queued', 'in_progress'].includes(r.json().status));
        ids.push(r.json().id);
    }
    for (const id of ids) {
        const { value } = await pollUntil(async () => (await api(NS, 'GET', `/v1/deferred/${id}`)).json(),
            (d) => !['queued', 'in_progress'].includes(d.status), { timeoutMs: 60_000, what: `deferred ${id}` });
        assert.equal(value.status, 'completed', JSON.stringify(value));
        assert.equal(value.response.status_code, 200);
        assert.equal(value.response.body.object, 'chat.completion');
        assert.equal(value.model, 'cheap');
    }
    const all = (await upstreamBatches()).filter((x) => !known.has(x.id));
    assert.ok(all.length - mid.length <= 2, `5 deferred requests went upstream in ${all.length - mid.length} batch(es)`);
    /* a deferred request is a batch: listed, and its errors are specific */
    const bad = [
        [{ model: 'nope', messages: [] }, 404, /model 'nope' does not exist/],
        [{ model: 'cheap', stream: true, messages: [] }, 400, /cannot be streamed/],
        [{ messages: [] }, 400, /'model'/],
    ];
    for (const [body, code, re] of bad) {
        const r = await api(NS, 'POST', '/v1/deferred/chat/completions', JSON.stringify(body), { 'content-type': 'application/json' });
        assert.equal(r.status, code, r.text);
        assert.match(r.json().error.message, re);
    }
    const nf = await api(NS, 'GET', '/v1/deferred/batch_nope');
    assert.equal(nf.status, 404);
});
