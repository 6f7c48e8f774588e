// The model store (issue 34): `nightshift pull` from a mock Hugging Face Hub (hubmock.mjs,
// reached through HF_ENDPOINT), `nightshift models list|show|rm`, `serve --model NAME` by
// store name, and the Ollama API's /api/pull, /api/tags, /api/show with the official
// `ollama` npm client.
//
//   node --test tests/e2e/pull.test.mjs
//
// The payloads are small generated GGUF models (gen-model); each test has its own store
// directory (NIGHTSHIFT_MODELS), so the tests are independent of each other and of ~/.cache.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { describeRun, runNs } from './lib.mjs';
import { BIN, SPM_VOCAB, ensureNpmDeps, mkTmp, pollUntil, rmTmp, startServer } from './serve_lib.mjs';
import { sha256, startHub } from './hubmock.mjs';

const TOKEN = 'hf_mock_token_for_gated';
let TMP;
let HUB;
let A; // tiny-Q4_K_M.gguf
let B; // tiny-Q8_0.gguf
let Ollama;
let storeNo = 0;

before(async () => {
    assert.ok(fs.existsSync(BIN), `the nightshift binary is missing: ${BIN}`);
    await ensureNpmDeps();
    ({ Ollama } = await import('ollama'));
    TMP = mkTmp('nightshift-pull-e2e-');
    for (const [name, seed] of [['a.gguf', '1'], ['b.gguf', '2']]) {
        const r = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', path.join(TMP, name), '--seed', seed], { timeoutMs: 60_000 });
        assert.equal(r.code, 0, describeRun(r));
    }
    A = fs.readFileSync(path.join(TMP, 'a.gguf'));
    B = fs.readFileSync(path.join(TMP, 'b.gguf'));
    const half = A.length >> 1;
    HUB = await startHub({
        'acme/tiny-GGUF': {
            files: { 'tiny-Q4_K_M.gguf': A, 'tiny-Q8_0.gguf': B, 'README.md': Buffer.from('# tiny\n'), 'mmproj-tiny-F16.gguf': B },
        },
        'acme/split-GGUF': {
            files: {
                'Q4_K_M/big-Q4_K_M-00002-of-00002.gguf': A.subarray(half),
                'Q4_K_M/big-Q4_K_M-00001-of-00002.gguf': A.subarray(0, half),
                'big-Q8_0.gguf': B,
            },
        },
        'acme/gated-GGUF': { files: { 'g.Q8_0.gguf': B }, token: TOKEN },
        'acme/many-GGUF': { files: { 'm-Q5_K_S.gguf': A, 'm-Q8_0.gguf': B } },
    });
});

after(async () => {
    await HUB?.close();
    rmTmp(TMP);
});

/* a fresh store directory */
function store() {
    const d = path.join(TMP, `store-${++storeNo}`);
    fs.mkdirSync(d);
    return d;
}

function ns(args, dir, env = {}) {
    return runNs(args, { timeoutMs: 60_000, env: { NIGHTSHIFT_MODELS: dir, HF_ENDPOINT: HUB.url, HF_TOKEN: '', ...env } });
}

function manifest(dir, repo, tag) {
    return JSON.parse(fs.readFileSync(path.join(dir, 'manifests', repo, `${tag}.json`), 'utf8'));
}

test('pull by repo picks Q4_K_M; a quant in any case picks its file; list, show and rm', async () => {
    const dir = store();
    let r = await ns(['pull', 'hf.co/acme/tiny-GGUF'], dir);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /^acme\/tiny-GGUF:Q4_K_M\t/);
    const file = path.join(dir, 'files/acme/tiny-GGUF/tiny-Q4_K_M.gguf');
    assert.ok(fs.readFileSync(file).equals(A));
    const m = manifest(dir, 'acme/tiny-GGUF', 'Q4_K_M');
    assert.equal(m.name, 'acme/tiny-GGUF:Q4_K_M');
    assert.equal(m.source, 'hf.co/acme/tiny-GGUF:Q4_K_M');
    assert.equal(m.files.length, 1);
    assert.equal(m.files[0].sha256, sha256(A));
    assert.equal(m.files[0].size, A.length);
    assert.equal(m.size, A.length);
    assert.match(m.pulled_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    /* not a TTY: plain progress lines */
    assert.match(r.stderr, /downloading tiny-Q4_K_M\.gguf/);
    assert.match(r.stderr, /verifying the SHA-256/);

    /* the listing came in pages, each named by the last one's Link header */
    assert.ok(HUB.requests.some((q) => q.url === '/api/models/acme/tiny-GGUF/tree/main?recursive=true&cursor=4'));
    r = await ns(['pull', 'acme/tiny-GGUF:q8_0'], dir);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /^acme\/tiny-GGUF:Q8_0\t/);
    assert.ok(fs.readFileSync(path.join(dir, 'files/acme/tiny-GGUF/tiny-Q8_0.gguf')).equals(B));
    assert.ok(!fs.existsSync(path.join(dir, 'files/acme/tiny-GGUF/mmproj-tiny-F16.gguf')), 'a vision projector is no model');

    /* pulled again: nothing downloaded */
    const before = HUB.requests.length;
    r = await ns(['pull', 'acme/tiny-GGUF:Q8_0'], dir);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stderr, /already in the store/);
    assert.ok(!HUB.requests.slice(before).some((q) => q.url.includes('/resolve/')), 'no download for a file that is there');

    r = await ns(['models', 'list'], dir);
    assert.equal(r.code, 0, describeRun(r));
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0], /^NAME\s+SIZE\s+PULLED\s+SOURCE/);
    assert.match(lines[1], /^acme\/tiny-GGUF:Q4_K_M\s/);
    assert.match(lines[2], /^acme\/tiny-GGUF:Q8_0\s.*hf\.co\/acme\/tiny-GGUF:Q8_0$/);

    r = await ns(['models', 'show', 'hf.co/acme/tiny-GGUF:q4_k_m'], dir);
    assert.equal(r.code, 0, describeRun(r));
    for (const re of [/^name:\s+acme\/tiny-GGUF:Q4_K_M$/m, /^architecture:\s+llama$/m, /^parameters:\s+\S+/m,
        /^quantization:\s+\S+/m, /^context length:\s+\d+$/m, /^chat template:\s+\S+/m,
        /^source:\s+hf\.co\/acme\/tiny-GGUF:Q4_K_M$/m, new RegExp(`^sha256:\\s+${sha256(A)}$`, 'm'),
        new RegExp(`^file:\\s+${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm')])
        assert.match(r.stdout, re, r.stdout);

    /* doctor checks a store model's file (nothing pulled) */
    r = await ns(['doctor', '--model', 'acme/tiny-GGUF:Q8_0', '--data-dir', path.join(dir, 'data')], dir);
    assert.match(r.stdout + r.stderr, /model '[^']*files\/acme\/tiny-GGUF\/tiny-Q8_0\.gguf': GGUF/, describeRun(r));

    /* two quants in the store: a name without one must choose */
    r = await ns(['models', 'show', 'acme/tiny-GGUF'], dir);
    assert.equal(r.code, 0, 'Q4_K_M is the default among several');
    r = await ns(['models', 'rm', 'acme/tiny-GGUF:Q4_K_M'], dir);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /^removed acme\/tiny-GGUF:Q4_K_M/);
    assert.ok(!fs.existsSync(file));
    r = await ns(['models', 'list'], dir);
    assert.doesNotMatch(r.stdout, /Q4_K_M/);
    r = await ns(['models', 'show', 'acme/tiny-GGUF:Q4_K_M'], dir);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /not in the model store.*it has acme\/tiny-GGUF as: Q8_0/);
    r = await ns(['models', 'rm', 'acme/nothing:Q4_K_M'], dir);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /not in the model store/);
    r = await ns(['models', 'frobnicate'], dir);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
});

test('split files are all downloaded, in order, into one model', async () => {
    const dir = store();
    const r = await ns(['pull', 'acme/split-GGUF:Q4_K_M'], dir);
    assert.equal(r.code, 0, describeRun(r));
    const m = manifest(dir, 'acme/split-GGUF', 'Q4_K_M');
    assert.deepEqual(m.files.map((f) => f.path), ['Q4_K_M/big-Q4_K_M-00001-of-00002.gguf', 'Q4_K_M/big-Q4_K_M-00002-of-00002.gguf']);
    assert.equal(m.size, A.length);
    const joined = Buffer.concat(m.files.map((f) => fs.readFileSync(path.join(dir, f.local))));
    assert.ok(joined.equals(A));
    assert.match(r.stdout, /big-Q4_K_M-00001-of-00002\.gguf\n$/, 'the file to load is the first split');
});

test('a download cut short resumes with a Range request at the next pull', async () => {
    const dir = store();
    HUB.cutAfter.set('tiny-Q8_0.gguf', 1_000_000);
    let r = await ns(['pull', 'acme/tiny-GGUF:Q8_0'], dir);
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stderr, /pull again to resume/);
    const part = path.join(dir, 'files/acme/tiny-GGUF/tiny-Q8_0.gguf.part');
    const kept = fs.statSync(part).size;
    assert.ok(kept > 0 && kept < B.length, `the .part file holds what came (${kept} bytes)`);
    assert.ok(!fs.existsSync(path.join(dir, 'manifests/acme/tiny-GGUF/Q8_0.json')), 'no manifest for half a model');
    const before = HUB.requests.length;
    r = await ns(['pull', 'acme/tiny-GGUF:Q8_0'], dir);
    assert.equal(r.code, 0, describeRun(r));
    /* the range goes with the Hub's redirect to where the bytes are */
    const cdn = HUB.requests.slice(before).filter((q) => q.url.startsWith('/cdn/'));
    assert.deepEqual(cdn.map((q) => q.range), [`bytes=${kept}-`], JSON.stringify(HUB.requests.slice(before)));
    assert.ok(fs.readFileSync(path.join(dir, 'files/acme/tiny-GGUF/tiny-Q8_0.gguf')).equals(B));
    assert.ok(!fs.existsSync(part));
});

test('a server that ignores Range sends the whole file again: the .part starts over', async () => {
    const dir = store();
    HUB.cutAfter.set('big-Q8_0.gguf', 700_000);
    let r = await ns(['pull', 'acme/split-GGUF:Q8_0'], dir);
    assert.equal(r.code, 1, describeRun(r));
    HUB.noRange.add('big-Q8_0.gguf');
    try {
        const before = HUB.requests.length;
        r = await ns(['pull', 'acme/split-GGUF:Q8_0'], dir);
        assert.equal(r.code, 0, describeRun(r));
        assert.ok(HUB.requests.slice(before).some((q) => q.url.startsWith('/cdn/') && q.range), 'it asked for the rest');
    } finally {
        HUB.noRange.delete('big-Q8_0.gguf');
    }
    assert.ok(fs.readFileSync(path.join(dir, 'files/acme/split-GGUF/big-Q8_0.gguf')).equals(B));
});

test('a corrupted byte fails the SHA-256 check and the file is not kept', async () => {
    const dir = store();
    HUB.corrupt.add('big-Q8_0.gguf');
    try {
        const r = await ns(['pull', 'acme/split-GGUF:Q8_0'], dir);
        assert.equal(r.code, 1, describeRun(r));
        assert.match(r.stderr, /big-Q8_0\.gguf: SHA-256 mismatch \(the source says [0-9a-f]{64}, the download is [0-9a-f]{64}\): the file was deleted/);
        assert.deepEqual(fs.readdirSync(path.join(dir, 'files/acme/split-GGUF')), []);
        assert.ok(!fs.existsSync(path.join(dir, 'manifests')));
    } finally {
        HUB.corrupt.delete('big-Q8_0.gguf');
    }
    const r = await ns(['pull', 'acme/split-GGUF:Q8_0'], dir);
    assert.equal(r.code, 0, describeRun(r));
});

test('a gated repository: 401 without HF_TOKEN says to set it; with it the pull sends it and works', async () => {
    const dir = store();
    let r = await ns(['pull', 'acme/gated-GGUF'], dir);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /HTTP 401, the repository is gated or private.*set HF_TOKEN/);
    r = await ns(['pull', 'acme/gated-GGUF'], dir, { HF_TOKEN: 'hf_wrong' });
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /the Hub refused HF_TOKEN/);
    const before = HUB.requests.length;
    r = await ns(['pull', 'acme/gated-GGUF'], dir, { HF_TOKEN: TOKEN });
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /^acme\/gated-GGUF:Q8_0\t/);
    const seen = HUB.requests.slice(before);
    assert.ok(seen.filter((q) => !q.url.startsWith('/cdn/')).every((q) => q.auth === `Bearer ${TOKEN}`), JSON.stringify(seen));
    /* HF_TOKEN unset: the token a Hub login saved (HF_TOKEN_PATH, else HF_HOME/token) */
    fs.writeFileSync(path.join(dir, 'token'), `${TOKEN}\n`);
    fs.rmSync(path.join(dir, 'manifests'), { recursive: true });
    fs.rmSync(path.join(dir, 'files'), { recursive: true });
    r = await ns(['pull', 'acme/gated-GGUF'], dir, { HF_TOKEN: undefined, HF_HOME: dir });
    assert.equal(r.code, 0, describeRun(r));
    r = await ns(['models', 'rm', 'acme/gated-GGUF'], dir);
    assert.equal(r.code, 0, describeRun(r));
    r = await ns(['pull', 'acme/gated-GGUF'], dir, { HF_TOKEN: undefined, HF_TOKEN_PATH: path.join(dir, 'token') });
    assert.equal(r.code, 0, describeRun(r));
    /* HF_TOKEN set empty: no token, whatever was saved */
    r = await ns(['models', 'rm', 'acme/gated-GGUF'], dir);
    r = await ns(['pull', 'acme/gated-GGUF'], dir, { HF_TOKEN: '', HF_HOME: dir });
    assert.equal(r.code, 2, describeRun(r));
});

test('404: an unknown repository, an unknown quant listing the quants there are, no default among several', async () => {
    const dir = store();
    let r = await ns(['pull', 'acme/nope-GGUF'], dir);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /repository 'acme\/nope-GGUF' on http:\/\/127\.0\.0\.1:\d+: not found \(HTTP 404\): Repository not found/);
    r = await ns(['pull', 'acme/tiny-GGUF:Q5_K_S'], dir);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /no quantization 'Q5_K_S' in the repository \(it has: Q4_K_M, Q8_0\)/);
    r = await ns(['pull', 'acme/many-GGUF'], dir);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /has 2 quantizations; name one as ORG\/REPO:QUANT \(it has: Q5_K_S, Q8_0\)/);
    r = await ns(['pull', 'not a ref'], dir);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /is not a model reference/);
    r = await ns(['pull'], dir);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no model given/);
    assert.ok(!fs.existsSync(path.join(dir, 'manifests')));
});

test('a plain URL is pulled under its file name', async () => {
    const dir = store();
    /* the CDN address the Hub redirects to is a plain URL too */
    const url = `${HUB.url}/cdn/${sha256(A)}/plain-model.gguf`;
    const r = await ns(['pull', url], dir);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /^plain-model\t/);
    const s = await ns(['models', 'show', 'plain-model'], dir);
    assert.equal(s.code, 0, describeRun(s));
    assert.match(s.stdout, new RegExp(`^source:\\s+${url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    assert.match(s.stdout, new RegExp(`^sha256:\\s+${sha256(A)}$`, 'm'));
});

test('run/serve never download implicitly: a missing reference names pull and --pull', async () => {
    const dir = store();
    const input = path.join(TMP, 'in.jsonl');
    fs.writeFileSync(input, JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions',
        body: { model: 'acme/tiny-GGUF:Q4_K_M', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 } }) + '\n');
    const before = HUB.requests.length;
    let r = await ns(['serve', '--model', 'hf.co/acme/tiny-GGUF', '--data-dir', path.join(dir, 'data')], dir);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /not in the model store .*`nightshift pull hf\.co\/acme\/tiny-GGUF` downloads it \(run and serve also take --pull\)/);
    r = await ns(['run', input, '-o', path.join(dir, 'out.jsonl'), '--model', 'acme/tiny-GGUF:Q4_K_M'], dir);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /nightshift pull acme\/tiny-GGUF:Q4_K_M/);
    assert.equal(HUB.requests.length, before, 'nothing asked of the Hub');
    /* --pull: pulled first, saying so; body.model names the store name */
    r = await ns(['run', input, '-o', path.join(dir, 'out.jsonl'), '--model', 'acme/tiny-GGUF:Q4_K_M', '--pull', '--quiet'], dir);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stderr, /not in the model store: pulling it \(--pull\)/);
    const out = JSON.parse(fs.readFileSync(path.join(dir, 'out.jsonl'), 'utf8').trim());
    assert.equal(out.response.status_code, 200, JSON.stringify(out));
    assert.equal(out.response.body.model, 'acme/tiny-GGUF:Q4_K_M');
    /* serve --pull, under a name of its own (NAME=REF) */
    const s = await startServer(['--model', 'tiny=hf.co/acme/tiny-GGUF:q8_0', '--pull', '--data-dir', path.join(dir, 'data'),
        '--ctx', '256', '--parallel', '1'], { env: { NIGHTSHIFT_MODELS: dir, HF_ENDPOINT: HUB.url, HF_TOKEN: '' }, name: 'serve-pull' });
    try {
        assert.match(s.log(), /hf\.co\/acme\/tiny-GGUF:q8_0 is not in the model store: pulling it \(--pull\)/);
        const models = await (await fetch(`${s.url}/v1/models`)).json();
        assert.deepEqual(models.data.map((m) => [m.id, m.served ?? true]), [['tiny', true], ['acme/tiny-GGUF:Q4_K_M', false]]);
    } finally {
        const x = await s.stop();
        assert.equal(x.code, 0, s.log());
    }
});

test('serve --model NAME by store name answers a chat; /v1/models, /api/tags, /api/show list the store; /api/pull pulls', async () => {
    const dir = store();
    let r = await ns(['pull', 'acme/tiny-GGUF'], dir);
    assert.equal(r.code, 0, describeRun(r));
    const s = await startServer(['--model', 'acme/tiny-GGUF', '--data-dir', path.join(dir, 'data'), '--ctx', '1024', '--parallel', '1'],
        { env: { NIGHTSHIFT_MODELS: dir, HF_ENDPOINT: HUB.url, HF_TOKEN: '' }, name: 'pull-serve' });
    try {
        const chat = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'acme/tiny-GGUF:Q4_K_M', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }) });
        const cj = await chat.json();
        assert.equal(chat.status, 200, JSON.stringify(cj));
        assert.equal(cj.model, 'acme/tiny-GGUF:Q4_K_M');

        const client = new Ollama({ host: s.url });
        /* a pull streamed: the manifest, bytes, the check, success */
        const events = [];
        for await (const ev of await client.pull({ model: 'hf.co/acme/tiny-GGUF:Q8_0', stream: true })) events.push(ev);
        assert.equal(events[0].status, 'pulling manifest', JSON.stringify(events));
        const bytes = events.filter((e) => e.digest);
        assert.ok(bytes.length >= 1, JSON.stringify(events));
        assert.equal(bytes.at(-1).digest, `sha256:${sha256(B)}`);
        assert.equal(bytes.at(-1).total, B.length);
        assert.equal(bytes.at(-1).completed, B.length);
        assert.match(bytes[0].status, /^pulling [0-9a-f]{12}$/);
        assert.ok(events.some((e) => e.status === 'verifying sha256 digest'), JSON.stringify(events));
        assert.equal(events.at(-1).status, 'success');
        assert.ok(fs.existsSync(path.join(dir, 'files/acme/tiny-GGUF/tiny-Q8_0.gguf')));

        /* not streamed: one object */
        const one = await client.pull({ model: 'acme/split-GGUF:Q4_K_M', stream: false });
        assert.equal(one.status, 'success');
        /* errors: an unknown repository, a gated one */
        await assert.rejects(client.pull({ model: 'acme/nope-GGUF', stream: false }), /not found/);
        /* streamed, the listing is read off the HTTP thread: its error follows "pulling
         * manifest" as an error line, as Ollama's own, and the client throws while reading */
        const seen = [];
        await assert.rejects((async () => {
            for await (const ev of await client.pull({ model: 'acme/gated-GGUF', stream: true })) seen.push(ev.status);
        })(), /pull model manifest: .*HF_TOKEN/);
        assert.deepEqual(seen, ['pulling manifest']);

        const tags = await client.list();
        const names = tags.models.map((m) => m.name);
        for (const n of ['acme/tiny-GGUF:Q4_K_M', 'acme/tiny-GGUF:Q8_0', 'acme/split-GGUF:Q4_K_M'])
            assert.ok(names.includes(n), `${n} in /api/tags: ${names}`);
        assert.equal(names.filter((n) => n === 'acme/tiny-GGUF:Q4_K_M').length, 1, 'the served store model once');
        const q8 = tags.models.find((m) => m.name === 'acme/tiny-GGUF:Q8_0');
        assert.equal(q8.size, B.length);
        assert.equal(q8.digest, sha256(B));
        assert.equal(q8.details.format, 'gguf');
        assert.equal(q8.details.family, 'llama');

        const show = await client.show({ model: 'acme/tiny-GGUF:Q8_0' });
        assert.equal(show.details.family, 'llama');
        assert.equal(show.model_info['general.architecture'], 'llama');
        await assert.rejects(client.show({ model: 'acme/none:Q4_K_M' }), /not found/);

        const models = await (await fetch(`${s.url}/v1/models`)).json();
        const served = models.data.find((m) => m.id === 'acme/tiny-GGUF:Q4_K_M');
        assert.ok(served, JSON.stringify(models));
        const avail = models.data.find((m) => m.id === 'acme/tiny-GGUF:Q8_0');
        assert.ok(avail, JSON.stringify(models));
        assert.equal(avail.object, 'model');
        assert.equal(avail.served, false);
        assert.notEqual(served.served, false);
    } finally {
        /* SIGTERM is a graceful shutdown: exit 0 (under ASan, a leak or an error is not) */
        const x = await s.stop();
        assert.equal(x.code, 0, `the server exited with ${JSON.stringify(x)}\n${s.log()}`);
    }
});

/* the NDJSON of a streamed /api/pull read until a line matches re; the reader stays open */
async function readUntil(res, re) {
    const reader = res.body.getReader();
    let text = '';
    while (!re.test(text)) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString();
    }
    return text;
}

test('/api/pull: a client that goes away stops the pull, which the next pull resumes; stopping the server stops a stalled pull', async () => {
    const dir = store();
    const env = { NIGHTSHIFT_MODELS: dir, HF_ENDPOINT: HUB.url, HF_TOKEN: '' };
    /* a long grace period: only the drain's stopping of pulls lets the server exit before stop()'s SIGKILL */
    const s = await startServer(['--model', `tiny=${path.join(TMP, 'a.gguf')}`, '--data-dir', path.join(dir, 'data'), '--ctx', '256',
        '--parallel', '1', '--grace-period', '600'], { env, name: 'pull-stop' });
    try {
        HUB.stall.set('tiny-Q8_0.gguf', 1_000_000);
        const ac = new AbortController();
        const res = await fetch(`${s.url}/api/pull`, { method: 'POST', body: JSON.stringify({ model: 'acme/tiny-GGUF:Q8_0' }), signal: ac.signal });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
        const text = await readUntil(res, /"completed":1000000\b/);
        assert.match(text, /^\{"status":"pulling manifest"\}\n/);
        ac.abort();
        await pollUntil(async () => s.log(), (l) => /pull of acme\/tiny-GGUF:Q8_0 failed: download stopped after 1000000 bytes/.test(l),
            { what: 'the pull to stop once its client is gone' });
        assert.ok(!fs.existsSync(path.join(dir, 'manifests/acme/tiny-GGUF/Q8_0.json')));
        const before = HUB.requests.length;
        const r = await ns(['pull', 'acme/tiny-GGUF:Q8_0'], dir);
        assert.equal(r.code, 0, describeRun(r));
        assert.match(r.stderr, /resuming at 1\.0 MB/);
        const cdn = HUB.requests.slice(before).filter((q) => q.url.startsWith('/cdn/'));
        assert.deepEqual(cdn.map((q) => q.range), ['bytes=1000000-']);

        /* a pull stalled when the server is told to stop */
        HUB.stall.set('big-Q8_0.gguf', 500_000);
        const res2 = await fetch(`${s.url}/api/pull`, { method: 'POST', body: JSON.stringify({ model: 'acme/split-GGUF:Q8_0' }) });
        await readUntil(res2, /"completed":500000\b/);
    } finally {
        const x = await s.stop();
        assert.equal(x.code, 0, `the server exited with ${JSON.stringify(x)}\n${s.log()}`);
    }
    assert.match(s.log(), /pull of acme\/split-GGUF:Q8_0 failed: download stopped after 500000 bytes/);
    assert.equal(fs.statSync(path.join(dir, 'files/acme/split-GGUF/big-Q8_0.gguf.part')).size, 500_000);
});

test('/api/pull refuses a body without a model, a bad stream value, and keys that are not admin', async () => {
    const dir = store();
    const env = { NIGHTSHIFT_MODELS: dir, HF_ENDPOINT: HUB.url, HF_TOKEN: '' };
    const s = await startServer(['--model', `tiny=${path.join(TMP, 'a.gguf')}`, '--data-dir', path.join(dir, 'data'), '--ctx', '256',
        '--parallel', '1', '--api-key', 'sk-admin-pull'], { env, name: 'pull-bad' });
    try {
        const post = (body, key = 'sk-admin-pull') => fetch(`${s.url}/api/pull`, { method: 'POST', body: JSON.stringify(body),
            headers: { authorization: `Bearer ${key}` } });
        let res = await post({});
        assert.equal(res.status, 400);
        assert.match((await res.json()).error, /model is required/);
        res = await post({ model: 'acme/tiny-GGUF', stream: 'yes' });
        assert.equal(res.status, 400);
        assert.match((await res.json()).error, /stream must be true or false/);
        /* a key made with `keys create` without --admin */
        const k = await ns(['keys', 'create', '--name', 'user', '--data-dir', path.join(dir, 'data')], dir);
        assert.equal(k.code, 0, describeRun(k));
        res = await post({ model: 'acme/tiny-GGUF' }, k.stdout.trim());
        assert.equal(res.status, 401);
        assert.match((await res.json()).error, /pulling a model needs an admin key/);
        res = await post({ model: 'acme/tiny-GGUF' }, 'sk-wrong');
        assert.equal(res.status, 401);
        assert.ok(!fs.existsSync(path.join(dir, 'manifests')));
    } finally {
        const x = await s.stop();
        assert.equal(x.code, 0, s.log());
    }
});
