// Webhooks (issue 7): batch.completed / batch.failed / batch.cancelled events POSTed to the
// endpoints of the server's config and to a batch's own metadata.webhook_url, signed the
// Standard Webhooks way. The receiver here verifies every signature itself (node's crypto:
// HMAC-SHA256 over "id.timestamp.body" with the base64 key after "whsec_"), answers the first
// try with a 500 to make nightshift retry, and the delivery state is read back.
//
//   node --test tests/e2e/webhooks.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { api, runNs, submitBatch, waitBatch } from './lib.mjs';
import { BIN, SPM_VOCAB, mkTmp, pollUntil, rmTmp, startServer } from './serve_lib.mjs';

const SECRET = `whsec_${crypto.randomBytes(24).toString('base64')}`;
let TMP;
let NS;
let RX; // the receiver
const got = []; // verified events: {path, event, headers, tries}
const tries = new Map(); // webhook-id -> tries seen

function verify(headers, body) {
    const id = headers['webhook-id'];
    const ts = headers['webhook-timestamp'];
    const sig = headers['webhook-signature'];
    if (!id || !ts || !sig) return false;
    const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
    const want = crypto.createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64');
    const fresh = Math.abs(Date.now() / 1000 - Number(ts)) < 300;
    return fresh && sig.split(' ').some((s) => s === `v1,${want}`);
}

before(async () => {
    assert.ok(fs.existsSync(BIN));
    TMP = mkTmp('nightshift-webhooks-e2e-');
    RX = http.createServer((req, res) => {
        let body = '';
        req.on('data', (d) => (body += d));
        req.on('end', () => {
            if (!verify(req.headers, body)) {
                res.writeHead(401).end('bad signature');
                return;
            }
            const id = req.headers['webhook-id'];
            const n = (tries.get(id) || 0) + 1;
            tries.set(id, n);
            if (n === 1) {
                res.writeHead(500).end('try again');
                return;
            }
            got.push({ path: req.url, event: JSON.parse(body), headers: req.headers, tries: n });
            res.writeHead(204).end();
        });
    });
    await new Promise((r) => RX.listen(0, '127.0.0.1', r));
    const model = path.join(TMP, 'tiny.gguf');
    const g = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', model, '--seed', '4'], { timeoutMs: 60_000 });
    assert.equal(g.code, 0, g.stderr);
    const ini = path.join(TMP, 'ns.ini');
    fs.writeFileSync(ini, `[server]\nparallel = 4\nctx = 4096\n\n[model tiny]\nbackend = local\npath = ${model}\n\n` +
        `[webhook ops]\nurl = http://127.0.0.1:${RX.address().port}/ops\nsecret_env = WH_SECRET\nretry_base = 0.2\n` +
        `events = batch.completed, batch.failed, batch.cancelled\n`);
    NS = await startServer(['--config', ini, '--data-dir', path.join(TMP, 'data')], { env: { WH_SECRET: SECRET }, name: 'wh' });
});

after(async () => {
    if (NS) await NS.stop();
    if (RX) await new Promise((r) => RX.close(r));
    rmTmp(TMP);
});

const line = (i) => ({ custom_id: `w-${i}`, method: 'POST', url: '/v1/chat/completions',
    body: { model: 'tiny', messages: [{ role: 'user', content: `hello ${i}` }], max_tokens: 4 } });

test('batch.completed reaches the configured endpoint and the batch\'s own URL, signed, after a retry', async () => {
    const b = await submitBatch(NS, [line(1), line(2)], { metadata: { webhook_url: `http://127.0.0.1:${RX.address().port}/mine` } });
    await waitBatch(NS, b.id, (x) => x.status === 'completed');
    const { value } = await pollUntil(async () => got.filter((g) => g.event.data.id === b.id), (v) => v.length === 2,
        { timeoutMs: 20_000, what: 'two deliveries' });
    for (const g of value) {
        assert.equal(g.event.object, 'event');
        assert.equal(g.event.type, 'batch.completed');
        assert.match(g.event.id, /^evt_/);
        assert.equal(g.headers['webhook-id'], g.event.id);
        assert.equal(g.tries, 2, 'the 500 was retried');
    }
    assert.deepEqual(value.map((g) => g.path).sort(), ['/mine', '/ops']);
    const list = (await api(NS, 'GET', `/v1/nightshift/webhooks?batch_id=${b.id}`)).json();
    assert.equal(list.data.length, 2);
    for (const d of list.data) {
        assert.equal(d.state, 'delivered', JSON.stringify(d));
        assert.equal(d.attempts, 2);
        assert.ok(d.delivered_at > 0);
        assert.equal(d.type, 'batch.completed');
    }
    assert.ok(!NS.stderr().includes(SECRET.slice(6)), 'the secret is never logged');
});

test('batch.failed and batch.cancelled; batch.expired is not subscribed; bad webhook metadata is refused', async () => {
    /* a batch whose file names two models fails validation */
    const bad = await submitBatch(NS, [line(1), { ...line(2), body: { ...line(2).body, model: 'other' } }]);
    await waitBatch(NS, bad.id, (x) => x.status === 'failed');
    /* a batch held back by not_before, cancelled while it waits */
    const later = await submitBatch(NS, [line(3)], { metadata: { not_before: String(Math.floor(Date.now() / 1000) + 3600) } });
    const c = await api(NS, 'POST', `/v1/batches/${later.id}/cancel`);
    assert.equal(c.status, 200, c.text);
    await waitBatch(NS, later.id, (x) => x.status === 'cancelled');
    await pollUntil(async () => got.map((g) => `${g.event.type} ${g.event.data.id}`),
        (v) => v.includes(`batch.failed ${bad.id}`) && v.includes(`batch.cancelled ${later.id}`),
        { timeoutMs: 20_000, what: 'failed and cancelled events' });
    const r = await api(NS, 'POST', '/v1/files', (() => {
        const f = new FormData();
        f.append('purpose', 'batch');
        f.append('file', new Blob([JSON.stringify(line(9)) + '\n']), 'x.jsonl');
        return f;
    })());
    const mk = (md) => api(NS, 'POST', '/v1/batches', JSON.stringify({ input_file_id: r.json().id, endpoint: '/v1/chat/completions',
        completion_window: '24h', metadata: md }), { 'content-type': 'application/json' });
    const e1 = await mk({ webhook_url: 'ftp://example.com/x' });
    assert.equal(e1.status, 400);
    assert.match(e1.json().error.message, /metadata.webhook_url.*http/);
});

test('a config with a bad webhook section names the line', async () => {
    const cases = [
        ['[webhook a]\nurl = http://x/\nsecret_env = WH_BAD\n', { WH_BAD: 'not-a-secret' }, /:3: \[webhook a\]: the secret in WH_BAD must be 'whsec_'/],
        ['[webhook a]\nurl = http://x/\nevents = batch.exploded\n', {}, /:3: \[webhook a\]: unknown event 'batch.exploded'/],
        ['[webhook a]\nurl = http://x/\nsecret = whsec_abc\n', {}, /:3: .*secrets are not read from the config file/],
        ['[webhook a]\nurl = http://x/\n', {}, /\[webhook a\] needs url and secret_env/],
    ];
    for (const [text, env, want] of cases) {
        const f = path.join(TMP, 'bad.ini');
        fs.writeFileSync(f, text);
        const r = await runNs(['serve', '--config', f, '--listen', '127.0.0.1:0'], { timeoutMs: 30_000, env });
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, want);
    }
    /* without a [webhook], a batch cannot name its own URL: nothing could sign it */
    const plain = await startServer(['--model', `tiny=${path.join(TMP, 'tiny.gguf')}`, '--data-dir', path.join(TMP, 'plain')], { name: 'plain' });
    try {
        const f = new FormData();
        f.append('purpose', 'batch');
        f.append('file', new Blob([JSON.stringify(line(1)) + '\n']), 'x.jsonl');
        const up = (await api(plain, 'POST', '/v1/files', f)).json();
        const e = await api(plain, 'POST', '/v1/batches', JSON.stringify({ input_file_id: up.id, endpoint: '/v1/chat/completions',
            completion_window: '24h', metadata: { webhook_url: 'http://127.0.0.1:1/x' } }), { 'content-type': 'application/json' });
        assert.equal(e.status, 400);
        assert.match(e.json().error.message, /needs a signing secret: configure a \[webhook NAME\] section/);
    } finally {
        await plain.stop();
    }
});

test('--log-format json: every stderr line is one JSON object with time, level and msg; model events name their model', async () => {
    const dir = path.join(TMP, 'jsonlog');
    fs.mkdirSync(dir);
    const s = await startServer(['--model', `tiny=${path.join(TMP, 'tiny.gguf')}`, '--data-dir', path.join(dir, 'data'),
        '--log-format', 'json', '--listen', '127.0.0.1:0'], { name: 'jsonlog' });
    let stderr;
    try {
        const bad = await runNs(['serve', '--log-format', 'yaml', '--model', 'x.gguf'], { timeoutMs: 30_000 });
        assert.equal(bad.code, 2);
        assert.match(bad.stderr, /--log-format must be 'text' or 'json', not 'yaml'/);
    } finally {
        await s.stop();
        stderr = s.stderr();
    }
    const lines = stderr.trim().split('\n');
    assert.ok(lines.length >= 3, stderr);
    for (const l of lines) {
        const o = JSON.parse(l);
        assert.match(o.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert.ok(['info', 'warn', 'error'].includes(o.level), l);
        assert.equal(typeof o.msg, 'string');
    }
    const model = lines.map((l) => JSON.parse(l)).find((o) => /^model 'tiny'/.test(o.msg));
    assert.equal(model.model, 'tiny');
    assert.ok(lines.some((l) => /listening on http/.test(JSON.parse(l).msg)));
});
