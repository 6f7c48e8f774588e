// Provider presets of the openai-batch backend (issue 33): `provider = groq` and
// `provider = kluster` models, run against local mocks of those batch APIs
// (provider_batch_mock.mjs) that enforce each provider's documented limits and refuse what the
// provider would refuse: too many lines or bytes in an input file, a completion_window it
// does not accept, an endpoint it does not run. The mocks also misbehave as the providers
// do: 429 with retry-after, 5xx, slow batches, partial failures in the error file, an
// upstream batch that expires half-way (Groq reports the rest as batch_expired, kluster.ai
// leaves them out).
//
//   node --test tests/e2e/provider_batch.test.mjs
//
// Checked: a nightshift batch larger than the mock's line (Groq) or byte (kluster.ai) limit
// goes upstream as several batches, none over the limit; the window sent is the nearest the
// provider accepts; every custom_id comes back exactly once; a final 400 is the line's error
// as the provider gave it; everything retryable (5xx lines, expired and unreported lines)
// completes; the mocks saw no request they would have refused; /v1/completions lines are
// refused by nightshift before they reach a provider that does not run them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { api, submitBatch, waitBatch } from './lib.mjs';
import { BIN, mkTmp, parseJsonl, rmTmp, startServer } from './serve_lib.mjs';
import { startProviderMock } from './provider_batch_mock.mjs';

const GROQ_KEY = 'gsk-mock-groq-5f2e';
const KLUSTER_KEY = 'kl-mock-kluster-77a1';
let TMP, NS, GROQ, KLUSTER;

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN}`);
    TMP = mkTmp('nightshift-provider-batch-e2e-');
    GROQ = await startProviderMock({ provider: 'groq', key: GROQ_KEY, maxLines: 8, maxBytes: 100_000_000,
        rateLimitEvery: 9, serverErrorEvery: 13 });
    KLUSTER = await startProviderMock({ provider: 'kluster', key: KLUSTER_KEY, maxLines: 50_000, maxBytes: 2500,
        rateLimitEvery: 11, serverErrorEvery: 7 });
    const fast = 'poll_interval = 0.05\npoll_max = 0.2\nflush_after = 0.2\nretry_base = 0.05\nretry_max = 0.2\n';
    const ini = path.join(TMP, 'ns.ini');
    fs.writeFileSync(ini, `[server]\ndata-dir = ${path.join(TMP, 'ns')}\n\n` +
        // Groq's preset with the mock's url; its line limit lowered to the mock's
        `[model groq-llama]\nprovider = groq\nurl = ${GROQ.url}\nupstream_model = llama-3.1-8b-instant\n` +
        `completion_window = 2h\nbatch_max_lines = 8\n${fast}\n` +
        // kluster.ai's preset, its byte limit lowered to the mock's; the key from its default variable
        `[model kluster-llama]\nprovider = kluster\nurl = ${KLUSTER.url}\nupstream_model = klusterai/Meta-Llama-3.1-8B-Instruct-Turbo\n` +
        `completion_window = 5h\nbatch_max_bytes = 2500\n${fast}`);
    NS = await startServer(['--config', ini], { env: { GROQ_API_KEY: GROQ_KEY, KLUSTER_API_KEY: KLUSTER_KEY }, name: 'ns' });
});

after(async () => {
    if (NS) await NS.stop();
    if (GROQ) await GROQ.close();
    if (KLUSTER) await KLUSTER.close();
    rmTmp(TMP);
});

const chat = (i, model, content = `question ${i}`) => ({
    custom_id: `q-${i}`,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model, messages: [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content }], max_tokens: 4, temperature: 0 },
});

async function results(batch) {
    const read = async (id) => (id ? parseJsonl((await api(NS, 'GET', `/v1/files/${id}/content`)).text) : []);
    return { out: await read(batch.output_file_id), errs: await read(batch.error_file_id) };
}

/* lines: q-3 rejected (final), q-5 and q-9 fail once with a 500 (retried), q-1 makes its
 * upstream batch expire half-way (the unfinished half retried) */
function lines(n, model) {
    return Array.from({ length: n }, (_, i) => chat(i, model,
        i === 3 ? 'reject this' : i === 5 || i === 9 ? `flaky ${i}` : i === 1 ? 'expire soon' : `question ${i}`));
}

async function runThrough(mock, model, n) {
    const b = await submitBatch(NS, lines(n, model));
    const done = await waitBatch(NS, b.id, (x) => ['completed', 'failed', 'expired'].includes(x.status), 120_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    const { out, errs } = await results(done);
    assert.equal(out.length + errs.length, n, 'every line once');
    assert.equal(new Set([...out, ...errs].map((l) => l.custom_id)).size, n, 'every custom_id exactly once');
    assert.equal(errs.length, 1, JSON.stringify(errs));
    assert.equal(errs[0].custom_id, 'q-3');
    assert.equal(errs[0].response.status_code, 400);
    assert.equal(errs[0].response.body.error.code, 'invalid_prompt', "the provider's own error body");
    for (const l of out) {
        assert.equal(l.response.status_code, 200);
        assert.equal(l.response.body.object, 'chat.completion');
        assert.equal(l.response.body.model, model, "the client's model name");
        const i = Number(l.custom_id.slice(2));
        assert.match(l.response.body.choices[0].message.content, new RegExp(`^echo: .*${i === 1 ? 'expire' : i}`));
    }
    assert.deepEqual(mock.stats.violations, [], 'nightshift sent nothing the provider would refuse');
    assert.equal(mock.stats.expired, 1, 'an upstream batch expired');
    return done;
}

test('groq: a batch over Groq\'s line limit goes up in several batches, 24h window, every line once', async () => {
    await runThrough(GROQ, 'groq-llama', 30);
    const s = GROQ.stats;
    assert.ok(s.uploads.length >= 4, `30 lines over 8-line files: ${s.uploads.length} uploads`);
    for (const u of s.uploads) assert.ok(u.lines <= 8, `an upload of ${u.lines} lines`);
    assert.ok(s.windows.length >= 4 && s.windows.every((w) => w === '24h'), `windows sent: ${s.windows}`);
    assert.ok(s.endpoints.every((e) => e === '/v1/chat/completions'));
    assert.ok(s.rateLimited >= 1 && s.serverErrors >= 1, `429s ${s.rateLimited}, 5xx ${s.serverErrors}: retried through`);
});

test('kluster: a batch over kluster.ai\'s byte limit goes up in several batches, 3h window, every line once', async () => {
    await runThrough(KLUSTER, 'kluster-llama', 24);
    const s = KLUSTER.stats;
    assert.ok(s.uploads.length >= 3, `24 lines over 2500-byte files: ${s.uploads.length} uploads`);
    for (const u of s.uploads) assert.ok(u.bytes <= 2500, `an upload of ${u.bytes} bytes`);
    assert.ok(s.windows.every((w) => w === '3h'), `windows sent: ${s.windows}`);
    assert.ok(s.rateLimited >= 1 && s.serverErrors >= 1, `429s ${s.rateLimited}, 5xx ${s.serverErrors}: retried through`);
});

test('/v1/completions lines are refused before they reach a provider that runs chat only', async () => {
    const before = GROQ.stats.uploads.length;
    const b = await submitBatch(NS, [0, 1].map((i) => ({ custom_id: `c-${i}`, method: 'POST', url: '/v1/completions',
        body: { model: 'groq-llama', prompt: `p ${i}`, max_tokens: 3 } })), { endpoint: '/v1/completions' });
    const done = await waitBatch(NS, b.id, (x) => ['completed', 'failed', 'expired'].includes(x.status), 60_000);
    const { out, errs } = await results(done);
    assert.equal(out.length, 0);
    assert.equal(errs.length, 2);
    for (const e of errs) assert.match(e.response.body.error.message, /runs on Groq's batch API, which runs \/v1\/chat\/completions only/);
    assert.equal(GROQ.stats.uploads.length, before, 'nothing went upstream');
});

test('the mocks refuse what the providers refuse (so the runs above prove nightshift obeyed)', async () => {
    const g = await startProviderMock({ provider: 'groq', key: 'k', maxLines: 2, maxBytes: 4000 });
    const k = await startProviderMock({ provider: 'kluster', key: 'k', maxLines: 2, maxBytes: 4000 });
    try {
        const call = (m, method, p, body, headers = {}) => fetch(m.url + p, { method, body, headers: { authorization: 'Bearer k', ...headers } });
        const upload = (m, n, pad = '') => {
            const form = new FormData();
            form.append('purpose', 'batch');
            form.append('file', new Blob([Array.from({ length: n }, (_, i) => JSON.stringify(chat(i, 'x', `q${pad}`))).join('\n') + '\n']), 'in.jsonl');
            return call(m, 'POST', '/files', form);
        };
        assert.equal((await upload(g, 3)).status, 400, 'too many lines');
        assert.equal((await upload(k, 1, 'x'.repeat(5000))).status, 413, 'too many bytes');
        const fid = (await (await upload(g, 1)).json()).id;
        const kid = (await (await upload(k, 1)).json()).id;
        const create = (m, input_file_id, endpoint, completion_window) => call(m, 'POST', '/batches',
            JSON.stringify({ input_file_id, endpoint, completion_window }), { 'content-type': 'application/json' });
        assert.equal((await create(g, fid, '/v1/chat/completions', '1h')).status, 400, 'Groq: under 24h');
        assert.equal((await create(g, fid, '/v1/chat/completions', '8d')).status, 400, 'Groq: over 7d');
        assert.equal((await create(k, kid, '/v1/chat/completions', '48h')).status, 400, 'kluster.ai: not 1/3/6/12/24h');
        assert.equal((await create(k, kid, '/v1/completions', '24h')).status, 400, 'kluster.ai: chat only');
        assert.equal((await call(g, 'GET', '/batches/none', undefined, { authorization: 'Bearer wrong' })).status, 401);
        const ok = await create(g, fid, '/v1/chat/completions', '72h');
        assert.equal(ok.status, 200);
        const bo = await ok.json();
        assert.equal(bo.metadata, null, "Groq's batch object: metadata null");
        const okk = await (await create(k, kid, '/v1/chat/completions', '3h')).json();
        assert.equal(typeof okk.created_at, 'string', "kluster.ai's timestamps are strings");
        assert.equal(g.stats.violations.length, 4);
        assert.equal(k.stats.violations.length, 3);
    } finally {
        await g.close();
        await k.close();
    }
});
