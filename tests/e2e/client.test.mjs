// The client sub-commands (submit, batches, status, results, cancel) against a real
// `nightshift serve`:
//
//   node --test tests/e2e/client.test.mjs
//
// See lib.mjs for the environment variables. Two servers run for the whole file, each with
// a random-weight model (gen-model) served as 'tiny' (its output is gibberish: no test looks
// at the text): `open` without and `keyed` with --api-key. The CLI is given --server
// explicitly, and its environment is cleared of NIGHTSHIFT_SERVER / NIGHTSHIFT_API_KEY and
// of proxies, so the machine's settings cannot change what it talks to.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import {
    BIN,
    SPM_VOCAB,
    TERMINAL,
    THREADS,
    api,
    chatLine,
    describeRun,
    killHard,
    mkTmp,
    readJsonl,
    rmTmp,
    runNs,
    startServer,
    submitBatch,
    waitBatch,
    writeJsonl,
} from './lib.mjs';

const KEY = 'sk-client-e2e-7f3a9c21d4';
const WRONG_KEY = 'sk-wrong-e2e-5b8e0d66aa';

let TMP;
let OPEN; // startServer() results
let KEYED;

const CLEAN_ENV = { NIGHTSHIFT_SERVER: '', NIGHTSHIFT_API_KEY: '', NO_PROXY: '*', no_proxy: '*' };

/* run the CLI against a server: `nightshift <args> --server URL` */
function cli(args, { server = OPEN, env = {}, timeoutMs = 60_000 } = {}) {
    const withServer = server ? [...args, '--server', server.url] : args;
    return runNs(withServer, { env: { ...CLEAN_ENV, ...env }, timeoutMs, cwd: TMP });
}

const lines = (prefix, n, body = { max_tokens: 8 }) =>
    Array.from({ length: n }, (_, i) => chatLine(`${prefix}-${i}`, `Say something about ${prefix} ${i}.`, body));

/* n lines that keep the engine busy: ignore_eos makes each run max_tokens tokens */
const busyLines = (prefix, n) => lines(prefix, n, { max_tokens: 64, ignore_eos: true });

const ids = (rows) => rows.map((l) => l.custom_id).sort();

/* a loopback port that nothing listens on */
async function closedPort() {
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const { port } = srv.address();
    await new Promise((r) => srv.close(r));
    return port;
}

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN} (build it, or set NIGHTSHIFT_BIN)`);
    assert.ok(fs.existsSync(SPM_VOCAB), `the vocab file is missing: ${SPM_VOCAB} (set NIGHTSHIFT_VOCAB_DIR)`);
    TMP = mkTmp('nightshift-client-');
    const model = path.join(TMP, 'tiny.gguf');
    const g = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
    assert.equal(g.code, 0, describeRun(g));
    const common = ['--model', `tiny=${model}`, '--parallel', '4', '--threads', THREADS];
    [OPEN, KEYED] = await Promise.all([
        startServer([...common, '--data-dir', path.join(TMP, 'data-open')]),
        startServer([...common, '--data-dir', path.join(TMP, 'data-keyed'), '--api-key', KEY]),
    ]);
});

after(async () => {
    await killHard(OPEN);
    await killHard(KEYED);
    rmTmp(TMP);
});

test('submit --wait: exit 0, both result files, every custom_id', async () => {
    const input = path.join(TMP, 'twenty.jsonl');
    const want = lines('w', 20);
    writeJsonl(input, want);
    const r = await cli(['submit', input, '--wait', '--metadata', 'team=e2e', '--metadata', 'run=1']);
    assert.equal(r.code, 0, describeRun(r));
    const m = /^(batch_\S+) created \(validating\)$/m.exec(r.stdout);
    assert.ok(m, describeRun(r));
    assert.match(r.stdout, /completed\n\s+requests\s+20 total: 20 completed, 0 failed/, describeRun(r));
    assert.match(r.stdout, /tokens\s+input \d+ \(cached \d+\), output \d+, total \d+/);

    const out = readJsonl(path.join(TMP, 'twenty.results.jsonl'));
    assert.deepEqual(ids(out), ids(want));
    for (const l of out) assert.equal(l.response.status_code, 200);
    assert.deepEqual(readJsonl(path.join(TMP, 'twenty.errors.jsonl')), []);

    const b = (await api(OPEN, 'GET', `/v1/batches/${m[1]}`)).json();
    assert.equal(b.status, 'completed');
    assert.deepEqual(b.metadata, { team: 'e2e', run: '1' });
    assert.equal(b.endpoint, '/v1/chat/completions');
});

test('submit --wait of a file with an invalid line: exit 1, "line N [code]" listed', async () => {
    const input = path.join(TMP, 'bad.jsonl');
    writeJsonl(input, [...lines('bad', 2), '{"custom_id": "broken", "method": "POST",', ...lines('bad2', 2)]);
    const r = await cli(['submit', input, '--wait', '-o', path.join(TMP, 'bad-out.jsonl')]);
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stderr, /batch batch_\S+ failed/, describeRun(r));
    assert.match(r.stderr, /^ {2}line 3 \[invalid_json_line\]: /m, describeRun(r));
    assert.ok(!fs.existsSync(path.join(TMP, 'bad-out.jsonl')), 'a failed batch writes no result file');
});

test('submit without --wait: the id, or with --json the batch object; -q: the id alone', async () => {
    const input = path.join(TMP, 'completions.jsonl');
    writeJsonl(input, [{ custom_id: 'c1', method: 'POST', url: '/v1/completions', body: { model: 'tiny', prompt: 'Once', max_tokens: 4 } }]);
    const j = await cli(['submit', input, '--json']);
    assert.equal(j.code, 0, describeRun(j));
    const b = JSON.parse(j.stdout);
    assert.equal(b.object, 'batch');
    assert.match(b.id, /^batch_/);
    /* the endpoint comes from the file's first line when --endpoint is not given */
    assert.equal(b.endpoint, '/v1/completions');
    const q = await cli(['submit', input, '-q']);
    assert.equal(q.code, 0, describeRun(q));
    assert.match(q.stdout, /^batch_\S+\n$/);
    assert.equal(q.stderr, '');
    for (const id of [b.id, q.stdout.trim()]) await waitBatch(OPEN, id, (x) => TERMINAL.includes(x.status));
});

test('batches: a table with the ids, --json the list object, --limit and --after page', async () => {
    const a = await submitBatch(OPEN, lines('la', 3));
    const b = await submitBatch(OPEN, lines('lb', 2));
    await waitBatch(OPEN, a.id, (x) => TERMINAL.includes(x.status));
    await waitBatch(OPEN, b.id, (x) => TERMINAL.includes(x.status));

    const t = await cli(['batches']);
    assert.equal(t.code, 0, describeRun(t));
    const rows = t.stdout.trimEnd().split('\n');
    assert.match(rows[0], /^ID\s+STATUS\s+ENDPOINT\s+MODEL\s+DONE\/TOTAL\s+FAILED\s+CREATED$/);
    const rowA = rows.find((l) => l.startsWith(a.id));
    const rowB = rows.find((l) => l.startsWith(b.id));
    assert.ok(rowA && rowB, t.stdout);
    assert.match(rowA, /\s+completed\s+\/v1\/chat\/completions\s+tiny\s+3\/3\s+0\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    assert.ok(rows.indexOf(rowB) < rows.indexOf(rowA), 'newest first');

    const j = await cli(['batches', '--json']);
    assert.equal(j.code, 0, describeRun(j));
    const list = JSON.parse(j.stdout);
    assert.equal(list.object, 'list');
    assert.ok(Array.isArray(list.data) && list.data.some((x) => x.id === a.id), j.stdout);

    const p1 = JSON.parse((await cli(['batches', '--json', '--limit', '1'])).stdout);
    assert.equal(p1.data.length, 1);
    assert.equal(p1.data[0].id, b.id);
    assert.equal(p1.has_more, true);
    const p2 = JSON.parse((await cli(['batches', '--json', '--limit', '1', '--after', b.id])).stdout);
    assert.equal(p2.data[0].id, a.id);

    const bad = await cli(['batches', '--limit', '0']);
    assert.equal(bad.code, 2, describeRun(bad));
});

test('status and results of a finished batch with a failed line', async () => {
    const want = [...lines('sr', 3), chatLine('sr-hot', 'Too hot.', { temperature: 5 })];
    const b0 = await submitBatch(OPEN, want, { metadata: { owner: 'status-test' } });
    const b = await waitBatch(OPEN, b0.id, (x) => TERMINAL.includes(x.status));
    assert.equal(b.status, 'completed');

    const sj = await cli(['status', b.id, '--json']);
    assert.equal(sj.code, 0, describeRun(sj));
    const s = JSON.parse(sj.stdout);
    assert.equal(s.id, b.id);
    assert.equal(s.status, 'completed');

    const sh = await cli(['status', b.id]);
    assert.equal(sh.code, 0, describeRun(sh));
    assert.match(sh.stdout, new RegExp(`^${b.id}\\n\\s+status\\s+completed\\n`));
    assert.match(sh.stdout, /requests\s+4 total: 3 completed, 1 failed/);
    assert.match(sh.stdout, new RegExp(`output file\\s+${b.output_file_id}`));
    assert.match(sh.stdout, /metadata\s+owner=status-test/);

    const x = path.join(TMP, 'x.jsonl');
    const r = await cli(['results', b.id, '-o', x]);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(ids(readJsonl(x)), ids(want.slice(0, 3)));
    const errs = readJsonl(path.join(TMP, 'x.errors.jsonl')); /* -o X.jsonl: errors to X.errors.jsonl */
    assert.deepEqual(ids(errs), ['sr-hot']);
    assert.equal(errs[0].response.status_code, 400);

    const so = await cli(['results', b.id]); /* stdout; the failed line is only mentioned */
    assert.equal(so.code, 0, describeRun(so));
    assert.equal(so.stdout.trimEnd().split('\n').length, 3);
    assert.match(so.stderr, /1 line failed; '--errors FILE'/);
});

test('cancel a running batch: "cancelling", then it ends cancelled; results so far while it runs', async () => {
    const b0 = await submitBatch(OPEN, busyLines('cx', 200));
    await waitBatch(OPEN, b0.id, (x) => x.request_counts.completed > 0 || TERMINAL.includes(x.status));

    const part = path.join(TMP, 'partial.jsonl');
    const p = await cli(['results', b0.id, '-o', part]);
    assert.equal(p.code, 0, describeRun(p));
    assert.match(p.stderr, /^batch still in_progress; results so far:$/m, describeRun(p));
    assert.ok(readJsonl(part).length > 0);

    const c = await cli(['cancel', b0.id]);
    assert.equal(c.code, 0, describeRun(c));
    assert.equal(c.stdout, `${b0.id} cancelling\n`);
    const b = await waitBatch(OPEN, b0.id, (x) => TERMINAL.includes(x.status));
    assert.equal(b.status, 'cancelled');
    assert.ok(b.request_counts.completed < 200, 'the cancel came while most lines were still to run');

    const again = await cli(['cancel', b0.id]);
    assert.equal(again.code, 1, describeRun(again));
    assert.match(again.stderr, /^nightshift: Cannot cancel a batch with status 'cancelled'\. \(HTTP 409, /m);
});

test('an unknown batch id: exit 1 with the 404 message', async () => {
    for (const cmd of ['status', 'results', 'cancel']) {
        const r = await cli([cmd, 'batch_doesnotexist']);
        assert.equal(r.code, 1, describeRun(r));
        assert.match(r.stderr, /^nightshift: No such Batch object: batch_doesnotexist \(HTTP 404, [a-z_]+, param batch_id\)$/m,
            describeRun(r));
        assert.equal(r.stdout, '');
    }
});

test('no server: exit 2, "cannot reach the server"; bad usage: exit 2', async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}`;
    const input = path.join(TMP, 'twenty.jsonl');
    for (const args of [['status', 'batch_x'], ['batches'], ['submit', input, '--wait']]) {
        const r = await cli(args, { server: { url } });
        assert.equal(r.code, 2, describeRun(r));
        assert.match(r.stderr, new RegExp(`^nightshift: cannot reach the server at ${url}: .+`, 'm'), describeRun(r));
    }
    /* the URL from the environment, a trailing slash is fine */
    const e = await cli(['batches'], { server: null, env: { NIGHTSHIFT_SERVER: `${url}/` } });
    assert.equal(e.code, 2, describeRun(e));
    assert.match(e.stderr, new RegExp(`cannot reach the server at ${url}: `));

    for (const args of [['submit'], ['submit', path.join(TMP, 'missing.jsonl')], ['status'], ['cancel', 'a', 'b'],
        ['submit', input, '-o', 'x.jsonl'], ['results', 'batch_x', '--bogus']]) {
        const r = await cli(args);
        assert.equal(r.code, 2, `${args.join(' ')}: ${describeRun(r)}`);
    }
});

test('--api-key: a wrong or missing key is a 401 (exit 1), the right one works; the key is never printed', async () => {
    const runs = [];
    const run = async (args, opts) => {
        const r = await cli(args, { server: KEYED, ...opts });
        runs.push(r);
        return r;
    };
    const none = await run(['batches']);
    assert.equal(none.code, 1, describeRun(none));
    assert.match(none.stderr, /\(HTTP 401, /);
    const wrong = await run(['batches', '--api-key', WRONG_KEY]);
    assert.equal(wrong.code, 1, describeRun(wrong));
    assert.match(wrong.stderr, /^nightshift: Incorrect API key provided.*\(HTTP 401, /m);
    const wrongSubmit = await run(['submit', path.join(TMP, 'twenty.jsonl'), '--api-key', WRONG_KEY]);
    assert.equal(wrongSubmit.code, 1, describeRun(wrongSubmit));

    const input = path.join(TMP, 'keyed.jsonl');
    writeJsonl(input, lines('k', 3));
    const ok = await run(['submit', input, '--wait', '--api-key', KEY]);
    assert.equal(ok.code, 0, describeRun(ok));
    assert.equal(readJsonl(path.join(TMP, 'keyed.results.jsonl')).length, 3);
    const id = /^(batch_\S+) created/m.exec(ok.stdout)[1];
    /* the key from the environment */
    for (const args of [['batches'], ['status', id], ['status', id, '--json'], ['results', id]]) {
        const r = await run(args, { env: { NIGHTSHIFT_API_KEY: KEY } });
        assert.equal(r.code, 0, `${args.join(' ')}: ${describeRun(r)}`);
    }
    /* ... and an error answer while it is set */
    const nf = await run(['status', 'batch_nope'], { env: { NIGHTSHIFT_API_KEY: KEY } });
    assert.equal(nf.code, 1, describeRun(nf));
    for (const r of runs)
        for (const k of [KEY, WRONG_KEY]) {
            assert.ok(!r.stdout.includes(k), `the key is in stdout: ${describeRun(r)}`);
            assert.ok(!r.stderr.includes(k), `the key is in stderr: ${describeRun(r)}`);
        }
});
