// The bad-input catalogue: malformed, hostile and oversized requests against one
// `nightshift serve`. Each gets its specific, documented error (status and message
// checked), and after each the server still answers /health and a real chat completion.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BIN, SPM_VOCAB, sleep, startServer, killHard, api, submitBatch, waitBatch, TERMINAL } from './lib.mjs';

let dir, model, s, dataDir;

before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-bad-input-'));
    model = path.join(dir, 'tiny.gguf');
    dataDir = path.join(dir, 'data');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
    s = await startServer(['--model', `tiny=${model}`, '--data-dir', dataDir, '--parallel', '4', '--ctx', '2048',
        '--threads', '1', '--max-body', '2MB']);
});

after(async () => {
    await killHard(s);
    if (!process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

const JSON_CT = { 'content-type': 'application/json' };
const chatBody = (extra = {}) => ({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });

/* the server still serves: /health and a real request */
async function stillServing() {
    const h = await api(s, 'GET', '/health');
    assert.equal(h.status, 200, h.text);
    const c = await api(s, 'POST', '/v1/chat/completions', JSON.stringify(chatBody()), JSON_CT);
    assert.equal(c.status, 200, c.text);
    assert.equal(c.json().object, 'chat.completion');
}

/* status and an OpenAI error whose message matches re */
function expectError(r, status, re, param) {
    assert.equal(r.status, status, r.text);
    const e = r.json().error;
    assert.match(typeof e === 'string' ? e : e.message, re, r.text);
    if (param !== undefined) assert.equal(e.param, param, r.text);
}

/* raw bytes over a socket; resolves to the whole answer as text (the server closes) */
function raw(bytes, { end = true } = {}) {
    return new Promise((resolve, reject) => {
        const sock = net.connect(new URL(s.url).port, '127.0.0.1');
        let out = '';
        sock.on('data', (d) => (out += d));
        sock.on('error', reject);
        sock.on('close', () => resolve(out));
        sock.write(bytes, () => {
            if (end) sock.end();
            else setTimeout(() => sock.destroy(), 200); /* the client goes away mid-body */
        });
    });
}

const uploadTemps = () => fs.readdirSync(path.join(dataDir, 'files')).filter((f) => f.startsWith('upload-') || f.includes('.tmp-'));

test('truncated uploads: a client gone mid-body leaves nothing; an unterminated multipart is refused', async () => {
    const b = '----nsboundary';
    const head = (len) => `POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=${b}\r\n` +
        `Content-Length: ${len}\r\nConnection: close\r\n\r\n`;
    const part = `--${b}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n` +
        `--${b}\r\nContent-Disposition: form-data; name="file"; filename="t.jsonl"\r\nContent-Type: application/octet-stream\r\n\r\n` +
        '{"custom_id":"a"'.repeat(1000);
    // Content-Length promises more than comes, then the connection drops
    await raw(head(1 << 20) + part, { end: false });
    for (let i = 0; i < 50 && uploadTemps().length; i++) await sleep(100);
    assert.deepEqual(uploadTemps(), [], 'the temp file of the cut upload is removed');
    // the whole body arrives, but the multipart has no closing boundary
    const body = part;
    const ans = await raw(head(Buffer.byteLength(body)) + body);
    assert.match(ans, /^HTTP\/1\.1 400/, ans);
    assert.match(ans, /the upload is incomplete: the multipart body has no closing boundary/, ans);
    assert.deepEqual(uploadTemps(), []);
    await stillServing();
});

test('wrong content types: 415 with what is expected', async () => {
    expectError(await api(s, 'POST', '/v1/files', '{}', JSON_CT), 415,
        /Uploads must be multipart\/form-data with the fields 'file' and 'purpose'\./);
    expectError(await api(s, 'POST', '/v1/chat/completions', JSON.stringify(chatBody()), { 'content-type': 'text/plain' }),
        415, /The request body must be application\/json\./);
    expectError(await api(s, 'POST', '/v1/batches', 'input_file_id=x', { 'content-type': 'application/x-www-form-urlencoded' }),
        415, /The request body must be application\/json\./);
    await stillServing();
});

test('invalid UTF-8: in a JSON body (400, which byte) and in a batch file (the batch fails, which line)', async () => {
    const good = Buffer.from(JSON.stringify(chatBody({ messages: [{ role: 'user', content: 'aXb' }] })));
    const bad = Buffer.from(good.toString().replace('aXb', 'a\u0000b'));
    bad[bad.indexOf(0)] = 0xff; /* a lone 0xff where the X was */
    const at = bad.indexOf(0xff) + 1;
    expectError(await api(s, 'POST', '/v1/chat/completions', bad, JSON_CT), 400,
        new RegExp(`The request body is not valid UTF-8 \\(byte ${at}\\)\\.`));
    const ant = await api(s, 'POST', '/v1/messages', bad, JSON_CT);
    assert.equal(ant.status, 400);
    assert.equal(ant.json().error.type, 'invalid_request_error');
    assert.match(ant.json().error.message, /not valid UTF-8/);
    // a batch file with an invalid byte on line 2
    const line = (id, c) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: chatBody({ messages: [{ role: 'user', content: c }] }) });
    const text = Buffer.concat([Buffer.from(line('a', 'ok') + '\n'), Buffer.from(line('b', 'q').replace('"q"', '"\u0000"')), Buffer.from('\n')]);
    text[text.indexOf(0)] = 0xc3; /* a truncated 2-byte sequence */
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([text]), 'utf8.jsonl');
    const up = await api(s, 'POST', '/v1/files', form);
    assert.equal(up.status, 200, up.text);
    const cr = await api(s, 'POST', '/v1/batches', JSON.stringify({ input_file_id: up.json().id, endpoint: '/v1/chat/completions', completion_window: '24h' }), JSON_CT);
    assert.equal(cr.status, 200, cr.text);
    const b = await waitBatch(s, cr.json().id, (x) => TERMINAL.includes(x.status));
    assert.equal(b.status, 'failed');
    assert.match(b.errors.data[0].message, /the input file is not valid UTF-8: line 2/);
    await stillServing();
});

test('a 10 MB single line: over --max-body as a request (413); as a batch line, a line error naming it', { timeout: 120_000 }, async () => {
    const huge = 'x'.repeat(10 << 20);
    expectError(await api(s, 'POST', '/v1/chat/completions', JSON.stringify(chatBody({ messages: [{ role: 'user', content: huge }] })), JSON_CT),
        413, /The request body is larger than the limit of 2000000 bytes\./);
    // one 10 MB line without a model: the validator names line 1 and the field, quickly
    const line = JSON.stringify({ custom_id: 'big', method: 'POST', url: '/v1/chat/completions', body: { messages: [{ role: 'user', content: huge }] } });
    const b0 = await submitBatch(s, [line, JSON.stringify({ custom_id: 'ok', method: 'POST', url: '/v1/chat/completions', body: chatBody() })]);
    const b = await waitBatch(s, b0.id, (x) => TERMINAL.includes(x.status), 90_000);
    assert.equal(b.status, 'failed', JSON.stringify(b).slice(0, 2000));
    assert.equal(b.errors.data[0].line, 1);
    assert.equal(b.errors.data[0].param, 'body.model');
    // the same line with a model: refused by its size before megabytes are tokenized
    const withModel = JSON.stringify({ custom_id: 'big', method: 'POST', url: '/v1/chat/completions',
        body: chatBody({ messages: [{ role: 'user', content: huge }] }) });
    const b1 = await submitBatch(s, [withModel]);
    const d1 = await waitBatch(s, b1.id, (x) => TERMINAL.includes(x.status), 90_000);
    assert.equal(d1.status, 'completed', JSON.stringify(d1).slice(0, 2000));
    assert.deepEqual(d1.request_counts, { total: 1, completed: 0, failed: 1 });
    const errLine = JSON.parse((await api(s, 'GET', `/v1/files/${d1.error_file_id}/content`)).text);
    assert.equal(errLine.response.status_code, 400);
    assert.equal(errLine.response.body.error.code, 'context_length_exceeded');
    assert.match(errLine.response.body.error.message, /the messages hold \d+ bytes, so at least \d+ tokens/);
    await stillServing();
});

test('deeply nested JSON: 400 parse error as a body, invalid_json_line in a batch file', async () => {
    const deep = '['.repeat(100000) + ']'.repeat(100000);
    expectError(await api(s, 'POST', '/v1/chat/completions', deep, JSON_CT), 400,
        /We could not parse the JSON body of your request\. The body must be valid JSON\./);
    const nested = `{"model":"tiny","max_tokens":2,"messages":[{"role":"user","content":"x"}],"metadata":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`;
    expectError(await api(s, 'POST', '/v1/chat/completions', nested, JSON_CT), 400, /We could not parse the JSON body/);
    const ant = await api(s, 'POST', '/v1/messages', deep, JSON_CT);
    assert.equal(ant.status, 400, ant.text);
    assert.match(ant.json().error.message, /not valid JSON/);
    const b0 = await submitBatch(s, [`{"custom_id":"d","method":"POST","url":"/v1/chat/completions","body":${'['.repeat(5000)}${']'.repeat(5000)}}`]);
    const b = await waitBatch(s, b0.id, (x) => TERMINAL.includes(x.status));
    assert.equal(b.status, 'failed');
    assert.equal(b.errors.data[0].code, 'invalid_json_line');
    assert.match(b.errors.data[0].message, /line 1 is not valid JSON/);
    await stillServing();
});

test('negative and huge max_tokens: 400 naming the bound', async () => {
    const post = (extra) => api(s, 'POST', '/v1/chat/completions', JSON.stringify(chatBody(extra)), JSON_CT);
    expectError(await post({ max_tokens: -1 }), 400, /Invalid 'max_tokens': integer below minimum value\. Expected a value >= 1, but got -1 instead\./, 'max_tokens');
    expectError(await post({ max_tokens: 1e30 }), 400, /Invalid 'max_tokens': integer above maximum value\. Expected a value <= 1000000000/, 'max_tokens');
    expectError(await post({ max_completion_tokens: 0 }), 400, /Invalid 'max_completion_tokens'/, 'max_completion_tokens');
    expectError(await post({ max_tokens: 1.5 }), 400, /max_tokens/, 'max_tokens');
    const ant = await api(s, 'POST', '/v1/messages', JSON.stringify({ model: 'tiny', max_tokens: -3, messages: [{ role: 'user', content: 'x' }] }), JSON_CT);
    assert.equal(ant.status, 400);
    assert.match(ant.json().error.message, /max_tokens: Input should be an integer greater than or equal to 1/);
    const ant2 = await api(s, 'POST', '/v1/messages', '{"model":"tiny","max_tokens":16,"top_k":1e3095,"messages":[{"role":"user","content":"x"}]}', JSON_CT);
    assert.equal(ant2.status, 400);
    assert.match(ant2.json().error.message, /top_k: Input should be a non-negative integer of at most 2147483647/);
    await stillServing();
});

test('unknown fields: 400 naming the field', async () => {
    expectError(await api(s, 'POST', '/v1/chat/completions', JSON.stringify(chatBody({ foo: 1 })), JSON_CT), 400,
        /Unrecognized request argument supplied: foo/);
    expectError(await api(s, 'POST', '/v1/batches', JSON.stringify({ input_file_id: 'file-x', endpoint: '/v1/chat/completions', completion_window: '24h', bar: true }), JSON_CT),
        400, /Unrecognized request argument supplied: bar/, 'bar');
    await stillServing();
});

/* GET over a raw socket: fetch() would resolve "..", and the server must see it as sent */
async function rawGet(p) {
    const ans = await raw(`GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    const status = Number(/^HTTP\/1\.1 (\d+)/.exec(ans)?.[1]);
    const text = ans.slice(ans.indexOf('\r\n\r\n') + 4);
    return { status, text, json: () => JSON.parse(text) };
}

test('path-like ids: 404, never a file outside the data dir', async () => {
    for (const p of ['/v1/files/../../etc/passwd', '/v1/files/..%2F..%2Fetc%2Fpasswd/content', '/v1/batches/..%2Fnightshift.db',
        '/v1/files/%2e%2e/content', '/v1/files/../nightshift.db/content'])
        expectError(await rawGet(p), 404, /Invalid URL|No such (File|Batch) object/);
    expectError(await rawGet('/v1/files/..'), 404, /No such File object: \.\./, 'file_id');
    expectError(await rawGet('/v1/files/%2e%2e/content'), 404, /No such File object: \.\./, 'file_id');
    expectError(await rawGet('/v1/files/..%5C..%5Cnightshift.db/content'), 404, /No such File object: \.\.\\\.\.\\nightshift\.db/);
    expectError(await api(s, 'POST', '/v1/batches', JSON.stringify({ input_file_id: '../nightshift.db', endpoint: '/v1/chat/completions', completion_window: '24h' }), JSON_CT),
        404, /No such File object: \.\.\/nightshift\.db/, 'input_file_id');
    await stillServing();
});

test('SQL-looking strings: taken as data (404s, 400s, and custom_ids kept byte for byte)', { timeout: 90_000 }, async () => {
    expectError(await api(s, 'GET', `/v1/batches/${encodeURIComponent("' OR 1=1--")}`), 404, /No such Batch object: ' OR 1=1--/);
    expectError(await api(s, 'GET', `/v1/files/${encodeURIComponent('x"; DROP TABLE files;--')}`), 404, /No such File object/);
    const list = await api(s, 'GET', `/v1/files?after=${encodeURIComponent("' OR '1'='1")}&purpose=${encodeURIComponent("batch' OR 1=1--")}`);
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.json().data, []);
    const form = new FormData();
    form.append('purpose', "batch'; DROP TABLE files;--");
    form.append('file', new Blob(['{}\n']), 'x.jsonl');
    expectError(await api(s, 'POST', '/v1/files', form), 400, /Invalid value for 'purpose'/, 'purpose');
    const ids = ["x'); DROP TABLE batches;--", 'Robert"); DELETE FROM lines; --', '1 OR 1=1'];
    const b0 = await submitBatch(s, ids.map((id) => ({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: chatBody() })));
    const b = await waitBatch(s, b0.id, (x) => TERMINAL.includes(x.status));
    assert.equal(b.status, 'completed', JSON.stringify(b));
    const out = (await api(s, 'GET', `/v1/files/${b.output_file_id}/content`)).text.split('\n').filter(Boolean).map((l) => JSON.parse(l).custom_id);
    assert.deepEqual(out.sort(), [...ids].sort());
    assert.ok((await api(s, 'GET', '/v1/batches')).json().data.length >= 1);
    await stillServing();
});
