// Quotas (src/http/quota.h): per-key requests per minute and tokens per day for real-time
// calls, enqueued batch tokens for batches; 429 with Retry-After and a message naming the
// limit, in OpenAI's shape (seen through the official `openai` client), Anthropic's and
// Ollama's; other keys unaffected; admin keys without limits of their own unlimited; the
// server's defaults (--quota-*) for keys without their own.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, SPM_VOCAB, startServer, killHard, api } from './lib.mjs';
import { ensureNpmDeps } from './serve_lib.mjs';

let dir, model, dataDir, s, OpenAI;
const keys = {};

function createKey(name, ...extra) {
    const r = spawnSync(BIN, ['keys', 'create', '--name', name, '--data-dir', dataDir, ...extra], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
}

before(async () => {
    await ensureNpmDeps();
    OpenAI = (await import('openai')).default;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-quota-'));
    model = path.join(dir, 'tiny.gguf');
    dataDir = path.join(dir, 'data');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
    keys.ci = createKey('ci', '--rpm', '3');
    keys.dflt = createKey('dflt');                       // the server's --quota-rpm 2
    keys.free = createKey('free', '--rpm', '0');         // explicitly unlimited
    keys.ops = createKey('ops', '--admin');              // admin, no limits of its own
    keys.tok = createKey('tok', '--tokens-per-day', '30', '--rpm', '0');
    keys.bq = createKey('bq', '--batch-queue-tokens', '300', '--rpm', '0');
    keys.rq = createKey('rq', '--batch-queue-tokens', '150000', '--rpm', '0');
    s = await startServer(['--model', `tiny=${model}`, '--data-dir', dataDir, '--parallel', '4', '--ctx', '2048',
        '--threads', '1', '--quota-rpm', '2']);
});

after(async () => {
    await killHard(s);
    if (!process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

const client = (key) => new OpenAI({ baseURL: `${s.url}/v1`, apiKey: key, maxRetries: 0, timeout: 60_000 });
const chat = (key, extra = {}) => client(key).chat.completions.create({
    model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });

/* the promise's rejection, which must be the openai client's 429 */
async function rateLimited(p) {
    const e = await p.then(() => null, (x) => x);
    assert.ok(e, 'expected a 429, the call succeeded');
    assert.ok(e instanceof OpenAI.RateLimitError, `expected RateLimitError, got ${e && e.constructor.name}: ${e && e.message}`);
    assert.equal(e.status, 429);
    assert.equal(e.code, 'rate_limit_exceeded');
    const retry = Number(e.headers.get('retry-after'));
    assert.ok(Number.isInteger(retry) && retry >= 1, `Retry-After: ${e.headers.get('retry-after')}`);
    assert.match(e.error.message, new RegExp(`; retry after ${retry} s$`));
    return { e, retry };
}

test('requests per minute: the 4th call of a 3-rpm key is a 429 naming the limit; other keys go on', { timeout: 120_000 }, async () => {
    for (let i = 0; i < 3; i++) assert.equal((await chat(keys.ci)).object, 'chat.completion');
    const { e, retry } = await rateLimited(chat(keys.ci));
    assert.ok(retry <= 60, `Retry-After ${retry}`);
    assert.equal(e.type, 'requests');
    assert.match(e.error.message, /^rate limit exceeded for key 'ci': 3 requests per minute; retry after \d+ s$/);
    // streamed calls are counted and refused the same way
    await rateLimited(chat(keys.ci, { stream: true }));
    // other keys are unaffected; explicit 0 and admin keys without own limits are unlimited
    for (let i = 0; i < 5; i++) {
        assert.equal((await chat(keys.free)).object, 'chat.completion');
        assert.equal((await chat(keys.ops)).object, 'chat.completion');
    }
    // a key without limits of its own gets the server's default (--quota-rpm 2)
    await chat(keys.dflt);
    await chat(keys.dflt);
    const d = await rateLimited(chat(keys.dflt));
    assert.match(d.e.error.message, /for key 'dflt': 2 requests per minute/);
    // non-generation routes are not limited
    assert.equal((await api(s, 'GET', '/v1/models', undefined, { authorization: `Bearer ${keys.ci}` })).status, 200);
});

test('the Anthropic and Ollama routes answer 429 in their own shapes', { timeout: 60_000 }, async () => {
    const ant = await api(s, 'POST', '/v1/messages', JSON.stringify({ model: 'tiny', max_tokens: 2,
        messages: [{ role: 'user', content: 'hi' }] }), { 'x-api-key': keys.ci, 'content-type': 'application/json',
        'anthropic-version': '2023-06-01' });
    assert.equal(ant.status, 429, ant.text);
    const a = ant.json();
    assert.equal(a.type, 'error');
    assert.equal(a.error.type, 'rate_limit_error');
    assert.match(a.error.message, /rate limit exceeded for key 'ci': 3 requests per minute; retry after \d+ s/);
    assert.equal(ant.headers.get('x-should-retry'), null, 'a 429 may be retried');
    /* count_tokens is a call of its own to the model's tokenizer: limited the same way */
    const ct = await api(s, 'POST', '/v1/messages/count_tokens', JSON.stringify({ model: 'tiny',
        messages: [{ role: 'user', content: 'hi' }] }), { 'x-api-key': keys.ci, 'content-type': 'application/json' });
    assert.equal(ct.status, 429, ct.text);
    assert.equal(ct.json().error.type, 'rate_limit_error');
    const oll = await fetch(`${s.url}/api/chat`, { method: 'POST', headers: { authorization: `Bearer ${keys.ci}` },
        body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], stream: false }) });
    assert.equal(oll.status, 429);
    assert.ok(Number(oll.headers.get('retry-after')) >= 1);
    const o = await oll.json();
    assert.deepEqual(Object.keys(o), ['error']);
    assert.match(o.error, /rate limit exceeded for key 'ci': 3 requests per minute/);
});

test('tokens per day: counted when calls finish; then 429 until midnight UTC', { timeout: 120_000 }, async () => {
    let used = 0, calls = 0, refused;
    for (; calls < 20; calls++) {
        try {
            const r = await chat(keys.tok, { max_tokens: 4 });
            used += r.usage.total_tokens;
        } catch (e) {
            refused = e;
            break;
        }
    }
    assert.ok(refused, `30 tokens per day never refused after ${calls} calls (${used} tokens)`);
    assert.ok(used >= 30 && calls >= 1, `refused after ${calls} calls and ${used} tokens`);
    const { e, retry } = await rateLimited(Promise.reject(refused));
    assert.equal(e.type, 'tokens');
    assert.match(e.error.message, new RegExp(`^rate limit exceeded for key 'tok': 30 tokens per day \\(${used} used today, UTC\\); retry after \\d+ s$`));
    const now = Date.now() / 1000;
    const midnight = (Math.floor(now / 86400) + 1) * 86400;
    assert.ok(Math.abs(midnight - now - retry) <= 5, `Retry-After ${retry}, midnight UTC in ${midnight - now} s`);
});

/* the server's estimate of a JSONL line: its bytes / 4 + max_tokens */
const est = (line) => Math.floor(Buffer.byteLength(line) / 4) + JSON.parse(line).body.max_tokens;
const bline = (id, maxTokens) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions',
    body: { model: 'tiny', messages: [{ role: 'user', content: `say ${id}` }], max_tokens: maxTokens } });

async function createBatch(c, lines, metadata) {
    const f = await c.files.create({ file: new File([lines.join('\n') + '\n'], 'in.jsonl'), purpose: 'batch' });
    return c.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata });
}

test('enqueued batch tokens: a batch that would go over is refused; it passes once the queue drains', { timeout: 180_000 }, async () => {
    const c = client(keys.bq);
    const a = [bline('a1', 60), bline('a2', 60)];
    const b = [bline('b1', 60), bline('b2', 60)];
    const ea = a.reduce((n, l) => n + est(l), 0), eb = b.reduce((n, l) => n + est(l), 0);
    assert.ok(ea <= 300 && ea + eb > 300, `estimates ${ea} + ${eb}`);
    // a waits (not_before far ahead): its lines stay pending and hold the queue
    const later = String(Math.floor(Date.now() / 1000) + 3600);
    const ba = await createBatch(c, a, { not_before: later });
    const { e, retry } = await rateLimited(createBatch(c, b));
    assert.equal(retry, 60);
    assert.equal(e.type, 'tokens');
    assert.equal(e.error.message,
        `rate limit exceeded for key 'bq': 300 enqueued batch tokens (${ea} queued, this batch about ${eb}); retry after 60 s`);
    // a batch bigger than the whole limit says so
    const big = Array.from({ length: 10 }, (_, i) => bline(`big${i}`, 100));
    const g = await rateLimited(createBatch(c, big));
    assert.match(g.e.error.message, /this batch alone is about \d+: split it/);
    // Anthropic Message Batches and deferred requests count against the same queue
    const ant = await api(s, 'POST', '/v1/messages/batches', JSON.stringify({ requests: [{ custom_id: 'm1',
        params: { model: 'tiny', max_tokens: 200, messages: [{ role: 'user', content: 'hi' }] } }] }),
        { 'x-api-key': keys.bq, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' });
    assert.equal(ant.status, 429, ant.text);
    assert.equal(ant.json().error.type, 'rate_limit_error');
    assert.equal(ant.json().error.message.includes("enqueued batch tokens"), true);
    const def = await api(s, 'POST', '/v1/deferred/chat/completions', JSON.stringify({ model: 'tiny', max_tokens: 250,
        messages: [{ role: 'user', content: 'hi' }] }), { authorization: `Bearer ${keys.bq}`, 'content-type': 'application/json' });
    assert.equal(def.status, 429, def.text);
    assert.equal(def.json().error.code, 'rate_limit_exceeded');
    assert.equal(def.headers.get('retry-after'), '60');
    // other keys are unaffected; the admin key has no queue limit
    const other = await createBatch(client(keys.ops), b);
    assert.equal(other.status, 'validating');
    // once a is cancelled its tokens are free again, and b passes
    await c.batches.cancel(ba.id);
    const bb = await createBatch(c, b);
    assert.ok(['validating', 'in_progress'].includes(bb.status), bb.status);
    for (const id of [bb.id, other.id]) {
        for (const t0 = Date.now(); ; await new Promise((r) => setTimeout(r, 100))) {
            const x = await client(keys.ops).batches.retrieve(id);
            if (x.status === 'completed') break;
            assert.ok(Date.now() - t0 < 90_000, JSON.stringify(x));
        }
    }
});

test('/metrics counts the refusals per key and limit', async () => {
    const m = await api(s, 'GET', '/metrics', undefined, { authorization: `Bearer ${keys.ops}` });
    assert.equal(m.status, 200);
    assert.match(m.text, /^# TYPE nightshift_quota_refused_total counter$/m);
    assert.match(m.text, /^nightshift_quota_refused_total\{key="ci",limit="requests_per_minute"\} [3-9]\d*$/m);
    assert.match(m.text, /^nightshift_quota_refused_total\{key="tok",limit="tokens_per_day"\} 1$/m);
    assert.match(m.text, /^nightshift_quota_refused_total\{key="bq",limit="batch_queue_tokens"\} [4-9]\d*$/m);
});

test('keys create refuses bad limits', () => {
    for (const [opt, v] of [['--rpm', '-1'], ['--tokens-per-day', 'x'], ['--batch-queue-tokens', '1e3']]) {
        const r = spawnSync(BIN, ['keys', 'create', '--name', `bad${opt}`, opt, v, '--data-dir', dataDir], { encoding: 'utf8' });
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, new RegExp(`${opt} must be an integer from 0 \\(unlimited\\)`));
    }
    const ok = spawnSync(BIN, ['keys', 'create', '--name', 'says', '--tokens-per-day', '7', '--rpm', '0', '--data-dir', dataDir],
        { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stderr, /created key 'says' for project 'says'; limits: 0 requests per minute, 7 tokens per day \(0 = unlimited\)/);
    const sv = spawnSync(BIN, ['serve', '--quota-rpm', 'many', '--model', model], { encoding: 'utf8' });
    assert.equal(sv.status, 2, sv.stderr);
    assert.match(sv.stderr, /--quota-rpm must be an integer from 0 \(unlimited\)/);
    const db = execFileSync('sqlite3', [path.join(dataDir, 'nightshift.db'),
        "SELECT name, ifnull(rpm,'-'), ifnull(tokens_per_day,'-'), ifnull(batch_queue_tokens,'-') FROM keys ORDER BY name;"]).toString();
    assert.match(db, /^ci\|3\|-\|-$/m);
    assert.match(db, /^dflt\|-\|-\|-$/m);
    assert.match(db, /^free\|0\|-\|-$/m);
    assert.match(db, /^bq\|0\|-\|300$/m);
});

test('a retry counts against the queue too; an input file gone from disk is a 500 naming it', { timeout: 180_000 }, async () => {
    const c = client(keys.rq);
    // one line fails (over the context), the batch completes with it failed
    const r = await createBatch(c, [bline('ok', 2), bline('toolong', 100000)]);
    let done;
    for (const t0 = Date.now(); ; await new Promise((res) => setTimeout(res, 100))) {
        done = await c.batches.retrieve(r.id);
        if (['completed', 'failed'].includes(done.status)) break;
        assert.ok(Date.now() - t0 < 90_000, JSON.stringify(done));
    }
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.request_counts.failed, 1, JSON.stringify(done));
    // a waiting batch holds about 60,000 of the 150,000; the retry (about 100,000) does not fit
    const later = String(Math.floor(Date.now() / 1000) + 3600);
    const q = await createBatch(c, [bline('wait', 60000)], { not_before: later });
    const retry = await api(s, 'POST', `/v1/batches/${r.id}/retry`, undefined, { authorization: `Bearer ${keys.rq}` });
    assert.equal(retry.status, 429, retry.text);
    assert.match(retry.json().error.message, /^rate limit exceeded for key 'rq': 150000 enqueued batch tokens \(\d+ queued, this batch about \d+\); retry after 60 s$/);
    await c.batches.cancel(q.id);
    const again = await api(s, 'POST', `/v1/batches/${r.id}/retry`, undefined, { authorization: `Bearer ${keys.rq}` });
    assert.equal(again.status, 200, again.text);
    // the input's estimate needs the file: gone from disk (a broken data dir), the create says so
    const f = await c.files.create({ file: new File([bline('x', 1) + '\n'], 'in.jsonl'), purpose: 'batch' });
    fs.rmSync(path.join(dataDir, 'files', f.id));
    const cr = await api(s, 'POST', '/v1/batches', JSON.stringify({ input_file_id: f.id, endpoint: '/v1/chat/completions',
        completion_window: '24h' }), { authorization: `Bearer ${keys.rq}`, 'content-type': 'application/json' });
    assert.equal(cr.status, 500, cr.text);
    assert.equal(cr.json().error.message, `cannot read the input file ${f.id}`);
});
