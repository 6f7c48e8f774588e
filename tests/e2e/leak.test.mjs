// Leak check of the server's whole life: start `nightshift serve`, serve a few requests of
// every kind (health, a chat completion on a generated tiny model, streamed and not, a file
// upload and download, a small batch to completion, an Anthropic message streamed and not,
// count_tokens, a Message Batch, refused uploads and embeddings), stop it with
// SIGTERM, and fail on any definite leak.
//
// Under the ASan build (NIGHTSHIFT_SANITIZE=1, set by CMake) LeakSanitizer checks at exit:
// a leak makes the exit status non-zero and prints "LeakSanitizer". Under the release build
// the server runs under Valgrind memcheck (--leak-check=full --errors-for-leak-kinds=definite)
// where Valgrind can run it: it cannot decode AVX-512, which llama.cpp built for such a CPU
// uses (-march=native), so there the test is skipped and the ASan build's run is the check.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, SPM_VOCAB, sleep, startServer, killHard, api } from './lib.mjs';

const SANITIZED = process.env.NIGHTSHIFT_SANITIZE === '1';
const VALGRIND = ['valgrind', '-q', '--leak-check=full', '--errors-for-leak-kinds=definite', '--show-leak-kinds=definite',
    '--error-exitcode=99', '--num-callers=30'];

/* how this build is checked: 'lsan', 'valgrind', or why it cannot be */
function checker() {
    if (SANITIZED) return { kind: 'lsan' };
    const v = spawnSync(VALGRIND[0], ['--version'], { encoding: 'utf8' });
    if (v.status !== 0) return { skip: 'valgrind is not installed (and this is not the ASan build)' };
    const probe = spawnSync(VALGRIND[0], [...VALGRIND.slice(1), BIN, 'version'], { encoding: 'utf8', timeout: 120_000 });
    if (probe.status !== 0)
        return { skip: `valgrind cannot run this binary (${/Illegal opcode|unhandled instruction/.test(probe.stderr) ?
            'an instruction it does not know: AVX-512?' : `exit ${probe.status}`}); the ASan build's run checks leaks` };
    return { kind: 'valgrind' };
}

let dir, model;
const how = checker();

before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-leak-'));
    model = path.join(dir, 'tiny.gguf');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
});

after(() => {
    if (!process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

test('start, serve every kind of request, SIGTERM: no definite leak', { skip: how.skip, timeout: 600_000 }, async (t) => {
    t.diagnostic(`checked with ${how.kind}`);
    const s = await startServer(['--model', `tiny=${model}`, '--data-dir', path.join(dir, 'data'), '--threads', '1',
        '--parallel', '2', '--ctx', '1024', '--grace-period', '60'], {
        wrap: how.kind === 'valgrind' ? VALGRIND : [],
        timeoutMs: 300_000,
        env: { ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0' },
    });
    const exited = new Promise((r) => s.child.once('exit', (code, signal) => r({ code, signal })));
    try {
        const JSON_CT = { 'content-type': 'application/json' };
        assert.equal((await api(s, 'GET', '/health')).status, 200);
        assert.equal((await api(s, 'GET', '/v1/models')).status, 200);
        const chat = { model: 'tiny', messages: [{ role: 'user', content: 'hello' }], max_tokens: 3 };
        const c = await api(s, 'POST', '/v1/chat/completions', JSON.stringify(chat), JSON_CT);
        assert.equal(c.status, 200, c.text);
        const st = await api(s, 'POST', '/v1/chat/completions', JSON.stringify({ ...chat, stream: true }), JSON_CT);
        assert.equal(st.status, 200, st.text);
        assert.match(st.text, /data: \[DONE\]/);
        const m = await api(s, 'POST', '/v1/messages', JSON.stringify(chat), { ...JSON_CT, 'anthropic-version': '2023-06-01' });
        assert.equal(m.status, 200, m.text);
        const ms = await api(s, 'POST', '/v1/messages', JSON.stringify({ ...chat, stream: true }), JSON_CT);
        assert.match(ms.text, /message_stop/);
        const { max_tokens: _mt, ...count } = chat;
        assert.equal((await api(s, 'POST', '/v1/messages/count_tokens', JSON.stringify(count), JSON_CT)).status, 200);
        assert.equal((await api(s, 'POST', '/v1/messages/count_tokens', JSON.stringify(chat), JSON_CT)).status, 400);
        assert.equal((await api(s, 'POST', '/api/embed', JSON.stringify({ model: 'tiny', input: 'x' }))).status, 400);
        const extra = new FormData();
        extra.append('purpose', 'batch');
        extra.append('expires_after[anchor]', 'created_at');
        extra.append('expires_after[seconds]', '3600');
        extra.append('bogus', '1');
        extra.append('file', new Blob(['x\n']), 'x.jsonl');
        assert.equal((await api(s, 'POST', '/v1/files', extra)).status, 400);
        const bad = await api(s, 'POST', '/v1/chat/completions', '{"model":', JSON_CT);
        assert.equal(bad.status, 400);
        // upload, download, a batch to completion, its output
        const lines = ['a', 'b'].map((id) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions',
            body: { model: 'tiny', messages: [{ role: 'user', content: id }], max_tokens: 2 } })).join('\n') + '\n';
        const form = new FormData();
        form.append('purpose', 'batch');
        form.append('expires_after[anchor]', 'created_at');
        form.append('expires_after[seconds]', '7200');
        form.append('file', new Blob([lines]), 'in.jsonl');
        const up = await api(s, 'POST', '/v1/files', form);
        assert.equal(up.status, 200, up.text);
        const fid = up.json().id;
        assert.equal((await api(s, 'GET', `/v1/files/${fid}/content`)).text, lines);
        const cr = await api(s, 'POST', '/v1/batches', JSON.stringify({ input_file_id: fid,
            endpoint: '/v1/chat/completions', completion_window: '24h' }), JSON_CT);
        assert.equal(cr.status, 200, cr.text);
        let b;
        for (const t0 = Date.now(); ; await sleep(200)) {
            b = (await api(s, 'GET', `/v1/batches/${cr.json().id}`)).json();
            if (['completed', 'failed', 'expired', 'cancelled'].includes(b.status)) break;
            assert.ok(Date.now() - t0 < 300_000, JSON.stringify(b));
        }
        assert.equal(b.status, 'completed', JSON.stringify(b));
        const out = await api(s, 'GET', `/v1/files/${b.output_file_id}/content`);
        assert.equal(out.text.trim().split('\n').length, 2);
        assert.equal((await api(s, 'GET', '/v1/batches')).status, 200);
        assert.equal((await api(s, 'DELETE', `/v1/files/${fid}`)).status, 200);
        // a Message Batch whose results_url is read
        const mb = await api(s, 'POST', '/v1/messages/batches', JSON.stringify({ requests: [{ custom_id: 'm', params: chat }] }),
            JSON_CT);
        assert.equal(mb.status, 200, mb.text);
        for (const t0 = Date.now(); ; await sleep(200)) {
            const g = (await api(s, 'GET', `/v1/messages/batches/${mb.json().id}`)).json();
            if (g.processing_status === 'ended') {
                assert.match(g.results_url, /^http:\/\/127\.0\.0\.1:\d+\/v1\/messages\/batches\//);
                break;
            }
            assert.ok(Date.now() - t0 < 300_000, JSON.stringify(g));
        }
    } catch (e) {
        await killHard(s);
        throw e;
    }
    s.child.kill('SIGTERM');
    const timer = setTimeout(() => s.child.kill('SIGKILL'), 240_000);
    const x = await exited;
    clearTimeout(timer);
    const err = s.stderr();
    assert.doesNotMatch(err, /LeakSanitizer|definitely lost|ERROR: AddressSanitizer/, err.slice(-6000));
    assert.deepEqual(x, { code: 0, signal: null }, err.slice(-6000));
    assert.match(err, /stopped/);
});
