// Crash recovery harness for `nightshift serve`: kill -9 at 20 seeded random points across
// the life of several batches, restarting on the same data dir after each:
//   ingest    : while an upload streams in, or between upload and batch creation
//   validate  : a few ms after the batch is created (validating, lines being inserted)
//   execute   : after a random number of further lines finished
//   finalize  : as the last line finishes (finalizing: output files being written)
// The phases take turns so each gets 5 kills; the delays and sizes come from the seed
// (NIGHTSHIFT_CRASH_SEED, printed), so a failure can be replayed (timing still varies).
// At the end every batch the server knows of reaches a terminal state, each custom_id is
// exactly once in its output + error files, the store passes PRAGMA integrity_check, and no
// upload temp file is left in DATA_DIR/files.
//
// Then the disk faults, on a small tmpfs (the test runs as root in CI; where mount is not
// permitted the test says so and skips): a full disk and a read-only data dir give specific
// errors, the server keeps serving, and the store stays intact.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, SPM_VOCAB, sleep, startServer as startNs, killHard, api, TERMINAL } from './lib.mjs';

let dir;
let model;
let server = null;
const mounts = [];

const startServer = (dataDir, extra = []) =>
    startNs(['--model', `tiny=${model}`, '--data-dir', dataDir, '--parallel', '8', '--ctx', '2048', '--threads', '1', ...extra]);

/* mulberry32: a small seeded generator, so the kill points are the same run to run */
function rng(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-crash-random-'));
    model = path.join(dir, 'tiny.gguf');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
});

after(async () => {
    await killHard(server);
    for (const m of mounts) spawnSync('umount', ['-l', m]);
    if (!process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

function batchLines(tag, n) {
    const lines = [];
    for (let i = 0; i < n; i++)
        lines.push(JSON.stringify({
            custom_id: `${tag}-${i}`, method: 'POST', url: '/v1/chat/completions',
            body: { model: 'tiny', messages: [{ role: 'user', content: `${tag} request ${i}` }], max_tokens: 6, ignore_eos: true },
        }));
    return lines.join('\n') + '\n';
}

async function upload(s, text, name = 'in.jsonl') {
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([text]), name);
    return api(s, 'POST', '/v1/files', form);
}

async function createBatch(s, fileId) {
    return api(s, 'POST', '/v1/batches',
        JSON.stringify({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' }),
        { 'content-type': 'application/json' });
}

async function listBatches(s) {
    const r = await api(s, 'GET', '/v1/batches?limit=100');
    assert.equal(r.status, 200, r.text);
    return r.json().data;
}

test('kill -9 at 20 seeded random points of ingest, execution and finalization', { timeout: 600_000 }, async (t) => {
    const seed = Number(process.env.NIGHTSHIFT_CRASH_SEED || 20261123);
    const rand = rng(seed);
    const between = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
    const dataDir = path.join(dir, 'data');
    const expected = new Map(); // input file id -> custom_ids
    const texts = new Map(); // tag -> text (uploads whose answer was lost are matched by name)
    const log = [];
    let nb = 0;

    /* an upload and create that is allowed to finish: returns the batch id */
    async function submit(s) {
        const tag = `b${nb++}`;
        const n = between(16, 40);
        const text = batchLines(tag, n);
        texts.set(tag, text);
        const up = await upload(s, text, `${tag}.jsonl`);
        assert.equal(up.status, 200, up.text);
        expected.set(up.json().id, { tag, n });
        const cr = await createBatch(s, up.json().id);
        assert.equal(cr.status, 200, cr.text);
        return cr.json().id;
    }

    server = await startServer(dataDir);
    for (let k = 0; k < 20; k++) {
        const phase = ['ingest', 'validate', 'execute', 'finalize'][k % 4];
        if (phase === 'ingest') {
            // a bigger file so the upload takes a while; kill while it streams in (or just after)
            const tag = `b${nb++}`;
            const n = between(200, 1500);
            const text = batchLines(tag, n);
            texts.set(tag, text);
            const delay = between(0, 40);
            const p = upload(server, text, `${tag}.jsonl`).then((r) => {
                if (r.status === 200) expected.set(r.json().id, { tag, n });
                return r.status;
            }, () => 'killed');
            await sleep(delay);
            await killHard(server);
            log.push(`ingest+${delay}ms:${await p}`);
        } else if (phase === 'validate') {
            const tag = `b${nb++}`;
            const n = between(20, 300);
            const text = batchLines(tag, n);
            texts.set(tag, text);
            const up = await upload(server, text, `${tag}.jsonl`);
            assert.equal(up.status, 200, up.text);
            expected.set(up.json().id, { tag, n });
            const delay = between(0, 30);
            const p = createBatch(server, up.json().id).then((r) => r.status, () => 'killed');
            await sleep(delay);
            await killHard(server);
            log.push(`validate+${delay}ms:${await p}`);
        } else {
            // some batch must be running: submit one when none is unfinished
            let open = (await listBatches(server)).filter((b) => !TERMINAL.includes(b.status));
            if (!open.length) {
                await submit(server);
                open = (await listBatches(server)).filter((b) => !TERMINAL.includes(b.status));
            }
            const want = phase === 'execute' ? between(1, 12) : Infinity;
            const t0 = Date.now();
            let seen = '';
            for (;;) {
                const bs = (await listBatches(server)).filter((b) => open.some((o) => o.id === b.id));
                const done = bs.reduce((a, b) => a + b.request_counts.completed + b.request_counts.failed, 0);
                const base = open.reduce((a, b) => a + b.request_counts.completed + b.request_counts.failed, 0);
                const fin = bs.find((b) => b.status === 'finalizing' ||
                    (b.request_counts.total && b.request_counts.completed + b.request_counts.failed === b.request_counts.total));
                seen = bs.map((b) => `${b.status}:${b.request_counts.completed + b.request_counts.failed}/${b.request_counts.total}`).join(',');
                if (phase === 'execute' ? done - base >= want : fin) break;
                if (Date.now() - t0 > 60_000 || bs.every((b) => TERMINAL.includes(b.status))) break;
                await sleep(phase === 'execute' ? 20 : 5);
            }
            const delay = phase === 'finalize' ? between(0, 15) : 0;
            await sleep(delay);
            await killHard(server);
            log.push(`${phase}${phase === 'execute' ? `(+${want})` : `+${delay}ms`}:${seen}`);
        }
        server = await startServer(dataDir);
    }
    t.diagnostic(`seed ${seed}; kills: ${log.join(' | ')}`);

    // every batch the store knows of finishes; each custom_id exactly once
    const t0 = Date.now();
    let bs;
    for (;;) {
        bs = await listBatches(server);
        if (bs.every((b) => TERMINAL.includes(b.status))) break;
        assert.ok(Date.now() - t0 < 240_000, `batches did not finish: ${JSON.stringify(bs.map((b) => [b.id, b.status, b.request_counts]))}`);
        await sleep(200);
    }
    assert.ok(bs.length >= 5, `only ${bs.length} batches were created (kills: ${log.join(' | ')})`);
    for (const b of bs) {
        // a create whose answer was lost still made a batch: find its lines by the file's name
        let exp = expected.get(b.input_file_id);
        if (!exp) {
            const f = (await api(server, 'GET', `/v1/files/${b.input_file_id}`)).json();
            const tag = (f.filename || '').replace(/\.jsonl$/, '');
            assert.ok(texts.has(tag), `batch ${b.id}: unknown input file ${JSON.stringify(f)}`);
            exp = { tag, n: texts.get(tag).split('\n').length - 1 };
        }
        assert.equal(b.status, 'completed', `${JSON.stringify(b)} (kills: ${log.join(' | ')})`);
        assert.equal(b.request_counts.total, exp.n, JSON.stringify(b));
        const ids = new Map();
        for (const fid of [b.output_file_id, b.error_file_id]) {
            if (!fid) continue;
            const content = await api(server, 'GET', `/v1/files/${fid}/content`);
            assert.equal(content.status, 200, content.text);
            for (const l of content.text.split('\n').filter(Boolean)) {
                const o = JSON.parse(l);
                ids.set(o.custom_id, (ids.get(o.custom_id) || 0) + 1);
            }
        }
        assert.equal(ids.size, exp.n, `batch ${b.id} (${exp.tag}): ${ids.size} of ${exp.n} custom_ids`);
        for (let i = 0; i < exp.n; i++)
            assert.equal(ids.get(`${exp.tag}-${i}`), 1, `${exp.tag}-${i} in batch ${b.id}`);
        assert.equal(b.request_counts.completed, exp.n, `no line of ${b.id} should fail`);
    }
    await killHard(server);
    server = null;
    const check = execFileSync('sqlite3', [path.join(dataDir, 'nightshift.db'), 'PRAGMA integrity_check;']).toString().trim();
    assert.equal(check, 'ok');
    // temp files of uploads cut short are removed at the next start
    server = await startServer(dataDir);
    const left = fs.readdirSync(path.join(dataDir, 'files')).filter((f) => f.startsWith('upload-') || f.includes('.tmp-'));
    assert.deepEqual(left, [], 'upload temp files left in the data dir');
    await killHard(server);
    server = null;
});

/* mount a tmpfs of `size` at a new directory; null (and why) when not permitted */
function mountTmpfs(size) {
    const m = fs.mkdtempSync(path.join(dir, 'tmpfs-'));
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', m], { encoding: 'utf8' });
    if (r.status !== 0) return { why: `cannot mount a tmpfs (${(r.stderr || r.error?.message || '').trim()}); needs root or CAP_SYS_ADMIN` };
    mounts.push(m);
    return { dir: m };
}

function remount(m, mode) {
    const r = spawnSync('mount', ['-o', `remount,${mode}`, m], { encoding: 'utf8' });
    assert.equal(r.status, 0, `remount ${mode}: ${r.stderr}`);
}

async function healthyAfter(s) {
    const h = await api(s, 'GET', '/health');
    assert.equal(h.status, 200);
    const c = await api(s, 'POST', '/v1/chat/completions',
        JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
        { 'content-type': 'application/json' });
    assert.equal(c.status, 200, c.text);
}

test('disk full: uploads fail with a clear error, the server keeps serving, the store stays intact', { timeout: 300_000 }, async (t) => {
    const m = mountTmpfs('3m');
    if (!m.dir) return t.skip(m.why);
    const dataDir = path.join(m.dir, 'data');
    server = await startServer(dataDir);
    // a small batch fits and completes
    const small = await upload(server, batchLines('s', 4), 's.jsonl');
    assert.equal(small.status, 200, small.text);
    // 4 MB does not fit in what is left of 3 MB
    const big = await upload(server, 'x'.repeat(4 << 20), 'big.jsonl');
    assert.equal(big.status, 500, big.text);
    assert.match(big.json().error.message, /cannot store the upload: No space left on device/);
    // nothing of it is left behind, and the server goes on
    assert.deepEqual(fs.readdirSync(path.join(dataDir, 'files')).filter((f) => f.startsWith('upload-') || f.includes('.tmp-')), []);
    await healthyAfter(server);
    const cr = await createBatch(server, small.json().id);
    assert.equal(cr.status, 200, cr.text);
    const t0 = Date.now();
    let b;
    do {
        await sleep(100);
        b = (await api(server, 'GET', `/v1/batches/${cr.json().id}`)).json();
        assert.ok(Date.now() - t0 < 60_000, JSON.stringify(b));
    } while (!TERMINAL.includes(b.status));
    assert.equal(b.status, 'completed', JSON.stringify(b));
    await killHard(server);
    server = null;
    const check = execFileSync('sqlite3', [path.join(dataDir, 'nightshift.db'), 'PRAGMA integrity_check;']).toString().trim();
    assert.equal(check, 'ok');
});

/* fill the filesystem of dir to its last byte: a file that holds what was free */
function fillDisk(dirPath) {
    const f = path.join(dirPath, 'filler');
    const fd = fs.openSync(f, 'w');
    for (const size of [1 << 20, 1 << 12, 1]) {
        const buf = Buffer.alloc(size, 0x61);
        for (;;) {
            try {
                fs.writeSync(fd, buf);
            } catch (e) {
                if (e.code !== 'ENOSPC') throw e;
                break;
            }
        }
    }
    fs.closeSync(fd);
    return f;
}

/* CPU seconds (user + system) a process has used */
function cpuSeconds(pid) {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; /* utime, stime: fields 14, 15; clock ticks of 1/100 s */
}

test('disk full mid-batch: lines pause with one log line and no spin, /ready 503; freed space resumes it without a restart', { timeout: 300_000 }, async (t) => {
    const m = mountTmpfs('16m');
    if (!m.dir) return t.skip(m.why);
    const dataDir = path.join(m.dir, 'data');
    server = await startServer(dataDir);
    const n = 300;
    const up = await upload(server, batchLines('f', n), 'f.jsonl');
    assert.equal(up.status, 200, up.text);
    const cr = await createBatch(server, up.json().id);
    assert.equal(cr.status, 200, cr.text);
    const id = cr.json().id;
    const get = async () => (await api(server, 'GET', `/v1/batches/${id}`)).json();
    let b;
    for (const t0 = Date.now(); ; await sleep(50)) {
        b = await get();
        if (b.request_counts.completed >= 20) break;
        assert.ok(Date.now() - t0 < 60_000, JSON.stringify(b));
    }
    const filler = fillDisk(m.dir);
    /* the next claim or commit meets the full disk: /ready says so */
    for (const t0 = Date.now(); (await api(server, 'GET', '/ready')).status !== 503; await sleep(100))
        assert.ok(Date.now() - t0 < 60_000, `/ready stayed 200 on a full disk: ${JSON.stringify(await get())}`);
    /* paused, not spinning: little CPU and no log flood over 2 s */
    await sleep(500);
    const cpu0 = cpuSeconds(server.child.pid), log0 = server.stderr().length;
    await sleep(2000);
    const cpu = cpuSeconds(server.child.pid) - cpu0, logged = server.stderr().length - log0;
    assert.ok(cpu < 0.5, `${cpu.toFixed(2)} CPU seconds in 2 s while the disk is full`);
    assert.ok(logged < 2000, `${logged} bytes logged in 2 s while the disk is full:\n${server.stderr().slice(-2000)}`);
    assert.equal((server.stderr().match(/the store cannot/g) || []).length, 1, server.stderr().slice(-3000));
    const stuck = await get();
    assert.notEqual(stuck.status, 'completed');
    /* space comes back: the batch finishes, every line once, without a restart */
    fs.unlinkSync(filler);
    for (const t0 = Date.now(); ; await sleep(100)) {
        b = await get();
        if (TERMINAL.includes(b.status)) break;
        assert.ok(Date.now() - t0 < 120_000, JSON.stringify(b));
    }
    assert.equal(b.status, 'completed', JSON.stringify(b));
    assert.equal(b.request_counts.completed + b.request_counts.failed, n, JSON.stringify(b));
    assert.equal((await api(server, 'GET', '/ready')).status, 200);
    assert.match(server.stderr(), /the store takes writes again/);
    const out = await api(server, 'GET', `/v1/files/${b.output_file_id}/content`);
    const ids = out.text.trim().split('\n').map((l) => JSON.parse(l).custom_id);
    assert.equal(new Set(ids).size, ids.length, 'a line twice in the output');
    await killHard(server);
    server = null;
});

test('read-only data dir: refused at start with the reason; writes fail clearly while running', { timeout: 300_000 }, async (t) => {
    const m = mountTmpfs('16m');
    if (!m.dir) return t.skip(m.why);
    const dataDir = path.join(m.dir, 'data');
    const filesDir = path.join(dataDir, 'files');
    server = await startServer(dataDir);
    const up = await upload(server, batchLines('r', 3), 'r.jsonl');
    assert.equal(up.status, 200, up.text);
    // while it runs, the files dir turns read-only (a read-only bind mount over it: the
    // whole tmpfs cannot be remounted read-only while SQLite holds files open for writing)
    const bind = spawnSync('mount', ['--bind', filesDir, filesDir], { encoding: 'utf8' });
    assert.equal(bind.status, 0, bind.stderr);
    mounts.unshift(filesDir);
    remount(filesDir, 'bind,ro');
    // reads still work; an upload gets a specific error
    assert.equal((await api(server, 'GET', `/v1/files/${up.json().id}`)).status, 200);
    const up2 = await upload(server, batchLines('r2', 3), 'r2.jsonl');
    assert.equal(up2.status, 500, up2.text);
    assert.match(up2.json().error.message, /cannot start the upload \(data dir not writable\?\)/);
    // a batch runs, but its output files cannot be written: it waits in finalizing (retried)
    const cr = await createBatch(server, up.json().id);
    assert.equal(cr.status, 200, cr.text);
    const id = cr.json().id;
    let b;
    const t0 = Date.now();
    do {
        await sleep(100);
        b = (await api(server, 'GET', `/v1/batches/${id}`)).json();
        assert.ok(Date.now() - t0 < 60_000, JSON.stringify(b));
    } while (b.status !== 'finalizing');
    await healthyAfter(server);
    assert.match(server.stderr(), /cannot write the output files of batch/);
    // writable again: the batch completes
    remount(filesDir, 'bind,rw');
    do {
        await sleep(100);
        b = (await api(server, 'GET', `/v1/batches/${id}`)).json();
        assert.ok(Date.now() - t0 < 120_000, JSON.stringify(b));
    } while (!TERMINAL.includes(b.status));
    assert.equal(b.status, 'completed', JSON.stringify(b));
    assert.equal(b.request_counts.completed, 3);
    await killHard(server);
    server = null;
    assert.equal(spawnSync('umount', [filesDir]).status, 0);
    mounts.shift();
    // a start on a read-only data dir stops with the reason
    remount(m.dir, 'ro');
    const r = spawnSync(BIN, ['serve', '--model', `tiny=${model}`, '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--threads', '1'],
        { encoding: 'utf8', timeout: 60_000 });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /data dir '.*' is not writable: Read-only file system/, r.stderr);
    remount(m.dir, 'rw');
    const check = execFileSync('sqlite3', [path.join(dataDir, 'nightshift.db'), 'PRAGMA integrity_check;']).toString().trim();
    assert.equal(check, 'ok');
    server = await startServer(dataDir);
    await healthyAfter(server);
    await killHard(server);
    server = null;
});
