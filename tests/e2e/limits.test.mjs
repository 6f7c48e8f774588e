// Connection limits of `nightshift serve`: --max-connections and --http-threads are checked,
// the server raises its soft descriptor limit itself (systemd starts services with 1024) and
// lowers the connection limit, with a warning, when even the hard limit is too small; one
// HTTP thread serves many requests waiting for the model (suspended connections), and a stop
// while streams wait ends cleanly. The load itself is tests/load/wrk.sh (CTest load_wrk).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, SPM_VOCAB, startServer, killHard, api, sleep } from './lib.mjs';

let dir, model;

before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-limits-'));
    model = path.join(dir, 'tiny.gguf');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
});

after(() => {
    if (!process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

test('--max-connections must be a positive integer', () => {
    for (const v of ['0', '-5', 'lots', '1e3']) {
        const r = spawnSync(BIN, ['serve', '--max-connections', v, '--model', model], { encoding: 'utf8' });
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, /--max-connections must be an integer from 1 to 1000000/);
    }
});

test('--http-threads must be an integer from 1 to 1024', () => {
    for (const v of ['0', '-1', 'two', '1025']) {
        const r = spawnSync(BIN, ['serve', '--http-threads', v, '--model', model], { encoding: 'utf8' });
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, /--http-threads must be an integer from 1 to 1024, not '/);
    }
});

test('one HTTP thread: 40 requests wait for the model at once (half streamed), /health answers meanwhile, a stop while streams wait exits cleanly', { timeout: 300_000 }, async () => {
    const s = await startServer(['--model', `tiny=${model}`, '--data-dir', path.join(dir, 'd3'), '--threads', '1',
        '--parallel', '2', '--ctx', '2048', '--http-threads', '1', '--grace-period', '1']);
    const json = { 'content-type': 'application/json' };
    const body = (i, stream, n) => JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: `item ${i}` }],
        max_tokens: n, ignore_eos: true, temperature: 0, stream });
    try {
        let done = 0;
        const reqs = Array.from({ length: 40 }, (_, i) =>
            api(s, 'POST', '/v1/chat/completions', body(i, i % 2 === 0, 200), json).then((r) => (done++, r)));
        await sleep(300);
        const h = await api(s, 'GET', '/health');
        assert.equal(h.status, 200);
        // a handler that held the only thread while its request ran would have kept /health
        // waiting behind all of them
        assert.ok(done < 40, `health answered only after all ${done} requests`);
        const rs = await Promise.all(reqs);
        rs.forEach((r, i) => {
            assert.equal(r.status, 200, r.text);
            if (i % 2 === 0) {
                const events = r.text.split('\n\n').filter((e) => e.startsWith('data: '));
                assert.equal(events.at(-1), 'data: [DONE]');
                const text = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)).choices[0]?.delta?.content ?? '').join('');
                assert.ok(text.length > 0);
            } else {
                const j = r.json();
                assert.equal(j.usage.completion_tokens, 200);
                assert.equal(j.choices[0].finish_reason, 'length');
            }
        });
        // streams still waiting for tokens when the server is stopped: cut after the grace
        // period, and the process exits 0 (libmicrohttpd refuses to stop with a connection
        // still suspended)
        const streams = Array.from({ length: 6 }, (_, i) =>
            fetch(s.url + '/v1/chat/completions', { method: 'POST', headers: json, body: body(100 + i, true, 1500) })
                .then((r) => r.text()).catch(() => 'cut'));
        await sleep(300);
        const exited = new Promise((r) => s.child.once('exit', (code, sig) => r({ code, sig })));
        s.child.kill('SIGTERM');
        const { code, sig } = await exited;
        assert.equal(sig, null, s.stderr());
        assert.equal(code, 0, s.stderr());
        assert.doesNotMatch(s.stderr(), /suspended|PANIC/i);
        await Promise.all(streams);
    } finally {
        await killHard(s);
    }
});

async function metric(s, name) {
    const text = (await api(s, 'GET', '/metrics')).text;
    return text.split('\n').filter((l) => l.startsWith(name)).reduce((a, l) => a + Number(l.split(' ').at(-1)), 0);
}

test('a streaming client that goes away: the engine stops generating for it', { timeout: 120_000 }, async () => {
    // the "small" shape generates slowly enough (a few hundred tokens/s on one thread) that the
    // request cannot end by itself before the client is gone
    const small = path.join(dir, 'small.gguf');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '--shape', 'small', '-o', small]);
    const s = await startServer(['--model', `tiny=${small}`, '--data-dir', path.join(dir, 'd4'), '--threads', '1',
        '--parallel', '1', '--ctx', '2048']);
    try {
        const ac = new AbortController();
        const r = await fetch(s.url + '/v1/chat/completions', { method: 'POST', signal: ac.signal,
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'go on' }], max_tokens: 450,
                ignore_eos: true, stream: true }) });
        assert.equal(r.status, 200);
        const reader = r.body.getReader();
        let got = '';
        while ((got.match(/"content"/g) || []).length < 5) got += new TextDecoder().decode((await reader.read()).value);
        ac.abort();
        // the next token written to the closed socket fails, the stream's response is freed
        // and the request ends as cancelled at the engine's next step
        let failed = 0;
        for (let i = 0; i < 100 && failed < 1; i++) {
            await sleep(100);
            failed = await metric(s, 'nightshift_requests_total{model="tiny",lane="interactive",outcome="failed"}');
        }
        assert.equal(failed, 1);
        const g1 = await metric(s, 'nightshift_generated_tokens_total');
        await sleep(500);
        const g2 = await metric(s, 'nightshift_generated_tokens_total');
        assert.equal(g2, g1, 'the engine went on generating');
        assert.ok(g1 < 450, `${g1} tokens generated`);
        // the server serves on
        const ok = await api(s, 'POST', '/v1/chat/completions', JSON.stringify({ model: 'tiny',
            messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }), { 'content-type': 'application/json' });
        assert.equal(ok.status, 200, ok.text);
    } finally {
        await killHard(s);
    }
});

const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0;

test('the soft descriptor limit is raised to the hard one; a hard limit too low lowers --max-connections', { skip: !hasPrlimit && 'no prlimit', timeout: 120_000 }, async () => {
    // soft 256, hard 256: 256 - 128 descriptors kept for the rest = 128 connections
    const s = await startServer(['--model', `tiny=${model}`, '--data-dir', path.join(dir, 'd1'), '--threads', '1',
        '--parallel', '2', '--ctx', '1024'], { wrap: ['prlimit', '--nofile=256:256'] });
    try {
        assert.match(s.stderr(), /--max-connections 4096 is more than the descriptor limit allows \(ulimit -n 256\): 128 connections/);
        assert.equal((await api(s, 'GET', '/health')).status, 200);
    } finally {
        await killHard(s);
    }
    // soft 256, hard 8192: raised, no warning
    const s2 = await startServer(['--model', `tiny=${model}`, '--data-dir', path.join(dir, 'd2'), '--threads', '1',
        '--parallel', '2', '--ctx', '1024'], { wrap: ['prlimit', '--nofile=256:8192'] });
    try {
        const limit = fs.readFileSync(`/proc/${s2.child.pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
        assert.match(limit, /^Max open files\s+8192\s+8192\s/);
        assert.doesNotMatch(s2.stderr(), /descriptor limit/);
    } finally {
        await killHard(s2);
    }
});
