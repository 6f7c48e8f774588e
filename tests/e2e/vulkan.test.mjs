// nightshift on a GPU backend (issue 30), in CI: the Vulkan build (scripts/build.sh vulkan:
// llama.cpp's prebuilt Vulkan libraries of our release) on Mesa's lavapipe, a Vulkan device
// that runs on the CPU. ggml-vulkan skips CPU-type devices unless GGML_VK_VISIBLE_DEVICES
// names them, so every run here sets it.
//
// Checked: the device is listed; a fully offloaded model (--gpu-layers all) gives the same
// greedy output as the CPU build, on stories260K and on a generated model, with every layer
// reported offloaded; a serve batch completes with its memory on Vulkan0 in /metrics; a
// library of another release is refused at start (a preloaded ggml_commit stands in for it);
// a backend directory without backends is refused; no visible GPU runs on the CPU with a
// warning.
//
// lavapipe compiles each shader pipeline on first use (Mesa keeps them in
// ~/.cache/mesa_shader_cache): the first run on a fresh machine takes a minute or two, the
// next seconds. The models are tiny and the runs short.
//
//   NIGHTSHIFT_VULKAN_BIN=build-vulkan/nightshift node --test tests/e2e/vulkan.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { BIN, REPO_ROOT, SHARED_MODELS, SPM_VOCAB, api, chatLine, completionLine, describeRun, killHard, mkTmp, readJson,
    readJsonl, rmTmp, runNs, startServer, submitBatch, waitBatch, writeJsonl } from './lib.mjs';

const VBIN = process.env.NIGHTSHIFT_VULKAN_BIN || path.join(REPO_ROOT, 'build-vulkan', 'nightshift');
const VENV = { GGML_VK_VISIBLE_DEVICES: '0' };
const STORIES = path.join(SHARED_MODELS, 'stories260K.gguf');
/* the real tiny model where ../shared/models has it (NIGHTSHIFT_SHARED_MODELS), else the
 * tests that only need some model use the generated one */
const HAVE_STORIES = fs.existsSync(STORIES);

/* why these tests cannot run here, or '' */
function whyNot() {
    const ld = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' }).stdout || '';
    if (!/\blibvulkan\.so\.1\b/.test(ld) || !/\blibvulkan_lvp\.so\b/.test(ld))
        return 'lavapipe is not installed (Debian: apt-get install libvulkan1 mesa-vulkan-drivers; ' +
            'NIGHTSHIFT_GPU=vulkan scripts/bootstrap.sh installs them)';
    if (!fs.existsSync(VBIN)) return `the Vulkan build is missing: ${VBIN} (scripts/build.sh vulkan; make test builds it)`;
    return '';
}
const SKIP = whyNot();
if (SKIP) console.log(`# vulkan tests skipped: ${SKIP}`);
// where lavapipe and the Vulkan build are there, a test that cannot run is a failure
const vtest = (name, fn) => test(name, { skip: SKIP || false, timeout: 600_000 }, fn);

let TMP, GEN, ANY;

before(async () => {
    if (SKIP) return;
    TMP = mkTmp('nightshift-vulkan-');
    // F32 weights: a random-weight model's logits are nearly tied, and Q8_0 kernels of
    // two backends round differently enough to change a greedy pick
    GEN = path.join(TMP, 'gen.gguf');
    const r = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', GEN, '--type', 'f32', '--seed', '5']);
    assert.equal(r.code, 0, describeRun(r));
    ANY = HAVE_STORIES ? STORIES : GEN;
});

after(() => rmTmp(TMP));

async function run(bin, name, model, lines, extra = [], env = {}) {
    const d = path.join(TMP, name);
    fs.mkdirSync(d, { recursive: true });
    const input = path.join(d, 'in.jsonl');
    writeJsonl(input, lines);
    const r = await runNs(['run', input, '-o', path.join(d, 'out.jsonl'), '--model', model, '--model-alias', '*',
        '--summary', path.join(d, 'sum.json'), '--parallel', '4', '--ctx', '1024', ...extra],
    { bin, env, timeoutMs: 540_000 });
    assert.equal(r.code, 0, `${name}: ${describeRun(r)}`);
    const texts = Object.fromEntries(readJsonl(path.join(d, 'out.jsonl')).map((l) => [l.custom_id,
        l.response.body.choices[0].text ?? l.response.body.choices[0].message.content]));
    return { r, texts, sum: readJson(path.join(d, 'sum.json')) };
}

vtest('--list-devices shows lavapipe as Vulkan0 next to the CPU', async () => {
    const r = await runNs(['run', '--list-devices'], { bin: VBIN, env: VENV });
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /^llama\.cpp \S+, vulkan build$/m);
    assert.match(r.stdout, /^Vulkan0\s+gpu\s+Vulkan\s+\d+ MiB free of\s+\d+ MiB\s+llvmpipe/m);
    assert.match(r.stdout, /^CPU\s+cpu\s+CPU/m);
});

vtest('stories260K fully offloaded: every layer on Vulkan0, the same 40 greedy tokens as the CPU build', async (t) => {
    if (!HAVE_STORIES) {
        t.skip(`${STORIES} not found (set NIGHTSHIFT_SHARED_MODELS); the generated model's test below still runs`);
        return;
    }
    const lines = [completionLine('s1', 'Once upon a time', { max_tokens: 40, temperature: 0 }, 'x'),
        completionLine('s2', 'The little dog', { max_tokens: 40, temperature: 0 }, 'x')];
    const cpu = await run(BIN, 'stories-cpu', STORIES, lines);
    const vk = await run(VBIN, 'stories-vk', STORIES, lines, ['--gpu-layers', 'all'], VENV);
    const dev = vk.sum.device;
    t.diagnostic(`vulkan: ${dev.where}; ${vk.sum.usage.output_tokens} tokens in ${vk.sum.wall_seconds.toFixed(1)} s`);
    assert.match(dev.where, /^Vulkan0 \(llvmpipe.*\), 6\/6 layers$/);
    assert.equal(dev.layers_offloaded, dev.layers, 'every layer offloaded');
    assert.equal(dev.layers, 6, 'stories260K: 5 layers + the output layer');
    assert.ok(dev.memory.some((m) => m.buffer === 'Vulkan0' && !m.host && m.bytes > 0), 'memory on Vulkan0');
    assert.match(vk.r.stderr, /on Vulkan0 \(llvmpipe.*\), 6\/6 layers/, 'the startup line says where it runs');
    assert.equal(cpu.sum.device.where, 'CPU');
    assert.equal(vk.sum.usage.output_tokens, 80);
    assert.deepEqual(vk.texts, cpu.texts, 'same greedy output on Vulkan and on the CPU');
});

vtest('a generated model fully offloaded: the same greedy output as the CPU build', async () => {
    const lines = [chatLine('g1', 'Tell me a story', { max_tokens: 16, temperature: 0 }, 'x'),
        chatLine('g2', 'What is the weather like', { max_tokens: 16, temperature: 0 }, 'x')];
    const cpu = await run(BIN, 'gen-cpu', GEN, lines);
    const vk = await run(VBIN, 'gen-vk', GEN, lines, ['--gpu-layers', 'all'], VENV);
    assert.equal(vk.sum.device.layers_offloaded, vk.sum.device.layers);
    assert.deepEqual(vk.texts, cpu.texts);
});

vtest('serve on Vulkan: a batch completes; /metrics shows the layers and the memory on Vulkan0', async () => {
    const s = await startServer(['--model', `st=${ANY}`, '--data-dir', path.join(TMP, 'serve'), '--parallel', '2',
        '--interactive-slots', '1', '--ctx', '768', '--gpu-layers', 'all'], { bin: VBIN, env: VENV, timeoutMs: 300_000 });
    try {
        const layers = /model 'st': .* on Vulkan0 \(llvmpipe.*\), (\d+)\/(\d+) layers/.exec(s.stderr());
        assert.ok(layers && layers[1] === layers[2], s.stderr());
        const b = await submitBatch(s, [0, 1, 2].map((i) => completionLine(`b${i}`, `Once ${i}`, { max_tokens: 8 }, 'st')),
            { endpoint: '/v1/completions' });
        const done = await waitBatch(s, b.id, (x) => ['completed', 'failed'].includes(x.status), 300_000);
        assert.equal(done.status, 'completed');
        assert.equal(done.request_counts.completed, 3);
        const m = await api(s, 'GET', '/metrics');
        assert.match(m.text, new RegExp(`^nightshift_gpu_layers\\{model="st"\\} ${layers[1]}$`, 'm'));
        assert.match(m.text, /^nightshift_device_memory_used_bytes\{model="st",buffer="Vulkan0",host="false"\} [1-9]\d*$/m);
    } finally {
        await killHard(s);
    }
});

vtest('no visible GPU (GGML_VK_VISIBLE_DEVICES unset): --gpu-layers all warns and runs on the CPU', async () => {
    const lines = [completionLine('c1', 'Once upon a time', { max_tokens: 8, temperature: 0 }, 'x')];
    const x = await run(VBIN, 'no-gpu', ANY, lines, ['--gpu-layers', 'all'], { GGML_VK_VISIBLE_DEVICES: '' });
    assert.match(x.r.stderr, /--gpu-layers: no GPU device \(see nightshift doctor\); the model runs on the CPU/);
    assert.equal(x.sum.device.where, 'CPU');
});

vtest('refused at start: libraries of another release (ABI mismatch), a backend directory without backends', async () => {
    // a ggml_commit() of another build, preloaded ahead of the package's libggml-base
    const shim = path.join(TMP, 'other-ggml.so');
    const src = path.join(TMP, 'other-ggml.c');
    fs.writeFileSync(src, 'const char *ggml_commit(void) { return "deadbee"; }\n');
    execFileSync('cc', ['-shared', '-fPIC', '-o', shim, src]);
    const r = await runNs(['run', '--list-devices'], { bin: VBIN, env: { ...VENV, LD_PRELOAD: shim } });
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /llama\.cpp library mismatch: this nightshift was built for ggml \S+ \(commit \w+\) from the vulkan package, but the loaded libraries are ggml \S+ \(commit deadbee\): rebuild with NIGHTSHIFT_GPU=vulkan scripts\/bootstrap\.sh/);
    const d = await runNs(['doctor', '--data-dir', path.join(TMP, 'doc')], { bin: VBIN, env: { ...VENV, LD_PRELOAD: shim } });
    assert.match(d.stdout, /^FAIL +backend: llama\.cpp library mismatch/m);
    const empty = path.join(TMP, 'no-backends');
    fs.mkdirSync(empty, { recursive: true });
    const e = await runNs(['run', '--list-devices'], { bin: VBIN, env: { ...VENV, NIGHTSHIFT_BACKEND_DIR: empty } });
    assert.equal(e.code, 2, describeRun(e));
    assert.match(e.stderr, /no llama\.cpp backend loaded from '.*no-backends' \(not even the CPU's\)/);
});

vtest('doctor on the Vulkan build: backend, the Vulkan device with its memory, layers a model would offload', async () => {
    const r = await runNs(['doctor', '--data-dir', path.join(TMP, 'doc2'), '--model', ANY], { bin: VBIN, env: VENV });
    assert.match(r.stdout, /^ok +backend: llama\.cpp \S+, vulkan build$/m, r.stdout);
    assert.match(r.stdout, /^ok +device Vulkan0 \(gpu, Vulkan\): llvmpipe.*, \d+ MiB free of \d+ MiB$/m, r.stdout);
    const m = /^ok +model '.*\.gguf': (\d+)\/(\d+) layers on the GPU, KV room for \d+ tokens/m.exec(r.stdout);
    assert.ok(m && m[1] === m[2], r.stdout);
});
