// HTTPS (issue 8): `nightshift serve --tls-cert FILE --tls-key FILE` through libmicrohttpd's
// GnuTLS, with a certificate made here by Debian's openssl; node's https client checks it
// against that certificate as its only CA, so the test proves a real, verified TLS session.
//
//   node --test tests/e2e/tls.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';

import { runNs } from './lib.mjs';
import { BIN, SPM_VOCAB, THREADS, mkTmp, rmTmp } from './serve_lib.mjs';

let TMP;
let CERT;
let KEY;
let srv; // { child, port, log() }

function makeCert(dir, name) {
    const key = path.join(dir, `${name}.key`);
    const cert = path.join(dir, `${name}.crt`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
        '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    return { key, cert };
}

function get(mod, port, p, opts = {}) {
    return new Promise((resolve, reject) => {
        const req = mod.request({ host: '127.0.0.1', port, path: p, method: opts.method || 'GET', ...opts }, (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode, body }));
        });
        req.on('error', reject);
        req.end(opts.body);
    });
}

before(async () => {
    assert.ok(fs.existsSync(BIN));
    TMP = mkTmp('nightshift-tls-e2e-');
    ({ cert: CERT, key: KEY } = makeCert(TMP, 'server'));
    const model = path.join(TMP, 'tiny.gguf');
    const g = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', model, '--seed', '2'], { timeoutMs: 60_000 });
    assert.equal(g.code, 0, g.stderr);
    const child = spawn(BIN, ['serve', '--model', `tiny=${model}`, '--data-dir', path.join(TMP, 'data'), '--listen', '127.0.0.1:0',
        '--threads', THREADS, '--parallel', '2', '--ctx', '2048', '--tls-cert', CERT, '--tls-key', KEY], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    srv = await new Promise((resolve, reject) => {
        child.stderr.on('data', (d) => {
            log += d;
            const m = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(log);
            if (m) resolve({ child, port: Number(m[1]), log: () => log });
        });
        child.on('exit', (code) => reject(new Error(`serve exited (${code}):\n${log}`)));
    });
});

after(async () => {
    if (srv) {
        srv.child.kill('SIGTERM');
        await new Promise((r) => srv.child.on('exit', r));
    }
    rmTmp(TMP);
});

test('HTTPS with a verified certificate: health and a chat completion', async () => {
    const ca = fs.readFileSync(CERT);
    const h = await get(https, srv.port, '/health', { ca });
    assert.equal(h.status, 200);
    const body = JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
    const r = await get(https, srv.port, '/v1/chat/completions', { ca, method: 'POST', body,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } });
    assert.equal(r.status, 200, r.body);
    assert.equal(JSON.parse(r.body).object, 'chat.completion');
    /* a client that does not trust the certificate refuses it */
    await assert.rejects(get(https, srv.port, '/health'), /self.signed|unable to verify|certificate/i);
    /* plain HTTP to the TLS port gets no HTTP answer */
    await assert.rejects(get(http, srv.port, '/health'));
});

/* issue 31.1: a Message Batch's results_url says https under TLS (it said http://, the
 * listen address, which the SDK's results() then fetched) */
test('HTTPS: a Message Batch\'s results_url is an https:// URL of the Host the client used', async () => {
    const ca = fs.readFileSync(CERT);
    const json = { ca, headers: { 'content-type': 'application/json' } };
    const body = JSON.stringify({ requests: [{ custom_id: 'r', params: { model: 'tiny', max_tokens: 2,
        messages: [{ role: 'user', content: 'hi' }] } }] });
    const c = await get(https, srv.port, '/v1/messages/batches', { ...json, method: 'POST', body });
    assert.equal(c.status, 200, c.body);
    const id = JSON.parse(c.body).id;
    let b;
    for (const t0 = Date.now(); ; await new Promise((r) => setTimeout(r, 100))) {
        b = JSON.parse((await get(https, srv.port, `/v1/messages/batches/${id}`, { ca })).body);
        if (b.processing_status === 'ended') break;
        assert.ok(Date.now() - t0 < 60_000, JSON.stringify(b));
    }
    assert.equal(b.results_url, `https://127.0.0.1:${srv.port}/v1/messages/batches/${id}/results`);
    const r = await get(https, srv.port, new URL(b.results_url).pathname, { ca });
    assert.equal(r.status, 200, r.body);
    assert.equal(JSON.parse(r.body.trim()).custom_id, 'r');
});

test('TLS options: both or neither, readable PEM files, a key that matches', async () => {
    const other = makeCert(TMP, 'other');
    const notPem = path.join(TMP, 'not.pem');
    fs.writeFileSync(notPem, 'hello\n');
    const cases = [
        [['--tls-cert', CERT], /--tls-cert and --tls-key go together/],
        [['--tls-cert', path.join(TMP, 'missing.crt'), '--tls-key', KEY], /--tls-cert: cannot read '.*missing\.crt': No such file/],
        [['--tls-cert', notPem, '--tls-key', KEY], /--tls-cert: '.*not\.pem' is not a PEM file/],
        [['--tls-cert', CERT, '--tls-key', other.key], /cannot listen on 127\.0\.0\.1:0 with TLS \(.*do not match\)/],
    ];
    for (const [args, want] of cases) {
        const r = await runNs(['serve', '--model', `tiny=${path.join(TMP, 'tiny.gguf')}`, '--data-dir', path.join(TMP, 'bad'),
            '--listen', '127.0.0.1:0', '--threads', THREADS, '--parallel', '1', '--ctx', '512', ...args], { timeoutMs: 60_000 });
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, want);
    }
});
