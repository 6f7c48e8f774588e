// Upstream backends (issue 5): `nightshift serve --config` routing models to an
// OpenAI-compatible server. The upstream is llama.cpp's own llama-server (built from the same
// bundle by scripts/bootstrap.sh --tools), a real OpenAI-compatible server nobody here wrote,
// serving a generated random-weight model. Between them, for some models, a small
// fault-injecting proxy (this file) answers 429 with Retry-After, 500, stalls past the
// configured timeout, or resets the connection.
//
//   node --test tests/e2e/upstream.test.mjs
//
// Checked: a 500-line batch completes with every line; under a 20% fault rate every line
// ends as a success or as the right error, none lost, none duplicated, retries within the
// budget; a non-retryable 4xx is the line's error as the upstream gave it; the circuit
// breaker opens, fails real-time requests fast, and closes again; the API key reaches the
// upstream but never the logs, the store, batch objects or output files; bad configs give
// errors that name the file and line.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';

import { api, runNs, submitBatch, waitBatch } from './lib.mjs';
import { BIN, SPM_VOCAB, VOCAB_DIR, ensureNpmDeps, mkTmp, parseJsonl, pollUntil, rmTmp, sleep, startServer } from './serve_lib.mjs';

const SECRET = 'sk-upstream-secret-5b1f0c9e77d2';
const LLAMA_SERVER = path.join(VOCAB_DIR, '..', '..', 'bin', 'llama-server');

let TMP;
let UP; // llama-server: { port, child }
let PROXY; // fault proxy over UP
let DOWN; // a proxy that answers 503 (or passes through when healed)
let NS; // nightshift serve --config
let OpenAI;

async function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
        s.on('error', reject);
    });
}

async function startLlamaServer(model) {
    const port = await freePort();
    const child = spawn(LLAMA_SERVER, ['-m', model, '--host', '127.0.0.1', '--port', String(port), '-np', '8', '-c', '8192',
        '-t', '1', '--no-webui'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d) => (log = (log + d).slice(-8000)));
    await pollUntil(async () => {
        if (child.exitCode !== null) throw new Error(`llama-server exited (${child.exitCode}):\n${log}`);
        try {
            return (await fetch(`http://127.0.0.1:${port}/health`)).status;
        } catch {
            return 0;
        }
    }, (s) => s === 200, { timeoutMs: 60_000, what: 'llama-server /health' });
    return { port, child, log: () => log };
}

/* A proxy to llama-server. mode(n) picks what request n gets: 'pass', '429', '500',
 * 'stall' (never answers: the client's timeout ends it), 'reset' (socket destroyed), '503'.
 * Counts requests and checks the Authorization header. */
function startProxy(upPort, mode) {
    const st = { n: 0, faults: 0, byMode: {}, badAuth: 0, bodies: [] };
    const server = http.createServer((req, res) => {
        let body = '';
        req.on('data', (d) => (body += d));
        req.on('end', () => {
            const n = st.n++;
            if (req.headers.authorization !== `Bearer ${SECRET}`) {
                st.badAuth++;
                res.writeHead(401, { 'content-type': 'application/json' });
                res.end(JSON.stringify({ error: { message: 'bad key', type: 'authentication_error' } }));
                return;
            }
            const m = mode(n, body);
            st.bodies.push({ body, m });
            st.byMode[m] = (st.byMode[m] || 0) + 1;
            if (m !== 'pass') st.faults++;
            if (m === '429') {
                res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' });
                res.end(JSON.stringify({ error: { message: 'slow down', type: 'rate_limit_error' } }));
            } else if (m === '500' || m === '503') {
                res.writeHead(Number(m), { 'content-type': 'application/json' });
                res.end(JSON.stringify({ error: { message: `injected ${m}`, type: 'server_error' } }));
            } else if (m === 'stall') {
                /* hold it; nightshift's per-request timeout (2 s here) gives up first */
                setTimeout(() => req.socket.destroy(), 10_000);
            } else if (m === 'reset') {
                req.socket.destroy();
            } else {
                const up = http.request({ host: '127.0.0.1', port: upPort, path: req.url, method: req.method,
                    headers: { 'content-type': 'application/json' } }, (ur) => {
                    res.writeHead(ur.statusCode, { 'content-type': ur.headers['content-type'] || 'application/json' });
                    ur.pipe(res);
                });
                up.on('error', () => req.socket.destroy());
                up.end(body);
            }
        });
    });
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ port: server.address().port, st, server,
        close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) })));
}

/* a deterministic PRNG, so a failing run can be replayed */
function mulberry32(a) {
    return () => {
        a |= 0;
        a = (a + 0x6d2b79f5) | 0;
        let t = Math.imul(a ^ (a >>> 15), 1 | a);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

let downHealed = false;
let SLOW; // an upstream that answers after 100 ms and measures how many requests it holds

/* an OpenAI-compatible upstream with a fixed latency; integrates its in-flight count over
 * time (from the first request to the last answer) */
function startSlowUpstream(delayMs) {
    const st = { inflight: 0, area: 0, last: 0, first: 0, end: 0, max: 0 };
    const tick = () => {
        const now = performance.now();
        if (st.last) st.area += st.inflight * (now - st.last);
        st.last = now;
    };
    return new Promise((resolve) => {
        const server = http.createServer((req, res) => {
            req.resume();
            req.on('end', () => {
                tick();
                if (!st.first) st.first = st.last;
                st.inflight++;
                st.max = Math.max(st.max, st.inflight);
                setTimeout(() => {
                    tick();
                    st.inflight--;
                    st.end = st.last;
                    res.writeHead(200, { 'content-type': 'application/json' });
                    res.end(JSON.stringify({ id: 'chatcmpl-slow', object: 'chat.completion', created: 0, model: 'slow',
                        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
                        usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }));
                }, delayMs);
            });
        });
        server.keepAliveTimeout = 60_000;
        server.listen(0, '127.0.0.1', () => resolve({ port: server.address().port, st,
            mean: () => st.area / (st.end - st.first), close: () => new Promise((r) => server.close(r)) }));
    });
}
/* an upstream that answers at once and closes a kept-alive connection after 150 ms idle */
let CLOSING;
function startClosingUpstream() {
    return new Promise((resolve) => {
        const server = http.createServer((req, res) => {
            req.resume();
            req.on('end', () => {
                res.writeHead(200, { 'content-type': 'application/json' });
                res.end(JSON.stringify({ id: 'chatcmpl-c', object: 'chat.completion', created: 0, model: 'closing',
                    choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
                    usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }));
            });
        });
        server.keepAliveTimeout = 150;
        server.listen(0, '127.0.0.1', () => resolve({ port: server.address().port, close: () => new Promise((r) => server.close(r)) }));
    });
}
let INI; // the config file NS runs with
let INI_TEXT;

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN}`);
    assert.ok(fs.existsSync(LLAMA_SERVER), `llama-server is missing: ${LLAMA_SERVER} (scripts/bootstrap.sh --tools builds it)`);
    await ensureNpmDeps();
    OpenAI = (await import('openai')).default;
    TMP = mkTmp('nightshift-upstream-e2e-');
    const model = path.join(TMP, 'tiny.gguf');
    const g = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', model, '--seed', '3'], { timeoutMs: 60_000 });
    assert.equal(g.code, 0, g.stderr);
    UP = await startLlamaServer(model);
    const rnd = mulberry32(12345);
    const FAULTS = ['429', '500', 'stall', 'reset'];
    PROXY = await startProxy(UP.port, () => (rnd() < 0.2 ? FAULTS[Math.floor(rnd() * FAULTS.length)] : 'pass'));
    DOWN = await startProxy(UP.port, () => (downHealed ? 'pass' : '503'));
    SLOW = await startSlowUpstream(100);
    CLOSING = await startClosingUpstream();
    const ini = path.join(TMP, 'nightshift.ini');
    INI = ini;
    fs.writeFileSync(ini, INI_TEXT = `# upstream e2e
[server]
data-dir = ${path.join(TMP, 'data')}
parallel = 4

[model direct]
backend = openai-http
url = http://127.0.0.1:${UP.port}/v1
upstream_model = tiny
concurrency = 8

[model flaky]
backend = openai-http
url = http://127.0.0.1:${PROXY.port}/v1
api_key_env = UPSTREAM_KEY
concurrency = 8
max_attempts = 8
timeout = 2
retry_base = 0.05
retry_max = 0.5
circuit_failures = 1000

[model down]
backend = openai-http
url = http://127.0.0.1:${DOWN.port}/v1/
api_key_env = UPSTREAM_KEY
max_attempts = 2
retry_base = 0.01
circuit_failures = 3
circuit_cooldown = 1

[model slow]
backend = openai-http
url = http://127.0.0.1:${SLOW.port}/v1
concurrency = 8

[model closing]
backend = openai-http
url = http://127.0.0.1:${CLOSING.port}/v1
concurrency = 8

[model local]
backend = local
path = ${model}
`);
    NS = await startServer(['--config', ini], { env: { UPSTREAM_KEY: SECRET }, name: 'ns' });
});

after(async () => {
    if (NS) await NS.stop();
    for (const p of [PROXY, DOWN, SLOW, CLOSING]) if (p) await p.close();
    if (UP) UP.child.kill('SIGKILL');
    rmTmp(TMP);
});

const chat = (i, model, extra = {}) => ({
    custom_id: `r-${i}`,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model, messages: [{ role: 'user', content: `item ${i}: say something` }], max_tokens: 6, temperature: 0, ...extra },
});

async function outputs(batch) {
    const read = async (id) => (id ? parseJsonl((await api(NS, 'GET', `/v1/files/${id}/content`)).text) : []);
    return { out: await read(batch.output_file_id), errs: await read(batch.error_file_id) };
}

test('a 500-line batch on llama-server through openai-http completes with every line', async () => {
    const lines = Array.from({ length: 500 }, (_, i) => chat(i, 'direct'));
    const b = await submitBatch(NS, lines);
    const done = await waitBatch(NS, b.id, (x) => ['completed', 'failed'].includes(x.status), 300_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.deepEqual(done.request_counts, { total: 500, completed: 500, failed: 0 });
    const { out, errs } = await outputs(done);
    assert.equal(errs.length, 0);
    assert.equal(out.length, 500);
    assert.deepEqual(new Set(out.map((l) => l.custom_id)).size, 500);
    for (const l of out) {
        assert.equal(l.response.status_code, 200);
        const body = l.response.body;
        assert.equal(body.object, 'chat.completion');
        assert.equal(body.model, 'direct', 'the client gets its own model name back');
        assert.equal(typeof body.choices[0].message.content, 'string');
        assert.ok(body.usage.completion_tokens > 0 && body.usage.prompt_tokens > 0);
    }
});

test('20% faults (429 + Retry-After, 500, stalls, resets): every line once, success or the right error, retries within budget', async () => {
    const N = 150;
    const before = PROXY.st.n;
    /* a few lines the upstream rejects for good: a 400 passed on as it came, never retried */
    const lines = Array.from({ length: N }, (_, i) => (i % 25 === 7 ? chat(i, 'flaky', { max_tokens: -5 }) : chat(i, 'flaky')));
    const bad = new Set(lines.filter((l) => l.body.max_tokens === -5).map((l) => l.custom_id));
    const b = await submitBatch(NS, lines);
    const done = await waitBatch(NS, b.id, (x) => ['completed', 'failed'].includes(x.status), 300_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    const { out, errs } = await outputs(done);
    const seen = [...out, ...errs].map((l) => l.custom_id);
    assert.equal(seen.length, N, 'every line exactly once');
    assert.equal(new Set(seen).size, N, 'no line twice');
    for (const l of errs) {
        if (bad.has(l.custom_id)) {
            assert.equal(l.response.status_code, 400, JSON.stringify(l));
            assert.match(JSON.stringify(l.response.body), /max_tokens/, 'the upstream\'s own error body');
        } else {
            /* 8 tries all faulty: possible (0.2^8 per line), and then a 502 that says so */
            assert.equal(l.response.status_code, 502, JSON.stringify(l));
            assert.match(l.response.body.error.message, /failed 8 times/);
        }
    }
    for (const l of out) assert.ok(!bad.has(l.custom_id));
    assert.equal(errs.filter((l) => bad.has(l.custom_id)).length, bad.size);
    const sent = PROXY.st.n - before;
    assert.equal(PROXY.st.badAuth, 0, 'the key reached the upstream on every try');
    assert.ok(PROXY.st.faults > 10, `faults were injected (${JSON.stringify(PROXY.st.byMode)})`);
    assert.ok(sent <= N * 8, `tries within the budget: ${sent} for ${N} lines`);
    assert.ok(sent >= N + PROXY.st.faults - 1, `every fault was retried: ${sent} tries, ${PROXY.st.faults} faults`);
    /* the rejected lines went upstream once each */
    const badBodies = PROXY.st.bodies.filter((x) => x.m === 'pass' && x.body.includes('"max_tokens":-5'));
    assert.equal(badBodies.length, bad.size, 'a 4xx is final, not retried');
    const m = (await api(NS, 'GET', '/metrics')).text;
    assert.match(m, /nightshift_backend_retries_total\{model="flaky",backend="openai-http"\} [1-9]/);
    assert.match(m, /nightshift_backend_rate_limited_total\{model="flaky",backend="openai-http"\} [1-9]/);
});

test('real-time requests through the official openai SDK, streamed and not', async () => {
    const client = new OpenAI({ baseURL: `${NS.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const r = await client.chat.completions.create({ model: 'direct', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, 'direct');
    assert.ok(r.usage.completion_tokens > 0);
    const stream = await client.chat.completions.create({ model: 'direct', messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 5, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let finish = null;
    let usage = null;
    for await (const c of stream) {
        if (c.choices[0]?.delta?.content) text += c.choices[0].delta.content;
        if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
        if (c.usage) usage = c.usage;
    }
    assert.ok(text.length > 0);
    assert.ok(['length', 'stop'].includes(finish));
    assert.ok(usage && usage.completion_tokens > 0);
    /* fields the local engine does not implement still reach an upstream */
    const lp = await api(NS, 'POST', '/v1/chat/completions', JSON.stringify({ model: 'direct', messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 3, logprobs: true, top_logprobs: 2 }), { 'content-type': 'application/json' });
    assert.equal(lp.status, 200, lp.text);
    assert.ok(lp.json().choices[0].logprobs, 'logprobs came back from llama-server');
    /* an upstream 400 comes back as it was */
    await assert.rejects(client.chat.completions.create({ model: 'direct', messages: [{ role: 'user', content: 'hi' }], max_tokens: -5 }),
        (e) => e.status === 400 && /max_tokens/.test(e.message));
    /* the local model beside them still works */
    const loc = await client.chat.completions.create({ model: 'local', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
    assert.equal(loc.model, 'local');
    /* Anthropic's count_tokens is answered for local models; an upstream counts its own */
    const count = (model) => api(NS, 'POST', '/v1/messages/count_tokens', JSON.stringify({ model,
        messages: [{ role: 'user', content: 'hi' }] }), { 'content-type': 'application/json' });
    const cl = await count('local');
    assert.equal(cl.status, 200, cl.text);
    assert.ok(cl.json().input_tokens > 0);
    const cu = await count('direct');
    assert.equal(cu.status, 400, cu.text);
    assert.equal(cu.json().error.type, 'invalid_request_error');
    assert.match(cu.json().error.message, /served by an upstream, which counts its own tokens/);
});

test('the circuit breaker opens on a failing upstream, fails real-time requests fast, then closes', async () => {
    const call = () => api(NS, 'POST', '/v1/chat/completions', JSON.stringify({ model: 'down', messages: [{ role: 'user', content: 'x' }],
        max_tokens: 2 }), { 'content-type': 'application/json' });
    /* two requests of two tries each: the third failed try opens the circuit */
    const a = await call();
    assert.equal(a.status, 502, a.text);
    assert.match(a.json().error.message, /failed 2 times; last: HTTP 503: injected 503/);
    const b = await call();
    assert.ok([502, 503].includes(b.status), b.text);
    const t0 = Date.now();
    const c = await call();
    assert.equal(c.status, 503, c.text);
    assert.match(c.json().error.message, /circuit open/);
    assert.ok(Date.now() - t0 < 500, 'failed fast');
    let m = (await api(NS, 'GET', '/metrics')).text;
    assert.match(m, /nightshift_backend_circuit_state\{model="down",backend="openai-http"\} 1/);
    /* healed: after the cooldown one probe goes through and closes the circuit */
    downHealed = true;
    const d = await pollUntil(call, (x) => x.status === 200, { timeoutMs: 15_000, intervalMs: 200, what: 'the circuit to close' });
    assert.ok(d.seen.every((x) => [200, 503].includes(x.status)), 'while open: fast 503s');
    m = (await api(NS, 'GET', '/metrics')).text;
    assert.match(m, /nightshift_backend_circuit_state\{model="down",backend="openai-http"\} 0/);
});

test('the API key never appears in logs, the store, batch objects or files', async () => {
    const b = await submitBatch(NS, [chat(1, 'flaky'), chat(2, 'down')]);
    const done = await waitBatch(NS, b.id, (x) => ['completed', 'failed'].includes(x.status), 120_000);
    const texts = [NS.stderr(), JSON.stringify(done), (await api(NS, 'GET', '/v1/batches')).text, (await api(NS, 'GET', '/metrics')).text];
    const { out, errs } = await outputs(done);
    texts.push(JSON.stringify(out), JSON.stringify(errs));
    for (const t of texts) assert.ok(!t.includes(SECRET), 'the key leaked');
    /* every byte the server wrote to its data dir */
    const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
    for (const f of walk(path.join(TMP, 'data')))
        assert.ok(!fs.readFileSync(f).includes(Buffer.from(SECRET)), `the key is in ${f}`);
});

test('SIGHUP re-reads the config: limits and prices change live; a broken config is refused and the old one kept', async () => {
    const limit = async () => Number(/nightshift_backend_concurrency_limit\{model="direct",backend="openai-http"\} (\d+)/.exec(
        (await api(NS, 'GET', '/metrics')).text)[1]);
    assert.equal(await limit(), 8);
    fs.writeFileSync(INI, INI_TEXT.replace('upstream_model = tiny\nconcurrency = 8', 'upstream_model = tiny\nconcurrency = 3\nprice_input = 1\nprice_output = 2\nbatch_discount = 0.25') +
        '\n[model brand-new]\nbackend = openai-http\nurl = http://127.0.0.1:1/v1\n');
    NS.child.kill('SIGHUP');
    await pollUntil(limit, (v) => v === 3, { timeoutMs: 10_000, what: 'the reloaded concurrency' });
    await pollUntil(async () => NS.stderr(), (e) => /reloaded .*nightshift\.ini: 6 models updated/.test(e), { timeoutMs: 10_000, what: 'the reload log' });
    assert.match(NS.stderr(), /reload: model 'brand-new' is new: restart to serve it/);
    const b = await submitBatch(NS, [chat(1, 'direct'), chat(2, 'direct')]);
    const done = await waitBatch(NS, b.id, (x) => x.status === 'completed', 60_000);
    const u = done.usage;
    const rt = (u.input_tokens * 1 + u.output_tokens * 2) / 1e6;
    assert.ok(Math.abs(done.nightshift.realtime_cost_usd - rt) < 1e-12, JSON.stringify(done.nightshift));
    assert.ok(Math.abs(done.nightshift.cost_usd - rt * 0.75) < 1e-12, JSON.stringify(done.nightshift));
    assert.ok(Math.abs(done.nightshift.savings_usd - rt * 0.25) < 1e-12, JSON.stringify(done.nightshift));
    const met = (await api(NS, 'GET', '/metrics')).text;
    assert.match(met, /nightshift_cost_usd_total\{model="direct"\} 0\.0\d+/);
    assert.match(met, /nightshift_savings_usd_total\{model="direct"\} 0\.0\d+/);
    fs.writeFileSync(INI, INI_TEXT + '\n[model x]\nbackend = nope\n');
    NS.child.kill('SIGHUP');
    await pollUntil(async () => NS.stderr(), (e) => /reload failed, keeping the running configuration: .*unknown backend 'nope'/.test(e),
        { timeoutMs: 10_000, what: 'the refused reload' });
    assert.equal(await limit(), 3, 'the running limits stay');
    assert.equal((await api(NS, 'GET', '/health')).status, 200);
    fs.writeFileSync(INI, INI_TEXT);
});

test('nightshift run --config: a batch file on an upstream model, resumable, upstream errors as they came', async () => {
    const dir = path.join(TMP, 'run');
    fs.mkdirSync(dir);
    const input = path.join(dir, 'in.jsonl');
    const out = path.join(dir, 'out.jsonl');
    const lines = Array.from({ length: 60 }, (_, i) => chat(i, 'direct', i === 7 ? { max_tokens: -5 } : {}));
    fs.writeFileSync(input, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const env = { UPSTREAM_KEY: SECRET }; /* the whole file is checked, other models' keys too */
    const r = await runNs(['run', input, '-o', out, '--config', INI, '--model', 'direct', '--summary', path.join(dir, 's.json')],
        { timeoutMs: 120_000, env });
    assert.equal(r.code, 0, r.stderr);
    const ok = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const errs = fs.readFileSync(path.join(dir, 'out.errors.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(ok.length, 59);
    assert.equal(errs.length, 1);
    assert.equal(errs[0].custom_id, 'r-7');
    assert.equal(errs[0].response.status_code, 400);
    assert.match(JSON.stringify(errs[0].response.body), /max_tokens/);
    for (const l of ok) {
        assert.equal(l.response.body.model, 'direct');
        assert.ok(l.response.body.usage.completion_tokens > 0);
    }
    /* the same command again: everything is done, nothing is sent */
    const again = await runNs(['run', input, '-o', out, '--config', INI, '--model', 'direct'], { timeoutMs: 60_000, env });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(fs.readFileSync(out, 'utf8').trim().split('\n').length, 59);
    const bad = await runNs(['run', input, '-o', out, '--config', INI, '--model', 'nope'], { timeoutMs: 30_000, env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /no \[model nope\] section \(it has: direct, flaky, down, slow, closing, local\)/);
});

test('nightshift doctor --config checks each upstream backend with its key', async () => {
    const ini = path.join(TMP, 'doctor.ini');
    fs.writeFileSync(ini, `[server]\ndata-dir = ${path.join(TMP, 'doctor-data')}\n\n` +
        `[model direct]\nbackend = openai-http\nurl = http://127.0.0.1:${UP.port}/v1\n\n` +
        `[model keyed]\nbackend = openai-http\nurl = http://127.0.0.1:${PROXY.port}/v1\napi_key_env = WRONG_KEY\n\n` +
        `[model gone]\nbackend = openai-batch\nurl = http://127.0.0.1:1/v1\n`);
    const r = await runNs(['doctor', '--config', ini], { timeoutMs: 60_000, env: { WRONG_KEY: 'sk-wrong' } });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^ok {4}backend 'direct' \(openai-http\): http:\/\/127\.0\.0\.1:\d+\/v1\/models answers \(HTTP 200\)$/m);
    assert.match(r.stdout, /^FAIL {2}backend 'keyed' \(openai-http\): .* refused the key \(HTTP 401\): check api_key_env$/m);
    assert.match(r.stdout, /^FAIL {2}backend 'gone' \(openai-batch\): cannot reach http:\/\/127\.0\.0\.1:1\/v1\/models: /m);
    assert.ok(!r.stdout.includes('sk-wrong') && !r.stderr.includes('sk-wrong'));
});

test('bad configs: errors name the file, the line and the fix', async () => {
    const cases = [
        ['[model a]\nbackend = openai-http\nurl = ftp://x\n', /:3: \[model a\]: url must start with http/],
        ['[model a]\nbackend = carrier-pigeon\n', /:2: \[model a\]: unknown backend 'carrier-pigeon' \(known: local, openai-http, openai-batch, anthropic-batch, gemini-batch\)/],
        ['[model a]\nbackend = openai-http\nurl = http://x/v1\napi_key = sk-123\n', /:4: .*keys are not read from the config file/],
        ['[model a]\nbackend = openai-http\nurl = http://x/v1\napi_key_env = NS_TEST_UNSET_VAR\n', /:4: .*NS_TEST_UNSET_VAR, which is not set/],
        ['[model a]\nbackend = openai-http\nurl = http://x/v1\nconcurrency = lots\n', /:4: concurrency must be an integer from 1 to 4096, not 'lots'/],
        ['[model a]\nbackend = openai-http\nurl = http://x/v1\ncolour = red\n', /:4: \[model a\]: unknown key 'colour'/],
        ['[model a]\nbackend = openai-http\n', /\[model a\]: backend openai-http needs url/],
        ['[model a]\nbackend = local\n', /\[model a\]: backend local needs path/],
        ['[server]\nlisten = 127.0.0.1:0\nfrobnicate = 1\n', /:3: \[server\]: unknown option 'frobnicate'/],
        ['[server]\napi-key = hunter2\n', /:2: .*keys are never read from the config file/],
        ['[server]\nkv-unified = maybe\n', /:2: .*a switch: true or false/],
        ['[models]\nx = 1\n', /:2: unknown section \[models\]/],
        ['orphan = 1\n', /:1: 'orphan' is outside any section/],
        ['[model a]\nbackend = openai-http\nurl = http://x/v1\n[model b]\nurl = http://x/v1\n[model a]\nurl = http://y/v1\n',
            /:7: model 'a' is defined twice/],
        ['[model a]\nbackend = openai-http\nurl = http://x/v1\nurl = http://y/v1\n', /:4: \[model a\]: url is given twice/],
        ['[model a]\nthis line is not ini\n', /:2: not a 'key = value' line/],
    ];
    for (const [text, want] of cases) {
        const f = path.join(TMP, 'bad.ini');
        fs.writeFileSync(f, text);
        const r = await runNs(['serve', '--config', f, '--listen', '127.0.0.1:0'], { timeoutMs: 30_000 });
        assert.equal(r.code, 2, `exit 2 for ${JSON.stringify(text)}: ${r.stderr}`);
        assert.match(r.stderr, want, `for ${JSON.stringify(text)}`);
        assert.ok(r.stderr.includes(f), 'names the file');
    }
    const r = await runNs(['serve', '--config', path.join(TMP, 'missing.ini')], { timeoutMs: 30_000 });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cannot read config '.*missing\.ini': No such file/);
});

test('a fixed-latency upstream is kept at the concurrency limit: a finished request\'s slot is refilled at once', async () => {
    const b = await submitBatch(NS, Array.from({ length: 240 }, (_, i) => chat(i, 'slow')));
    const done = await waitBatch(NS, b.id, (x) => ['completed', 'failed'].includes(x.status), 120_000);
    assert.equal(done.request_counts.completed, 240);
    const mean = SLOW.mean();
    console.log(`# upstream in flight: mean ${mean.toFixed(2)}, max ${SLOW.st.max} (limit 8)`);
    assert.ok(SLOW.st.max <= 8, `over the limit: ${SLOW.st.max}`);
    /* a slot used to wait for the next transfer event before being refilled: mean ~5 of 8 */
    assert.ok(mean >= 6.5, `mean in flight ${mean.toFixed(2)} of 8`);
});

/* kept-alive upstream connections the upstream closes while they idle (its keep-alive
 * timeout): the backend's epoll loop must not wake on them forever (a socket left in the set
 * after curl stops watching it would spin it), and curl must open new ones for the next
 * requests */
test('kept upstream connections the upstream closes while idle: no busy loop, the next requests still answered', async () => {
    const round = () => Promise.all(Array.from({ length: 8 }, (_, i) =>
        api(NS, 'POST', '/v1/chat/completions', JSON.stringify({ model: 'closing', messages: [{ role: 'user', content: `hi ${i}` }] }),
            { 'content-type': 'application/json' })));
    for (const r of await round()) assert.equal(r.status, 200, r.text);
    await sleep(600); /* the upstream has closed every kept connection */
    const cpu = () => {
        const f = fs.readFileSync(`/proc/${NS.child.pid}/stat`, 'utf8');
        const v = f.slice(f.lastIndexOf(')') + 2).split(' ');
        return (Number(v[11]) + Number(v[12])) / 100;
    };
    const c0 = cpu();
    await sleep(1500);
    const used = cpu() - c0;
    console.log(`# nightshift CPU while idle after the upstream closed its connections: ${used.toFixed(2)} s in 1.5 s`);
    assert.ok(used < 0.5, `nightshift used ${used.toFixed(2)} s of CPU in 1.5 s idle: a closed kept connection spins the loop`);
    for (const r of await round()) assert.equal(r.status, 200, r.text);
});
