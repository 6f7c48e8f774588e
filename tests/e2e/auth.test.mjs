// Authentication and isolation: keys from `nightshift keys create`, stored hashed; every
// file and batch owned by its key's project; another project's ids are 404 (not 403) on
// every route that takes one; lists show only the caller's project; admin keys see all and
// reach /metrics; --api-key still works as an admin key; --no-auth only on loopback.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, SPM_VOCAB, sleep, startServer, killHard, api, TERMINAL } from './lib.mjs';

let dir, model, dataDir, s;
const keys = {};

function createKey(name, ...extra) {
    const r = spawnSync(BIN, ['keys', 'create', '--name', name, '--data-dir', dataDir, ...extra], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const key = r.stdout.trim();
    assert.match(key, /^nsk-[A-Za-z0-9]{24}$/);
    return key;
}

before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-auth-'));
    model = path.join(dir, 'tiny.gguf');
    dataDir = path.join(dir, 'data');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
    keys.alice = createKey('alice');
    keys.bob = createKey('bob');
    keys.admin = createKey('ops', '--admin');
    s = await startServer(['--model', `tiny=${model}`, '--data-dir', dataDir, '--parallel', '4', '--ctx', '2048',
        '--threads', '1', '--api-key', 'legacy-admin']);
});

after(async () => {
    await killHard(s);
    if (!process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

const as = (key, extra = {}) => ({ authorization: `Bearer ${key}`, ...extra });
const JSON_CT = { 'content-type': 'application/json' };

async function uploadAs(key, text, name = 'in.jsonl') {
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([text]), name);
    const r = await api(s, 'POST', '/v1/files', form, as(key));
    assert.equal(r.status, 200, r.text);
    return r.json();
}

const line = (id) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions',
    body: { model: 'tiny', messages: [{ role: 'user', content: id }], max_tokens: 2 } }) + '\n';

test('keys are stored hashed; a duplicate name and bad names are refused', () => {
    const db = execFileSync('sqlite3', [path.join(dataDir, 'nightshift.db'), 'SELECT name, project, admin, hash FROM keys ORDER BY name;']).toString();
    assert.doesNotMatch(db, /nsk-/, 'no key in clear in the store');
    assert.match(db, /^alice\|alice\|0\|[0-9a-f]{64}$/m);
    assert.match(db, /^ops\|ops\|1\|[0-9a-f]{64}$/m);
    const dup = spawnSync(BIN, ['keys', 'create', '--name', 'alice', '--data-dir', dataDir], { encoding: 'utf8' });
    assert.equal(dup.status, 2);
    assert.match(dup.stderr, /a key named 'alice' exists already/);
    const bad = spawnSync(BIN, ['keys', 'create', '--name', '../x', '--data-dir', dataDir], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /invalid name '\.\.\/x'/);
});

test('401 without a key, with a wrong key; each key works, Bearer and x-api-key', async () => {
    const none = await api(s, 'GET', '/v1/files');
    assert.equal(none.status, 401);
    assert.match(none.json().error.message, /Incorrect API key provided/);
    assert.equal((await api(s, 'GET', '/v1/files', undefined, as('nsk-wrong'))).status, 401);
    const ant = await api(s, 'GET', '/v1/messages/batches', undefined, { 'x-api-key': 'nsk-wrong' });
    assert.equal(ant.status, 401);
    assert.equal(ant.json().error.type, 'authentication_error');
    for (const k of [keys.alice, keys.bob, keys.admin, 'legacy-admin'])
        assert.equal((await api(s, 'GET', '/v1/files', undefined, as(k))).status, 200);
    assert.equal((await api(s, 'GET', '/v1/messages/batches', undefined, { 'x-api-key': keys.bob })).status, 200);
});

test("a project sees only its own files and batches; another's ids are 404 everywhere", { timeout: 120_000 }, async () => {
    const fa = await uploadAs(keys.alice, line('a1'));
    const cr = await api(s, 'POST', '/v1/batches',
        JSON.stringify({ input_file_id: fa.id, endpoint: '/v1/chat/completions', completion_window: '24h' }), as(keys.alice, JSON_CT));
    assert.equal(cr.status, 200, cr.text);
    const get = (p, key = keys.alice, method = 'GET', body, h = {}) => api(s, method, p, body, as(key, h));
    let b;
    for (const t0 = Date.now(); ; await sleep(100)) {
        b = (await get(`/v1/batches/${cr.json().id}`)).json();
        if (TERMINAL.includes(b.status)) break;
        assert.ok(Date.now() - t0 < 60_000, JSON.stringify(b));
    }
    assert.equal(b.status, 'completed', JSON.stringify(b));
    // bob: 404 on every route that takes alice's ids, in the usual "No such" words
    const bobSees = [
        ['GET', `/v1/files/${fa.id}`, /No such File object/],
        ['GET', `/v1/files/${fa.id}/content`, /No such File object/],
        ['DELETE', `/v1/files/${fa.id}`, /No such File object/],
        ['GET', `/v1/batches/${b.id}`, /No such Batch object/],
        ['POST', `/v1/batches/${b.id}/cancel`, /No such Batch object/],
        ['POST', `/v1/batches/${b.id}/retry`, /No such Batch object/],
        ['GET', `/v1/batches/${b.id}/output`, /No such Batch object/],
        ['GET', `/v1/files/${b.output_file_id}/content`, /No such File object/],
    ];
    for (const [m, p, re] of bobSees) {
        const r = await get(p, keys.bob, m);
        assert.equal(r.status, 404, `${m} ${p}: ${r.text}`);
        assert.match(r.json().error.message, re);
    }
    const steal = await get('/v1/batches', keys.bob, 'POST',
        JSON.stringify({ input_file_id: fa.id, endpoint: '/v1/chat/completions', completion_window: '24h' }), JSON_CT);
    assert.equal(steal.status, 404, steal.text);
    assert.match(steal.json().error.message, new RegExp(`No such File object: ${fa.id}`));
    // lists: bob sees none of alice's; alice sees hers; the admin sees all
    assert.deepEqual((await get('/v1/files', keys.bob)).json().data, []);
    assert.deepEqual((await get('/v1/batches', keys.bob)).json().data, []);
    const fb = await uploadAs(keys.bob, line('b1'));
    const aliceFiles = (await get('/v1/files')).json().data.map((f) => f.id);
    assert.ok(aliceFiles.includes(fa.id) && !aliceFiles.includes(fb.id));
    const adminFiles = (await get('/v1/files', keys.admin)).json().data.map((f) => f.id);
    assert.ok(adminFiles.includes(fa.id) && adminFiles.includes(fb.id));
    assert.equal((await get(`/v1/batches/${b.id}`, keys.admin)).status, 200);
    assert.equal((await get(`/v1/files/${fa.id}/content`, 'legacy-admin')).status, 200);
    // the output file belongs to alice
    assert.equal((await get(`/v1/files/${b.output_file_id}/content`)).status, 200);
});

test('Message Batches and deferred requests are owned too', { timeout: 120_000 }, async () => {
    const cr = await api(s, 'POST', '/v1/messages/batches', JSON.stringify({ requests: [{ custom_id: 'm1',
        params: { model: 'tiny', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] } }] }), { 'x-api-key': keys.alice, ...JSON_CT });
    assert.equal(cr.status, 200, cr.text);
    const id = cr.json().id;
    for (const [m, p] of [['GET', `/v1/messages/batches/${id}`], ['GET', `/v1/messages/batches/${id}/results`],
        ['POST', `/v1/messages/batches/${id}/cancel`], ['DELETE', `/v1/messages/batches/${id}`]]) {
        const r = await api(s, m, p, undefined, { 'x-api-key': keys.bob });
        assert.equal(r.status, 404, `${m} ${p}: ${r.text}`);
        assert.equal(r.json().error.type, 'not_found_error');
    }
    assert.deepEqual((await api(s, 'GET', '/v1/messages/batches', undefined, { 'x-api-key': keys.bob })).json().data, []);
    assert.equal((await api(s, 'GET', `/v1/messages/batches/${id}`, undefined, { 'x-api-key': keys.alice })).status, 200);
    const d = await api(s, 'POST', '/v1/deferred/chat/completions',
        JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 }), as(keys.alice, JSON_CT));
    assert.equal(d.status, 202, d.text);
    assert.equal((await api(s, 'GET', `/v1/deferred/${d.json().id}`, undefined, as(keys.bob))).status, 404);
    assert.equal((await api(s, 'GET', `/v1/deferred/${d.json().id}`, undefined, as(keys.alice))).status, 200);
});

test('stored and background responses are owned too: another project can neither read nor continue them', async () => {
    const ids = [];
    for (const background of [false, true]) {
        const r = await api(s, 'POST', '/v1/responses', JSON.stringify({ model: 'tiny', input: 'hi', max_output_tokens: 16,
            background }), as(keys.alice, JSON_CT));
        assert.equal(r.status, 200, r.text);
        ids.push(r.json().id);
    }
    for (const id of ids) {
        for (const [m, p] of [['GET', `/v1/responses/${id}`], ['GET', `/v1/responses/${id}/input_items`],
            ['POST', `/v1/responses/${id}/cancel`], ['DELETE', `/v1/responses/${id}`]]) {
            const r = await api(s, m, p, undefined, as(keys.bob));
            assert.equal(r.status, 404, `${m} ${p}: ${r.text}`);
        }
        const c = await api(s, 'POST', '/v1/responses', JSON.stringify({ model: 'tiny', input: 'x', previous_response_id: id }),
            as(keys.bob, JSON_CT));
        assert.equal(c.status, 404, c.text);
        assert.equal(c.json().error.param, 'previous_response_id');
        assert.equal((await api(s, 'GET', `/v1/responses/${id}`, undefined, as(keys.alice))).status, 200);
        assert.equal((await api(s, 'GET', `/v1/responses/${id}`, undefined, as(keys.admin))).status, 200);
    }
});

test('/metrics needs an admin key', async () => {
    const r = await api(s, 'GET', '/metrics', undefined, as(keys.alice));
    assert.equal(r.status, 401);
    assert.match(r.json().error.message, /GET \/metrics needs an admin key/);
    assert.equal((await api(s, 'GET', '/metrics', undefined, as(keys.admin))).status, 200);
    assert.equal((await api(s, 'GET', '/metrics', undefined, as('legacy-admin'))).status, 200);
});

test('--no-auth: refused on a non-loopback address, a warning on loopback', async () => {
    const r = spawnSync(BIN, ['serve', '--model', `tiny=${model}`, '--data-dir', dataDir, '--listen', '0.0.0.0:0', '--no-auth'],
        { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--no-auth is for loopback development only; '0\.0\.0\.0' is not a loopback address/);
    const dev = await startServer(['--model', `tiny=${model}`, '--data-dir', path.join(dir, 'dev'), '--threads', '1', '--no-auth']);
    try {
        assert.match(dev.stderr(), /warning: --no-auth/);
        assert.equal((await api(dev, 'GET', '/v1/files')).status, 200);
        assert.equal((await api(dev, 'GET', '/metrics')).status, 200);
    } finally {
        await killHard(dev);
    }
});
