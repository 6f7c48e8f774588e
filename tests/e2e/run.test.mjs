// End-to-end tests of `nightshift run`: the real binary over real files.
//
//   node --test tests/e2e/run.test.mjs
//
// See lib.mjs for the environment variables. One random-weight model is generated per
// file (gen-model, well under a second) and shared by the tests; every test works in its
// own directory under one temporary directory that is removed at the end
// (NIGHTSHIFT_E2E_KEEP=1 keeps it for debugging).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import {
    BIN,
    SHARED_MODELS,
    SPM_VOCAB,
    byCustomId,
    chatLine,
    choiceText,
    completionLine,
    describeRun,
    fileSize,
    mkTmp,
    normalizeLine,
    readJson,
    readJsonl,
    rmTmp,
    runNs,
    sleep,
    spawnNs,
    stderrValidationErrors,
    writeJsonl,
} from './lib.mjs';

let TMP;
let MODEL; // <TMP>/tiny.gguf: body.model may be 'tiny', 'tiny.gguf' or 'nightshift-random'

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN} (build it, or set NIGHTSHIFT_BIN)`);
    assert.ok(fs.existsSync(SPM_VOCAB), `the vocab file is missing: ${SPM_VOCAB} (set NIGHTSHIFT_VOCAB_DIR)`);
    TMP = mkTmp();
    MODEL = path.join(TMP, 'tiny.gguf');
    const r = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', MODEL, '--shape', 'tiny', '--seed', '7']);
    assert.equal(r.code, 0, `gen-model failed: ${describeRun(r)}`);
    assert.ok(fileSize(MODEL) > 0, 'gen-model wrote no model');
});

after(() => rmTmp(TMP));

function testDir(name) {
    const d = path.join(TMP, name);
    fs.mkdirSync(d, { recursive: true });
    return d;
}

/* run and insist on an exit code, with the whole run in the message otherwise */
async function runExpect(code, args, opts) {
    const r = await runNs(args, opts);
    assert.equal(r.code, code, `expected exit ${code}: nightshift ${args.join(' ')}\n${describeRun(r)}`);
    return r;
}

function assertSuccessLine(l, what = '') {
    assert.equal(typeof l.id, 'string', `${what}: id`);
    assert.match(l.id, /^batch_req_/, `${what}: id`);
    assert.equal(l.error, null, `${what}: error must be null`);
    assert.equal(l.response.status_code, 200, `${what}: status_code`);
    assert.match(l.response.request_id, /^req_/, `${what}: request_id`);
    const b = l.response.body;
    assert.ok(b.object === 'chat.completion' || b.object === 'text_completion', `${what}: object ${b.object}`);
    assert.equal(b.choices.length, 1, `${what}: one choice`);
    assert.equal(b.choices[0].index, 0);
    assert.ok(['stop', 'length'].includes(b.choices[0].finish_reason), `${what}: finish_reason`);
    assert.equal(typeof choiceText(l), 'string', `${what}: text`);
}

function assertErrorLine400(l, what = '') {
    assert.match(l.id, /^batch_req_/, `${what}: id`);
    assert.equal(l.error, null, `${what}: error must be null (the failure is in response)`);
    assert.equal(l.response.status_code, 400, `${what}: status_code`);
    assert.match(l.response.request_id, /^req_/, `${what}: request_id`);
    const e = l.response.body.error;
    assert.ok(e, `${what}: response.body.error`);
    assert.equal(typeof e.message, 'string');
    assert.ok(e.message.length > 0, `${what}: message`);
    assert.equal(e.type, 'invalid_request_error', `${what}: type`);
    assert.ok('param' in e, `${what}: param present`);
    assert.ok('code' in e, `${what}: code present`);
    return e;
}

/* ---- 1. validation ------------------------------------------------------------------- */

test('validation: invalid lines fail the batch, or go to the error file with --skip-invalid', async () => {
    const dir = testDir('validation');
    const input = path.join(dir, 'in.jsonl');
    const N = 200;
    const modelNames = ['tiny', 'tiny.gguf', 'nightshift-random', 'alias-x'];
    const valid = (i) =>
        chatLine(`req-${i}`, `Write a line about the number ${i}.`, { max_tokens: 8 }, modelNames[i % modelNames.length]);
    // line number -> [raw line or object, code, param, custom_id in the error file]
    const bad = {
        7: ['{"custom_id": "req-7", "method": "POST", "url": "/v1/chat/completions", "body": {', 'invalid_json_line', null, null],
        33: ['[1, 2, 3]', 'invalid_json_line', null, null],
        50: [{ method: 'POST', url: '/v1/chat/completions', body: valid(50).body }, 'missing_required_parameter', 'custom_id', null],
        51: [{ ...valid(51), custom_id: 'req-10' }, 'duplicate_custom_id', 'custom_id', 'req-10'],
        64: [{ ...valid(64), custom_id: 64 }, 'invalid_custom_id', 'custom_id', null],
        88: [{ ...valid(88), method: 'GET' }, 'invalid_method', 'method', 'req-88'],
        99: [{ ...valid(99), url: '/v1/audio/speech' }, 'invalid_url', 'url', 'req-99'],
        123: [{ ...valid(123), body: 'hello' }, 'invalid_body', 'body', 'req-123'],
        150: [{ ...valid(150), body: { messages: [{ role: 'user', content: 'hi' }] } }, 'missing_required_parameter', 'body.model', 'req-150'],
        170: [{ ...valid(170), body: { ...valid(170).body, model: 5 } }, 'invalid_model', 'body.model', 'req-170'],
        200: [{ ...valid(200), body: { ...valid(200).body, model: 'gpt-4o' } }, 'model_not_found', 'body.model', 'req-200'],
    };
    const lines = [];
    for (let i = 1; i <= N; i++) lines.push(bad[i] ? bad[i][0] : valid(i));
    writeJsonl(input, lines);
    const badNos = Object.keys(bad).map(Number).sort((a, b) => a - b);
    const expected = badNos.map((n) => ({ line: n, code: bad[n][1], param: bad[n][2] }));
    const validIds = [];
    for (let i = 1; i <= N; i++) if (!bad[i]) validIds.push(`req-${i}`);

    // without --skip-invalid: nothing runs
    const out = path.join(dir, 'out.jsonl');
    const summary = path.join(dir, 'summary.json');
    const base = [input, '-o', out, '--model', MODEL, '--model-alias', 'alias-x', '--ctx', '4096', '--parallel', '8'];
    const r1 = await runExpect(1, ['run', ...base, '--summary', summary]);
    assert.match(r1.stderr, new RegExp(`${badNos.length} of ${N} lines are invalid`), r1.stderr);
    assert.match(r1.stderr, /--skip-invalid/);
    const printed = stderrValidationErrors(r1.stderr);
    assert.deepEqual(
        printed.map(({ line, code }) => ({ line, code })),
        expected.map(({ line, code }) => ({ line, code })),
        `stderr lists exactly the invalid lines:\n${r1.stderr}`,
    );
    for (const p of printed) assert.match(p.message, new RegExp(`\\bline ${p.line}\\b`), `message names its line: ${p.message}`);
    assert.ok(!fs.existsSync(out), 'no output file when validation fails');
    assert.ok(!fs.existsSync(path.join(dir, 'out.errors.jsonl')), 'no error file when validation fails');
    assert.ok(!fs.existsSync(out + '.state.db'), 'no checkpoint when validation fails');
    const s1 = readJson(summary);
    assert.equal(s1.status, 'failed');
    assert.deepEqual(
        s1.errors.data.map(({ line, code, param }) => ({ line, code, param })),
        expected,
        'summary errors.data lists exactly the invalid lines with their codes and params',
    );
    for (const e of s1.errors.data) assert.match(e.message, new RegExp(`\\bline ${e.line}\\b`));
    assert.equal(s1.request_counts.total, N);
    assert.equal(s1.request_counts.completed, 0);
    assert.equal(s1.request_counts.failed, badNos.length);

    // with --skip-invalid: the valid lines run, the invalid ones are error lines
    const r2 = await runExpect(0, ['run', ...base, '--summary', summary, '--skip-invalid', '-q', '--price-input', '2',
        '--price-output', '4', '--batch-discount', '0.5']);
    const okLines = readJsonl(out);
    assert.deepEqual(okLines.map((l) => l.custom_id), validIds, 'output has exactly the valid lines, in input order');
    for (const l of okLines) {
        assertSuccessLine(l, l.custom_id);
        const n = Number(l.custom_id.slice(4));
        assert.equal(l.response.body.model, modelNames[n % modelNames.length], 'body.model is echoed');
    }
    const errLines = readJsonl(path.join(dir, 'out.errors.jsonl')); // the default error file name
    assert.equal(errLines.length, badNos.length, 'error file has exactly the invalid lines');
    errLines.forEach((l, k) => {
        const n = badNos[k];
        const e = assertErrorLine400(l, `line ${n}`);
        assert.equal(l.custom_id, bad[n][3], `line ${n}: custom_id`);
        assert.equal(e.code, bad[n][1], `line ${n}: code`);
        assert.equal(e.param, bad[n][2], `line ${n}: param`);
        assert.match(e.message, new RegExp(`\\bline ${n}\\b`), `line ${n}: message names the line`);
    });
    const s2 = readJson(summary);
    assert.equal(s2.status, 'completed');
    assert.equal(s2.request_counts.total, N);
    assert.equal(s2.request_counts.completed, validIds.length);
    assert.equal(s2.request_counts.failed, badNos.length);
    assert.equal(s2.errors.data.length, badNos.length);
    assert.equal(r2.stdout, '', '-q prints nothing on stdout');
    /* cost accounting: real-time prices, half off for batch work */
    const rt = (s2.usage.input_tokens * 2 + s2.usage.output_tokens * 4) / 1e6;
    assert.ok(Math.abs(s2.cost.realtime_usd - rt) < 1e-12 && Math.abs(s2.cost.usd - rt / 2) < 1e-12, JSON.stringify(s2.cost));
    assert.ok(Math.abs(s2.cost.savings_usd - rt / 2) < 1e-12);
    const bad2 = await runExpect(2, ['run', ...base, '--batch-discount', '1.5']);
    assert.match(bad2.stderr, /--batch-discount must be a number from 0 to 1, not '1\.5'/);
    const bad3 = await runExpect(2, ['run', ...base, '--price-input', 'cheap']);
    assert.match(bad3.stderr, /--price-input must be a number from 0 to 1e\+06, not 'cheap'/);
});

/* ---- 2. request-level errors while running -------------------------------------------- */

test('--validate-only: checks every line, reports size and speed, runs nothing, writes no output', async () => {
    const dir = testDir('validate-only');
    const input = path.join(dir, 'in.jsonl');
    const summary = path.join(dir, 'summary.json');
    const lines = [];
    for (let i = 0; i < 50; i++) lines.push(chatLine(`v-${i}`, `Line ${i}.`, { max_tokens: 8 }, 'tiny'));
    writeJsonl(input, lines);
    // no -o needed; nothing is written beside the input
    const r = await runExpect(0, ['run', input, '--validate-only', '--model', MODEL, '--summary', summary]);
    assert.match(r.stdout, /nightshift run: validated/);
    assert.match(r.stdout, /50 valid, 0 invalid, of 50/);
    assert.match(r.stdout, new RegExp(`${fileSize(input)} bytes .* MB/s, \\d+ lines/s`));
    const s = readJson(summary);
    assert.equal(s.status, 'validated');
    assert.equal(s.request_counts.total, 50);
    assert.equal(s.request_counts.failed, 0);
    assert.equal(s.usage.output_tokens, 0);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['in.jsonl', 'summary.json']);

    // an invalid line: listed on stderr, exit 1, status failed; with --skip-invalid exit 0
    lines[10] = { ...lines[10], body: { ...lines[10].body, model: 'gpt-4o' } };
    writeJsonl(input, lines);
    const r2 = await runExpect(1, ['run', input, '--validate-only', '--model', MODEL, '--summary', summary]);
    assert.match(r2.stdout, /failed validation/);
    assert.match(r2.stdout, /49 valid, 1 invalid, of 50/);
    assert.match(r2.stderr, /model_not_found/);
    assert.equal(readJson(summary).status, 'failed');
    await runExpect(0, ['run', input, '--validate-only', '--skip-invalid', '--model', MODEL]);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['in.jsonl', 'summary.json']);
});

test('runtime errors: HTTP-style 400 lines with the right param and code; the other lines succeed', async () => {
    const dir = testDir('runtime-errors');
    const input = path.join(dir, 'in.jsonl');
    const longPrompt = (words) => Array.from({ length: words }, (_, i) => `word${i % 10}`).join(' ');
    const lines = [
        chatLine('ok-1', 'Hello there.', { max_tokens: 8 }),
        [chatLine('bad-temperature', 'Hi', { max_tokens: 8, temperature: 5 }), 'temperature', null, /temperature/],
        [chatLine('bad-n', 'Hi', { max_tokens: 8, n: 17 }), 'n', 'unsupported_value', /at most 16/],
        [chatLine('bad-max-tokens', 'Hi', { max_tokens: 0 }), 'max_tokens', null, /max_tokens/],
        completionLine('ok-2', 'The weather today is', { max_tokens: 8 }),
        [chatLine('bad-unknown-field', 'Hi', { max_tokens: 8, frobnicate: true }), null, null, /Unrecognized request argument supplied: frobnicate/],
        [chatLine('bad-top-p', 'Hi', { max_tokens: 8, top_p: 1.5 }), 'top_p', null, /top_p/],
        [chatLine('bad-stream', 'Hi', { max_tokens: 8, stream: true }), 'stream', null, /stream/],
        [{ ...chatLine('bad-messages', 'x', { max_tokens: 8 }), body: { model: 'tiny', messages: [], max_tokens: 8 } }, 'messages', null, /messages/],
        [{ ...completionLine('bad-no-prompt', 'x'), body: { model: 'tiny', max_tokens: 8 } }, 'prompt', null, /prompt/],
        [{ ...chatLine('bad-role', 'x'), body: { model: 'tiny', messages: [{ role: 'wizard', content: 'hi' }], max_tokens: 8 } }, 'messages', null, /wizard/],
        [chatLine('bad-tool-schema', 'Hi', { max_tokens: 8, tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'string', pattern: '^(?=a)$' } } }] }), 'tools', 'unsupported_value', /'pattern'/],
        // an embeddings line on a model loaded for generation
        [{ custom_id: 'bad-embed', method: 'POST', url: '/v1/embeddings', body: { model: 'tiny', input: 'x' } }, 'model', null, /not embeddings/],
        // prompt + max_tokens over --ctx 512
        [chatLine('ctx-overflow', longPrompt(150), { max_tokens: 400 }), 'messages', 'context_length_exceeded', /context length/],
        // the prompt alone is over the context
        [completionLine('ctx-prompt-too-long', longPrompt(600), { max_tokens: 8 }), 'prompt', 'context_length_exceeded', /context length/],
        chatLine('ok-3', 'One more, please.', { max_tokens: 8, temperature: 0 }),
    ];
    writeJsonl(input, lines.map((l) => (Array.isArray(l) ? l[0] : l)));
    const out = path.join(dir, 'results.jsonl');
    const errs = path.join(dir, 'failures.jsonl');
    const summary = path.join(dir, 's.json');
    await runExpect(0, ['run', input, '-o', out, '--errors', errs, '--model', MODEL, '--ctx', '512', '--parallel', '4',
        '--summary', summary, '-q']);

    const okIds = lines.filter((l) => !Array.isArray(l)).map((l) => l.custom_id);
    const badCases = lines.filter(Array.isArray);
    const okLines = readJsonl(out);
    assert.deepEqual(okLines.map((l) => l.custom_id), okIds, 'the valid lines succeed');
    for (const l of okLines) assertSuccessLine(l, l.custom_id);
    const errLines = readJsonl(errs);
    assert.deepEqual(errLines.map((l) => l.custom_id), badCases.map((c) => c[0].custom_id),
        'the error file has exactly the failing lines, in input order');
    errLines.forEach((l, k) => {
        const [, param, code, msgRe] = badCases[k];
        const e = assertErrorLine400(l, l.custom_id);
        assert.equal(e.param, param, `${l.custom_id}: param (message: ${e.message})`);
        assert.equal(e.code, code, `${l.custom_id}: code (message: ${e.message})`);
        assert.match(e.message, msgRe, `${l.custom_id}: message`);
    });
    const s = readJson(summary);
    assert.equal(s.status, 'completed');
    assert.deepEqual(s.request_counts, { total: lines.length, completed: okIds.length, failed: badCases.length });
    assert.deepEqual(s.errors.data, [], 'request-level errors are not validation errors');
    assert.ok(!fs.existsSync(path.join(dir, 'results.errors.jsonl')), '--errors replaces the default error file');
});

/* ---- 3. kill and resume -------------------------------------------------------------- */

/* Start a run and send `signal` as soon as the checkpoint holds some results: the WAL of the
 * state database grows past its size at the time the engine started (printed on stderr). */
async function runAndInterrupt(args, statePath, signal) {
    const p = spawnNs(args);
    const wal = statePath + '-wal';
    let baseline = null;
    let sent = false;
    const deadline = Date.now() + 60_000;
    while (!p.exited() && Date.now() < deadline) {
        if (baseline === null) {
            if (/nightshift: model /.test(p.out.stderr)) baseline = Math.max(fileSize(wal), 0);
        } else if (fileSize(wal) > baseline) {
            sent = p.child.kill(signal);
            break;
        }
        await sleep(5);
    }
    const r = await p.done;
    assert.ok(sent, `could not interrupt the run while it was running (it ended first?)\n${describeRun(r)}`);
    return r;
}

function makeResumeBatch(file, n) {
    const lines = [];
    for (let i = 0; i < n; i++) {
        const id = `job-${String(i).padStart(4, '0')}`;
        lines.push(i % 3 === 2
            ? completionLine(id, `Item ${i}: the story continues`, { max_tokens: 32, ignore_eos: true })
            : chatLine(id, `Request ${i}: tell me something`, { max_tokens: 32, ignore_eos: true }));
    }
    writeJsonl(file, lines);
    return lines.map((l) => l.custom_id);
}

function assertAllOnce(ids, out, errs) {
    const okLines = readJsonl(out);
    const errLines = fs.existsSync(errs) ? readJsonl(errs) : [];
    const seen = [...okLines, ...errLines].map((l) => l.custom_id);
    assert.equal(seen.length, ids.length, `${seen.length} result lines for ${ids.length} requests`);
    assert.equal(new Set(seen).size, seen.length, 'no custom_id appears twice');
    assert.deepEqual([...seen].sort(), [...ids].sort(), 'every custom_id is accounted for');
    assert.deepEqual(okLines.map((l) => l.custom_id), ids, 'all lines succeed, in input order');
    for (const l of okLines) assertSuccessLine(l, l.custom_id);
    return okLines;
}

test('kill -9 mid-run, re-run resumes: every custom_id exactly once; a later re-run is a no-op', async (t) => {
    const dir = testDir('kill');
    const input = path.join(dir, 'in.jsonl');
    const ids = makeResumeBatch(input, 300);
    const out = path.join(dir, 'out.jsonl');
    const errs = path.join(dir, 'out.errors.jsonl');
    const state = out + '.state.db';
    const summary = path.join(dir, 's.json');
    const args = ['run', input, '-o', out, '--model', MODEL, '--parallel', '8', '--ctx', '4096', '--seed', '3',
        '--summary', summary];

    const killed = await runAndInterrupt(args, state, 'SIGKILL');
    assert.equal(killed.signal, 'SIGKILL', describeRun(killed));
    assert.ok(!fs.existsSync(out), 'no output file after a kill (it is written only at the end)');
    assert.ok(!fs.existsSync(summary), 'no summary after a kill');
    assert.ok(fs.existsSync(state), 'the checkpoint exists');

    const resumed = await runExpect(0, args);
    const s = readJson(summary);
    t.diagnostic(`killed after ${Math.round(killed.ms)} ms; resumed_lines ${s.resumed_lines}; resume ${Math.round(resumed.ms)} ms`);
    assert.ok(s.resumed_lines > 0 && s.resumed_lines < ids.length,
        `the re-run resumed part of the batch (resumed_lines ${s.resumed_lines})`);
    assert.match(resumed.stderr, new RegExp(`resuming: ${s.resumed_lines} lines already done, ${ids.length - s.resumed_lines} to run`));
    assert.equal(s.status, 'completed');
    assert.deepEqual(s.request_counts, { total: ids.length, completed: ids.length, failed: 0 });
    const first = assertAllOnce(ids, out, errs);
    assert.equal(readJsonl(errs).length, 0);
    for (const l of first) assert.equal(l.response.body.usage.completion_tokens, 32, `${l.custom_id}: ignore_eos runs to max_tokens`);
    assert.equal(s.usage.output_tokens, ids.length * 32);
    const outBytes = fs.readFileSync(out, 'utf8');

    // a re-run after completion does no work and writes the same files
    const again = await runExpect(0, args);
    const s2 = readJson(summary);
    assert.equal(s2.resumed_lines, ids.length);
    assert.equal(s2.engine.steps, 0, 'no decode step on a completed checkpoint');
    assert.equal(s2.engine.generated_tokens, 0);
    assert.equal(s2.engine.decode_seconds, 0, 'no decode time either');
    assert.doesNotMatch(again.stderr, /nightshift: model /, 'the model is not even loaded');
    assert.ok(again.ms < resumed.ms, `the no-op re-run (${again.ms} ms) is faster than the resume (${resumed.ms} ms)`);
    t.diagnostic(`no-op re-run ${Math.round(again.ms)} ms`);
    assertAllOnce(ids, out, errs);
    assert.equal(fs.readFileSync(out, 'utf8'), outBytes, 'the output is re-exported identically from the checkpoint');
    assert.deepEqual(s2.usage, s.usage);
});

test('SIGTERM and SIGINT mid-run exit 130 and keep finished lines; the re-run completes', async (t) => {
    const dir = testDir('sigterm');
    const input = path.join(dir, 'in.jsonl');
    const ids = makeResumeBatch(input, 300);
    const out = path.join(dir, 'out.jsonl');
    const errs = path.join(dir, 'out.errors.jsonl');
    const state = path.join(dir, 'custom.state');
    const summary = path.join(dir, 's.json');
    const args = ['run', input, '-o', out, '--state', state, '--model', MODEL, '--parallel', '8', '--ctx', '4096',
        '--summary', summary];

    const term = await runAndInterrupt(args, state, 'SIGTERM');
    assert.equal(term.code, 130, `SIGTERM exits 130\n${describeRun(term)}`);
    const saved1 = Number((/interrupted; (\d+) lines finished this run are saved/.exec(term.stderr) || [])[1]);
    assert.ok(saved1 > 0 && saved1 < ids.length, `SIGTERM: lines saved ${saved1}\n${term.stderr}`);
    assert.ok(!fs.existsSync(out), 'no output file after an interrupted run');
    assert.ok(!fs.existsSync(summary), 'no summary after an interrupted run');
    assert.ok(!fs.existsSync(out + '.state.db'), '--state replaces the default checkpoint path');

    // interrupted again (Ctrl-C) while resuming: the checkpoint keeps growing
    const int = await runAndInterrupt(args, state, 'SIGINT');
    assert.equal(int.code, 130, `SIGINT exits 130\n${describeRun(int)}`);
    assert.match(int.stderr, new RegExp(`resuming: ${saved1} lines already done`), int.stderr);
    const saved2 = Number((/interrupted; (\d+) lines finished this run are saved/.exec(int.stderr) || [])[1]);
    assert.ok(saved2 > 0 && saved1 + saved2 < ids.length, `SIGINT: lines saved ${saved2}\n${int.stderr}`);
    assert.ok(!fs.existsSync(out));

    await runExpect(0, args);
    const s = readJson(summary);
    t.diagnostic(`saved by the SIGTERM run ${saved1}, by the SIGINT run ${saved2}; resumed_lines ${s.resumed_lines}`);
    assert.equal(s.resumed_lines, saved1 + saved2, 'every line an interrupted run reported saved is resumed');
    assert.deepEqual(s.request_counts, { total: ids.length, completed: ids.length, failed: 0 });
    assertAllOnce(ids, out, errs);
});

/* ---- 4. determinism ------------------------------------------------------------------ */

test('determinism: same file, --seed and --parallel give the same choices and usage', async () => {
    const dir = testDir('determinism');
    const input = path.join(dir, 'in.jsonl');
    const lines = [];
    for (let i = 0; i < 48; i++) {
        const sampling = i % 2 ? { temperature: 0.8, top_p: 0.9 } : { temperature: 0 };
        const body = { max_tokens: 16, ...sampling };
        lines.push(i % 4 < 2
            ? chatLine(`d-${i}`, `Describe item ${i % 5} briefly.`, body)
            : completionLine(`d-${i}`, `Item ${i % 5} is`, body));
    }
    lines.push(chatLine('d-own-seed', 'Fixed seed line.', { max_tokens: 16, temperature: 1, seed: 1234 }));
    writeJsonl(input, lines);
    const run = async (name, seed) => {
        const out = path.join(dir, `${name}.jsonl`);
        await runExpect(0, ['run', input, '-o', out, '--model', MODEL, '--parallel', '6', '--ctx', '4096',
            '--seed', String(seed), '-q']);
        const l = readJsonl(out);
        assert.equal(l.length, lines.length, `${name}: every line succeeds`);
        return byCustomId(l.map(normalizeLine));
    };
    const a = await run('a', 42);
    const b = await run('b', 42);
    for (const l of lines) assert.deepEqual(b.get(l.custom_id), a.get(l.custom_id), `${l.custom_id} differs between runs`);

    // another --seed: greedy lines and lines with their own body.seed do not change; sampled ones do
    const c = await run('c', 43);
    let changed = 0;
    for (const l of lines) {
        if (l.body.temperature === 0 || l.body.seed !== undefined)
            assert.deepEqual(c.get(l.custom_id), a.get(l.custom_id), `${l.custom_id} must not depend on --seed`);
        else if (JSON.stringify(c.get(l.custom_id)) !== JSON.stringify(a.get(l.custom_id))) changed++;
    }
    assert.ok(changed > 0, 'at least one sampled line changes with --seed');
});

/* ---- 5. whole-file errors ------------------------------------------------------------ */

test('whole-file errors: empty, non-UTF-8, too many lines, bad or missing model → exit 2', async () => {
    const dir = testDir('whole-file');
    const out = path.join(dir, 'out.jsonl');
    const goodLine = JSON.stringify(chatLine('g-1', 'hi', { max_tokens: 4 }));
    const cases = [];
    const add = (name, content, re, extra = [], model = MODEL) => cases.push({ name, content, re, extra, model });

    add('empty file', '', /empty/);
    add('blank lines only', '\n   \n\t\n', /empty|no request lines/);
    add('not UTF-8', Buffer.concat([
        Buffer.from(goodLine + '\n'),
        Buffer.from('{"custom_id":"g-2","method":"POST","url":"/v1/chat/completions","body":{"model":"tiny","messages":[{"role":"user","content":"'),
        Buffer.from([0xff, 0xfe, 0x41]),
        Buffer.from('"}]}}\n'),
    ]), /not valid UTF-8.*line 2/);
    const six = Array.from({ length: 6 }, (_, i) => JSON.stringify(chatLine(`g-${i}`, 'hi', { max_tokens: 4 }))).join('\n') + '\n';
    add('over --max-lines', six, /more than 5 requests.*--max-lines/, ['--max-lines', '5']);
    const notGguf = path.join(dir, 'model.txt');
    fs.writeFileSync(notGguf, 'this is a text file, not a model\n'.repeat(10));
    add('model not GGUF', goodLine + '\n', /not a GGUF/, [], notGguf);
    const missing = path.join(dir, 'no-such-model.gguf');
    add('missing model', goodLine + '\n', /no-such-model\.gguf/, [], missing);

    for (const c of cases) {
        const input = path.join(dir, `in-${cases.indexOf(c)}.jsonl`);
        fs.writeFileSync(input, c.content);
        const r = await runNs(['run', input, '-o', out, '--model', c.model, '--ctx', '4096', '-q', ...c.extra]);
        assert.equal(r.code, 2, `${c.name}: exit 2\n${describeRun(r)}`);
        assert.match(r.stderr, c.re, `${c.name}: message\n${r.stderr}`);
        assert.match(r.stderr, /^nightshift: /m, `${c.name}: the message says who speaks`);
        assert.ok(!fs.existsSync(out), `${c.name}: no output file`);
        assert.ok(!fs.existsSync(out + '.state.db'), `${c.name}: no checkpoint`);
    }

    // a missing input file, and missing -o
    const r1 = await runNs(['run', path.join(dir, 'nope.jsonl'), '-o', out, '--model', MODEL, '-q']);
    assert.equal(r1.code, 2, describeRun(r1));
    assert.match(r1.stderr, /nope\.jsonl/);
    const r2 = await runNs(['run', path.join(dir, 'in-0.jsonl'), '--model', MODEL, '-q']);
    assert.equal(r2.code, 2, describeRun(r2));
    assert.match(r2.stderr, /output/);

    // --max-lines is a limit, not an off-by-one: exactly 5 lines pass
    const five = path.join(dir, 'five.jsonl');
    fs.writeFileSync(five, six.split('\n').slice(0, 5).join('\n') + '\n');
    await runExpect(0, ['run', five, '-o', out, '--model', MODEL, '--ctx', '4096', '--max-lines', '5', '-q']);
    assert.equal(readJsonl(out).length, 5);

    // the checkpoint belongs to its input: a changed input with the same -o is refused
    fs.appendFileSync(five, JSON.stringify(chatLine('g-extra', 'hi', { max_tokens: 4 })) + '\n');
    const r3 = await runNs(['run', five, '-o', out, '--model', MODEL, '--ctx', '4096', '-q']);
    assert.equal(r3.code, 2, describeRun(r3));
    assert.match(r3.stderr, /different input/);
    assert.equal(readJsonl(out).length, 5, 'the earlier output is left alone');
});

/* ---- 6. real text -------------------------------------------------------------------- */

test('real model: stories260K continues "Once upon a time" with English', async (t) => {
    const model = path.join(SHARED_MODELS, 'stories260K.gguf');
    if (!fs.existsSync(model)) {
        t.skip(`${model} not found (set NIGHTSHIFT_SHARED_MODELS); skipping the real-text check`);
        return;
    }
    const dir = testDir('stories');
    const input = path.join(dir, 'in.jsonl');
    writeJsonl(input, [
        completionLine('story', 'Once upon a time', { temperature: 0, max_tokens: 30 }, 'stories260K'),
    ]);
    const out = path.join(dir, 'out.jsonl');
    await runExpect(0, ['run', input, '-o', out, '--model', model, '--ctx', '1024', '--parallel', '1', '-q']);
    const [l] = readJsonl(out);
    assertSuccessLine(l, 'story');
    const b = l.response.body;
    assert.equal(b.object, 'text_completion');
    assert.equal(b.model, 'stories260K');
    const text = choiceText(l);
    const words = text.toLowerCase().match(/\b(the|a|was|she|he|and|to|there|little|named|day)\b/g) || [];
    assert.ok(words.length >= 2, `the continuation reads as English: ${JSON.stringify(text)}`);
    assert.ok(b.usage.prompt_tokens > 0 && b.usage.completion_tokens <= 30);
});

/* ---- 7. usage, finish_reason and stop strings ---------------------------------------- */

test('usage and finish_reason of every success body', async () => {
    const dir = testDir('usage');
    const input = path.join(dir, 'in.jsonl');
    const lines = [];
    for (let i = 0; i < 24; i++) {
        const max = [8, 16, 24][i % 3];
        const body = i % 2 ? { max_tokens: max, ignore_eos: true } : { max_tokens: max };
        lines.push(i % 4 === 3
            ? completionLine(`u-${i}`, `Completion number ${i} begins`, body)
            : chatLine(`u-${i}`, `Chat number ${i}`, i % 4 === 2 ? { max_completion_tokens: max, ignore_eos: body.ignore_eos } : body));
    }
    lines.push(chatLine('u-short', 'Hi', { max_tokens: 12, ignore_eos: true }));
    lines.push(chatLine('u-long', 'Hi. ' + 'Please write a very long and detailed answer about everything. '.repeat(6),
        { max_tokens: 12, ignore_eos: true }));
    writeJsonl(input, lines);
    const out = path.join(dir, 'out.jsonl');
    const summary = path.join(dir, 's.json');
    await runExpect(0, ['run', input, '-o', out, '--model', MODEL, '--parallel', '8', '--ctx', '4096',
        '--summary', summary, '-q']);
    const got = byCustomId(readJsonl(out));
    assert.equal(got.size, lines.length);
    let sumP = 0;
    let sumC = 0;
    for (const l of lines) {
        const r = got.get(l.custom_id);
        assertSuccessLine(r, l.custom_id);
        const b = r.response.body;
        const max = l.body.max_tokens ?? l.body.max_completion_tokens;
        const u = b.usage;
        const fr = b.choices[0].finish_reason;
        assert.equal(b.object, l.url === '/v1/completions' ? 'text_completion' : 'chat.completion');
        if (b.object === 'chat.completion') assert.equal(b.choices[0].message.role, 'assistant');
        assert.ok(Number.isInteger(u.prompt_tokens) && u.prompt_tokens > 0, `${l.custom_id}: prompt_tokens ${u.prompt_tokens}`);
        assert.ok(Number.isInteger(u.completion_tokens) && u.completion_tokens >= 1 && u.completion_tokens <= max,
            `${l.custom_id}: completion_tokens ${u.completion_tokens} <= ${max}`);
        assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, `${l.custom_id}: total = prompt + completion`);
        if (fr === 'length') assert.equal(u.completion_tokens, max, `${l.custom_id}: "length" means max_tokens was reached`);
        if (u.completion_tokens < max) assert.equal(fr, 'stop', `${l.custom_id}: ended early means "stop"`);
        if (l.body.ignore_eos) {
            assert.equal(fr, 'length', `${l.custom_id}: ignore_eos runs to the limit`);
            assert.equal(u.completion_tokens, max);
        }
        sumP += u.prompt_tokens;
        sumC += u.completion_tokens;
    }
    const short = got.get('u-short').response.body.usage.prompt_tokens;
    const long = got.get('u-long').response.body.usage.prompt_tokens;
    assert.ok(long > short + 50, `a longer prompt counts more tokens (${long} vs ${short})`);
    const s = readJson(summary);
    assert.equal(s.usage.input_tokens, sumP, 'summary input_tokens = sum of prompt_tokens');
    assert.equal(s.usage.output_tokens, sumC, 'summary output_tokens = sum of completion_tokens');
    assert.equal(s.usage.total_tokens, sumP + sumC);
    assert.deepEqual(s.request_counts, { total: lines.length, completed: lines.length, failed: 0 });
});

/* a 3-character printable-ASCII piece of text whose first occurrence is at p >= 4 */
function pickStop(text) {
    for (let p = Math.floor(text.length / 3); p + 3 <= text.length; p++) {
        const s = text.slice(p, p + 3);
        if (p >= 4 && /^[A-Za-z0-9][\x20-\x7e]{2}$/.test(s) && text.indexOf(s) === p) return { s, p };
    }
    for (let p = 4; p + 3 <= text.length; p++) {
        const s = text.slice(p, p + 3);
        if (/^[\x21-\x7e][\x20-\x7e]{2}$/.test(s) && text.indexOf(s) === p) return { s, p };
    }
    return null;
}

test('stop strings cut the text before the match with finish_reason "stop"', async () => {
    const dir = testDir('stop');
    const prompts = [
        ['s-chat-1', 'chat', 'Tell me about the sea.'],
        ['s-chat-2', 'chat', 'What is your favourite colour?'],
        ['s-cmpl-1', 'completion', 'The quick brown fox'],
        ['s-cmpl-2', 'completion', 'In the beginning there was'],
    ];
    const make = (stopFor) => prompts.map(([id, kind, text]) => {
        const body = { max_tokens: 24, temperature: 0, ignore_eos: true, ...(stopFor ? stopFor(id) : {}) };
        return kind === 'chat' ? chatLine(id, text, body) : completionLine(id, text, body);
    });
    // --parallel 1: each sequence is decoded alone, so the two passes compute the same tokens
    const pass = async (name, lines) => {
        const input = path.join(dir, `${name}.in.jsonl`);
        const out = path.join(dir, `${name}.jsonl`);
        writeJsonl(input, lines);
        await runExpect(0, ['run', input, '-o', out, '--model', MODEL, '--parallel', '1', '--ctx', '4096', '-q']);
        return byCustomId(readJsonl(out));
    };
    const first = await pass('first', make(null));
    const stops = new Map();
    for (const [id] of prompts) {
        const text = choiceText(first.get(id));
        assert.equal(first.get(id).response.body.choices[0].finish_reason, 'length');
        const pick = pickStop(text);
        assert.ok(pick, `${id}: no usable stop string in ${JSON.stringify(text)}`);
        stops.set(id, { ...pick, text, tokens: first.get(id).response.body.usage.completion_tokens });
    }
    const never = '@@never-in-output@@';
    const second = await pass('second', make((id) => ({
        // a string, an array with the match second, and a stop that never matches
        stop: id === 's-chat-2' ? [never, stops.get(id).s] : id === 's-cmpl-2' ? never : stops.get(id).s,
    })));
    for (const [id] of prompts) {
        const { s, p, text, tokens } = stops.get(id);
        const l = second.get(id);
        assertSuccessLine(l, id);
        const got = choiceText(l);
        const ch = l.response.body.choices[0];
        const u = l.response.body.usage;
        if (id === 's-cmpl-2') {
            assert.equal(got, text, `${id}: a stop string that never occurs changes nothing`);
            assert.equal(ch.finish_reason, 'length');
            continue;
        }
        assert.equal(got, text.slice(0, p), `${id}: text cut just before stop ${JSON.stringify(s)} (full text ${JSON.stringify(text)})`);
        assert.ok(!got.includes(s), `${id}: the stop string is not in the text`);
        assert.equal(ch.finish_reason, 'stop', `${id}: finish_reason`);
        assert.ok(u.completion_tokens <= tokens && u.completion_tokens >= 1, `${id}: completion_tokens ${u.completion_tokens}`);
        assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    }
});

/* ---- line numbering, CRLF, custom_id edge cases -------------------------------------- */

test('line numbers count blank lines; CRLF line endings are accepted', async () => {
    const dir = testDir('crlf');
    const input = path.join(dir, 'in.jsonl');
    const rows = [
        JSON.stringify(chatLine('c-1', 'first', { max_tokens: 4 })),
        '',
        '   ',
        JSON.stringify({ ...chatLine('c-4', 'x', { max_tokens: 4 }), url: '/v1/audio/speech' }),
        JSON.stringify(completionLine('c-5', 'fifth', { max_tokens: 4 })),
    ];
    fs.writeFileSync(input, rows.join('\r\n') + '\r\n');
    const out = path.join(dir, 'out.jsonl');
    const summary = path.join(dir, 's.json');
    const r = await runExpect(1, ['run', input, '-o', out, '--model', MODEL, '--ctx', '1024', '--summary', summary]);
    assert.deepEqual(stderrValidationErrors(r.stderr).map(({ line, code }) => ({ line, code })), [{ line: 4, code: 'invalid_url' }]);
    assert.match(r.stderr, /1 of 3 lines are invalid/, 'blank lines are not requests');
    assert.equal(readJson(summary).request_counts.total, 3);
    await runExpect(0, ['run', input, '-o', out, '--model', MODEL, '--ctx', '1024', '--skip-invalid', '-q']);
    assert.deepEqual(readJsonl(out).map((l) => l.custom_id), ['c-1', 'c-5']);
    const errLines = readJsonl(path.join(dir, 'out.errors.jsonl'));
    assert.equal(errLines.length, 1);
    assert.equal(errLines[0].custom_id, 'c-4');
    assert.equal(errLines[0].response.body.error.code, 'invalid_url');
});

test('Responses API lines (/v1/responses): each result line carries a response object', async () => {
    const dir = testDir('responses');
    const input = path.join(dir, 'in.jsonl');
    writeJsonl(input, [
        { custom_id: 'r-1', method: 'POST', url: '/v1/responses', body: { model: 'tiny', input: 'hello', max_output_tokens: 16 } },
        { custom_id: 'r-2', method: 'POST', url: '/v1/responses',
            body: { model: 'tiny', instructions: 'Be brief.', input: [{ role: 'user', content: 'hi' }], max_output_tokens: 16 } },
        { custom_id: 'r-bad', method: 'POST', url: '/v1/responses', body: { model: 'tiny', input: 'x', background: true } },
    ]);
    const out = path.join(dir, 'out.jsonl');
    await runExpect(0, ['run', input, '-o', out, '--model', MODEL, '--ctx', '1024', '-q']);
    const lines = readJsonl(out);
    assert.deepEqual(lines.map((l) => l.custom_id).sort(), ['r-1', 'r-2']);
    for (const l of lines) {
        assert.equal(l.response.status_code, 200);
        assert.equal(l.response.body.object, 'response');
        assert.ok(['completed', 'incomplete'].includes(l.response.body.status));
        assert.equal(l.response.body.output.at(-1).type, 'message');
        assert.ok(l.response.body.usage.output_tokens <= 16, JSON.stringify(l.response.body.usage));
    }
    const errs = readJsonl(path.join(dir, 'out.errors.jsonl'));
    assert.equal(errs.length, 1);
    assert.equal(errs[0].custom_id, 'r-bad');
    assert.equal(errs[0].response.body.error.param, 'background');
});

test('any custom_id string is kept: one shaped like an internal checkpoint key is not lost', async () => {
    // The checkpoint stores a skipped invalid line under the key "\x01line:<N>"; a request
    // whose custom_id is that same string must still get its own result line.
    const dir = testDir('custom-id-key');
    const input = path.join(dir, 'in.jsonl');
    writeJsonl(input, [
        chatLine('\u0001line:3', 'hello', { max_tokens: 4 }),
        chatLine('plain', 'hello', { max_tokens: 4 }),
        '{"custom_id": "broken", ',
    ]);
    const out = path.join(dir, 'out.jsonl');
    const summary = path.join(dir, 's.json');
    await runExpect(0, ['run', input, '-o', out, '--model', MODEL, '--ctx', '1024', '--skip-invalid', '--summary', summary, '-q']);
    const errLines = readJsonl(path.join(dir, 'out.errors.jsonl'));
    assert.equal(errLines.length, 1);
    assert.equal(errLines[0].response.body.error.code, 'invalid_json_line');
    assert.deepEqual(readJsonl(out).map((l) => l.custom_id), ['\u0001line:3', 'plain'],
        'both valid lines have a result (one was silently dropped)');
    assert.deepEqual(readJson(summary).request_counts, { total: 3, completed: 2, failed: 1 });
});

test('summary usage counts the tokens of the requests that ran, not of rejected ones', async () => {
    // A request rejected before it runs (context_length_exceeded) has no usage in the files;
    // the summary's usage must add up to the usage in the output file.
    const dir = testDir('summary-usage');
    const input = path.join(dir, 'in.jsonl');
    writeJsonl(input, [
        chatLine('fits', 'hello', { max_tokens: 4 }),
        completionLine('too-long', Array.from({ length: 600 }, () => 'word').join(' '), { max_tokens: 8 }),
    ]);
    const out = path.join(dir, 'out.jsonl');
    const summary = path.join(dir, 's.json');
    await runExpect(0, ['run', input, '-o', out, '--model', MODEL, '--ctx', '512', '--summary', summary, '-q']);
    const [ok] = readJsonl(out);
    const [bad] = readJsonl(path.join(dir, 'out.errors.jsonl'));
    assert.equal(bad.response.body.error.code, 'context_length_exceeded');
    const u = ok.response.body.usage;
    const s = readJson(summary);
    assert.deepEqual(s.request_counts, { total: 2, completed: 1, failed: 1 });
    assert.equal(s.usage.output_tokens, u.completion_tokens);
    assert.equal(s.usage.input_tokens, u.prompt_tokens,
        `summary input_tokens ${s.usage.input_tokens} = the prompt_tokens of the one request that ran (${u.prompt_tokens})`);
    assert.equal(s.usage.total_tokens, u.total_tokens);
});
