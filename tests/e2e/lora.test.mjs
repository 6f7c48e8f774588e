// LoRA adapters served as their own models over one loaded base (config base = / lora =,
// --lora): a generated base and two generated adapters. Each adapter model answers with its
// own adapter's output whether it runs alone or mixed with the others (greedy), in real time
// and in one Anthropic Message Batch mixing the three models; the base's weights are loaded
// once; config and command-line errors name the key and the file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runNs, describeRun, mkTmp, rmTmp, chatLine, writeJsonl, readJsonl, SPM_VOCAB } from './lib.mjs';
import { startServer, pollUntil } from './serve_lib.mjs';

let dir, base, adA, adB, otherLora, srv;
const MODELS = ['base', 'sql', 'mix'];
const PROMPTS = ['Tell me about apples.', 'What is a truck?', 'Write one word about the sea.'];

before(async () => {
    dir = mkTmp('nightshift-lora-');
    base = path.join(dir, 'base.gguf');
    adA = path.join(dir, 'a.gguf');
    adB = path.join(dir, 'b.gguf');
    const other = path.join(dir, 'other.gguf');
    otherLora = path.join(dir, 'other-lora.gguf');
    /* f32 weights: no quantization rounding, so batch composition cannot move a greedy pick */
    let r = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', base, '--type', 'f32']);
    assert.equal(r.code, 0, describeRun(r));
    r = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', other, '--embd', '128', '--ff', '256']);
    assert.equal(r.code, 0, describeRun(r));
    for (const [b, out, seed] of [[base, adA, '1'], [base, adB, '2'], [other, otherLora, '3']]) {
        r = await runNs(['gen-model', '--lora-of', b, '-o', out, '--seed', seed]);
        assert.equal(r.code, 0, describeRun(r));
    }
    const cfg = path.join(dir, 'lora.ini');
    fs.writeFileSync(cfg, `[model base]\npath = ${base}\n\n[model sql]\nbase = base\nlora = ${adA}\n\n` +
        `[model mix]\nbase = ${base}\nlora = ${adB}:1\nlora = ${adA}:0.5\n`);
    srv = await startServer(['--config', cfg, '--data-dir', path.join(dir, 'data'), '--parallel', '4', '--ctx', '4096',
        '--no-auth'], { name: 'lora' });
});

after(async () => {
    if (srv) await srv.stop();
    rmTmp(dir);
});

async function chat(model, content) {
    const res = await fetch(`${srv.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content }], max_tokens: 8, temperature: 0 }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.model, model);
    return body.choices[0].message.content;
}

const alone = {};

test('each adapter model answers with its own adapter, alone and mixed; the base is loaded once', { timeout: 300_000 }, async () => {
    const models = await (await fetch(`${srv.url}/v1/models`)).json();
    assert.deepEqual(models.data.map((m) => m.id).sort(), [...MODELS].sort());
    const log = srv.stderr();
    assert.match(log, /model 'sql': LoRA a\.gguf \(x1\) over weights already loaded \(shared, loaded once\)/, srv.log());
    assert.match(log, /model 'mix': LoRA b\.gguf \(x1\), a\.gguf \(x0\.5\) over weights already loaded/, srv.log());
    assert.doesNotMatch(log, /model 'base': .*weights already loaded/);

    /* alone: one request at a time */
    for (const m of MODELS) {
        alone[m] = [];
        for (const p of PROMPTS) alone[m].push(await chat(m, p));
    }
    for (const m of ['sql', 'mix'])
        for (let i = 0; i < PROMPTS.length; i++)
            assert.notEqual(alone[m][i], alone.base[i], `${m} gave the base's output for prompt ${i}`);
    /* mixed: everything at once */
    const jobs = [];
    for (let i = 0; i < PROMPTS.length; i++)
        for (const m of MODELS) jobs.push(chat(m, PROMPTS[i]).then((t) => ({ m, i, t })));
    for (const { m, i, t } of await Promise.all(jobs)) assert.equal(t, alone[m][i], `${m}, prompt ${i}, mixed`);
});

test('one Anthropic Message Batch mixing the base and both adapters: each line its own model\'s output', { timeout: 300_000 }, async () => {
    const requests = [];
    for (let i = 0; i < PROMPTS.length; i++)
        for (const m of MODELS)
            requests.push({ custom_id: `${m}-${i}`, params: { model: m, max_tokens: 8, temperature: 0,
                messages: [{ role: 'user', content: PROMPTS[i] }] } });
    const res = await fetch(`${srv.url}/v1/messages/batches`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
        body: JSON.stringify({ requests }),
    });
    const b = await res.json();
    assert.equal(res.status, 200, JSON.stringify(b));
    await pollUntil(async () => (await fetch(`${srv.url}/v1/messages/batches/${b.id}`)).json(),
        (x) => x.processing_status === 'ended', { timeoutMs: 240_000, what: 'the batch to end' });
    const text = await (await fetch(`${srv.url}/v1/messages/batches/${b.id}/results`)).text();
    const results = text.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(results.length, requests.length);
    /* the Anthropic and OpenAI shapes render the same one-message chat: the same greedy text */
    for (const r of results) {
        assert.equal(r.result.type, 'succeeded', JSON.stringify(r));
        const [m, i] = r.custom_id.split('-');
        assert.equal(r.result.message.model, m);
        assert.equal(r.result.message.content[0].text, alone[m][Number(i)], r.custom_id);
    }
});

test('nightshift run --lora gives the adapter model\'s output', { timeout: 300_000 }, async () => {
    const input = path.join(dir, 'in.jsonl');
    writeJsonl(input, PROMPTS.map((p, i) => chatLine(`p${i}`, p, { max_tokens: 8, temperature: 0 })));
    const out = path.join(dir, 'out.jsonl');
    const r = await runNs(['run', input, '-o', out, '--model', base, '--model-alias', 'tiny', '--lora', adA,
        '--parallel', '4', '--ctx', '4096', '-q']);
    assert.equal(r.code, 0, describeRun(r));
    const lines = readJsonl(out);
    for (const l of lines) {
        const i = Number(l.custom_id.slice(1));
        assert.equal(l.response.body.choices[0].message.content, alone.sql[i], l.custom_id);
    }
});

test('config and command-line errors name the key and the file', { timeout: 300_000 }, async () => {
    const cases = [
        [`[model x]\nbase = ${base}\nlora = ${path.join(dir, 'missing.gguf')}\n`, /\[model x\]: lora: cannot read the adapter '.*missing\.gguf': No such file/],
        [`[model x]\nbase = ${base}\nlora = ${adA}:lots\n`, /\[model x\]: lora: the scale 'lots' of '.*a\.gguf' must be a number from -100 to 100/],
        [`[model x]\nbase = nosuch\nlora = ${adA}\n`, /\[model x\]: base = nosuch is neither a \[model\] section nor a readable file/],
        [`[model x]\npath = ${base}\nbase = ${base}\n`, /\[model x\]: give path or base, not both/],
        [`[model x]\nbackend = openai-http\nurl = http://127.0.0.1:9/v1\nlora = ${adA}\n`, /\[model x\]: lora is for backend local/],
        [`[model x]\nbase = ${base}\nlora = ${otherLora}\n`, /lora: adapter '.*other-lora\.gguf' does not fit the base model '.*base\.gguf'.*incorrect shape/],
        [`[model x]\nbase = ${base}\nlora = ${base}\n`, /lora: '.*base\.gguf' is not a LoRA adapter/],
    ];
    for (const [k, [ini, re]] of cases.entries()) {
        const cfg = path.join(dir, `bad${k}.ini`);
        fs.writeFileSync(cfg, ini);
        const r = await runNs(['serve', '--config', cfg, '--data-dir', path.join(dir, `bad${k}`), '--listen', '127.0.0.1:0',
            '--no-auth', '--threads', '1', '--parallel', '2', '--ctx', '1024']);
        assert.notEqual(r.code, 0, describeRun(r));
        assert.match(r.stderr, re, describeRun(r));
    }
    let r = await runNs(['serve', '--model', `a=${base}`, '--model', `b=${base}`, '--lora', adA, '--no-auth',
        '--data-dir', path.join(dir, 'bad-two')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--lora applies to the one --model/);
    const input = path.join(dir, 'in.jsonl');
    r = await runNs(['run', input, '-o', path.join(dir, 'o-bad.jsonl'), '--model', base, '--lora', `${adA}:2x`]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /--lora .*a\.gguf:2x: the scale '2x' of '.*a\.gguf' must be a number/);
});
