// Structured outputs from zod 4 schemas, the way applications send them: each schema goes
// through the official OpenAI SDK's helper (openai/helpers/zod zodResponseFormat) to
// `nightshift serve`, which converts it with llama.cpp's json-schema-to-grammar behind
// proto/jsonschema's guard; every sampled output must validate against the schema with a
// real validator (ajv + ajv-formats, formats in full mode). Also: a keyword llama.cpp cannot
// honour is a 400 naming it, through the SDK and as a batch line's error.
//
//   node --test tests/e2e/schemas.test.mjs
//
// One random-weight model (gen-model), --parallel 16: its samples are gibberish held to the
// grammar, which is what makes them a test of the grammar (N samples per schema, temperature
// 1, seeds varied, all in flight at once).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { BIN, SPM_VOCAB, ensureNpmDeps, mkTmp, pollUntil, rmTmp, startServer, toJsonl } from './serve_lib.mjs';

const N = Number(process.env.NIGHTSHIFT_E2E_SCHEMA_N || 50);
let TMP, SERVER, client, sdk, z, zodResponseFormat, ajv;

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN}`);
    assert.ok(fs.existsSync(SPM_VOCAB), `the vocab file is missing: ${SPM_VOCAB}`);
    await ensureNpmDeps();
    sdk = await import('openai');
    ({ zodResponseFormat } = await import('openai/helpers/zod'));
    ({ z } = await import('zod'));
    const Ajv = (await import('ajv')).default;
    const addFormats = (await import('ajv-formats')).default;
    ajv = new Ajv({ strict: true, allErrors: true });
    addFormats(ajv, { mode: 'full' });
    TMP = mkTmp('nightshift-schemas-e2e-');
    const model = path.join(TMP, 'tiny.gguf');
    await new Promise((resolve, reject) => {
        const c = spawn(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        c.stderr.on('data', (d) => (err += d));
        c.on('error', reject);
        c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`gen-model failed (exit ${code}):\n${err}`))));
    });
    SERVER = await startServer(['--model', `tiny=${model}`, '--parallel', '16', '--ctx', '16384', '--data-dir',
        path.join(TMP, 'data')], { name: 'schemas' });
    client = new sdk.default({ baseURL: `${SERVER.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 120_000 });
});

after(async () => {
    const x = SERVER ? await SERVER.stop() : { code: 0 };
    rmTmp(TMP);
    if (x.code !== 0) throw new Error(`server exited with ${JSON.stringify(x)}\n${SERVER.log()}`);
});

/* the table: one zod schema per feature (built after zod is imported) */
function table() {
    const Node = z.object({
        name: z.string().max(6),
        get children() {
            return z.array(Node).max(2);
        },
    });
    return {
        integers: z.object({ n: z.int(), small: z.int().min(-5).max(7), pos: z.number().int().positive() }),
        bounded_numbers: z.object({ unit: z.number().min(0).max(1), pct: z.number().gt(0).lt(100), temp: z.number().gte(-40.5).lte(60.2) }),
        emails: z.object({ email: z.email(), work: z.string().email() }),
        urls: z.object({ url: z.url(), home: z.string().url() }),
        enums: z.object({ color: z.enum(['red', 'green', 'blue']), three: z.literal(3), mode: z.enum(['a', 'b']).optional().nullable() }),
        optional: z.object({ nick: z.string().max(8).optional().nullable(), age: z.int().min(0).max(150).optional().nullable() }),
        nullable: z.object({ note: z.string().max(8).nullable(), count: z.int().nullable(), flag: z.boolean().nullable() }),
        nested_arrays: z.object({ grid: z.array(z.array(z.int().min(0).max(9)).max(3)).min(1).max(3), tags: z.array(z.string().max(5)).max(4) }),
        unions: z.object({
            value: z.union([z.string().max(5), z.int(), z.object({ ok: z.boolean() })]),
            shape: z.discriminatedUnion('kind', [
                z.object({ kind: z.literal('circle'), r: z.int().min(0).max(100) }),
                z.object({ kind: z.literal('square'), side: z.int().min(0).max(100) }),
            ]),
        }),
        recursive: Node,
        formats: z.object({ id: z.uuid(), day: z.iso.date(), at: z.iso.datetime(), ip: z.ipv4() }),
    };
}

/* n samples of one response_format, concurrently; their texts */
async function sample(format, n) {
    const one = (i) =>
        client.chat.completions.create({
            model: 'tiny',
            messages: [{ role: 'user', content: `sample ${i}` }],
            response_format: format,
            temperature: 1,
            seed: 1000 + i,
            max_tokens: 900, /* the model's context is 1024 */
        });
    const rs = await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
    return rs.map((r) => ({ text: r.choices[0].message.content, finish: r.choices[0].finish_reason }));
}

test('zod 4 schemas through zodResponseFormat: accepted, every sampled output validates (ajv)', { timeout: 600_000 }, async () => {
    const cases = Object.entries(table());
    const results = await Promise.all(
        cases.map(async ([name, schema]) => {
            const format = zodResponseFormat(schema, name);
            const validate = ajv.compile(format.json_schema.schema);
            const outs = await sample(format, N);
            const bad = [];
            for (const o of outs) {
                let v;
                try {
                    v = JSON.parse(o.text);
                } catch (e) {
                    bad.push(`not JSON (finish ${o.finish}): ${o.text.slice(0, 200)}`);
                    continue;
                }
                if (!validate(v)) bad.push(`${ajv.errorsText(validate.errors)}: ${o.text.slice(0, 300)}`);
            }
            return { name, n: outs.length, bad };
        }),
    );
    const report = results.map((r) => `${r.name}: ${r.n - r.bad.length}/${r.n} valid`).join('\n');
    console.log(report);
    for (const r of results) assert.deepEqual(r.bad, [], `${r.name}: invalid outputs\n${r.bad.slice(0, 5).join('\n')}`);
    for (const r of results) assert.equal(r.n, N);
});

const UNSUPPORTED = {
    type: 'object',
    properties: { a: { type: 'integer', not: { const: 3 } } },
    required: ['a'],
    additionalProperties: false,
};

test('a keyword llama.cpp cannot honour is a 400 naming it (SDK)', async () => {
    let err;
    try {
        await client.chat.completions.create({
            model: 'tiny',
            messages: [{ role: 'user', content: 'x' }],
            response_format: { type: 'json_schema', json_schema: { name: 'n', schema: UNSUPPORTED } },
        });
    } catch (e) {
        err = e;
    }
    assert.ok(err instanceof sdk.BadRequestError, `expected a 400, got ${err}`);
    assert.equal(err.param, 'response_format');
    assert.match(err.error.message, /'not' at '#\/properties\/a'/);
    /* an untranslatable pattern, in a tool's parameters */
    err = undefined;
    try {
        await client.chat.completions.create({
            model: 'tiny',
            messages: [{ role: 'user', content: 'x' }],
            tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { s: { type: 'string', pattern: '^(?!x).*$' } } } } }],
            tool_choice: 'required',
        });
    } catch (e) {
        err = e;
    }
    assert.ok(err instanceof sdk.BadRequestError, `expected a 400, got ${err}`);
    assert.match(err.error.message, /'pattern' at '#\/properties\/s'/);
});

test('a keyword llama.cpp cannot honour fails its batch line, naming it', { timeout: 60_000 }, async () => {
    const line = {
        custom_id: 'bad-schema',
        method: 'POST',
        url: '/v1/chat/completions',
        body: {
            model: 'tiny',
            messages: [{ role: 'user', content: 'x' }],
            response_format: { type: 'json_schema', json_schema: { name: 'n', schema: UNSUPPORTED } },
        },
    };
    const f = await client.files.create({ file: await sdk.toFile(Buffer.from(toJsonl([line])), 'b.jsonl'), purpose: 'batch' });
    const b0 = await client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const { value: b } = await pollUntil(() => client.batches.retrieve(b0.id), (b) => ['completed', 'failed'].includes(b.status), {
        timeoutMs: 50_000,
        what: 'the batch to end',
    });
    /* the batch runs; the line ends in the error file with the 400 it would get alone */
    assert.equal(b.status, 'completed', JSON.stringify(b));
    assert.equal(b.request_counts.failed, 1);
    const lines = (await (await client.files.content(b.error_file_id)).text()).trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 1);
    assert.equal(lines[0].custom_id, 'bad-schema');
    const body = lines[0].response?.body ?? lines[0];
    assert.match(JSON.stringify(body.error ?? lines[0].error), /'not' at '#\/properties\/a'/, JSON.stringify(lines[0]));
});
