// Request parity on the local engine (issue 10), end to end over HTTP: structured output
// (response_format json_schema / json_object) and forced tool calls, checked with a real
// JSON Schema validator (ajv) over hundreds of outputs of a random-weight model, which
// makes a good adversary for the grammar: it goes wherever the grammar lets it.
//
// Policy for outputs cut by max_tokens (finish_reason "length"): they are unfinished JSON
// and are not required to parse; every output that ended by itself ("stop" /
// "tool_calls") must parse and validate. Schemas here bound their strings and arrays so
// that most outputs finish well inside max_tokens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, SPM_VOCAB, startServer, killHard, api, submitBatch, waitBatch, TERMINAL } from './lib.mjs';
import { ensureNpmDeps } from './serve_lib.mjs';

let dir, model, server, ajv;

const json = (s, p, body) => api(s, 'POST', p, JSON.stringify(body), { 'content-type': 'application/json' });
const sse = (r) => r.text.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)));

/* every keyword the converter supports, in combinations a random model can wander through */
const SCHEMAS = [
    {
        type: 'object',
        properties: {
            label: { enum: ['spam', 'ham', 'unsure'] },
            score: { type: 'number' },
            count: { type: 'integer' },
            ok: { type: 'boolean' },
            note: { type: ['string', 'null'], maxLength: 12 },
        },
        required: ['label', 'score', 'count', 'ok', 'note'],
        additionalProperties: false,
    },
    {
        type: 'object',
        properties: {
            tags: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 6 }, minItems: 1, maxItems: 3 },
            kind: { const: 'fixed' },
            extra: { type: 'integer' },
            maybe: { type: 'boolean' },
        },
        required: ['tags', 'kind'],
        additionalProperties: false,
    },
    {
        $defs: {
            point: {
                type: 'object',
                properties: { x: { type: 'integer' }, y: { type: 'integer' } },
                required: ['x', 'y'],
                additionalProperties: false,
            },
        },
        type: 'object',
        properties: {
            at: { $ref: '#/$defs/point' },
            path: { type: 'array', items: { $ref: '#/$defs/point' }, maxItems: 2 },
            value: { anyOf: [{ type: 'integer' }, { type: 'null' }, { enum: ['none'] }] },
            choice: { oneOf: [{ type: 'boolean' }, { type: 'string', maxLength: 4 }] },
        },
        required: ['at', 'path', 'value', 'choice'],
        additionalProperties: false,
    },
    { type: 'array', items: { enum: [1, 2.5, 'x', null, { k: [true] }] }, minItems: 2, maxItems: 4 },
];

const rf = (i) => ({
    type: 'json_schema',
    json_schema: { name: `s${i}`, strict: true, schema: SCHEMAS[i] },
});

before(async () => {
    await ensureNpmDeps();
    const { default: Ajv } = await import('ajv');
    ajv = new Ajv({ strict: false, allErrors: true });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-parity-'));
    model = path.join(dir, 'tiny.gguf');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
    server = await startServer(['--model', `tiny=${model}`, '--data-dir', path.join(dir, 'data'), '--parallel', '8',
        '--ctx', '8192', '--threads', '1']);
});

after(async () => {
    if (server) await killHard(server);
    if (dir && !process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

function validate(schema, text, what) {
    let v;
    try {
        v = JSON.parse(text);
    } catch (e) {
        assert.fail(`${what}: not JSON (${e.message}): ${JSON.stringify(text)}`);
    }
    const check = ajv.compile(schema);
    assert.ok(check(v), `${what}: ${JSON.stringify(text)} fails its schema: ${ajv.errorsText(check.errors)}`);
    return v;
}

test('strict json_schema in a batch: every finished output of a random model parses and validates (ajv)', async () => {
    // fewer under the sanitizers (tests/CMakeLists.txt), still well over a hundred
    const N = Number(process.env.NIGHTSHIFT_E2E_PARITY_N || 320);
    const lines = [];
    for (let i = 0; i < N; i++)
        lines.push({
            custom_id: `r-${i}`, method: 'POST', url: '/v1/chat/completions',
            body: { model: 'tiny', messages: [{ role: 'user', content: `item ${i}` }], max_tokens: 160,
                temperature: 1, seed: i, response_format: rf(i % SCHEMAS.length) },
        });
    // an unsupported keyword is that line's error, naming the keyword
    lines.push({
        custom_id: 'bad', method: 'POST', url: '/v1/chat/completions',
        body: { model: 'tiny', messages: [{ role: 'user', content: 'x' }],
            response_format: { type: 'json_schema', json_schema: { name: 'b', schema: { type: 'string', pattern: '^(?=a)$' } } } },
    });
    const b = await submitBatch(server, lines);
    const done = await waitBatch(server, b.id, (x) => TERMINAL.includes(x.status), 900_000);
    assert.equal(done.status, 'completed');
    const out = (await api(server, 'GET', `/v1/files/${done.output_file_id}/content`)).text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const errs = (await api(server, 'GET', `/v1/files/${done.error_file_id}/content`)).text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.equal(errs.length, 1);
    assert.equal(errs[0].custom_id, 'bad');
    assert.equal(errs[0].response.status_code, 400);
    assert.equal(errs[0].response.body.error.param, 'response_format');
    assert.match(errs[0].response.body.error.message, /'pattern' at '#' is not supported/);
    assert.equal(out.length, N);
    let finished = 0;
    for (const l of out) {
        const i = Number(l.custom_id.slice(2));
        const c = l.response.body.choices[0];
        if (c.finish_reason === 'length') continue;
        assert.equal(c.finish_reason, 'stop');
        validate(SCHEMAS[i % SCHEMAS.length], c.message.content, l.custom_id);
        finished++;
    }
    // the bounds in the schemas keep most outputs short
    assert.ok(finished >= N * 0.8, `only ${finished} of ${N} outputs finished within max_tokens`);
});

test('json_object, real time and streamed: a JSON object', async () => {
    let finished = 0;
    for (let i = 0; i < 6; i++) {
        const r = await json(server, '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: `o ${i}` }],
            max_tokens: 200, seed: i, response_format: { type: 'json_object' } });
        assert.equal(r.status, 200, r.text);
        const c = r.json().choices[0];
        if (c.finish_reason !== 'stop') continue;
        const v = validate({ type: 'object' }, c.message.content, `json_object ${i}`);
        assert.equal(typeof v, 'object');
        finished++;
    }
    // streamed: the deltas add up to the same kind of answer
    const r = await json(server, '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 's' }],
        max_tokens: 120, seed: 7, stream: true, response_format: rf(0) });
    assert.equal(r.status, 200);
    const chunks = r.text.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)));
    const text = chunks.map((c) => c.choices[0]?.delta?.content || '').join('');
    const fin = chunks.at(-1).choices[0].finish_reason;
    if (fin === 'stop') validate(SCHEMAS[0], text, 'streamed json_schema');
    assert.ok(finished + (fin === 'stop' ? 1 : 0) >= 1, 'no json output finished');
});

const TOOL = {
    type: 'function',
    function: {
        name: 'classify',
        description: 'file the message',
        parameters: {
            type: 'object',
            properties: { label: { enum: ['a', 'b'] }, urgent: { type: 'boolean' }, n: { type: 'integer' } },
            required: ['label', 'urgent'],
            additionalProperties: false,
        },
    },
};

test('forced tool call: message.tool_calls with arguments that validate, finish_reason tool_calls; streamed too', async () => {
    let finished = 0;
    for (let i = 0; i < 8; i++) {
        const choice = i % 2 ? 'required' : { type: 'function', function: { name: 'classify' } };
        const r = await json(server, '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: `t ${i}` }],
            max_tokens: 100, seed: i, tools: [TOOL], tool_choice: choice });
        assert.equal(r.status, 200, r.text);
        const c = r.json().choices[0];
        assert.equal(c.message.content, null);
        const call = c.message.tool_calls[0];
        assert.match(call.id, /^call_/);
        assert.equal(call.type, 'function');
        assert.equal(call.function.name, 'classify');
        if (c.finish_reason === 'length') continue;
        assert.equal(c.finish_reason, 'tool_calls');
        validate(TOOL.function.parameters, call.function.arguments, `tool call ${i}`);
        finished++;
    }
    assert.ok(finished >= 4, `only ${finished} of 8 calls finished`);

    const r = await json(server, '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'st' }],
        max_tokens: 100, seed: 3, stream: true, tools: [TOOL], tool_choice: 'required' });
    assert.equal(r.status, 200);
    const chunks = r.text.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)));
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    // the call's first delta carries its id, type and name (as OpenAI's); later ones arguments
    const head = chunks.find((c) => c.choices[0]?.delta?.tool_calls)?.choices[0].delta;
    assert.ok(head, 'no tool_calls delta');
    assert.equal(head.tool_calls[0].function.name, 'classify');
    assert.match(head.tool_calls[0].id, /^call_/);
    const args = chunks.map((c) => c.choices[0]?.delta?.tool_calls?.[0]?.function?.arguments || '').join('');
    const fin = chunks.at(-1).choices[0].finish_reason;
    assert.ok(['tool_calls', 'length'].includes(fin));
    if (fin === 'tool_calls') validate(TOOL.function.parameters, args, 'streamed tool call');
});

const TOOL2 = {
    type: 'function',
    function: {
        name: 'lookup',
        parameters: { type: 'object', properties: { id: { type: 'integer' } }, required: ['id'], additionalProperties: false },
    },
};

test('tool_choice required among several tools: always one valid call of one of them; auto: text or a call; tool_calls in input messages', async () => {
    const byName = { classify: TOOL.function.parameters, lookup: TOOL2.function.parameters };
    let finished = 0;
    const seen = new Set();
    for (let i = 0; i < 8; i++) {
        const r = await json(server, '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: `m ${i}` }],
            max_tokens: 120, seed: i, tools: [TOOL, TOOL2], tool_choice: 'required' });
        assert.equal(r.status, 200, r.text);
        const c = r.json().choices[0];
        if (c.finish_reason === 'length') continue;
        assert.equal(c.finish_reason, 'tool_calls', JSON.stringify(c));
        assert.equal(c.message.content, null);
        const call = c.message.tool_calls[0];
        assert.match(call.id, /^call_/);
        assert.ok(byName[call.function.name], call.function.name);
        seen.add(call.function.name);
        validate(byName[call.function.name], call.function.arguments, `required call ${i}`);
        finished++;
    }
    assert.ok(finished >= 4, `only ${finished} of 8 calls finished`);

    // auto: whatever the model does, a finished answer is text or a valid call (n choices
    // give both kinds a chance); a call is never left in content
    let calls = 0, texts = 0;
    for (let i = 0; i < 3; i++) {
        const r = await json(server, '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: `a ${i}` }],
            max_tokens: 60, seed: 100 + i, n: 4, tools: [TOOL, TOOL2] });
        assert.equal(r.status, 200, r.text);
        for (const c of r.json().choices) {
            if (c.finish_reason === 'tool_calls') {
                const call = c.message.tool_calls[0];
                validate(byName[call.function.name], call.function.arguments, `auto call ${i}`);
                calls++;
            } else {
                assert.equal(typeof c.message.content, 'string');
                assert.ok(!c.message.content.startsWith('<tool_call>') || c.finish_reason === 'length', c.message.content);
                texts++;
            }
        }
    }
    assert.equal(calls + texts, 12);

    // streamed, required: the call comes whole in one delta, then finish_reason tool_calls
    const st = await json(server, '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'st2' }],
        max_tokens: 120, seed: 5, stream: true, tools: [TOOL, TOOL2], tool_choice: 'required' });
    assert.equal(st.status, 200);
    const chunks = sse(st);
    const fin = chunks.at(-1).choices[0].finish_reason;
    if (fin === 'tool_calls') {
        const call = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls || [])[0];
        assert.equal(call.index, 0);
        validate(byName[call.function.name], call.function.arguments, 'streamed required call');
    }

    // an assistant turn with tool_calls and the tool's answer are accepted and rendered
    const conv = await json(server, '/v1/chat/completions', { model: 'tiny', max_tokens: 4, tools: [TOOL], tool_choice: 'none',
        messages: [{ role: 'user', content: 'file it' },
            { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function',
                function: { name: 'classify', arguments: '{"label":"a","urgent":true}' } }] },
            { role: 'tool', tool_call_id: 'call_1', content: 'filed' }] });
    assert.equal(conv.status, 200, conv.text);
    const plain = await json(server, '/v1/chat/completions', { model: 'tiny', max_tokens: 4,
        messages: [{ role: 'user', content: 'file it' }] });
    // the rendered call and result are in the prompt
    assert.ok(conv.json().usage.prompt_tokens > plain.json().usage.prompt_tokens + 15);
});

test('refusals name the parameter: unsupported keywords, conflicts', async () => {
    const base = { model: 'tiny', messages: [{ role: 'user', content: 'x' }] };
    const cases = [
        [{ tools: [{ type: 'function', function: { name: 'p', parameters: { type: 'string', pattern: '^(?=a)$' } } }] }, 'tools', /'pattern'/],
        [{ messages: [{ role: 'user', content: 'x', tool_calls: [] }] }, 'messages', /only assistant messages/],
        [{ tools: [TOOL], tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice', /no function named 'nope'/],
        [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'array', uniqueItems: true } } } },
            'response_format', /'uniqueItems' at '#'/],
        [{ response_format: { type: 'json_object' }, ignore_eos: true }, 'ignore_eos', /cannot be combined/],
    ];
    for (const [extra, param, re] of cases) {
        const r = await json(server, '/v1/chat/completions', { ...base, ...extra });
        assert.equal(r.status, 400, r.text);
        const e = r.json().error;
        assert.equal(e.param, param);
        assert.match(e.message, re);
    }
});

test('logprobs: chat (content[] with top_logprobs) and completions (legacy shape); logit_bias', async () => {
    const r = await json(server, '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'lp' }],
        max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 3, ignore_eos: true });
    assert.equal(r.status, 200, r.text);
    const c = r.json().choices[0];
    assert.equal(c.logprobs.content.length, r.json().usage.completion_tokens);
    for (const t of c.logprobs.content) {
        assert.equal(typeof t.token, 'string');
        assert.ok(t.logprob <= 0);
        assert.ok(Array.isArray(t.bytes));
        assert.equal(t.top_logprobs.length, 3);
        // greedy: the chosen token is the most likely one
        assert.equal(t.top_logprobs[0].token, t.token);
        assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
    }
    assert.equal(Buffer.from(c.logprobs.content.flatMap((t) => t.bytes)).toString('utf8'), c.message.content);

    const p = await json(server, '/v1/completions', { model: 'tiny', prompt: 'The', max_tokens: 5, temperature: 0,
        logprobs: 2, ignore_eos: true });
    assert.equal(p.status, 200, p.text);
    const l = p.json().choices[0].logprobs;
    assert.equal(l.tokens.length, 5);
    assert.equal(l.token_logprobs.length, 5);
    assert.equal(l.text_offset[0], 0);
    assert.ok(Object.keys(l.top_logprobs[0]).length >= 1);

    // logit_bias: +100 on one token makes it the only one chosen
    const first = c.logprobs.content[0];
    const b = await json(server, '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'lp' }],
        max_tokens: 4, temperature: 0, logprobs: true, ignore_eos: true, logit_bias: { 1000: 100, 29871: -100 } });
    assert.equal(b.status, 200, b.text);
    const toks = b.json().choices[0].logprobs.content;
    assert.ok(toks.every((t) => t.token === toks[0].token), JSON.stringify(toks.map((t) => t.token)));
    assert.notEqual(toks[0].token, first.token === toks[0].token ? null : first.token);

    // a token id outside the vocabulary is a 400 naming logit_bias
    const bad = await json(server, '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }],
        max_tokens: 2, logit_bias: { 99999999: 5 } });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json().error.param, 'logit_bias');
    assert.match(bad.json().error.message, /not in this model's vocabulary/);
});


test('streamed logprobs: each chunk carries its tokens\' logprobs (chat content[], completions legacy), the same as unstreamed', async () => {
    const body = { model: 'tiny', messages: [{ role: 'user', content: 'lp stream' }], max_tokens: 8, temperature: 0,
        logprobs: true, top_logprobs: 2, ignore_eos: true };
    const whole = (await json(server, '/v1/chat/completions', body)).json().choices[0];
    const r = await json(server, '/v1/chat/completions', { ...body, stream: true });
    assert.equal(r.status, 200, r.text);
    const chunks = sse(r);
    const withText = chunks.filter((c) => c.choices[0]?.delta?.content);
    assert.ok(withText.length > 0);
    for (const c of withText) {
        const lp = c.choices[0].logprobs;
        assert.ok(lp && Array.isArray(lp.content) && lp.content.length >= 1, JSON.stringify(c));
        assert.equal(lp.content[0].top_logprobs.length, 2);
    }
    const streamed = chunks.flatMap((c) => c.choices[0]?.logprobs?.content || []);
    assert.equal(streamed.length, 8);
    assert.deepEqual(streamed.map((t) => [t.token, t.logprob]), whole.logprobs.content.map((t) => [t.token, t.logprob]));
    assert.equal(Buffer.from(streamed.flatMap((t) => t.bytes)).toString('utf8'),
        withText.map((c) => c.choices[0].delta.content).join(''));

    const p = await json(server, '/v1/completions', { model: 'tiny', prompt: 'The', max_tokens: 5, temperature: 0,
        logprobs: 1, ignore_eos: true, stream: true });
    assert.equal(p.status, 200, p.text);
    const pl = sse(p).map((c) => c.choices[0]?.logprobs).filter(Boolean);
    assert.equal(pl.flatMap((l) => l.tokens).length, 5);
    // text_offset keeps counting across chunks
    const offs = pl.flatMap((l) => l.text_offset);
    assert.equal(offs[0], 0);
    for (let i = 1; i < offs.length; i++) assert.ok(offs[i] >= offs[i - 1]);
});

test('n choices: distinct indexes, equal when greedy, reproducible with a seed, the prompt computed once, streamed with indexes, in a batch', async () => {
    const stats = async () => (await api(server, 'GET', '/v1/nightshift/stats')).json();
    const eng = (s) => s.models.find((m) => m.name === 'tiny').engine;
    const prompt = 'Choices share one prompt: this sentence is computed only once for all of them.';
    const body = { model: 'tiny', messages: [{ role: 'user', content: prompt }], max_tokens: 6, ignore_eos: true };
    const before = eng(await stats());
    const g = await json(server, '/v1/chat/completions', { ...body, n: 3, temperature: 0 });
    const after = eng(await stats());
    assert.equal(g.status, 200, g.text);
    const gj = g.json();
    assert.deepEqual(gj.choices.map((c) => c.index), [0, 1, 2]);
    assert.ok(gj.choices.every((c) => c.message.content === gj.choices[0].message.content));
    assert.equal(gj.usage.completion_tokens, 18);
    const P = gj.usage.prompt_tokens;
    // the prompt counted once; computed once (each other choice computes its last token only)
    assert.equal(gj.usage.total_tokens, P + 18);
    assert.ok(after.prompt_tokens_computed - before.prompt_tokens_computed <= P + 2,
        `computed ${after.prompt_tokens_computed - before.prompt_tokens_computed} prompt tokens for ${P} x 3`);
    assert.ok(after.prompt_tokens_cached - before.prompt_tokens_cached >= 2 * (P - 1));

    const s1 = await json(server, '/v1/chat/completions', { ...body, n: 3, temperature: 1, seed: 7 });
    const s2 = await json(server, '/v1/chat/completions', { ...body, n: 3, temperature: 1, seed: 7 });
    const texts = (r) => r.json().choices.map((c) => c.message.content);
    assert.deepEqual(texts(s1), texts(s2));
    assert.ok(new Set(texts(s1)).size > 1, JSON.stringify(texts(s1)));

    // completions, streamed: every chunk names its choice, each choice ends with its finish_reason
    const st = await json(server, '/v1/completions', { model: 'tiny', prompt, max_tokens: 5, n: 2, temperature: 1,
        seed: 3, ignore_eos: true, stream: true });
    assert.equal(st.status, 200, st.text);
    const by = [[], []];
    const fin = [];
    for (const c of sse(st)) for (const ch of c.choices) {
        by[ch.index].push(ch.text);
        if (ch.finish_reason) fin[ch.index] = ch.finish_reason;
    }
    assert.deepEqual(fin, ['length', 'length']);
    const whole = await json(server, '/v1/completions', { model: 'tiny', prompt, max_tokens: 5, n: 2, temperature: 1,
        seed: 3, ignore_eos: true });
    assert.deepEqual(by.map((t) => t.join('')), whole.json().choices.map((c) => c.text));

    // too many: a 400 naming n (16 is the most the local engine runs; more sequences than
    // --parallel and the priority lane hold is the engine's 400, tested in unit_engine)
    for (const n of [17, 200, 0]) {
        const r = await json(server, '/v1/chat/completions', { ...body, n });
        assert.equal(r.status, 400, r.text);
        assert.equal(r.json().error.param, 'n');
    }

    // a batch line with n
    const b = await submitBatch(server, [{ custom_id: 'n3', method: 'POST', url: '/v1/chat/completions',
        body: { ...body, n: 3, temperature: 0 } }]);
    const done = await waitBatch(server, b.id, (x) => TERMINAL.includes(x.status), 120_000);
    assert.equal(done.status, 'completed');
    const line = JSON.parse((await api(server, 'GET', `/v1/files/${done.output_file_id}/content`)).text.trim());
    assert.deepEqual(line.response.body.choices.map((c) => [c.index, c.message.content]),
        gj.choices.map((c) => [c.index, c.message.content]));
    assert.equal(line.response.body.usage.completion_tokens, 18);
});
