// Where the model runs and how its KV cache is stored (issue 30), on the CPU build:
// --list-devices, --gpu-layers without a GPU, KV cache types (q8_0 / q4_0 measured against
// f16), the memory fit on host memory, --device / --main-gpu / value errors, the startup
// line, the run summary, doctor and /metrics. The same options on a GPU backend are
// tests/e2e/vulkan.test.mjs (Vulkan on Mesa's lavapipe).
//
//   node --test tests/e2e/device.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { SHARED_MODELS, SPM_VOCAB, api, chatLine, describeRun, killHard, mkTmp, readJson, readJsonl, rmTmp, runNs,
    startServer, submitBatch, waitBatch, writeJsonl } from './lib.mjs';

let TMP, MODEL, INPUT;

before(async () => {
    TMP = mkTmp();
    MODEL = path.join(TMP, 'tiny.gguf');
    // two heads of 32 values: whole q8_0/q4_0 blocks (the default tiny shape has heads of 16)
    const r = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', MODEL, '--heads', '2', '--kv-heads', '2', '--seed', '3']);
    assert.equal(r.code, 0, describeRun(r));
    INPUT = path.join(TMP, 'in.jsonl');
    writeJsonl(INPUT, Array.from({ length: 12 }, (_, i) => chatLine(`r${i}`, `Tell story number ${i}`,
        { max_tokens: 16, temperature: 0 })));
});

after(() => rmTmp(TMP));

async function runSummary(name, extra, code = 0) {
    const d = path.join(TMP, name);
    fs.mkdirSync(d, { recursive: true });
    const r = await runNs(['run', INPUT, '-o', path.join(d, 'out.jsonl'), '--model', MODEL, '--summary',
        path.join(d, 'sum.json'), '--parallel', '4', ...extra]);
    assert.equal(r.code, code, describeRun(r));
    return { r, sum: code === 0 ? readJson(path.join(d, 'sum.json')) : null, out: code === 0 ? readJsonl(path.join(d, 'out.jsonl')) : null };
}

test('--list-devices: run and serve list the CPU device and the build kind, and exit 0', async () => {
    for (const cmd of ['run', 'serve']) {
        const r = await runNs([cmd, '--list-devices']);
        assert.equal(r.code, 0, describeRun(r));
        assert.match(r.stdout, /^llama\.cpp \S+, (cpu|vulkan|cuda) build$/m);
        assert.match(r.stdout, /^CPU\s+cpu\s+CPU\s+\d+ MiB free of\s+\d+ MiB/m);
    }
});

test('KV cache types: q8_0 and q4_0 run a batch to completion with the KV memory they should take', async (t) => {
    const f16 = await runSummary('kv-f16', []);
    const q8 = await runSummary('kv-q8', ['--cache-type-k', 'q8_0', '--cache-type-v', 'q8_0']);
    const q4 = await runSummary('kv-q4', ['--cache-type-k', 'q4_0', '--cache-type-v', 'q4_0']);
    for (const [name, x] of [['f16', f16], ['q8_0', q8], ['q4_0', q4]]) {
        assert.equal(x.out.length, 12, `${name}: every line answered`);
        assert.equal(x.sum.request_counts.completed, 12, `${name}: completed`);
        assert.equal(x.sum.device.cache_type_k, name);
        assert.equal(x.sum.device.where, 'CPU');
        assert.match(x.r.stderr, new RegExp(`KV ${name}/${name}, [0-9.]+ MiB`), `${name}: the startup line says it`);
        assert.match(x.r.stdout, new RegExp(`device +CPU; KV ${name}/${name}`), `${name}: the run's summary says it`);
    }
    const kv = (x) => x.sum.device.kv_bytes;
    // q8_0: 34 bytes per 32 values (17/32 of f16's 64); q4_0: 18 bytes per 32 (9/32)
    t.diagnostic(`KV cache for 4 sequences x 4096 cells: f16 ${kv(f16)} B, q8_0 ${kv(q8)} B (${(kv(q8) / kv(f16)).toFixed(3)}), ` +
        `q4_0 ${kv(q4)} B (${(kv(q4) / kv(f16)).toFixed(3)})`);
    assert.ok(kv(f16) > 0);
    assert.ok(Math.abs(kv(q8) / kv(f16) - 17 / 32) < 0.01, `q8_0/f16 = ${kv(q8) / kv(f16)}`);
    assert.ok(Math.abs(kv(q4) / kv(f16) - 9 / 32) < 0.01, `q4_0/f16 = ${kv(q4) / kv(f16)}`);
});

test('--gpu-layers all without a GPU: a warning that says why, and the run goes on on the CPU', async () => {
    const x = await runSummary('ngl-all', ['--gpu-layers', 'all']);
    assert.match(x.r.stderr, /--gpu-layers: no GPU device \(.*\); the model runs on the CPU/);
    assert.equal(x.sum.device.layers_offloaded, 0);
    assert.equal(x.sum.request_counts.completed, 12);
});

test('the memory fit: with room for a few sequences only, fewer sequences run, and it says so', async (t) => {
    const list = await runNs(['run', '--list-devices']);
    const total = Number(/^CPU\s+cpu\s+CPU\s+\d+ MiB free of\s+(\d+) MiB/m.exec(list.stdout)[1]);
    // leave all host memory free but the model, its compute buffers and 24 MiB: 64 sequences
    // of 2048 tokens (64 MiB of KV) do not fit, a few do
    const small = await runSummary('fit-measure', ['--parallel', '1']);
    const need = Math.ceil((small.sum.device.model_bytes + small.sum.device.compute_bytes) / 1048576) + 24;
    const x = await runSummary('fit', ['--parallel', '64', '--fit', 'on', '--fit-target', String(total - need)]);
    t.diagnostic(`fit: ${x.sum.device.fit}`);
    assert.match(x.r.stderr, /memory fit: 64 sequences with a context of \d+ would not leave \d+ MiB free on the host: \d+ sequences/);
    assert.ok(x.sum.device.parallel < 64 && x.sum.device.parallel >= 1, `parallel ${x.sum.device.parallel}`);
    assert.match(x.sum.device.fit, /would not leave/);
    assert.equal(x.sum.request_counts.completed, 12);
});

test('bad values and impossible placements are refused with a clear error', async () => {
    const bad = [
        [['--gpu-layers', 'most'], /--gpu-layers must be a number of layers \(0 to 10000\), 'all' or 'auto', not 'most'/],
        [['--cache-type-k', 'q5_1'], /--cache-type-k must be f16, q8_0 or q4_0, not 'q5_1'/],
        [['--cache-type-v', 'int8'], /--cache-type-v must be f16, q8_0 or q4_0, not 'int8'/],
        [['--flash-attn', 'yes'], /--flash-attn must be on, off or auto, not 'yes'/],
        [['--split-mode', 'tensor'], /--split-mode must be layer, row or none, not 'tensor'/],
        [['--fit', 'maybe'], /--fit must be on, off or auto, not 'maybe'/],
        [['--fit-target', '-1'], /--fit-target must be MiB from 0 to 16777216, not '-1'/],
        [['--main-gpu', 'x'], /--main-gpu must be a device index from 0 to 255, not 'x'/],
        [['--device', 'Vulkan7'], /--device: no device named 'Vulkan7' \(this machine has: CPU.*; see --list-devices\)/],
        [['--main-gpu', '2'], /--main-gpu 2: there are 0 GPU devices/],
        [['--cache-type-v', 'q8_0', '--flash-attn', 'off'], /--cache-type-v q8_0 needs flash attention: leave --flash-attn at auto or set it on/],
    ];
    for (const [args, re] of bad) {
        const r = await runNs(['run', INPUT, '-o', path.join(TMP, 'bad.jsonl'), '--model', MODEL, ...args]);
        assert.equal(r.code, 2, `${args.join(' ')}: ${describeRun(r)}`);
        assert.match(r.stderr, re, args.join(' '));
    }
    // stories260K's heads have 8 values: no q8_0 block fits
    const st = path.join(SHARED_MODELS, 'stories260K.gguf');
    if (fs.existsSync(st)) {
        const r = await runNs(['run', INPUT, '-o', path.join(TMP, 'bad.jsonl'), '--model', st, '--model-alias', '*',
            '--cache-type-k', 'q8_0']);
        assert.equal(r.code, 2, describeRun(r));
        assert.match(r.stderr, /--cache-type-k q8_0: the attention heads of '.*stories260K.gguf' have 8 values, not a multiple of q8_0's blocks of 32: use f16 for this model/);
    }
});

test('doctor lists the backend and the devices with their memory', async () => {
    const r = await runNs(['doctor', '--data-dir', path.join(TMP, 'doc'), '--model', MODEL]);
    assert.match(r.stdout, /^ok +backend: llama\.cpp \S+, (cpu|vulkan|cuda) build$/m, r.stdout);
    assert.match(r.stdout, /^ok +device CPU \(cpu, CPU\): .*, \d+ MiB free of \d+ MiB$/m, r.stdout);
});

test('serve: the startup line says where the model runs; /metrics has its memory and layers; a q8_0 batch completes', async () => {
    const s = await startServer(['--model', `tiny=${MODEL}`, '--data-dir', path.join(TMP, 'serve'), '--parallel', '4',
        '--threads', '1', '--cache-type-k', 'q8_0', '--cache-type-v', 'q8_0']);
    try {
        assert.match(s.stderr(), /model 'tiny': .* on CPU, 4 parallel \+ 4 interactive, context \d+ \(\d+ per sequence, KV q8_0\/q8_0 [0-9.]+ MiB\)/);
        const b = await submitBatch(s, Array.from({ length: 6 }, (_, i) => chatLine(`s${i}`, `Hello ${i}`, { max_tokens: 8 })));
        const done = await waitBatch(s, b.id, (x) => ['completed', 'failed'].includes(x.status), 120_000);
        assert.equal(done.status, 'completed');
        assert.equal(done.request_counts.completed, 6);
        const m = await api(s, 'GET', '/metrics');
        assert.match(m.text, /^nightshift_device_memory_used_bytes\{model="tiny",buffer="CPU",host="true"\} [1-9]\d*$/m);
        assert.match(m.text, /^nightshift_gpu_layers\{model="tiny"\} 0$/m);
        assert.match(m.text, /^nightshift_model_layers\{model="tiny"\} [1-9]\d*$/m);
    } finally {
        await killHard(s);
    }
});
