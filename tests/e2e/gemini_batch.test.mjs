// The gemini-batch backend (issue 33): batch lines offloaded to Google's Gemini Batch Mode
// API, here a mock of it (gemini_mock.mjs) that plays the documented behaviours: the Files
// API's resumable upload, inline and file jobs, slow jobs (pending, then running), lines
// answered with an error status, an expired job, a job cancelled upstream, 429 and 5xx
// answers (retried).
//
//   node --test tests/e2e/gemini_batch.test.mjs
//
// Checked: chat, JSON-schema and tool lines round-trip with results in OpenAI shape (text,
// tool_calls with JSON-string arguments, finish_reason, usage with reasoning tokens); a
// line Gemini answers with INVALID_ARGUMENT is that line's 400; a line that cannot be
// translated is refused naming the field; a big job goes through the resumable upload and
// its responses file is downloaded; a 503'd line, an expired job's and an upstream-cancelled
// job's lines go again in a new job; an Anthropic Message Batch gets Anthropic results; the
// key goes as x-goog-api-key; and after kill -9 with jobs in flight the restarted server
// polls the same jobs (no job created twice) and every custom_id has exactly one result.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { api, submitBatch, waitBatch } from './lib.mjs';
import { BIN, mkTmp, parseJsonl, pollUntil, rmTmp, startServer } from './serve_lib.mjs';
import { startGeminiMock } from './gemini_mock.mjs';

const KEY = 'gm-test-key-8d2f';
let TMP;
let MOCK;
let NS;
let INI;

const ENV = { GEMINI_TEST_KEY: KEY, GEMINI_BAD_KEY: 'not-the-key', NIGHTSHIFT_GEMINI_INLINE_MAX: '20000' };
const start = () => startServer(['--config', INI], { env: ENV, name: 'ns-gemini' });

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN}`);
    TMP = mkTmp('nightshift-gemini-e2e-');
    MOCK = await startGeminiMock({ key: KEY });
    INI = path.join(TMP, 'ns.ini');
    fs.writeFileSync(INI, `[server]\ndata-dir = ${path.join(TMP, 'ns')}\n\n[model flash]\nbackend = gemini-batch\n` +
        `url = ${MOCK.url}\napi_key_env = GEMINI_TEST_KEY\nupstream_model = gemini-2.5-flash\npoll_interval = 0.05\n` +
        `poll_max = 0.2\nflush_after = 0.3\nretry_base = 0.02\nretry_max = 0.1\n\n` +
        `[model badkey]\nbackend = gemini-batch\nurl = ${MOCK.url}/v1beta\napi_key_env = GEMINI_BAD_KEY\n` +
        `upstream_model = models/gemini-2.5-flash\nflush_after = 0.1\nretry_base = 0.02\n`);
    NS = await start();
});

after(async () => {
    if (NS) await NS.stop();
    if (MOCK) await MOCK.close();
    rmTmp(TMP);
});

const chat = (id, text, extra = {}) => ({
    custom_id: id,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'flash', messages: [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: text }], max_tokens: 32, ...extra },
});
const SCHEMA = { type: 'json_schema', json_schema: { name: 'a', strict: true, schema: { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'] } } };
const TOOLS = [{ type: 'function', function: { name: 'weather', description: 'the weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];

async function results(batch) {
    const read = async (id) => (id ? parseJsonl((await api(NS, 'GET', `/v1/files/${id}/content`)).text) : []);
    return { out: await read(batch.output_file_id), errs: await read(batch.error_file_id) };
}
const finished = (x) => ['completed', 'failed', 'expired', 'cancelled'].includes(x.status);

test('chat, JSON-schema and tool lines round-trip inline, with OpenAI-shaped results; 429/503 answers are retried', async () => {
    MOCK.pendingPolls = 2;
    MOCK.runningPolls = 2;
    MOCK.faults.create.push(429);
    MOCK.faults.poll.push(503);
    const c0 = MOCK.stats.creations, f0 = MOCK.stats.faults;
    const lines = [
        chat('c-0', 'hello 0'), chat('c-1', 'hello 1'), chat('c-2', 'hello 2', { temperature: 0.3, stop: ['\n\n'] }),
        chat('j-0', 'json please', { response_format: SCHEMA }), chat('j-1', 'json again', { response_format: { type: 'json_object' } }),
        chat('t-0', 'weather in Paris?', { tools: TOOLS, tool_choice: 'auto' }),
        chat('t-1', 'and then?', { tools: TOOLS, tool_choice: { type: 'function', function: { name: 'weather' } } }),
        chat('bad-0', 'FAIL400 this one'),
        chat('refused-0', 'with logprobs', { logprobs: true }),
    ];
    const b = await submitBatch(NS, lines);
    const done = await waitBatch(NS, b.id, finished, 60_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    const { out, errs } = await results(done);
    assert.equal(out.length + errs.length, lines.length);
    const by = Object.fromEntries([...out, ...errs].map((l) => [l.custom_id, l]));
    for (const id of ['c-0', 'c-1', 'c-2']) {
        const body = by[id].response.body;
        assert.equal(by[id].response.status_code, 200);
        assert.equal(body.object, 'chat.completion');
        assert.equal(body.model, 'flash');
        assert.equal(body.choices[0].message.content, `echo: hello ${id.slice(2)}`);
        assert.equal(body.choices[0].finish_reason, 'stop');
        assert.deepEqual([body.usage.prompt_tokens, body.usage.completion_tokens, body.usage.total_tokens], [11, 7, 18]);
        assert.equal(body.usage.completion_tokens_details.reasoning_tokens, 2);
    }
    assert.deepEqual(JSON.parse(by['j-0'].response.body.choices[0].message.content), { answer: 'json please' });
    assert.deepEqual(JSON.parse(by['j-1'].response.body.choices[0].message.content), { answer: 'json again' });
    for (const id of ['t-0', 't-1']) {
        const ch = by[id].response.body.choices[0];
        assert.equal(ch.finish_reason, 'tool_calls');
        assert.equal(ch.message.tool_calls.length, 1);
        assert.equal(ch.message.tool_calls[0].type, 'function');
        assert.match(ch.message.tool_calls[0].id, /^call_/);
        assert.equal(ch.message.tool_calls[0].function.name, 'weather');
        assert.deepEqual(JSON.parse(ch.message.tool_calls[0].function.arguments), { city: 'Paris' });
    }
    assert.equal(by['bad-0'].response.status_code, 400);
    assert.equal(by['bad-0'].response.body.error.code, 'INVALID_ARGUMENT');
    assert.match(by['bad-0'].response.body.error.message, /FAIL400/);
    assert.equal(by['refused-0'].response.status_code, 400);
    assert.match(by['refused-0'].response.body.error.message, /'logprobs'/);
    assert.equal(by['refused-0'].response.body.error.param, 'logprobs');
    /* what reached Gemini: one inline job (the 429'd create retried), the translated requests */
    assert.equal(MOCK.stats.creations - c0, 1);
    assert.ok(MOCK.stats.faults - f0 >= 2, 'the injected 429 and 503 were met');
    assert.equal(MOCK.stats.badKey, 0);
    const job = [...MOCK.jobs.values()].at(-1);
    assert.equal(job.fromFile, false);
    assert.equal(job.model, 'models/gemini-2.5-flash');
    assert.match(job.display, /^nightshift-flash-/);
    const t1 = job.requests.find((r) => r.request.toolConfig?.functionCallingConfig?.allowedFunctionNames);
    assert.deepEqual(t1.request.toolConfig.functionCallingConfig, { mode: 'ANY', allowedFunctionNames: ['weather'] });
    const j0 = job.requests.find((r) => r.request.generationConfig?.responseJsonSchema);
    assert.equal(j0.request.generationConfig.responseMimeType, 'application/json');
    assert.equal(j0.request.systemInstruction.parts[0].text, 'Answer briefly.');
    MOCK.pendingPolls = 1;
    MOCK.runningPolls = 1;
});

test('a big job goes through the resumable upload and its responses file; a 503 line goes again in a new job', async () => {
    const c0 = MOCK.stats.creations, u0 = MOCK.stats.uploads, d0 = MOCK.stats.downloads;
    const pad = 'x'.repeat(800);
    const lines = Array.from({ length: 40 }, (_, i) => chat(`f-${i}`, `${i === 7 ? 'FLAKY ' : ''}long ${i} ${pad}`));
    MOCK.faults.upload.push(503);
    MOCK.faults.download.push(502);
    const f0 = MOCK.stats.faults;
    const b = await submitBatch(NS, lines);
    const done = await waitBatch(NS, b.id, finished, 60_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    const { out, errs } = await results(done);
    assert.equal(errs.length, 0, JSON.stringify(errs[0]));
    assert.equal(new Set(out.map((l) => l.custom_id)).size, 40);
    for (const l of out) assert.match(l.response.body.choices[0].message.content, /^echo: (FLAKY )?long \d+ x+$/);
    assert.ok(MOCK.stats.uploads - u0 >= 1, 'the JSONL went through the Files API');
    assert.ok(MOCK.stats.downloads - d0 >= 1, 'the responses file was downloaded');
    assert.equal(MOCK.stats.faults - f0, 2, 'the 503 upload and the 502 download were retried');
    assert.equal(MOCK.stats.creations - c0, 2, 'the 503 line went again, alone, in a second job');
    const h = MOCK.stats.uploadHeaders.at(-1);
    assert.equal(h.protocol, 'resumable');
    assert.equal(h.type, 'application/jsonl');
    const jobs = [...MOCK.jobs.values()].slice(-2);
    assert.equal(jobs[0].fromFile, true);
    assert.equal(jobs[0].requests.length, 40);
    assert.equal(jobs[1].requests.length, 1);
});

test('an expired job and a job cancelled upstream: their lines go again in new jobs', async () => {
    const c0 = MOCK.stats.creations;
    const b1 = await submitBatch(NS, [chat('e-0', 'EXPIRE soon'), chat('e-1', 'not me')]);
    const d1 = await waitBatch(NS, b1.id, finished, 60_000);
    assert.equal(d1.status, 'completed', JSON.stringify(d1));
    assert.deepEqual(d1.request_counts, { total: 2, completed: 2, failed: 0 });
    assert.equal(MOCK.stats.creations - c0, 2);
    assert.equal([...MOCK.jobs.values()].at(-2).state, 'BATCH_STATE_EXPIRED');

    MOCK.hold = true;
    const c1 = MOCK.stats.creations;
    const b2 = await submitBatch(NS, [chat('x-0', 'one'), chat('x-1', 'two')]);
    await pollUntil(async () => MOCK.stats.creations, (n) => n > c1, { timeoutMs: 30_000, intervalMs: 20, what: 'the job' });
    MOCK.endJob([...MOCK.jobs.values()].at(-1).name, 'BATCH_STATE_CANCELLED');
    await pollUntil(async () => MOCK.stats.creations, (n) => n > c1 + 1, { timeoutMs: 30_000, intervalMs: 20, what: 'a second job' });
    MOCK.hold = false;
    const d2 = await waitBatch(NS, b2.id, finished, 60_000);
    assert.equal(d2.status, 'completed', JSON.stringify(d2));
    const { out } = await results(d2);
    assert.deepEqual(out.map((l) => l.response.body.choices[0].message.content).sort(), ['echo: one', 'echo: two']);
});

test('an Anthropic Message Batch on a gemini-batch model gets Anthropic-shaped results', async () => {
    const requests = [0, 1].map((i) => ({ custom_id: `a-${i}`, params: { model: 'flash', max_tokens: 16, system: 'Be brief.', messages: [{ role: 'user', content: `anthropic ${i}` }] } }));
    const cr = await api(NS, 'POST', '/v1/messages/batches', JSON.stringify({ requests }), { 'content-type': 'application/json' });
    assert.equal(cr.status, 200, cr.text);
    const id = cr.json().id;
    const b = await pollUntil(async () => (await api(NS, 'GET', `/v1/messages/batches/${id}`)).json(), (x) => x.processing_status === 'ended',
        { timeoutMs: 60_000, intervalMs: 100, what: 'the message batch' });
    assert.deepEqual(b.value.request_counts.succeeded, 2, JSON.stringify(b.value));
    const rs = parseJsonl((await api(NS, 'GET', `/v1/messages/batches/${id}/results`)).text);
    for (const r of rs) {
        assert.equal(r.result.type, 'succeeded');
        assert.equal(r.result.message.type, 'message');
        /* Gemini's thought parts are the message's thinking block, its text the text block */
        const blocks = Object.fromEntries(r.result.message.content.map((c) => [c.type, c]));
        assert.equal(blocks.thinking?.thinking, 'hmm', JSON.stringify(r.result.message.content));
        assert.equal(blocks.text.text, `echo: anthropic ${r.custom_id.slice(2)}`);
        assert.equal(r.result.message.usage.input_tokens, 11);
    }
    const job = [...MOCK.jobs.values()].at(-1);
    assert.equal(job.requests[0].request.systemInstruction.parts[0].text, 'Be brief.');
});

test('a real-time request is refused with a pointer to the batch API', async () => {
    const r = await api(NS, 'POST', '/v1/chat/completions', JSON.stringify({ model: 'flash', messages: [{ role: 'user', content: 'hi' }] }),
        { 'content-type': 'application/json' });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json().error.message, /gemini-batch.*batch/);
});

test('kill -9 with Gemini jobs in flight: the restart polls the same jobs, no job is created twice, every line once', async () => {
    MOCK.hold = true;
    const N = 30;
    const c0 = MOCK.stats.creations;
    /* two jobs: a file one and an inline one (small lines after the big ones) */
    const pad = 'y'.repeat(900);
    const big = Array.from({ length: N }, (_, i) => chat(`k-${i}`, `kill ${i} ${pad}`));
    const b = await submitBatch(NS, big);
    await pollUntil(async () => [...MOCK.jobs.values()].slice(c0).reduce((n, j) => n + j.requests.length, 0),
        (n) => n >= N, { timeoutMs: 30_000, intervalMs: 20, what: 'every line upstream' });
    const small = await submitBatch(NS, [chat('s-0', 'small 0'), chat('s-1', 'small 1'), chat('s-1b', 'small 1')]);
    await pollUntil(async () => MOCK.stats.creations, (n) => n >= c0 + 2, { timeoutMs: 30_000, intervalMs: 20, what: 'the second job' });
    const created = MOCK.stats.creations;
    NS.child.kill('SIGKILL');
    await new Promise((r) => (NS.child.exitCode !== null || NS.child.signalCode !== null ? r() : NS.child.once('close', r)));
    NS = await start();
    MOCK.hold = false;
    const done = await waitBatch(NS, b.id, finished, 90_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    const { out, errs } = await results(done);
    assert.equal(errs.length, 0, JSON.stringify(errs[0]));
    assert.equal(out.length, N, 'every line once');
    assert.equal(new Set(out.map((l) => l.custom_id)).size, N);
    for (const l of out) assert.match(l.response.body.choices[0].message.content, new RegExp(`^echo: kill ${l.custom_id.slice(2)} y+$`));
    const d2 = await waitBatch(NS, small.id, finished, 60_000);
    assert.equal(d2.status, 'completed');
    const r2 = await results(d2);
    assert.deepEqual(r2.out.map((l) => l.custom_id).sort(), ['s-0', 's-1', 's-1b']);
    assert.equal(MOCK.stats.creations, created, 'no job was created again after the restart');
    assert.match(NS.stderr(), /from before the restart/);
});

test('kill -9 during the create call: the restart finds the job by its displayName instead of creating another', async () => {
    MOCK.hold = true;
    MOCK.createDelayMs = 5000;
    const c0 = MOCK.stats.creations;
    const b = await submitBatch(NS, [chat('d-0', 'during 0'), chat('d-1', 'during 1')]);
    await pollUntil(async () => MOCK.stats.creations, (n) => n > c0, { timeoutMs: 30_000, intervalMs: 10, what: 'the create call' });
    NS.child.kill('SIGKILL');
    await new Promise((r) => (NS.child.exitCode !== null || NS.child.signalCode !== null ? r() : NS.child.once('close', r)));
    MOCK.createDelayMs = 0;
    NS = await start();
    MOCK.hold = false;
    const done = await waitBatch(NS, b.id, finished, 60_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    const { out } = await results(done);
    assert.deepEqual(out.map((l) => l.response.body.choices[0].message.content).sort(), ['echo: during 0', 'echo: during 1']);
    assert.equal(MOCK.stats.creations, c0 + 1, 'the job created before the kill was found, not created again');
});

test('cancelling the nightshift batch cancels its Gemini job', async () => {
    MOCK.hold = true;
    const c0 = MOCK.stats.creations, k0 = MOCK.stats.cancels;
    const b = await submitBatch(NS, [chat('z-0', 'cancel 0'), chat('z-1', 'cancel 1'), chat('z-2', 'cancel 2')]);
    await pollUntil(async () => MOCK.stats.creations, (n) => n > c0, { timeoutMs: 30_000, intervalMs: 20, what: 'the job' });
    const job = [...MOCK.jobs.values()].at(-1);
    const cr = await api(NS, 'POST', `/v1/batches/${b.id}/cancel`);
    assert.equal(cr.status, 200, cr.text);
    const done = await waitBatch(NS, b.id, finished, 30_000);
    MOCK.hold = false;
    assert.equal(done.status, 'cancelled', JSON.stringify(done));
    assert.equal(MOCK.stats.cancels - k0, 1, 'POST batches/{name}:cancel was sent');
    assert.equal(job.state, 'BATCH_STATE_CANCELLED');
    const { out, errs } = await results(done);
    assert.equal(out.length, 0);
    assert.deepEqual(errs.map((l) => l.custom_id).sort(), ['z-0', 'z-1', 'z-2']);
    assert.equal(MOCK.stats.creations, c0 + 1, 'nothing went again');
});

test('malformed answers (no upload URL, no file name, no batch name, not JSON) are retried until a job is made', async () => {
    const c0 = MOCK.stats.creations, f0 = MOCK.stats.faults;
    Object.assign(MOCK.bad, { startNoUrl: 1, finalizeNoName: 1, createNoName: 1, createNotJson: 1, pollNotJson: 1 });
    const pad = 'm'.repeat(900);
    const lines = Array.from({ length: 30 }, (_, i) => chat(`m-${i}`, `malformed ${i} ${pad}`));
    const b = await submitBatch(NS, lines);
    const done = await waitBatch(NS, b.id, finished, 60_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.deepEqual(done.request_counts, { total: 30, completed: 30, failed: 0 });
    assert.equal(MOCK.stats.faults - f0, 5, 'every malformed answer was met');
    assert.equal(MOCK.stats.creations - c0, 1);
    assert.match(NS.stderr(), /no X-Goog-Upload-URL/);
    assert.match(NS.stderr(), /answered no file name/);
    assert.match(NS.stderr(), /has no batch name/);
});

test('a key Gemini refuses fails the lines with its answer (and the key is never echoed)', async () => {
    const lines = [0, 1].map((i) => ({ ...chat(`bk-${i}`, `bad key ${i}`), body: { ...chat('', '').body, model: 'badkey' } }));
    const b = await submitBatch(NS, lines);
    const done = await waitBatch(NS, b.id, finished, 60_000);
    const { out, errs } = await results(done);
    assert.equal(out.length, 0);
    assert.equal(errs.length, 2);
    for (const e of errs) {
        assert.equal(e.response.status_code, 401, JSON.stringify(e));
        assert.match(e.response.body.error.message, /refused the batch.*API key not valid/);
        assert.doesNotMatch(JSON.stringify(e), /not-the-key/);
    }
    assert.doesNotMatch(NS.stderr(), /not-the-key|gm-test-key/);
});

test('gemini-batch without any key: the server says which variable to set', async () => {
    const ini = path.join(TMP, 'nokey.ini');
    fs.writeFileSync(ini, `[server]\ndata-dir = ${path.join(TMP, 'nokey')}\n\n[model g]\nbackend = gemini-batch\nupstream_model = gemini-2.5-flash\n`);
    await assert.rejects(startServer(['--config', ini], { env: { GEMINI_API_KEY: '' }, name: 'nokey' }),
        /backend gemini-batch needs an API key: set GEMINI_API_KEY, or name another variable with api_key_env/);
});

test('a flex call waits for its job; inline responses without metadata are keyed by their order', async () => {
    MOCK.inlineNoMetadata = true;
    const call = (t) => api(NS, 'POST', '/v1/chat/completions', JSON.stringify({ model: 'flash', service_tier: 'flex', messages: [{ role: 'user', content: t }] }),
        { 'content-type': 'application/json' });
    const [a, b] = await Promise.all([call('flex a'), call('flex b')]);
    MOCK.inlineNoMetadata = false;
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json().choices[0].message.content, 'echo: flex a');
    assert.equal(b.json().choices[0].message.content, 'echo: flex b');
    assert.equal(a.json().object, 'chat.completion');
});

test('kill -9 before the create call reached Gemini: the recorded job is not found, its lines go in a new job', async () => {
    MOCK.dropCreate = true;
    const c0 = MOCK.stats.creations, x0 = MOCK.stats.dropped;
    const b = await submitBatch(NS, [chat('n-0', 'never 0'), chat('n-1', 'never 1')]);
    await pollUntil(async () => MOCK.stats.dropped, (n) => n > x0, { timeoutMs: 30_000, intervalMs: 10, what: 'the create call' });
    NS.child.kill('SIGKILL');
    await new Promise((r) => (NS.child.exitCode !== null || NS.child.signalCode !== null ? r() : NS.child.once('close', r)));
    MOCK.dropCreate = false;
    NS = await start();
    const done = await waitBatch(NS, b.id, finished, 60_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    const { out } = await results(done);
    assert.deepEqual(out.map((l) => l.response.body.choices[0].message.content).sort(), ['echo: never 0', 'echo: never 1']);
    assert.equal(MOCK.stats.creations, c0 + 1);
    assert.match(NS.stderr(), /was never created upstream: its lines go again/);
});

test('a state file that cannot be written is reported; the batch still completes', async () => {
    const ini = path.join(TMP, 'fault.ini');
    fs.writeFileSync(ini, fs.readFileSync(INI, 'utf8').replace(/data-dir = .*/, `data-dir = ${path.join(TMP, 'fault')}`));
    /* the 1st durable rename is the batch input file's, the 2nd this model's state file */
    const s = await startServer(['--config', ini], { env: { ...ENV, NIGHTSHIFT_FAULT_DURABLE: 'rename:2' }, name: 'ns-fault' });
    try {
        const b = await submitBatch(s, [chat('w-0', 'write 0')]);
        const done = await waitBatch(s, b.id, finished, 60_000);
        assert.equal(done.status, 'completed', JSON.stringify(done));
        assert.match(s.stderr(), /cannot write .*gemini-batch-flash\.json .*after a crash its Gemini jobs would be submitted again/);
    } finally {
        await s.stop();
    }
});
