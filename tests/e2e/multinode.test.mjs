// Many nodes, one queue: three `nightshift serve` processes share one real PostgreSQL server
// (Debian's, started by pg_lib.mjs in a temporary directory). A 3,000-line batch submitted to
// one node is worked by all three; one node is killed with SIGKILL mid-way and the batch
// still completes with every custom_id exactly once. Files uploaded to one node are read
// from another; a cancel given to one node stops the work on all of them; the schema
// version is checked.
//
// The model is an openai-http backend in front of a local upstream that answers after a
// fixed delay, so each line costs the same and the queue's own behaviour is what shows.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { BIN, startServer, mkTmp, rmTmp, sleep, toJsonl, parseJsonl, byCustomId, pollUntil } from './serve_lib.mjs';
import { api } from './lib.mjs';
import { postgres } from './pg_lib.mjs';

let TMP, PG, UP, DB;
const NODES = [];
let upstreamCalls = 0;
let upstreamDelayMs = 40;

function startUpstream() {
    return new Promise((resolve) => {
        const server = http.createServer((req, res) => {
            let body = '';
            req.on('data', (d) => (body += d));
            req.on('end', () => {
                upstreamCalls++;
                let model = 'fake';
                try {
                    model = JSON.parse(body).model;
                } catch {
                    /* answered anyway */
                }
                setTimeout(() => {
                    res.writeHead(200, { 'content-type': 'application/json' });
                    res.end(JSON.stringify({
                        id: `chatcmpl-${upstreamCalls}`, object: 'chat.completion', created: Math.floor(Date.now() / 1000), model,
                        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
                        usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
                    }));
                }, upstreamDelayMs);
            });
        });
        server.keepAliveTimeout = 60_000;
        server.listen(0, '127.0.0.1', () => resolve({ port: server.address().port, close: () => new Promise((r) => server.close(r)) }));
    });
}

function nodeConfig(i, db) {
    const ini = path.join(TMP, `node${i}.ini`);
    fs.writeFileSync(ini, `[server]
data-dir = ${path.join(TMP, `node${i}`)}
db = ${db}

[model fake]
backend = openai-http
url = http://127.0.0.1:${UP.port}/v1
concurrency = 4
`);
    return ini;
}

async function startNode(i) {
    const s = await startServer(['--config', nodeConfig(i, DB)], { name: `node${i}` });
    NODES[i] = s;
    return s;
}

async function upload(s, text, name = 'in.jsonl') {
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([text]), name);
    const r = await api(s, 'POST', '/v1/files', form);
    assert.equal(r.status, 200, r.text);
    return r.json();
}

async function createBatch(s, fileId) {
    const r = await api(s, 'POST', '/v1/batches', JSON.stringify({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' }),
        { 'content-type': 'application/json' });
    assert.equal(r.status, 200, r.text);
    return r.json();
}

const line = (i) => ({ custom_id: `req-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'fake', messages: [{ role: 'user', content: `item ${i}` }], max_tokens: 4 } });

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN}`);
    TMP = mkTmp('nightshift-multinode-');
    PG = await postgres();
    UP = await startUpstream();
    /* a short lease: a killed node's lines come back within seconds */
    DB = PG.createDb('ns_multi') + '&lease_seconds=3';
    for (let i = 0; i < 3; i++) await startNode(i);
});

after(async () => {
    for (const s of NODES) if (s) await s.stop();
    if (UP) await UP.close();
    rmTmp(TMP);
});

test('a 3,000-line batch submitted to one node is worked by all three and survives kill -9 of one', async () => {
    const N = 3000;
    const f = await upload(NODES[0], toJsonl(Array.from({ length: N }, (_, i) => line(i))));
    const b = await createBatch(NODES[0], f.id);
    /* every node answers for the batch: one database */
    for (const s of NODES) assert.equal((await api(s, 'GET', `/v1/batches/${b.id}`)).json().id, b.id);
    await pollUntil(async () => (await api(NODES[1], 'GET', `/v1/batches/${b.id}`)).json(),
        (x) => x.request_counts.completed >= N / 4, { timeoutMs: 120_000, what: 'a quarter of the batch done' });
    /* the node killed holds claimed lines (in flight and buffered): they must come back */
    const before = PG.psql('ns_multi', `SELECT count(*) FROM lines WHERE batch_id='${b.id}' AND state=1 AND node LIKE '%node2'`);
    NODES[2].child.kill('SIGKILL');
    await NODES[2].stop();
    NODES[2] = null;
    const done = (await pollUntil(async () => (await api(NODES[0], 'GET', `/v1/batches/${b.id}`)).json(),
        (x) => ['completed', 'failed', 'cancelled', 'expired'].includes(x.status), { timeoutMs: 300_000, intervalMs: 250, what: 'the batch to end' })).value;
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.deepEqual(done.request_counts, { total: N, completed: N, failed: 0 });
    /* the output, downloaded from the other node: each custom_id exactly once */
    const out = parseJsonl((await api(NODES[1], 'GET', `/v1/files/${done.output_file_id}/content`)).text, 'output');
    assert.equal(out.length, N);
    const ids = byCustomId(out, 'the output');
    for (let i = 0; i < N; i++) assert.ok(ids.has(`req-${i}`), `req-${i} missing`);
    assert.equal(done.error_file_id, null);
    /* each node's share, from the store */
    const shares = PG.psql('ns_multi', `SELECT node, count(*) FROM lines WHERE batch_id='${b.id}' GROUP BY node ORDER BY node`)
        .split('\n').map((l) => l.split('|'));
    console.log(`# shares of ${N} lines (node|lines): ${shares.map((s) => `${path.basename(s[0])}=${s[1]}`).join(', ')}; ` +
        `claimed by the killed node when it died: ${before}; upstream calls: ${upstreamCalls}`);
    assert.equal(shares.length, 3, `three nodes worked the batch: ${JSON.stringify(shares)}`);
    for (const [node, n] of shares) assert.ok(Number(n) > 0, `${node} did no line`);
    assert.equal(shares.reduce((a, s) => a + Number(s[1]), 0), N);
    assert.ok(upstreamCalls >= N, 'every line reached the upstream');
    /* every node lets go of the batch another node finalized */
    for (const s of NODES.filter(Boolean))
        await pollUntil(async () => (await api(s, 'GET', '/metrics')).text, (t) => /nightshift_active_batches\{model="fake"\} 0/.test(t),
            { timeoutMs: 10_000, what: 'active batches back to 0' });
    /* restart the killed node on its data dir: it rejoins and sees the batch */
    await startNode(2);
    assert.equal((await api(NODES[2], 'GET', `/v1/batches/${b.id}`)).json().status, 'completed');
});

test('a file uploaded to one node is downloaded whole from another (chunked in the database)', async () => {
    /* 3.5 MB: four chunks, the last one short */
    const big = Array.from({ length: 3500 }, (_, i) => JSON.stringify({ i, pad: 'x'.repeat(980) })).join('\n') + '\n';
    const f = await upload(NODES[0], big, 'big.jsonl');
    const r = await api(NODES[1], 'GET', `/v1/files/${f.id}/content`);
    assert.equal(r.status, 200);
    assert.equal(r.text.length, big.length);
    assert.ok(r.text === big, 'the content differs');
    assert.equal(PG.psql('ns_multi', `SELECT count(*) FROM file_chunks WHERE file_id='${f.id}'`), '4');
    /* metadata from a third node; deleted on one, gone on all */
    assert.equal((await api(NODES[2], 'GET', `/v1/files/${f.id}`)).json().bytes, big.length);
    assert.equal((await api(NODES[2], 'DELETE', `/v1/files/${f.id}`)).status, 200);
    assert.equal((await api(NODES[1], 'GET', `/v1/files/${f.id}`)).status, 404);
    assert.equal(PG.psql('ns_multi', `SELECT count(*) FROM file_chunks WHERE file_id='${f.id}'`), '0');
});

test('a cancel given to one node stops the batch on every node within seconds', async () => {
    upstreamDelayMs = 200;
    const f = await upload(NODES[1], toJsonl(Array.from({ length: 600 }, (_, i) => line(i))));
    const b = await createBatch(NODES[1], f.id);
    await pollUntil(async () => (await api(NODES[0], 'GET', `/v1/batches/${b.id}`)).json(),
        (x) => x.request_counts.completed >= 30, { timeoutMs: 60_000, what: 'some lines done' });
    const shares = PG.psql('ns_multi', `SELECT count(DISTINCT node) FROM lines WHERE batch_id='${b.id}' AND node IS NOT NULL`);
    assert.ok(Number(shares) >= 2, `several nodes work the batch (${shares})`);
    const c = await api(NODES[2], 'POST', `/v1/batches/${b.id}/cancel`);
    assert.equal(c.status, 200, c.text);
    const t0 = Date.now();
    const end = (await pollUntil(async () => (await api(NODES[0], 'GET', `/v1/batches/${b.id}`)).json(),
        (x) => x.status === 'cancelled', { timeoutMs: 30_000, intervalMs: 100, what: 'the cancel' })).value;
    const took = Date.now() - t0;
    const calls = upstreamCalls;
    await sleep(1500);
    upstreamDelayMs = 40;
    console.log(`# cancelled in ${took} ms; upstream calls after the cancel ended: ${upstreamCalls - calls}`);
    assert.ok(took < 10_000, `cancel took ${took} ms`);
    assert.ok(upstreamCalls - calls <= 2, `work continued after the cancel: ${upstreamCalls - calls} calls`);
    assert.equal(end.request_counts.total, 600);
    assert.equal(end.request_counts.completed + end.request_counts.failed, 600);
});

test('a database with a newer schema is refused, an unreachable one named', async () => {
    const uri = PG.createDb('ns_newer');
    await (async () => {
        /* a node creates the schema, then the database is "upgraded" past it */
        const s = await startServer(['--config', nodeConfig(9, uri)], { name: 'schema' });
        await s.stop();
    })();
    PG.psql('ns_newer', 'INSERT INTO ns_schema(version) VALUES (99)');
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(BIN, ['serve', '--config', nodeConfig(9, uri), '--listen', '127.0.0.1:0'], { encoding: 'utf8', timeout: 30_000 });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /schema version 99, newer than this nightshift understands \(5\)/);
    const bad = spawnSync(BIN, ['serve', '--config', nodeConfig(8, `postgres:///nope?host=${PG.dir}&port=1&user=nightshift`), '--listen', '127.0.0.1:0'],
        { encoding: 'utf8', timeout: 30_000 });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /cannot connect to PostgreSQL at 'postgres:\/\/\/nope'/);
    /* the commands around the server take the same --db */
    const keys = spawnSync(BIN, ['keys', 'create', '--name', 'ci', '--db', DB, '--data-dir', path.join(TMP, 'node0')], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(keys.status, 0, keys.stderr);
    const key = keys.stdout.trim();
    assert.equal((await api(NODES[1], 'GET', '/v1/models')).status, 401, 'a key created against the database is required by every node');
    assert.equal((await api(NODES[1], 'GET', '/v1/models', undefined, { authorization: `Bearer ${key}` })).status, 200);
    const doc = spawnSync(BIN, ['doctor', '--db', DB, '--data-dir', path.join(TMP, 'node0')], { encoding: 'utf8', timeout: 30_000 });
    assert.match(doc.stdout + doc.stderr, /store: schema version 5 \(current\)/);
    const docNewer = spawnSync(BIN, ['doctor', '--db', uri, '--data-dir', path.join(TMP, 'node9')], { encoding: 'utf8', timeout: 30_000 });
    assert.match(docNewer.stdout + docNewer.stderr, /schema version 99 is newer than this nightshift knows \(5\)/);
    const bk = spawnSync(BIN, ['backup', path.join(TMP, 'bk'), '--db', DB, '--data-dir', path.join(TMP, 'node0')], { encoding: 'utf8', timeout: 30_000 });
    assert.notEqual(bk.status, 0);
    assert.match(bk.stderr, /the postgres store cannot be backed up by nightshift; use its own tools \(pg_dump/);
    const lease = spawnSync(BIN, ['serve', '--config', nodeConfig(7, uri.replace(/\?/, '?lease_seconds=0&')), '--listen', '127.0.0.1:0'],
        { encoding: 'utf8', timeout: 30_000 });
    assert.notEqual(lease.status, 0);
    assert.match(lease.stderr, /lease_seconds must be a whole number of seconds from 1 to 3600/);
});
