// POST /v1/embeddings on a model loaded with --embedding, end to end: the official `openai`
// SDK (float, and base64, which it asks for by default and decodes), token-id inputs, the
// errors (each a 400 naming the parameter), /v1/embeddings lines through the Batch API and
// through `nightshift run`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, SPM_VOCAB, startServer, killHard, api, submitBatch, waitBatch, TERMINAL, runNs, describeRun, readJsonl, writeJsonl } from './lib.mjs';
import { ensureNpmDeps } from './serve_lib.mjs';

let dir, model, server, client;

const json = (s, p, body) => api(s, 'POST', p, JSON.stringify(body), { 'content-type': 'application/json' });
const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

before(async () => {
    await ensureNpmDeps();
    const { default: OpenAI } = await import('openai');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-embed-'));
    model = path.join(dir, 'tiny.gguf');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
    server = await startServer(['--model', `emb=${model}`, '--embedding', '--data-dir', path.join(dir, 'data'),
        '--parallel', '4', '--ctx', '2048', '--threads', '1']);
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 60_000 });
});

after(async () => {
    if (server) await killHard(server);
    if (dir && !process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

test('openai SDK: float and base64 (its default) give the same normalized vectors; usage; token inputs', async () => {
    const f = await client.embeddings.create({ model: 'emb', input: ['hello world', 'a second input'], encoding_format: 'float' });
    assert.equal(f.object, 'list');
    assert.equal(f.model, 'emb');
    assert.deepEqual(f.data.map((d) => [d.object, d.index]), [['embedding', 0], ['embedding', 1]]);
    const dim = f.data[0].embedding.length;
    assert.ok(dim > 0);
    for (const d of f.data) assert.ok(Math.abs(norm(d.embedding) - 1) < 1e-4);
    assert.ok(f.usage.prompt_tokens > 4);
    assert.equal(f.usage.total_tokens, f.usage.prompt_tokens);
    assert.notDeepEqual(f.data[0].embedding, f.data[1].embedding);

    const b = await client.embeddings.create({ model: 'emb', input: ['hello world', 'a second input'] });
    assert.equal(b.data.length, 2);
    for (let i = 0; i < 2; i++) {
        assert.equal(b.data[i].embedding.length, dim);
        // base64 is the float32 bytes: the same values as the float answer (float32 in JSON)
        b.data[i].embedding.forEach((x, k) => assert.ok(Math.abs(x - f.data[i].embedding[k]) < 1e-6));
    }
    // raw base64 is little-endian float32
    const raw = await json(server, '/v1/embeddings', { model: 'emb', input: 'hello world', encoding_format: 'base64' });
    const buf = Buffer.from(raw.json().data[0].embedding, 'base64');
    assert.equal(buf.length, dim * 4);
    assert.ok(Math.abs(buf.readFloatLE(0) - f.data[0].embedding[0]) < 1e-6);

    // one string alone is the same vector as in a list; token ids work, one array or several
    const one = await client.embeddings.create({ model: 'emb', input: 'hello world', encoding_format: 'float' });
    one.data[0].embedding.forEach((x, k) => assert.ok(Math.abs(x - f.data[0].embedding[k]) < 1e-5));
    const t1 = await json(server, '/v1/embeddings', { model: 'emb', input: [1, 450, 4996] });
    assert.equal(t1.status, 200, t1.text);
    assert.equal(t1.json().usage.prompt_tokens, 3);
    const t2 = await json(server, '/v1/embeddings', { model: 'emb', input: [[1, 450], [1, 4996, 17]], dimensions: dim });
    assert.equal(t2.status, 200, t2.text);
    assert.equal(t2.json().data.length, 2);
    assert.equal(t2.json().usage.prompt_tokens, 5);
});

test('errors name the parameter: input types, empty, too long, dimensions, encoding_format; chat on an embedding model', async () => {
    const dim = (await client.embeddings.create({ model: 'emb', input: 'x', encoding_format: 'float' })).data[0].embedding.length;
    const cases = [
        [{ input: [] }, 'input', /empty array/],
        [{ input: '' }, 'input', /empty string/],
        [{ input: 5 }, 'input', /expected a string/],
        [{ input: [['a']] }, 'input', /expected a string or an array of integers/],
        [{ input: ['a', [1, 2]] }, 'input', /mixes strings and token arrays/],
        [{ input: [1, -2] }, 'input', /non-negative integers/],
        [{ input: [99999999] }, 'input', /not in this model's vocabulary/],
        [{ input: 'word '.repeat(3000) }, 'input', /maximum context length/],
        [{}, 'input', /Missing required parameter: 'input'/],
        [{ input: 'x', dimensions: dim + 1 }, 'dimensions', new RegExp(`${dim} dimensions`)],
        [{ input: 'x', encoding_format: 'hex' }, 'encoding_format', /'float' or 'base64'/],
        [{ input: 'x', frobnicate: 1 }, null, /Unrecognized request argument supplied: frobnicate/],
    ];
    for (const [extra, param, re] of cases) {
        const r = await json(server, '/v1/embeddings', { model: 'emb', ...extra });
        assert.equal(r.status, 400, `${JSON.stringify(extra).slice(0, 80)}: ${r.text}`);
        const e = r.json().error;
        assert.equal(e.param, param, r.text);
        assert.match(e.message, re);
    }
    const long = await json(server, '/v1/embeddings', { model: 'emb', input: 'word '.repeat(3000) });
    assert.equal(long.json().error.code, 'context_length_exceeded');
    const nf = await json(server, '/v1/embeddings', { model: 'nope', input: 'x' });
    assert.equal(nf.status, 404);
    const chat = await json(server, '/v1/chat/completions', { model: 'emb', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(chat.status, 400, chat.text);
    assert.equal(chat.json().error.param, 'model');
    assert.match(chat.json().error.message, /embeddings only/);
    /* nor is a prompt counted on it (POST /v1/messages/count_tokens), in Anthropic's shape */
    const ct = await json(server, '/v1/messages/count_tokens', { model: 'emb', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(ct.status, 400, ct.text);
    assert.equal(ct.json().error.type, 'invalid_request_error');
    assert.match(ct.json().error.message, /embeddings only/);
});

/* issue 31.8: Ollama's /api/embed and legacy /api/embeddings on the same model, through the
 * official `ollama` client: the same vectors as /v1/embeddings, in Ollama's shapes */
test('ollama client: embed (one input or several) and embeddings (legacy) give /v1/embeddings\' vectors; truncate; errors', async () => {
    const { Ollama } = await import('ollama');
    const ol = new Ollama({ host: server.url });
    const ref = await client.embeddings.create({ model: 'emb', input: ['hello world', 'a second input'], encoding_format: 'float' });
    const close = (a, b) => a.length === b.length && a.every((x, k) => Math.abs(x - b[k]) < 1e-5);
    const many = await ol.embed({ model: 'emb', input: ['hello world', 'a second input'] });
    assert.deepEqual(Object.keys(many).sort(), ['embeddings', 'load_duration', 'model', 'prompt_eval_count', 'total_duration']);
    assert.equal(many.model, 'emb');
    assert.equal(many.embeddings.length, 2);
    for (let i = 0; i < 2; i++) assert.ok(close(many.embeddings[i], ref.data[i].embedding), `input ${i}`);
    assert.equal(many.prompt_eval_count, ref.usage.prompt_tokens);
    assert.ok(many.total_duration > 0 && many.load_duration >= 0 && many.load_duration <= many.total_duration);
    const one = await ol.embed({ model: 'emb:latest', input: 'hello world', keep_alive: '5m', options: { num_thread: 2 } });
    assert.equal(one.embeddings.length, 1);
    assert.ok(close(one.embeddings[0], ref.data[0].embedding));
    const legacy = await ol.embeddings({ model: 'emb', prompt: 'hello world' });
    assert.deepEqual(Object.keys(legacy), ['embedding']);
    assert.ok(close(legacy.embedding, ref.data[0].embedding));
    /* nothing to embed: no vectors, as Ollama answers */
    assert.deepEqual((await ol.embed({ model: 'emb', input: [] })).embeddings, []);
    assert.deepEqual((await ol.embeddings({ model: 'emb', prompt: '' })).embedding, []);
    /* truncate (default true): an input over the context is cut to it; false: a 400 */
    const long = 'word '.repeat(3000);
    const cut = await ol.embed({ model: 'emb', input: long });
    assert.equal(cut.embeddings.length, 1);
    assert.equal(cut.embeddings[0].length, ref.data[0].embedding.length);
    const fail = async (p, status, re) => {
        await assert.rejects(p, (e) => {
            assert.equal(e.status_code, status, e.message);
            assert.match(e.error ?? e.message, re);
            return true;
        });
    };
    await fail(ol.embed({ model: 'emb', input: long, truncate: false }), 400, /maximum context length/);
    await fail(ol.embed({ model: 'emb', input: 'x', dimensions: 3 }), 400, /dimensions/);
    await fail(ol.embed({ model: 'emb', input: 'x', frobnicate: 1 }), 400, /unknown field "frobnicate"/);
    await fail(ol.embed({ model: 'emb', input: [1, 2] }), 400, /input\[0\]: expected a string/);
    await fail(ol.embed({ model: 'emb', input: 'x', options: { temprature: 1 } }), 400, /unknown option "temprature"/);
    await fail(ol.embeddings({ model: 'emb', prompt: ['x'] }), 400, /prompt: expected a string/);
    await fail(ol.embed({ model: 'nope', input: 'x' }), 404, /^model "nope" not found$/);
    await fail(ol.embed({ model: '', input: 'x' }), 400, /model is required/);
});

const LINES = [
    { custom_id: 'e1', method: 'POST', url: '/v1/embeddings', body: { model: 'emb', input: 'hello world' } },
    { custom_id: 'e2', method: 'POST', url: '/v1/embeddings', body: { model: 'emb', input: ['a', 'b', 'c'], encoding_format: 'base64' } },
    { custom_id: 'bad', method: 'POST', url: '/v1/embeddings', body: { model: 'emb', input: [] } },
];

function checkLines(out, errs, dim) {
    const byId = Object.fromEntries(out.map((l) => [l.custom_id, l]));
    assert.equal(byId.e1.response.status_code, 200);
    assert.equal(byId.e1.response.body.data[0].embedding.length, dim);
    assert.equal(byId.e2.response.body.data.length, 3);
    assert.equal(Buffer.from(byId.e2.response.body.data[2].embedding, 'base64').length, dim * 4);
    assert.equal(errs.length, 1);
    assert.equal(errs[0].custom_id, 'bad');
    assert.equal(errs[0].response.status_code, 400);
    assert.equal(errs[0].response.body.error.param, 'input');
}

test('/v1/embeddings lines: the Batch API and nightshift run', async () => {
    const f = await client.embeddings.create({ model: 'emb', input: 'hello world', encoding_format: 'float' });
    const dim = f.data[0].embedding.length;
    const b = await submitBatch(server, LINES, { endpoint: '/v1/embeddings' });
    const done = await waitBatch(server, b.id, (x) => TERMINAL.includes(x.status), 120_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    const read = async (id) => (await api(server, 'GET', `/v1/files/${id}/content`)).text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const out = await read(done.output_file_id);
    checkLines(out, await read(done.error_file_id), dim);
    // the same vector as real time
    const e1 = out.find((l) => l.custom_id === 'e1').response.body.data[0].embedding;
    const diff = Math.max(...e1.map((x, k) => Math.abs(x - f.data[0].embedding[k])));
    assert.ok(diff < 1e-4, `batch and real-time vectors differ by ${diff}`);

    const input = path.join(dir, 'emb.jsonl');
    writeJsonl(input, LINES);
    const outFile = path.join(dir, 'emb.out.jsonl'), errFile = path.join(dir, 'emb.err.jsonl');
    const r = await runNs(['run', input, '--model', model, '--model-alias', 'emb', '--embedding', '--pooling', 'mean', '-o', outFile,
        '-e', errFile, '--skip-invalid', '--quiet']);
    assert.ok(r.code === 0 || r.code === 2, describeRun(r));
    const runOut = readJsonl(outFile);
    let runErr = fs.existsSync(errFile) ? readJsonl(errFile) : [];
    checkLines(runOut, runErr, dim);
    // a chat line on an embedding model is that line's error, naming model
    const mixed = path.join(dir, 'mixed.jsonl');
    writeJsonl(mixed, [LINES[0], { custom_id: 'c', method: 'POST', url: '/v1/chat/completions',
        body: { model: 'emb', messages: [{ role: 'user', content: 'x' }] } }]);
    const r2 = await runNs(['run', mixed, '--model', model, '--model-alias', 'emb', '--embedding', '-o', path.join(dir, 'm.out'),
        '-e', path.join(dir, 'm.err'), '--quiet']);
    assert.ok(r2.code === 0 || r2.code === 2, describeRun(r2));
    runErr = readJsonl(path.join(dir, 'm.err'));
    assert.equal(runErr.length, 1);
    assert.equal(runErr[0].custom_id, 'c');
    assert.equal(runErr[0].response.body.error.param, 'model');
    // --pooling takes mean, cls or last
    for (const bad of ['max', 'none']) {
        const r3 = await runNs(['run', input, '--model', model, '--embedding', '--pooling', bad, '-o', path.join(dir, 'p.out')]);
        assert.equal(r3.code, 2, describeRun(r3));
        assert.match(r3.stderr, /--pooling must be mean, cls or last/);
    }
});
