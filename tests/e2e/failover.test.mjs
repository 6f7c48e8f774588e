// Spill-over and fail-over between backends (issue 33): two small OpenAI-compatible mock
// upstreams in this process; the "primary" model names the "fallback" one in spill_to.
//
//   node --test tests/e2e/failover.test.mjs
//
// Checked: the primary upstream is killed mid-batch and its lines fail over to the fallback,
// none lost, none twice, each custom_id once in the output; the batch object says how many
// lines ran where (nightshift.backends) and prices each at its backend's price; a real-time
// request to the down model answers from the fallback with x-nightshift-fallback
// (on_failure = fallback), or fails fast with a 503 naming the model (on_failure = fail); a
// bad metadata.deadline is refused; a config whose spill_to makes a cycle is refused; a
// kill -9 while lines wait at the fallback: after the restart they run there, each once.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { api, runNs, submitBatch, waitBatch } from './lib.mjs';
import { sleep } from './serve_lib.mjs';
import { BIN, mkTmp, parseJsonl, rmTmp, startServer } from './serve_lib.mjs';

let TMP;
let PRIMARY, FALLBACK; // mock upstreams
let NS;

/* an OpenAI-compatible /v1/chat/completions answering "from NAME" after delayMs; counts
 * the answers it gave; kill() closes it and every open connection */
function startMock(name, delayMs, { gated = false } = {}) {
    const st = { answered: 0, held: [] };
    st.open = () => {
        gated = false;
        for (const f of st.held.splice(0)) f();
    };
    const server = http.createServer((req, res) => {
        let body = '';
        req.on('data', (d) => (body += d));
        req.on('end', () => {
            const answer = () => setTimeout(() => {
                if (res.destroyed) return;
                st.answered++;
                res.writeHead(200, { 'content-type': 'application/json' });
                res.end(JSON.stringify({
                    id: `chatcmpl-${name}-${st.answered}`, object: 'chat.completion', created: 1, model: 'mock',
                    choices: [{ index: 0, message: { role: 'assistant', content: `from ${name}` }, finish_reason: 'stop' }],
                    usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
                }));
            }, delayMs);
            if (gated) st.held.push(answer);
            else answer();
        });
    });
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
        st.port = server.address().port;
        st.kill = () => new Promise((r) => {
            server.close(() => r());
            server.closeAllConnections();
        });
        resolve(st);
    }));
}

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN}`);
    TMP = mkTmp('nightshift-failover-e2e-');
    PRIMARY = await startMock('primary', 40);
    FALLBACK = await startMock('fallback', 5);
    const ini = path.join(TMP, 'nightshift.ini');
    fs.writeFileSync(ini, `[server]
data-dir = ${path.join(TMP, 'data')}

[model primary]
backend = openai-http
url = http://127.0.0.1:${PRIMARY.port}/v1
concurrency = 2
max_attempts = 2
retry_base = 0.02
retry_max = 0.05
timeout = 5
circuit_failures = 2
circuit_cooldown = 300
price_input = 1
price_output = 2
spill_to = fallback
on_failure = fallback

[model fallback]
backend = openai-http
url = http://127.0.0.1:${FALLBACK.port}/v1
concurrency = 8
price_input = 10
price_output = 20

[model strict]
backend = openai-http
url = http://127.0.0.1:1/v1
max_attempts = 1
circuit_failures = 1
circuit_cooldown = 300
spill_to = fallback
on_failure = fail
`);
    NS = await startServer(['--config', ini], { name: 'ns' });
});

after(async () => {
    if (NS) await NS.stop();
    if (PRIMARY) await PRIMARY.kill().catch(() => {});
    if (FALLBACK) await FALLBACK.kill().catch(() => {});
    if (TMP) rmTmp(TMP);
});

const chat = (model, content) => JSON.stringify({ model, messages: [{ role: 'user', content }] });

test('a bad metadata.deadline is refused, naming the field', async () => {
    await assert.rejects(
        submitBatch(NS, [{ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: JSON.parse(chat('primary', 'x')) }],
            { metadata: { deadline: 'tomorrow' } }),
        /metadata\.deadline/);
});

test('the primary upstream dies mid-batch: its lines fail over to the fallback, each once', async () => {
    const N = 60;
    const lines = Array.from({ length: N }, (_, i) => ({
        custom_id: `line-${i}`, method: 'POST', url: '/v1/chat/completions', body: JSON.parse(chat('primary', `q${i}`)),
    }));
    const b = await submitBatch(NS, lines, { metadata: { deadline: '2100-01-01T00:00:00Z' } });
    /* let the primary answer some, then kill it */
    await waitBatch(NS, b.id, (x) => x.request_counts.completed >= 10, 60_000);
    await PRIMARY.kill();
    const done = await waitBatch(NS, b.id, (x) => ['completed', 'failed', 'expired', 'cancelled'].includes(x.status), 120_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.request_counts.completed, N, JSON.stringify(done.request_counts));
    assert.equal(done.request_counts.failed, 0);
    const out = await api(NS, 'GET', `/v1/files/${done.output_file_id}/content`);
    const rows = parseJsonl(out.text);
    assert.equal(rows.length, N);
    const ids = new Set(rows.map((r) => r.custom_id));
    assert.equal(ids.size, N, 'every custom_id exactly once');
    const byFallback = rows.filter((r) => r.response.body.choices[0].message.content === 'from fallback').length;
    const byPrimary = rows.filter((r) => r.response.body.choices[0].message.content === 'from primary').length;
    assert.equal(byPrimary + byFallback, N);
    assert.ok(byPrimary >= 10 && byFallback > 0, `primary ${byPrimary}, fallback ${byFallback}`);
    /* the batch object: where the lines ran, each priced at its backend's price */
    const bk = done.nightshift.backends;
    assert.ok(bk, JSON.stringify(done.nightshift));
    assert.equal(bk.primary.lines, byPrimary);
    assert.equal(bk.fallback.lines, byFallback);
    assert.equal(bk.primary.pending + bk.primary.running + bk.fallback.pending + bk.fallback.running, 0);
    const want = (byPrimary * (10 * 1 + 5 * 2) + byFallback * (10 * 10 + 5 * 20)) / 1e6;
    assert.ok(Math.abs(done.nightshift.cost_usd - want) < 1e-9, `cost ${done.nightshift.cost_usd}, want ${want}`);
    /* OpenAI's own fields untouched */
    assert.equal(done.object, 'batch');
    assert.equal(done.usage.input_tokens, N * 10);
    const log = NS.stderr();
    assert.match(log, /goes to 'fallback'|go to 'fallback'/);
});

test('on_failure = fallback: a real-time request to the down model answers from the fallback, saying so', async () => {
    const r = await api(NS, 'POST', '/v1/chat/completions', chat('primary', 'hello'), { 'content-type': 'application/json' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-nightshift-fallback'), 'fallback');
    assert.equal(r.json().choices[0].message.content, 'from fallback');
    /* counted: lines failed over, requests sent to the fallback */
    const m = (await api(NS, 'GET', '/metrics')).text;
    const n = (reason) => Number((new RegExp(`^nightshift_routed_total\\{model="primary",reason="${reason}"\\} (\\d+)`, 'm').exec(m) || [])[1]);
    assert.ok(n('failover') > 0, m.split('\n').filter((l) => l.includes('routed')).join('\n'));
    assert.ok(n('realtime') >= 1);
    assert.ok(!/nightshift_routed_total\{model="fallback"/.test(m), 'only models with a spill_to');
});

test('on_failure = fail: a real-time request to a down model fails fast with a 503 naming it', async () => {
    /* the first try opens the circuit (circuit_failures = 1); the next is refused at once */
    const first = await api(NS, 'POST', '/v1/chat/completions', chat('strict', 'hi'), { 'content-type': 'application/json' });
    assert.ok(first.status >= 500, first.text);
    const r = await api(NS, 'POST', '/v1/chat/completions', chat('strict', 'hi'), { 'content-type': 'application/json' });
    assert.equal(r.status, 503, r.text);
    assert.match(r.json().error.message, /'strict'/);
    assert.equal(r.headers.get('x-nightshift-fallback'), null);
});

test('a spill_to cycle in the config is refused with the chain', async () => {
    const ini = path.join(TMP, 'cycle.ini');
    fs.writeFileSync(ini, `[model a]\nbackend = openai-http\nurl = http://127.0.0.1:1/v1\nspill_to = b\n` +
        `[model b]\nbackend = openai-http\nurl = http://127.0.0.1:1/v1\nspill_to = a\n`);
    const r = await runNs(['serve', '--config', ini, '--listen', '127.0.0.1:0'], { timeoutMs: 30_000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /\[model a\]: spill_to makes a cycle \(a -> b -> a\)/);
});

test('kill -9 while lines wait at the fallback: after a restart they run there, every custom_id once', async () => {
    const P = await startMock('p2', 30);
    const F = await startMock('f2', 5, { gated: true });
    const dir = path.join(TMP, 'restart');
    fs.mkdirSync(dir);
    const ini = path.join(dir, 'ns.ini');
    fs.writeFileSync(ini, `[server]
data-dir = ${path.join(dir, 'data')}

[model p2]
backend = openai-http
url = http://127.0.0.1:${P.port}/v1
concurrency = 2
max_attempts = 2
retry_base = 0.02
retry_max = 0.05
circuit_failures = 2
circuit_cooldown = 300
spill_to = f2

[model f2]
backend = openai-http
url = http://127.0.0.1:${F.port}/v1
concurrency = 4
`);
    let ns = await startServer(['--config', ini], { name: 'ns-restart' });
    const N = 30;
    const lines = Array.from({ length: N }, (_, i) => ({
        custom_id: `r-${i}`, method: 'POST', url: '/v1/chat/completions', body: JSON.parse(chat('p2', `q${i}`)),
    }));
    try {
        const b = await submitBatch(ns, lines);
        await waitBatch(ns, b.id, (x) => x.request_counts.completed >= 5, 60_000);
        await P.kill();
        /* every unfinished line is routed to f2, which holds what it gets */
        await waitBatch(ns, b.id, (x) => {
            const f2 = x.nightshift.backends?.f2;
            return f2 && f2.pending + f2.running === N - x.request_counts.completed && F.held.length > 0;
        }, 60_000);
        ns.child.kill('SIGKILL');
        await new Promise((r) => (ns.child.exitCode !== null || ns.child.signalCode ? r() : ns.child.on('close', r)));
        F.held.length = 0; /* the killed process's requests: never answered */
        ns = await startServer(['--config', ini], { name: 'ns-restart-2' });
        await sleep(200);
        F.open();
        const done = await waitBatch(ns, b.id, (x) => ['completed', 'failed', 'expired', 'cancelled'].includes(x.status), 120_000);
        assert.equal(done.status, 'completed', JSON.stringify(done));
        assert.equal(done.request_counts.completed, N, JSON.stringify(done.request_counts));
        const rows = parseJsonl((await api(ns, 'GET', `/v1/files/${done.output_file_id}/content`)).text);
        assert.equal(rows.length, N);
        assert.equal(new Set(rows.map((r) => r.custom_id)).size, N, 'every custom_id exactly once');
        const byF = rows.filter((r) => r.response.body.choices[0].message.content === 'from f2').length;
        assert.ok(byF > 0);
        const bk = done.nightshift.backends;
        assert.equal((bk.p2?.lines || 0) + bk.f2.lines, N, JSON.stringify(bk));
    } finally {
        await ns.stop();
        await F.kill();
    }
});
