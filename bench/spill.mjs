// bench/spill.mjs — spill-over (issue 33): a batch on a slow local model whose deadline it
// cannot meet alone, with spill_to naming a fast mock upstream (in this process). Two runs
// of the same batch: "alone" (no spill_to) and "spill" (spill_to = fast). Printed per run:
// lines per backend, completion time against the deadline, cost (the local model free (its
// batch_discount 1), the fallback at gpt-4o-mini's list prices with its 50% batch discount).
//
//   node bench/spill.mjs [--bin build/nightshift] [--lines 240] [--deadline 60]
//                        [--max-tokens 48] [--parallel 1] [--out bench/results/spill-....md]
//
// A benchmark: it prints, it never fails on time.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (k, d) => {
    const i = process.argv.indexOf(`--${k}`);
    return i > 0 ? process.argv[i + 1] : d;
};
const BIN = path.resolve(arg('bin', path.join(ROOT, 'build', 'nightshift')));
const LINES = Number(arg('lines', 240));
const DEADLINE_S = Number(arg('deadline', 60));
const MAX_TOKENS = Number(arg('max-tokens', 48));
const OUT = arg('out', null);
const PARALLEL = Number(arg('parallel', 1));
const VOCAB = process.env.NIGHTSHIFT_VOCAB_DIR ||
    path.join(os.homedir(), '.cache/nightshift/llama-3.22.1-11c34fdc1f60/src/models');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function mock(delayMs) {
    const st = { answered: 0 };
    const server = http.createServer((req, res) => {
        req.resume();
        req.on('end', () => setTimeout(() => {
            st.answered++;
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ id: `c${st.answered}`, object: 'chat.completion', created: 1, model: 'fast',
                choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
                usage: { prompt_tokens: 20, completion_tokens: MAX_TOKENS, total_tokens: 20 + MAX_TOKENS } }));
        }, delayMs));
    });
    return new Promise((r) => server.listen(0, '127.0.0.1', () => r({ st, server, port: server.address().port })));
}

async function serve(ini) {
    const child = spawn(BIN, ['serve', '--config', ini, '--listen', '127.0.0.1:0', '--threads', '2', '--parallel', String(PARALLEL)],
        { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d) => (log += d));
    for (let i = 0; i < 600; i++) {
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
        if (m) return { child, url: `http://127.0.0.1:${m[1]}`, log: () => log };
        await sleep(100);
    }
    throw new Error(`nightshift did not start:\n${log}`);
}

async function run(name, model, fbPort, spill) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ns-spill-${name}-`));
    const ini = path.join(dir, 'ns.ini');
    fs.writeFileSync(ini, `[server]
data-dir = ${dir}/data

[model local]
backend = local
path = ${model}
price_input = 0.15
price_output = 0.60
batch_discount = 1
${spill ? 'spill_to = fast\nspill_turnaround = 2\nspill_margin = 0.2\n' : ''}
[model fast]
backend = openai-http
url = http://127.0.0.1:${fbPort}/v1
concurrency = 16
price_input = 0.15
price_output = 0.60
batch_discount = 0.5
`);
    const ns = await serve(ini);
    try {
        const lines = Array.from({ length: LINES }, (_, i) => JSON.stringify({ custom_id: `r${i}`, method: 'POST',
            url: '/v1/chat/completions', body: { model: 'local', max_tokens: MAX_TOKENS, temperature: 0.8, seed: i,
                messages: [{ role: 'user', content: `Tell me a story about the number ${i}.` }] } }));
        const form = new FormData();
        form.append('purpose', 'batch');
        form.append('file', new Blob([lines.join('\n') + '\n']), 'in.jsonl');
        const f = await (await fetch(`${ns.url}/v1/files`, { method: 'POST', body: form })).json();
        const t0 = Date.now() / 1000;
        const deadline = Math.floor(t0) + DEADLINE_S;
        const b = await (await fetch(`${ns.url}/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h',
                metadata: { deadline: String(deadline) } }) })).json();
        let x;
        for (;;) {
            x = await (await fetch(`${ns.url}/v1/batches/${b.id}`)).json();
            if (['completed', 'failed', 'expired', 'cancelled'].includes(x.status)) break;
            if (Date.now() / 1000 - t0 > DEADLINE_S * 4) break; /* alone: it would take long; the rate says how long */
            await sleep(250);
        }
        const t = Date.now() / 1000 - t0;
        const bk = x.nightshift?.backends || {};
        const done = x.request_counts.completed + x.request_counts.failed;
        return { name, status: x.status, seconds: t, deadline: deadline - t0, done, total: x.request_counts.total,
            local: bk.local?.lines || 0, fast: bk.fast?.lines || 0, cost: x.nightshift?.cost_usd,
            rate: done / t, log: ns.log() };
    } finally {
        ns.child.kill('SIGTERM');
        await new Promise((r) => ns.child.on('close', r));
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-spill-model-'));
const model = path.join(tmp, 'tiny.gguf');
execFileSync(BIN, ['gen-model', '--vocab', path.join(VOCAB, 'ggml-vocab-llama-spm.gguf'), '-o', model, '--seed', '3'],
    { stdio: 'ignore' });
const fb = await mock(20);
const rows = [];
for (const [name, spill] of [['alone', false], ['spill', true]])
    rows.push(await run(name, model, fb.port, spill));
fb.server.close();
fs.rmSync(tmp, { recursive: true, force: true });

const out = [`# spill-over: ${LINES} lines, deadline ${DEADLINE_S} s, local tiny model (--parallel ${PARALLEL}, max_tokens ${MAX_TOKENS}) vs a 20 ms mock fallback`,
    `machine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model}), ${new Date().toISOString()}`, '',
    '| run | status | lines local | lines fallback | done | finished (s) | deadline (s) | on time | cost USD |',
    '|---|---|---|---|---|---|---|---|---|'];
for (const r of rows)
    out.push(`| ${r.name} | ${r.status} | ${r.local} | ${r.fast} | ${r.done}/${r.total} | ${r.seconds.toFixed(1)} | ${r.deadline.toFixed(0)} | ` +
        `${r.status === 'completed' && r.seconds <= r.deadline ? 'yes' : 'no'} | ${r.cost == null ? '–' : r.cost.toFixed(6)} |`);
const spillLog = rows[1].log.split('\n').filter((l) => /would miss|keeps up|goes to|go to/.test(l)).slice(0, 6);
out.push('', 'spill run, the scheduler said:', '```', ...spillLog, '```');
const text = out.join('\n') + '\n';
process.stdout.write(text);
if (OUT) fs.writeFileSync(OUT, text);
