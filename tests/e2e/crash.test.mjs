// Crash test for `nightshift serve`: kill -9 the server at several points of a batch
// (right after creation, while validating, several times while in progress), restart it on
// the same data dir each time, and check that the batch completes with every custom_id
// exactly once across the output and error files, and that the database is intact.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, SPM_VOCAB, sleep, startServer as startNs, killHard, api } from './lib.mjs';

let dir;
let model;
let server = null;

const startServer = (dataDir) =>
    startNs(['--model', `tiny=${model}`, '--data-dir', dataDir, '--parallel', '8', '--ctx', '4096', '--threads', '1']);

before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-crash-'));
    model = path.join(dir, 'tiny.gguf');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
});

after(async () => {
    await killHard(server);
    if (!process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

test('kill -9 at several points of a batch: every custom_id exactly once', { timeout: 600_000 }, async (t) => {
    const dataDir = path.join(dir, 'data');
    const N = 240;
    const lines = [];
    for (let i = 0; i < N; i++)
        lines.push(JSON.stringify({
            custom_id: `c-${i}`, method: 'POST', url: '/v1/chat/completions',
            body: { model: 'tiny', messages: [{ role: 'user', content: `request ${i}` }], max_tokens: 48, ignore_eos: true },
        }));
    server = await startServer(dataDir);
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([lines.join('\n') + '\n']), 'crash.jsonl');
    const up = await api(server, 'POST', '/v1/files', form);
    assert.equal(up.status, 200, up.text);
    const fileId = up.json().id;
    const cr = await api(server, 'POST', '/v1/batches',
        JSON.stringify({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' }),
        { 'content-type': 'application/json' });
    assert.equal(cr.status, 200, cr.text);
    const batchId = cr.json().id;

    // kill 1: immediately after creation (validating or just in progress)
    await killHard(server);
    const seen = [];
    for (let round = 0; round < 4; round++) {
        server = await startServer(dataDir);
        // wait until some more lines finished, then kill mid-work
        const target = Math.min(N - 1, (round + 1) * Math.floor(N / 6));
        const t0 = Date.now();
        for (;;) {
            const b = (await api(server, 'GET', `/v1/batches/${batchId}`)).json();
            const done = b.request_counts.completed + b.request_counts.failed;
            if (done >= target || b.status === 'completed' || Date.now() - t0 > 120_000) {
                seen.push(`${b.status}:${done}`);
                break;
            }
            await sleep(50);
        }
        await killHard(server);
    }
    server = await startServer(dataDir);
    let b;
    const t0 = Date.now();
    for (;;) {
        b = (await api(server, 'GET', `/v1/batches/${batchId}`)).json();
        if (['completed', 'failed', 'expired', 'cancelled'].includes(b.status)) break;
        assert.ok(Date.now() - t0 < 300_000, `batch did not finish: ${JSON.stringify(b)}`);
        await sleep(200);
    }
    assert.equal(b.status, 'completed', JSON.stringify(b));
    assert.equal(b.request_counts.total, N);
    assert.equal(b.request_counts.completed + b.request_counts.failed, N);

    const ids = new Map();
    for (const fid of [b.output_file_id, b.error_file_id]) {
        if (!fid) continue;
        const content = await api(server, 'GET', `/v1/files/${fid}/content`);
        assert.equal(content.status, 200);
        for (const l of content.text.split('\n').filter(Boolean)) {
            const o = JSON.parse(l);
            ids.set(o.custom_id, (ids.get(o.custom_id) || 0) + 1);
        }
    }
    t.diagnostic(`killed at (status:lines done) ${seen.join(', ')}`);
    assert.equal(ids.size, N, `kill points ${seen.join(', ')}`);
    for (const [id, n] of ids) assert.equal(n, 1, `${id} appears ${n} times`);
    assert.equal(b.request_counts.completed, N, 'no line should fail in this batch');

    await killHard(server);
    server = null;
    const check = execFileSync('sqlite3', [path.join(dataDir, 'nightshift.db'), 'PRAGMA integrity_check;']).toString().trim();
    assert.equal(check, 'ok');
});

test('start-up removes files no store row names (a crash between rename and insert), older than a minute', { timeout: 120_000 }, async () => {
    const dataDir = path.join(dir, 'orphans');
    server = await startServer(dataDir);
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob(['{"custom_id":"x"}\n']), 'keep.jsonl');
    const up = await api(server, 'POST', '/v1/files', form);
    assert.equal(up.status, 200, up.text);
    const real = up.json().id;
    await killHard(server);
    const files = path.join(dataDir, 'files');
    const old = (Date.now() - 5 * 60_000) / 1000;
    // what a kill -9 between rename and insert leaves: a whole file under an id no row has,
    // and a half-written <id>.tmp; both old. A fresh stray file stays (it may be in use).
    const stray = path.join(files, 'file-orphan0000000000000000'), tmp = path.join(files, 'file-half000000000000.tmp');
    const fresh = path.join(files, 'file-fresh00000000000000');
    for (const f of [stray, tmp, fresh]) fs.writeFileSync(f, 'left behind\n');
    for (const f of [stray, tmp]) fs.utimesSync(f, old, old);
    fs.utimesSync(path.join(files, real), old, old); // an old file with its row stays
    server = await startServer(dataDir);
    assert.ok(!fs.existsSync(stray), 'the orphan file is removed');
    assert.ok(!fs.existsSync(tmp), 'the old .tmp file is removed');
    assert.ok(fs.existsSync(fresh), 'a file younger than a minute is left alone');
    assert.match(server.stderr(), /removed 2 files under .* that no store row names/);
    const content = await api(server, 'GET', `/v1/files/${real}/content`);
    assert.equal(content.status, 200);
    assert.equal(content.text, '{"custom_id":"x"}\n');
    await killHard(server);
    server = null;
});
