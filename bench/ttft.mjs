// bench/ttft.mjs — time to first token of real-time chat completions, idle and while a
// batch saturates the engine (the hybrid pattern: interactive requests go first).
//
//   node bench/ttft.mjs --bin build/nightshift --model M.gguf [--requests 30] [--batch 2000]
//                       [--parallel 32] [--threads N] [--max-tokens 16] [--batch-prompt-words W]
//
// --batch-prompt-words W gives each batch line its own document of W words (long prompts:
// the batch then brings large prefill chunks).
//
// Prints p50/p99 TTFT idle vs loaded and their ratio, plus the batch's progress during the
// loaded phase (to show it kept running). A benchmark: it prints, it never fails on time.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => {
    if (v.startsWith('--')) a.push([v.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : 'true']);
    return a;
}, []));
const BIN = args.bin || 'build/nightshift';
const MODEL = args.model;
const N = Number(args.requests || 30);
const BATCH = Number(args.batch || 2000);
const PAR = args.parallel || '32';
const THREADS = args.threads || String(os.availableParallelism ? os.availableParallelism() : 2);
const MAXT = Number(args['max-tokens'] || 16);
const WORDS = Number(args['batch-prompt-words'] || 0);
const doc = (i) => Array.from({ length: WORDS }, (_, w) => `w${(w * 7919 + i * 104729) % 5003}`).join(' ');
if (!MODEL) {
    console.error('usage: node bench/ttft.mjs --model M.gguf [--bin build/nightshift]');
    process.exit(2);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-ttft-'));
const srv = spawn(BIN, ['serve', '--model', `m=${MODEL}`, '--data-dir', path.join(dir, 'data'), '--listen', '127.0.0.1:0',
    '--parallel', PAR, '--threads', THREADS], { stdio: ['ignore', 'ignore', 'pipe'] });
let err = '';
const url = await new Promise((resolve, reject) => {
    srv.stderr.on('data', (d) => {
        err += d;
        const m = /listening on (http:\/\/[0-9.:]+)/.exec(err);
        if (m) resolve(m[1]);
    });
    srv.on('exit', () => reject(new Error(err)));
});

async function ttft(i) {
    const t0 = performance.now();
    const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', stream: true, max_tokens: MAXT, temperature: 0,
            messages: [{ role: 'user', content: `Question ${i}: what is the capital of country number ${i}?` }] }),
    });
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let first = null, buf = '';
    for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        if (first === null && /"content":"[^"]/.test(buf)) first = performance.now() - t0;
    }
    return first ?? performance.now() - t0;
}

const pct = (xs, p) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

await ttft(-1); // warm-up
const idle = [];
for (let i = 0; i < N; i++) idle.push(await ttft(i));

const lines = [];
for (let i = 0; i < BATCH; i++)
    lines.push(JSON.stringify({ custom_id: `b${i}`, method: 'POST', url: '/v1/chat/completions',
        body: { model: 'm', max_tokens: 64, ignore_eos: true,
            messages: [{ role: 'user', content: `${WORDS ? doc(i) + '\n' : ''}Batch item ${i}: write a paragraph about topic ${i}.` }] } }));
const form = new FormData();
form.append('purpose', 'batch');
form.append('file', new Blob([lines.join('\n') + '\n']), 'load.jsonl');
const file = await (await fetch(`${url}/v1/files`, { method: 'POST', body: form })).json();
const batch = await (await fetch(`${url}/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' }) })).json();
const status = async () => (await (await fetch(`${url}/v1/batches/${batch.id}`)).json());
for (;;) {
    const b = await status();
    if (b.request_counts.completed > 0) break;
    await new Promise((r) => setTimeout(r, 100));
}
const before = (await status()).request_counts.completed;
const loaded = [];
for (let i = 0; i < N; i++) loaded.push(await ttft(1000 + i));
const after = await status();

const fmt = (ms) => `${ms.toFixed(0)} ms`;
console.log(`TTFT over ${N} streaming chat completions (max_tokens ${MAXT}), --parallel ${PAR}, --threads ${THREADS}`);
console.log(`  idle:    p50 ${fmt(pct(idle, 50))}  p99 ${fmt(pct(idle, 99))}`);
console.log(`  loaded:  p50 ${fmt(pct(loaded, 50))}  p99 ${fmt(pct(loaded, 99))}   (batch of ${BATCH} x 64 tokens running: ` +
    `${before} -> ${after.request_counts.completed} lines done during the loaded phase, status ${after.status})`);
console.log(`  ratio loaded/idle: p50 ${(pct(loaded, 50) / pct(idle, 50)).toFixed(2)}  p99 ${(pct(loaded, 99) / pct(idle, 99)).toFixed(2)}`);
await fetch(`${url}/v1/batches/${batch.id}/cancel`, { method: 'POST' });
srv.kill('SIGTERM');
await new Promise((r) => srv.on('exit', r));
fs.rmSync(dir, { recursive: true, force: true });
