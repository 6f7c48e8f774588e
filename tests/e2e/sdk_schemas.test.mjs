// Structured outputs through the SDKs applications use them with, on ordinary zod 4 schemas:
// the Vercel AI SDK's generateObject (with @ai-sdk/openai's Chat Completions model and with
// @ai-sdk/openai-compatible) and LangChain JS's ChatOpenAI.withStructuredOutput (method
// jsonSchema, its default for this model, and functionCalling, which goes through a forced
// tool_choice). Each request's schema is taken from the body the SDK actually sent (a
// custom fetch), and every finished output must validate against it (ajv + ajv-formats, full
// mode) and come back from the SDK as a parsed object.
//
//   node --test tests/e2e/sdk_schemas.test.mjs
//
// One random-weight model (gen-model): its samples are gibberish held to the grammar. An
// output cut by max_tokens is not JSON the SDK can parse; those are counted apart (the
// schemas bound their strings and arrays so that nearly all finish).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { BIN, SPM_VOCAB, ensureNpmDeps, mkTmp, rmTmp, startServer } from './serve_lib.mjs';

const N = Number(process.env.NIGHTSHIFT_E2E_SDK_SCHEMA_N || 10);
const MAX_TOKENS = 400;
let TMP, SERVER, baseURL, z, ai, createOpenAI, createOpenAICompatible, ChatOpenAI, Ajv07, Ajv2020, addFormats;

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN}`);
    assert.ok(fs.existsSync(SPM_VOCAB), `the vocab file is missing: ${SPM_VOCAB}`);
    await ensureNpmDeps();
    ({ z } = await import('zod'));
    ai = await import('ai');
    ({ createOpenAI } = await import('@ai-sdk/openai'));
    ({ createOpenAICompatible } = await import('@ai-sdk/openai-compatible'));
    ({ ChatOpenAI } = await import('@langchain/openai'));
    Ajv07 = (await import('ajv')).default;
    Ajv2020 = (await import('ajv/dist/2020.js')).default;
    addFormats = (await import('ajv-formats')).default;
    TMP = mkTmp('nightshift-sdk-schemas-e2e-');
    const model = path.join(TMP, 'tiny.gguf');
    await new Promise((resolve, reject) => {
        const c = spawn(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        c.stderr.on('data', (d) => (err += d));
        c.on('error', reject);
        c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`gen-model failed (exit ${code}):\n${err}`))));
    });
    /* a tool call's prompt carries the tool listing (~400 tokens) besides max_tokens */
    SERVER = await startServer(['--model', `tiny=${model}`, '--parallel', '16', '--ctx', '32768', '--data-dir',
        path.join(TMP, 'data')], { name: 'sdk-schemas' });
    baseURL = `${SERVER.url}/v1`;
});

after(async () => {
    const x = SERVER ? await SERVER.stop() : { code: 0 };
    rmTmp(TMP);
    if (x.code !== 0) throw new Error(`server exited with ${JSON.stringify(x)}\n${SERVER.log()}`);
});

/* ordinary application schemas, one per feature, strings and arrays bounded */
function table() {
    return {
        integers: z.object({ n: z.int(), small: z.int().min(-5).max(7), pos: z.number().int().positive() }),
        bounded_numbers: z.object({ unit: z.number().min(0).max(1), pct: z.number().gt(0).lt(100), temp: z.number().gte(-40.5).lte(60.2) }),
        emails: z.object({ email: z.email(), work: z.string().email() }),
        urls: z.object({ url: z.url(), home: z.string().url() }),
        enums: z.object({ color: z.enum(['red', 'green', 'blue']), three: z.literal(3), size: z.enum(['s', 'm', 'l']).nullable() }),
        optional: z.object({ name: z.string().max(8), nick: z.string().max(8).optional(), age: z.int().min(0).max(150).optional() }),
        nullable: z.object({ note: z.string().max(8).nullable(), count: z.int().nullable(), flag: z.boolean().nullable() }),
        nested_arrays: z.object({
            grid: z.array(z.array(z.int().min(0).max(9)).max(3)).min(1).max(3),
            people: z.array(z.object({ name: z.string().max(6), tags: z.array(z.string().max(5)).max(2) })).max(2),
        }),
        unions: z.object({
            value: z.union([z.string().max(5), z.int(), z.object({ ok: z.boolean() })]),
            shape: z.discriminatedUnion('kind', [
                z.object({ kind: z.literal('circle'), r: z.int().min(0).max(100) }),
                z.object({ kind: z.literal('square'), side: z.int().min(0).max(100) }),
            ]),
        }),
    };
}

/* a fetch that keeps what one call sent and got: the schema, the finish reason, the text */
function spyFetch(seen) {
    return async (url, init) => {
        const body = JSON.parse(init.body);
        seen.schema = body.response_format?.json_schema?.schema ?? body.tools?.[0]?.function?.parameters;
        seen.sent = body;
        const res = await fetch(url, init);
        const j = await res.clone().json().catch(() => null);
        seen.status = res.status;
        const c = j?.choices?.[0];
        seen.finish = c?.finish_reason;
        seen.text = c?.message?.tool_calls?.[0]?.function?.arguments ?? c?.message?.content;
        if (!res.ok) seen.error = JSON.stringify(j);
        return res;
    };
}

/* the ways in: (schema, i, fetch) -> the parsed object the SDK hands back */
const MODES = {
    'ai-sdk openai.chat': (schema, i, f) =>
        ai.generateObject({
            model: createOpenAI({ baseURL, apiKey: 'test', fetch: f }).chat('tiny'),
            schema,
            prompt: `sample ${i}`,
            temperature: 1,
            seed: 2000 + i,
            maxOutputTokens: MAX_TOKENS,
            maxRetries: 0,
        }).then((r) => r.object),
    'ai-sdk openai-compatible': (schema, i, f) =>
        ai.generateObject({
            model: createOpenAICompatible({ name: 'nightshift', baseURL, apiKey: 'test', fetch: f, supportsStructuredOutputs: true })
                .chatModel('tiny'),
            schema,
            prompt: `sample ${i}`,
            temperature: 1,
            seed: 3000 + i,
            maxOutputTokens: MAX_TOKENS,
            maxRetries: 0,
        }).then((r) => r.object),
    'langchain jsonSchema': (schema, i, f) => lc(f).withStructuredOutput(schema, { method: 'jsonSchema' }).invoke(`sample ${i}`, { seed: 4000 + i }),
    'langchain default': (schema, i, f) => lc(f).withStructuredOutput(schema).invoke(`sample ${i}`, { seed: 5000 + i }),
    'langchain functionCalling': (schema, i, f) =>
        lc(f).withStructuredOutput(schema, { method: 'functionCalling' }).invoke(`sample ${i}`, { seed: 6000 + i }),
};

function lc(f) {
    return new ChatOpenAI({ model: 'tiny', apiKey: 'test', temperature: 1, maxTokens: MAX_TOKENS, maxRetries: 0, configuration: { baseURL, fetch: f } });
}

/* one validator per schema the SDKs sent, by the draft it names */
const validators = new Map();
function validatorFor(schema) {
    const key = JSON.stringify(schema);
    if (!validators.has(key)) {
        const A = String(schema.$schema || '').includes('2020-12') ? Ajv2020 : Ajv07;
        const ajv = new A({ strict: true, allErrors: true });
        addFormats(ajv, { mode: 'full' });
        validators.set(key, { ajv, validate: ajv.compile(schema) });
    }
    return validators.get(key);
}

async function run(mode, name, schema) {
    const one = async (i) => {
        const seen = {};
        let obj, err;
        try {
            obj = await MODES[mode](schema, i, spyFetch(seen));
        } catch (e) {
            err = e;
        }
        return { seen, obj, err };
    };
    const outs = await Promise.all(Array.from({ length: N }, (_, i) => one(i)));
    const r = { mode, name, n: N, valid: 0, cut: 0, bad: [] };
    for (const { seen, obj, err } of outs) {
        if (seen.status !== 200) {
            r.bad.push(`HTTP ${seen.status}: ${seen.error ?? err}`);
            continue;
        }
        if (seen.finish === 'length') {
            r.cut++;
            continue;
        }
        const { ajv, validate } = validatorFor(seen.schema);
        let v;
        try {
            v = JSON.parse(seen.text);
        } catch {
            r.bad.push(`not JSON (finish ${seen.finish}): ${String(seen.text).slice(0, 200)}`);
            continue;
        }
        if (!validate(v)) r.bad.push(`${ajv.errorsText(validate.errors)}: ${seen.text.slice(0, 300)}`);
        else if (err) r.bad.push(`valid, yet the SDK failed: ${String(err.message).slice(0, 300)}`);
        else if (!validate(obj)) r.bad.push(`the SDK's object does not validate: ${JSON.stringify(obj).slice(0, 300)}`);
        else r.valid++;
    }
    return r;
}

async function suite(modes) {
    const cases = Object.entries(table());
    const results = await Promise.all(modes.flatMap((m) => cases.map(([name, schema]) => run(m, name, schema))));
    console.log(results.map((r) => `${r.mode} ${r.name}: ${r.valid}/${r.n} valid, ${r.cut} cut by max_tokens`).join('\n'));
    for (const r of results) assert.deepEqual(r.bad, [], `${r.mode} ${r.name}: invalid outputs\n${r.bad.slice(0, 5).join('\n')}`);
    /* most finish: a cut output is the model's length, not the grammar's fault, but a schema
     * whose outputs mostly run out would test nothing */
    for (const m of modes) {
        const rs = results.filter((r) => r.mode === m);
        const cut = rs.reduce((a, r) => a + r.cut, 0);
        assert.ok(cut <= rs.length * N * 0.2, `${m}: ${cut} of ${rs.length * N} outputs cut by max_tokens`);
        for (const r of rs) assert.ok(r.valid >= N / 2, `${m} ${r.name}: only ${r.valid}/${N} finished`);
    }
    return results;
}

test('Vercel AI SDK generateObject (Chat Completions, response_format json_schema): outputs validate', { timeout: 300_000 }, async () => {
    const results = await suite(['ai-sdk openai.chat', 'ai-sdk openai-compatible']);
    for (const r of results) assert.equal(r.n, N);
});

/* LangChain's default method sends the very request jsonSchema does (the last test checks) */
test('LangChain withStructuredOutput (jsonSchema, functionCalling): outputs validate', { timeout: 300_000 }, async () => {
    await suite(['langchain jsonSchema', 'langchain functionCalling']);
});

test('what the SDKs send: json_schema for generateObject and LangChain\'s default, a forced tool for functionCalling', async () => {
    const schema = z.object({ a: z.int().min(0).max(3) });
    const sent = {};
    for (const m of Object.keys(MODES)) {
        const seen = {};
        await MODES[m](schema, 0, spyFetch(seen)).catch(() => {});
        sent[m] = seen.sent;
    }
    for (const m of ['ai-sdk openai.chat', 'ai-sdk openai-compatible', 'langchain jsonSchema', 'langchain default'])
        assert.equal(sent[m].response_format?.type, 'json_schema', `${m}: ${JSON.stringify(sent[m])}`);
    const fc = sent['langchain functionCalling'];
    assert.equal(fc.tools?.length, 1, JSON.stringify(fc));
    assert.deepEqual(fc.tool_choice, { type: 'function', function: { name: fc.tools[0].function.name } });
});
