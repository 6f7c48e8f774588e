// nightshift's documented extensions to the OpenAI Batch API, end to end over HTTP:
// retry of failed lines, processing windows (--batch-hours), metadata.not_before,
// partial results while running, short completion windows.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, SPM_VOCAB, sleep, startServer, killHard, api, submitBatch, waitBatch, TERMINAL } from './lib.mjs';

let dir, model;
const servers = [];

async function serve(extra = [], env = {}) {
    const s = await startServer(['--model', `tiny=${model}`, '--data-dir', path.join(dir, `d${servers.length}`),
        '--parallel', '4', '--ctx', '4096', '--threads', '1', ...extra], { env });
    servers.push(s);
    return s;
}

const chat = (i, extra = {}) => ({
    custom_id: `r-${i}`, method: 'POST', url: '/v1/chat/completions',
    body: { model: 'tiny', messages: [{ role: 'user', content: `hello ${i}` }], max_tokens: 6, ...extra },
});

async function fileLines(s, id) {
    if (!id) return [];
    const r = await api(s, 'GET', `/v1/files/${id}/content`);
    assert.equal(r.status, 200);
    return r.text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-ext-'));
    model = path.join(dir, 'tiny.gguf');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
});

after(async () => {
    for (const s of servers) await killHard(s);
    if (!process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

test('retry: a new batch from exactly the failed lines of an ended batch', async () => {
    const s = await serve();
    const lines = [];
    for (let i = 0; i < 10; i++) lines.push(chat(i, i % 3 === 0 ? { temperature: 9 } : {}));
    const b = await submitBatch(s, lines);
    const done = await waitBatch(s, b.id, (x) => TERMINAL.includes(x.status));
    assert.equal(done.status, 'completed');
    assert.equal(done.request_counts.failed, 4);
    const r = await api(s, 'POST', `/v1/batches/${b.id}/retry`);
    assert.equal(r.status, 200, r.text);
    const nb = r.json();
    assert.equal(nb.metadata.retry_of, b.id);
    const input = (await api(s, 'GET', `/v1/files/${nb.input_file_id}/content`)).text.split('\n').filter(Boolean);
    assert.deepEqual(input.map((l) => JSON.parse(l).custom_id), ['r-0', 'r-3', 'r-6', 'r-9']);
    const nd = await waitBatch(s, nb.id, (x) => TERMINAL.includes(x.status));
    assert.equal(nd.request_counts.total, 4);
    // a running or failed batch cannot be retried; an unknown one is 404
    const again = await api(s, 'POST', `/v1/batches/nope/retry`);
    assert.equal(again.status, 404);
    assert.equal(again.json().error.type, 'invalid_request_error');
});

test('retry of a batch without failures is a 409 with a clear message', async () => {
    const s = servers[0];
    const b = await submitBatch(s, [chat(1), chat(2)]);
    await waitBatch(s, b.id, (x) => TERMINAL.includes(x.status));
    const r = await api(s, 'POST', `/v1/batches/${b.id}/retry`);
    assert.equal(r.status, 409);
    assert.match(r.json().error.message, /no failed or expired lines/);
});

test('--batch-hours with --off-hours none: no batch work outside the window, real-time still served', async () => {
    const now = new Date();
    const fmt = (d) => `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
    const start = new Date(now.getTime() + 2 * 3600_000);
    const end = new Date(now.getTime() + 3 * 3600_000);
    const s = await serve(['--batch-hours', `${fmt(start)}-${fmt(end)}`, '--off-hours', 'none']);
    const b = await submitBatch(s, [chat(1), chat(2), chat(3)]);
    await waitBatch(s, b.id, (x) => x.status === 'in_progress');
    const rt = await api(s, 'POST', '/v1/chat/completions',
        JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'now' }], max_tokens: 4 }),
        { 'content-type': 'application/json' });
    assert.equal(rt.status, 200, rt.text);
    await sleep(1500);
    const still = (await api(s, 'GET', `/v1/batches/${b.id}`)).json();
    assert.equal(still.status, 'in_progress');
    assert.equal(still.request_counts.completed, 0);
    const c = await api(s, 'POST', `/v1/batches/${b.id}/cancel`);
    assert.equal(c.status, 200);
    const ended = await waitBatch(s, b.id, (x) => TERMINAL.includes(x.status));
    assert.equal(ended.status, 'cancelled');
    const errs = await fileLines(s, ended.error_file_id);
    assert.equal(errs.length, 3);
    for (const e of errs) {
        assert.equal(e.response, null);
        assert.equal(e.error.code, 'batch_cancelled');
    }
});

test('--batch-hours with --off-hours idle: batch work runs while no real-time request does', async () => {
    const now = new Date();
    const fmt = (d) => `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
    const s = await serve(['--batch-hours',
        `${fmt(new Date(now.getTime() + 2 * 3600_000))}-${fmt(new Date(now.getTime() + 3 * 3600_000))}`]);
    const b = await submitBatch(s, [chat(1), chat(2)]);
    const done = await waitBatch(s, b.id, (x) => TERMINAL.includes(x.status));
    assert.equal(done.status, 'completed');
    assert.equal(done.request_counts.completed, 2);
});

test('metadata.not_before holds a batch back until then', async () => {
    const s = servers[0];
    const later = String(Math.floor(Date.now() / 1000) + 3600);
    const b = await submitBatch(s, [chat(1)], { metadata: { not_before: later } });
    await waitBatch(s, b.id, (x) => x.status === 'in_progress');
    await sleep(1200);
    const x = (await api(s, 'GET', `/v1/batches/${b.id}`)).json();
    assert.equal(x.request_counts.completed, 0);
    assert.equal(x.metadata.not_before, later);
    const bad = await api(s, 'POST', '/v1/batches', JSON.stringify({
        input_file_id: b.input_file_id, endpoint: '/v1/chat/completions', completion_window: '24h',
        metadata: { not_before: 'tomorrow' } }), { 'content-type': 'application/json' });
    assert.equal(bad.status, 400);
    assert.equal(bad.json().error.param, 'metadata');
    await api(s, 'POST', `/v1/batches/${b.id}/cancel`);
});

test('partial results: /v1/batches/{id}/output and /errors while running and after', async () => {
    const s = servers[0];
    const lines = [];
    for (let i = 0; i < 40; i++) lines.push(chat(i, { max_tokens: 24, ignore_eos: true, ...(i === 5 ? { n: 17 } : {}) }));
    const b = await submitBatch(s, lines);
    const mid = await waitBatch(s, b.id, (x) => x.request_counts.completed >= 3 || TERMINAL.includes(x.status));
    const part = await api(s, 'GET', `/v1/batches/${b.id}/output`);
    assert.equal(part.status, 200);
    const got = part.text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.ok(got.length >= 3, `${got.length} partial lines`);
    for (const l of got) assert.equal(l.response.status_code, 200);
    const done = await waitBatch(s, b.id, (x) => TERMINAL.includes(x.status));
    assert.ok(mid.request_counts.completed <= done.request_counts.completed);
    const errs = (await api(s, 'GET', `/v1/batches/${b.id}/errors`)).text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.equal(errs.length, 1);
    assert.equal(errs[0].custom_id, 'r-5');
    assert.equal(errs[0].response.body.error.param, 'n');
    const unknown = await api(s, 'GET', '/v1/batches/batch_nope/output');
    assert.equal(unknown.status, 404);
});

test('several models: each has its own engine; /v1/models lists them; batches go to theirs', async () => {
    const other = path.join(dir, 'other.gguf');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', other, '--seed', '7']);
    const s = await startServer(['--model', `v1=${model}`, '--model', `v2=${other}`, '--data-dir', path.join(dir, 'multi'),
        '--parallel', '4', '--ctx', '4096', '--threads', '1']);
    servers.push(s);
    const models = (await api(s, 'GET', '/v1/models')).json().data.map((m) => m.id).sort();
    assert.deepEqual(models, ['v1', 'v2']);
    for (const m of ['v1', 'v2']) {
        const r = await api(s, 'POST', '/v1/chat/completions',
            JSON.stringify({ model: m, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }),
            { 'content-type': 'application/json' });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json().model, m);
    }
    const unknown = await api(s, 'POST', '/v1/chat/completions',
        JSON.stringify({ model: 'v3', messages: [{ role: 'user', content: 'hi' }] }), { 'content-type': 'application/json' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json().error.code, 'model_not_found');
    const lines = [1, 2, 3].map((i) => ({ ...chat(i), body: { ...chat(i).body, model: 'v2' } }));
    const b = await submitBatch(s, lines);
    const done = await waitBatch(s, b.id, (x) => TERMINAL.includes(x.status));
    assert.equal(done.status, 'completed');
    assert.equal(done.model, 'v2');
    const outs = await fileLines(s, done.output_file_id);
    for (const o of outs) assert.equal(o.response.body.model, 'v2');
    // one model per batch file, as at OpenAI
    const mixed = await submitBatch(s, [lines[0], { ...chat(9), body: { ...chat(9).body, model: 'v1' } }]);
    const failed = await waitBatch(s, mixed.id, (x) => TERMINAL.includes(x.status));
    assert.equal(failed.status, 'failed');
    assert.equal(failed.errors.data[0].code, 'mismatched_model');
    assert.equal(failed.errors.data[0].line, 2);
});

test('fairness: a small batch submitted after a large one finishes first (round-robin)', async () => {
    const s = await serve(['--parallel', '2']);
    const big = [];
    for (let i = 0; i < 300; i++) big.push({ ...chat(i, { max_tokens: 16, ignore_eos: true }), custom_id: `big-${i}` });
    const small = [];
    for (let i = 0; i < 6; i++) small.push({ ...chat(i, { max_tokens: 16, ignore_eos: true }), custom_id: `small-${i}` });
    const b1 = await submitBatch(s, big);
    await waitBatch(s, b1.id, (x) => x.request_counts.completed > 0);
    const b2 = await submitBatch(s, small);
    const d2 = await waitBatch(s, b2.id, (x) => TERMINAL.includes(x.status));
    assert.equal(d2.status, 'completed');
    const b1now = (await api(s, 'GET', `/v1/batches/${b1.id}`)).json();
    assert.equal(b1now.status, 'in_progress', 'the large batch must still be running when the small one is done');
    assert.ok(b1now.request_counts.completed < 300);
    await api(s, 'POST', `/v1/batches/${b1.id}/cancel`);
});

test('--interactive-step-ms auto: streams during a batch all finish, the batch keeps moving; ITL and budget in /metrics', async () => {
    const trace = path.join(dir, 'steps.trace');
    const s = await serve(['--parallel', '8', '--interactive-step-ms', 'auto'], { NIGHTSHIFT_STEP_TRACE: trace });
    const lines = [];
    for (let i = 0; i < 60; i++) lines.push({ ...chat(i, { max_tokens: 24, ignore_eos: true }), custom_id: `lat-${i}` });
    const b = await submitBatch(s, lines);
    await waitBatch(s, b.id, (x) => x.request_counts.completed > 0);
    const before = (await api(s, 'GET', `/v1/batches/${b.id}`)).json().request_counts.completed;
    // continuous interactive load: three waves of streams while the batch runs
    for (let wave = 0; wave < 3; wave++) {
        const streams = await Promise.all([0, 1, 2].map(async (k) => {
            const r = await api(s, 'POST', '/v1/chat/completions', JSON.stringify({ model: 'tiny', stream: true, max_tokens: 12,
                ignore_eos: true, messages: [{ role: 'user', content: `stream ${wave}.${k}` }] }), { 'content-type': 'application/json' });
            return r;
        }));
        for (const r of streams) {
            assert.equal(r.status, 200);
            assert.match(r.text, /data: \[DONE\]/);
            const n = (r.text.match(/"content":"/g) || []).length;
            assert.ok(n >= 11, `a stream ended early: ${n} pieces`);
        }
    }
    const mid = (await api(s, 'GET', `/v1/batches/${b.id}`)).json().request_counts.completed;
    assert.ok(mid > before, `batch lines must keep finishing under interactive load (${before} -> ${mid})`);
    const done = await waitBatch(s, b.id, (x) => TERMINAL.includes(x.status));
    assert.equal(done.status, 'completed');
    assert.equal(done.request_counts.completed, 60);
    const m = (await api(s, 'GET', '/metrics')).text;
    const count = /^nightshift_inter_token_seconds_count\{model="tiny"\} (\d+)/m.exec(m);
    assert.ok(count && Number(count[1]) >= 9 * 10, m.slice(0, 400));
    const kept = /^nightshift_engine_interactive_steps_total\{model="tiny",budget="kept"\} (\d+)/m.exec(m);
    const over = /^nightshift_engine_interactive_steps_total\{model="tiny",budget="exceeded"\} (\d+)/m.exec(m);
    assert.ok(kept && over && Number(kept[1]) + Number(over[1]) > 0, 'steps planned under the budget are counted');
    const st = (await api(s, 'GET', '/v1/nightshift/stats')).json();
    const mine = st.models.find((x) => x.name === 'tiny');
    assert.ok(mine.itl_p99 > 0 && mine.engine.steps_interactive > 0, JSON.stringify(mine));
    assert.ok(mine.engine.step_ms_per_pass >= 0, JSON.stringify(mine.engine));
    // NIGHTSHIFT_STEP_TRACE: a line per step; budgeted decode steps carry the interactive
    // decodes and one window of batch decodes: a pass for each run of interactive ids (lane
    // slots need not be adjacent) and at most two for the window (one when it does not wrap
    // around from the last id to the first); the window's exact choice is test_steps'
    const steps = fs.readFileSync(trace, 'utf8').split('\n').filter(Boolean)
        .map((l) => Object.fromEntries(l.split(' ').map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)])));
    assert.ok(steps.length > 100 && steps.every((x) => x.decode >= 0 && x.tokens > 0 && x.passes >= 1), `${steps.length} steps`);
    const budgeted = steps.filter((x) => x.budget > 0 && x.running > x.interactive && x.tokens === x.seqs);
    const bad = budgeted.filter((x) => !(x.interactive >= 1 && x.passes <= x.interactive + 2));
    assert.ok(budgeted.length > 0 && bad.length === 0, JSON.stringify(bad.slice(0, 5)));
    assert.ok(budgeted.some((x) => x.seqs > x.interactive), 'budgeted steps move the batch too');
});

test('NIGHTSHIFT_STEP_TRACE that cannot be opened: serve refuses to start, naming it', () => {
    const r = spawnSync(BIN, ['serve', '--model', `tiny=${model}`, '--data-dir', path.join(dir, 'trace-bad'), '--listen', '127.0.0.1:0'],
        { env: { ...process.env, NIGHTSHIFT_STEP_TRACE: path.join(dir, 'no', 'such', 'dir', 'steps.trace') }, timeout: 30_000 });
    assert.notEqual(r.status, 0);
    assert.match(String(r.stderr), /the step trace '.*steps\.trace' cannot be opened: No such file or directory/);
});

test('GET /metrics: Prometheus text format with queue, token, latency and batch metrics', async (t) => {
    const s = servers[0];
    const r0 = await api(s, 'POST', '/v1/chat/completions',
        JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }),
        { 'content-type': 'application/json' });
    assert.equal(r0.status, 200);
    const m = await api(s, 'GET', '/metrics');
    assert.equal(m.status, 200);
    const lines = m.text.split('\n').filter(Boolean);
    const typed = new Set();
    for (const l of lines) {
        if (l.startsWith('# HELP ')) continue;
        if (l.startsWith('# TYPE ')) {
            const [, , name, type] = l.split(' ');
            assert.ok(['gauge', 'counter', 'histogram'].includes(type), l);
            typed.add(name);
            continue;
        }
        const mm = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.]+(e[+-]?[0-9]+)?|\+Inf|NaN)$/.exec(l);
        assert.ok(mm, `not a sample line: ${l}`);
        const family = mm[1].replace(/_(bucket|sum|count)$/, '');
        assert.ok(typed.has(mm[1]) || typed.has(family), `sample before its TYPE: ${l}`);
    }
    const value = (re) => {
        const l = lines.find((x) => re.test(x));
        assert.ok(l, `no line matches ${re}`);
        return Number(l.split(' ').pop());
    };
    assert.ok(value(/^nightshift_requests_total\{model="tiny",lane="interactive",outcome="ok"\}/) >= 1);
    assert.ok(value(/^nightshift_requests_total\{model="tiny",lane="batch",outcome="ok"\}/) >= 1);
    assert.ok(value(/^nightshift_requests_total\{model="tiny",lane="batch",outcome="failed"\}/) >= 1);
    // promtool (Debian's prometheus package, installed by scripts/bootstrap.sh) agrees
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: m.text });
    if (promtool.error) t.diagnostic('promtool not installed: format checked by the regexes above only');
    else assert.equal(promtool.status, 0, `promtool check metrics: ${promtool.stdout}${promtool.stderr}`);
    assert.ok(value(/^nightshift_time_to_first_token_seconds_count\{model="tiny"\}/) >= 1);
    assert.ok(value(/^nightshift_generated_tokens_total\{model="tiny"\}/) >= 3);
    assert.ok(value(/^nightshift_engine_sequence_runs_total\{model="tiny"\}/) >= 1);
    assert.ok(value(/^nightshift_engine_sequence_moves_total\{model="tiny"\}/) >= 0);
    assert.ok(value(/^nightshift_engine_decode_seconds_total\{model="tiny"\}/) > 0, 'decode time is counted');
    assert.ok(value(/^nightshift_batches\{status="completed"\}/) >= 1);
    assert.equal(value(/^nightshift_time_to_first_token_seconds_bucket\{model="tiny",le="\+Inf"\}/),
        value(/^nightshift_time_to_first_token_seconds_count\{model="tiny"\}/));
});

test('bad serve options are refused with a clear message (exit 2)', () => {
    for (const [args, re] of [
        [['--results-retention-days', '0'], /--results-retention-days must be an integer from 1 to 3650/],
        [['--batch-hours', '25:00-26:00'], /--batch-hours must look like 22:00-06:00/],
        [['--off-hours', 'sometimes'], /--off-hours must be 'idle' or 'none'/],
        [['--interactive-step-ms', 'fast'], /--interactive-step-ms must be auto, off or milliseconds from 1 to 60000, not 'fast'/],
        [['--interactive-step-ms', '0'], /--interactive-step-ms must be auto, off or milliseconds/],
        [['--listen', 'nowhere'], /--listen must be HOST:PORT/],
    ]) {
        const r = spawnSync(BIN, ['serve', '--model', `tiny=${model}`, '--data-dir', path.join(dir, 'bad'), ...args]);
        assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(String(r.stderr), re);
    }
});
