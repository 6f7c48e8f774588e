// The OpenAI Responses API (/v1/responses) through the official clients:
//
//   node --test tests/e2e/responses.test.mjs
//
// One random-weight model carrying Qwen2.5's real chat template (so function tools use its
// native <tool_call> format), served by `nightshift serve`. With the official `openai` SDK:
// responses.create plain (output_text, usage, the same greedy text as chat completions),
// streamed (the typed events in order, sequence numbers 0..n-1, deltas adding up to the
// final text), a forced function call whose output is fed back with previous_response_id,
// text.format json_schema through zodTextFormat (output_parsed), retrieve / inputItems /
// delete, background + poll, background + cancel (on a second server whose batch hours are
// closed, so the response stays queued), errors as the SDK raises them, and a batch file of
// /v1/responses lines. With the Vercel AI SDK's default OpenAI provider (Responses-based):
// generateText and streamText.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';

import { BIN, VOCAB_DIR, ensureNpmDeps, mkTmp, parseJsonl, pollUntil, rmTmp, startServer, toJsonl } from './serve_lib.mjs';

const MODEL = 'qwen';
const WEATHER = {
    type: 'object',
    properties: { city: { type: 'string', maxLength: 8 }, days: { type: 'integer', minimum: 1, maximum: 7 } },
    required: ['city', 'days'],
    additionalProperties: false,
};
const TOOLS = [{ type: 'function', name: 'get_weather', description: 'Weather forecast', parameters: WEATHER, strict: true }];

let TMP, SERVER, CLOSED, client, closedClient, sdk;

function run(args) {
    return new Promise((resolve, reject) => {
        const c = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        c.stderr.on('data', (d) => (err += d));
        c.on('error', reject);
        c.on('close', (code) => resolve({ code, err }));
    });
}

/* a window of batch hours that excludes now (local time): batch work never runs there */
function closedHours() {
    const d = new Date();
    const h = (d.getHours() + 2) % 24;
    const pad = (n) => String(n).padStart(2, '0');
    return `${pad(h)}:00-${pad((h + 1) % 24)}:00`;
}

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN}`);
    await ensureNpmDeps();
    sdk = await import('openai');
    TMP = mkTmp('nightshift-responses-e2e-');
    const model = path.join(TMP, 'qwen.gguf');
    const g = await run(['gen-model', '--vocab', path.join(VOCAB_DIR, 'ggml-vocab-qwen2.gguf'), '-o', model, '--seed', '7',
        '--chat-template-file', path.join(VOCAB_DIR, 'templates', 'Qwen-Qwen2.5-7B-Instruct.jinja')]);
    assert.equal(g.code, 0, `gen-model failed:\n${g.err}`);
    // a reasoning family: DeepSeek R1's template opens <think> in the prompt, so even a random
    // model's output is reasoning until it closes it
    const r1 = path.join(TMP, 'r1.gguf');
    const g1 = await run(['gen-model', '--vocab', path.join(VOCAB_DIR, 'ggml-vocab-qwen2.gguf'), '-o', r1, '--seed', '8',
        '--chat-template-file', path.join(VOCAB_DIR, 'templates', 'llama-cpp-deepseek-r1.jinja')]);
    assert.equal(g1.code, 0, `gen-model failed:\n${g1.err}`);
    [SERVER, CLOSED] = await Promise.all([
        startServer(['--model', `${MODEL}=${model}`, '--model', `r1=${r1}`, '--parallel', '4', '--ctx', '4096',
            '--data-dir', path.join(TMP, 'data')],
            { name: 'responses' }),
        startServer(['--model', `${MODEL}=${model}`, '--parallel', '2', '--ctx', '2048', '--data-dir', path.join(TMP, 'closed'),
            '--batch-hours', closedHours(), '--off-hours', 'none'], { name: 'closed' }),
    ]);
    client = new sdk.default({ baseURL: `${SERVER.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 120_000 });
    closedClient = new sdk.default({ baseURL: `${CLOSED.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 60_000 });
});

after(async () => {
    const xs = await Promise.all([SERVER, CLOSED].map((s) => (s ? s.stop() : { code: 0 })));
    rmTmp(TMP);
    xs.forEach((x, i) => {
        if (x.code !== 0) throw new Error(`server exited with ${JSON.stringify(x)}\n${[SERVER, CLOSED][i].log()}`);
    });
});

/* a response object as the SDK hands it over (raw: as an event carries it, without the SDK's
 * output_text convenience) */
function checkResponse(r, what, raw = false) {
    assert.equal(r.object, 'response', what);
    assert.match(r.id, /^resp_/, what);
    assert.ok(['completed', 'incomplete'].includes(r.status), `${what}: status ${r.status}`);
    if (r.status === 'incomplete') assert.equal(r.incomplete_details.reason, 'max_output_tokens', what);
    if (!raw) assert.equal(typeof r.output_text, 'string', what);
    assert.ok(r.usage.input_tokens > 0, what);
    assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens, what);
    assert.equal(typeof r.usage.input_tokens_details.cached_tokens, 'number', what);
    assert.equal(typeof r.usage.output_tokens_details.reasoning_tokens, 'number', what);
}

test('create: a response object whose greedy text is the chat completion of the same conversation; stored', async () => {
    const r = await client.responses.create({
        model: MODEL, input: 'Say hi', instructions: 'Be brief.', max_output_tokens: 24, temperature: 0,
        metadata: { run: 'e2e' },
    });
    checkResponse(r, 'plain');
    assert.equal(r.model, MODEL);
    assert.equal(r.instructions, 'Be brief.');
    assert.equal(r.max_output_tokens, 24);
    assert.deepEqual(r.metadata, { run: 'e2e' });
    assert.equal(r.store, true);
    const msg = r.output.find((o) => o.type === 'message');
    assert.match(msg.id, /^msg_/);
    assert.equal(msg.role, 'assistant');
    assert.equal(msg.content[0].type, 'output_text');
    assert.match(r._request_id, /^req_/);

    const c = await client.chat.completions.create({
        model: MODEL, max_tokens: 24, temperature: 0,
        messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say hi' }],
    });
    assert.equal(r.output_text, c.choices[0].message.content ?? '');
    assert.equal(r.usage.input_tokens, c.usage.prompt_tokens);

    const got = await client.responses.retrieve(r.id);
    assert.deepEqual(got.output, r.output);
    assert.equal(got.status, r.status);
    const items = await client.responses.inputItems.list(r.id);
    assert.equal(items.data.length, 1);
    assert.equal(items.data[0].type, 'message');
    assert.equal(items.data[0].role, 'user');
    assert.equal(items.data[0].content[0].text, 'Say hi');

    const del = await client.responses.delete(r.id);
    assert.equal(del === undefined || del === null || del.deleted === true, true);
    await assert.rejects(client.responses.retrieve(r.id), (e) => e instanceof sdk.NotFoundError);
    // store: false leaves nothing behind
    const ns = await client.responses.create({ model: MODEL, input: 'x', store: false, max_output_tokens: 16 });
    assert.equal(ns.store, false);
    await assert.rejects(client.responses.retrieve(ns.id), (e) => e instanceof sdk.NotFoundError);
});

test('streamed: typed events in order, numbered 0..n-1, whose deltas make the final text', async () => {
    const stream = await client.responses.create({ model: MODEL, input: 'Tell a story', max_output_tokens: 40, stream: true });
    const events = [];
    for await (const e of stream) events.push(e);
    assert.equal(events[0].type, 'response.created');
    assert.equal(events[1].type, 'response.in_progress');
    const last = events.at(-1);
    assert.ok(['response.completed', 'response.incomplete'].includes(last.type), last.type);
    events.forEach((e, i) => assert.equal(e.sequence_number, i, `event ${i} ${e.type}`));
    const types = events.map((e) => e.type);
    for (const t of ['response.output_item.added', 'response.content_part.added', 'response.output_text.done',
        'response.content_part.done', 'response.output_item.done']) assert.ok(types.includes(t), `no ${t}`);
    const text = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
    const done = events.find((e) => e.type === 'response.output_text.done');
    assert.equal(done.text, text);
    checkResponse(last.response, 'streamed', true);
    assert.equal(last.response.output.find((o) => o.type === 'message').content[0].text, text);
    // the stored one is the streamed one
    const got = await client.responses.retrieve(last.response.id);
    assert.deepEqual(got.output, last.response.output);

    // the SDK's stream helper assembles the same
    const helper = client.responses.stream({ model: MODEL, input: 'Tell a story', max_output_tokens: 40, temperature: 0 });
    let deltas = '';
    helper.on('response.output_text.delta', (e) => (deltas += e.delta));
    const final = await helper.finalResponse();
    checkResponse(final, 'stream helper');
    assert.equal(final.output_text, deltas);
});

test('function tool: a forced call, its output fed back through previous_response_id', async () => {
    const r1 = await client.responses.create({
        model: MODEL, input: 'What is the weather in Paris for 3 days?', tools: TOOLS, tool_choice: 'required',
        parallel_tool_calls: false, max_output_tokens: 160, temperature: 0,
    });
    assert.equal(r1.status, 'completed', JSON.stringify(r1.output));
    const call = r1.output.find((o) => o.type === 'function_call');
    assert.ok(call, JSON.stringify(r1.output));
    assert.match(call.id, /^fc_/);
    assert.equal(call.name, 'get_weather');
    assert.equal(typeof call.call_id, 'string');
    const args = JSON.parse(call.arguments);
    assert.equal(typeof args.city, 'string');
    assert.ok(args.city.length <= 8 && Number.isInteger(args.days) && args.days >= 1 && args.days <= 7, call.arguments);
    assert.deepEqual(r1.tools.map((t) => t.name), ['get_weather']);

    const r2 = await client.responses.create({
        model: MODEL, previous_response_id: r1.id, tools: TOOLS, max_output_tokens: 24, temperature: 0,
        input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temp_c": 21}' }],
    });
    checkResponse(r2, 'continued');
    assert.equal(r2.previous_response_id, r1.id);
    assert.ok(r2.usage.input_tokens > r1.usage.input_tokens);
    // the earlier turn's prompt was computed once: the prefix cache held it
    assert.ok(r2.usage.input_tokens_details.cached_tokens > 0, JSON.stringify(r2.usage));
    const items = await client.responses.inputItems.list(r2.id);
    assert.deepEqual(items.data.map((i) => i.type), ['function_call_output']);

    // streamed call: arguments deltas add up to the call's arguments
    const stream = await client.responses.create({
        model: MODEL, input: 'Weather in Oslo?', tools: TOOLS, tool_choice: 'required', parallel_tool_calls: false,
        max_output_tokens: 160, temperature: 0, stream: true,
    });
    const events = [];
    for await (const e of stream) events.push(e);
    const added = events.find((e) => e.type === 'response.output_item.added' && e.item.type === 'function_call');
    assert.ok(added, events.map((e) => e.type).join(' '));
    const argDeltas = events.filter((e) => e.type === 'response.function_call_arguments.delta').map((e) => e.delta).join('');
    const argDone = events.find((e) => e.type === 'response.function_call_arguments.done');
    assert.equal(argDone.arguments, argDeltas);
    const final = events.at(-1).response.output.find((o) => o.type === 'function_call');
    assert.equal(final.arguments, argDeltas);
    assert.equal(final.id, added.item.id);
    JSON.parse(final.arguments);

    // a continuation of nothing
    await assert.rejects(client.responses.create({ model: MODEL, input: 'x', previous_response_id: 'resp_nope' }),
        (e) => e instanceof sdk.NotFoundError && e.param === 'previous_response_id');
});

test('text.format json_schema through zodTextFormat: output_parsed holds to the schema', async () => {
    const { zodTextFormat } = await import('openai/helpers/zod');
    const { z } = await import('zod');
    const Plan = z.object({ city: z.string().max(8), days: z.number().int().min(1).max(7) });
    const r = await client.responses.parse({
        model: MODEL, input: 'Plan a trip', text: { format: zodTextFormat(Plan, 'plan') }, max_output_tokens: 120,
        temperature: 1,
    });
    assert.equal(r.status, 'completed', r.output_text);
    assert.deepEqual(Plan.parse(r.output_parsed), r.output_parsed);
    assert.equal(r.text.format.type, 'json_schema');
    assert.equal(r.text.format.name, 'plan');
    const j = await client.responses.create({ model: MODEL, input: 'JSON please', text: { format: { type: 'json_object' } },
        max_output_tokens: 120 });
    if (j.status === 'completed') JSON.parse(j.output_text);
});

test('background: queued at once, then polled to its answer; the batch lane ran it', async () => {
    const r = await client.responses.create({ model: MODEL, input: 'Hello there', background: true, max_output_tokens: 16 });
    assert.equal(r.status, 'queued');
    assert.equal(r.background, true);
    const { value } = await pollUntil(() => client.responses.retrieve(r.id),
        (x) => !['queued', 'in_progress'].includes(x.status), { intervalMs: 200, what: 'background response' });
    checkResponse(value, 'background');
    assert.equal(value.id, r.id);
    assert.equal(value.background, true);
    assert.equal(value.created_at, r.created_at);
    // it continues like any other
    const next = await client.responses.create({ model: MODEL, input: 'And then?', previous_response_id: r.id,
        max_output_tokens: 16 });
    checkResponse(next, 'after background');
    // a response that is not a background one cannot be cancelled
    await assert.rejects(client.responses.cancel(next.id), (e) => e instanceof sdk.BadRequestError);
});

test('background cancelled while queued (batch hours closed): cancelled, and stays so', async () => {
    const r = await closedClient.responses.create({ model: MODEL, input: 'wait', background: true, max_output_tokens: 16 });
    assert.equal(r.status, 'queued');
    const polled = await closedClient.responses.retrieve(r.id);
    assert.ok(['queued', 'in_progress'].includes(polled.status), polled.status);
    const c = await closedClient.responses.cancel(r.id);
    assert.equal(c.status, 'cancelled');
    assert.equal(c.id, r.id);
    const again = await closedClient.responses.retrieve(r.id);
    assert.equal(again.status, 'cancelled');
    // continuing a cancelled response is refused, by name
    await assert.rejects(closedClient.responses.create({ model: MODEL, input: 'x', previous_response_id: r.id }),
        (e) => e instanceof sdk.BadRequestError && /cancelled/.test(e.message));
    const del = await closedClient.responses.delete(r.id);
    assert.ok(del === undefined || del === null || del.deleted === true);
});

test('refusals as the SDK raises them, each naming its parameter', async () => {
    const cases = [
        [{ model: 'nope', input: 'x' }, sdk.NotFoundError, 'model'],
        [{ model: MODEL, input: 'x', max_output_tokens: 4 }, sdk.BadRequestError, 'max_output_tokens'],
        [{ model: MODEL, input: 'x', tools: [{ type: 'web_search' }] }, sdk.BadRequestError, 'tools'],
        [{ model: MODEL, input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'http://x/y.png' }] }] },
            sdk.BadRequestError, 'input'],
        [{ model: MODEL, input: 'x', background: true, store: false }, sdk.BadRequestError, 'background'],
        [{ model: MODEL, input: 'x', bogus: 1 }, sdk.BadRequestError, null],
    ];
    for (const [body, cls, param] of cases) {
        await assert.rejects(client.responses.create(body), (e) => {
            assert.ok(e instanceof cls, `${JSON.stringify(body)}: ${e.constructor.name} ${e.message}`);
            if (param) assert.equal(e.param, param, JSON.stringify(body));
            return true;
        });
    }
    await assert.rejects(client.responses.retrieve('resp_missing'), (e) => e instanceof sdk.NotFoundError);
    await assert.rejects(client.responses.cancel('resp_missing'), (e) => e instanceof sdk.NotFoundError);
});

test('truncation: "auto" drops the oldest items until the conversation fits; "disabled" is a 400', async () => {
    // 4096 context over 4 sequences: 1024 tokens each; six long messages do not fit
    const long = (i) => `Message ${i}: ` + 'hello world '.repeat(120);
    const input = [0, 1, 2, 3, 4, 5].map((i) => ({ role: i % 2 ? 'assistant' : 'user', content: long(i) }));
    await assert.rejects(client.responses.create({ model: MODEL, input, max_output_tokens: 16 }),
        (e) => e instanceof sdk.BadRequestError && e.param === 'input' && /maximum context length/.test(e.message));
    const r = await client.responses.create({ model: MODEL, input, truncation: 'auto', max_output_tokens: 16 });
    checkResponse(r, 'truncated');
    assert.equal(r.truncation, 'auto');
    assert.ok(r.usage.input_tokens + 16 <= 1024, JSON.stringify(r.usage));
    assert.ok(r.usage.input_tokens > 200, JSON.stringify(r.usage)); // the newest items stayed
});

test('a reasoning model: a reasoning item first (its summary when asked), reasoning tokens counted, streamed as summary events', async () => {
    const r = await client.responses.create({ model: 'r1', input: 'Think about it', reasoning: { summary: 'auto', effort: 'low' },
        max_output_tokens: 32 });
    assert.equal(r.output[0].type, 'reasoning', JSON.stringify(r.output));
    assert.match(r.output[0].id, /^rs_/);
    assert.ok(r.output[0].content[0].text.length > 0);
    assert.equal(r.output[0].summary[0].type, 'summary_text');
    assert.equal(r.output[0].summary[0].text, r.output[0].content[0].text);
    assert.ok(r.usage.output_tokens_details.reasoning_tokens > 0, JSON.stringify(r.usage));
    // counted from the reasoning's text, never more than were generated
    assert.ok(r.usage.output_tokens_details.reasoning_tokens <= r.usage.output_tokens, JSON.stringify(r.usage));
    assert.equal(r.reasoning.effort, 'low');
    const stream = await client.responses.create({ model: 'r1', input: 'Think about it', reasoning: { summary: 'auto' },
        max_output_tokens: 32, stream: true });
    const events = [];
    for await (const e of stream) events.push(e);
    const sum = events.filter((e) => e.type === 'response.reasoning_summary_text.delta').map((e) => e.delta).join('');
    const done = events.find((e) => e.type === 'response.reasoning_summary_text.done');
    assert.ok(sum.length > 0);
    assert.equal(done.text, sum);
    events.forEach((e, i) => assert.equal(e.sequence_number, i));
    // the Vercel AI SDK reads the summary as the reasoning (it asks for one of models it knows
    // to reason, by name: forceReasoning for this one)
    const { createOpenAI } = await import('@ai-sdk/openai');
    const { generateText } = await import('ai');
    const openai = createOpenAI({ baseURL: `${SERVER.url}/v1`, apiKey: 'test' });
    const g = await generateText({ model: openai('r1'), prompt: 'Think', maxOutputTokens: 32, maxRetries: 0,
        providerOptions: { openai: { reasoningSummary: 'auto', forceReasoning: true } } });
    assert.ok((g.reasoningText ?? '').length > 0, JSON.stringify(g.content));
});

test('a batch file of /v1/responses lines: every line a response object, a bad line an error line', async () => {
    const lines = [0, 1, 2].map((i) => ({ custom_id: `r${i}`, method: 'POST', url: '/v1/responses',
        body: { model: MODEL, input: `Line ${i}`, max_output_tokens: 16 } }));
    lines.push({ custom_id: 'bad', method: 'POST', url: '/v1/responses', body: { model: MODEL, input: 'x', stream: true } });
    const file = await client.files.create({ file: await sdk.toFile(Buffer.from(toJsonl(lines)), 'r.jsonl'), purpose: 'batch' });
    const b = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/responses', completion_window: '24h' });
    const { value } = await pollUntil(() => client.batches.retrieve(b.id),
        (x) => ['completed', 'failed', 'expired', 'cancelled'].includes(x.status), { intervalMs: 200, what: 'batch' });
    assert.equal(value.status, 'completed', JSON.stringify(value));
    assert.equal(value.request_counts.completed, 3);
    assert.equal(value.request_counts.failed, 1);
    const out = parseJsonl(await (await client.files.content(value.output_file_id)).text());
    assert.deepEqual(out.map((l) => l.custom_id).sort(), ['r0', 'r1', 'r2']);
    for (const l of out) {
        assert.equal(l.response.status_code, 200);
        assert.equal(l.response.body.object, 'response');
        assert.match(l.response.body.id, /^resp_/);
        assert.equal(l.response.body.output.find((o) => o.type === 'message').content[0].type, 'output_text');
    }
    const errs = parseJsonl(await (await client.files.content(value.error_file_id)).text());
    assert.equal(errs.length, 1);
    assert.equal(errs[0].custom_id, 'bad');
    assert.equal(errs[0].response.body.error.param, 'stream');
});

test('the Vercel AI SDK default OpenAI provider (Responses): generateText and streamText', async () => {
    const { createOpenAI } = await import('@ai-sdk/openai');
    const { generateText, streamText } = await import('ai');
    const openai = createOpenAI({ baseURL: `${SERVER.url}/v1`, apiKey: 'test' });
    const g = await generateText({ model: openai(MODEL), prompt: 'Hi', maxOutputTokens: 20, maxRetries: 0 });
    assert.equal(typeof g.text, 'string');
    assert.ok(g.usage.inputTokens > 0, JSON.stringify(g.usage));
    assert.ok(['stop', 'length'].includes(g.finishReason), g.finishReason);
    const s = streamText({ model: openai(MODEL), prompt: 'Hi', maxOutputTokens: 20, maxRetries: 0 });
    let t = '';
    for await (const d of s.textStream) t += d;
    assert.equal(t, await s.text);
    assert.ok((await s.usage).outputTokens > 0);
});
