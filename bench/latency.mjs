// bench/latency.mjs — the interactive latency budget (issue 32): time to first token (TTFT)
// and inter-token latency (ITL) of streaming chat completions arriving at a steady rate,
// idle and while a batch saturates the engine, and the batch's generated tokens/s with and
// without that interactive traffic; for each --interactive-step-ms setting, in the same run.
//
//   node bench/latency.mjs --bin build/nightshift --model M.gguf [--settings off,auto]
//        [--rates 0.5,2] [--seconds 20] [--rounds 2] [--parallel 32] [--threads N]
//        [--max-tokens 24] [--batch 3000]
//
// A setting is an --interactive-step-ms value (off, auto or MS), with ":kvu" to run the
// server with --kv-unified (e.g. --settings off,auto,off:kvu,auto:kvu).
//
// Protocol (docs/benchmarks): rounds interleave the settings (off, auto, off, auto, ...),
// each on a fresh server; every figure is the median over rounds; the machine should be
// otherwise idle. Per setting and round: idle phase (the streams alone, at the lowest
// rate), batch-alone phase (tokens/s), then a loaded phase per rate (streams at that rate
// while the batch runs; batch tokens/s meanwhile). A benchmark: it prints, never fails on
// time.
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
const SETTINGS = (args.settings || 'off,auto').split(',');
const RATES = (args.rates || '0.5,2').split(',').map(Number);
const SECONDS = Number(args.seconds || 20);
const ROUNDS = Number(args.rounds || 2);
const PAR = args.parallel || '32';
const THREADS = args.threads || String(os.availableParallelism ? os.availableParallelism() : 2);
const MAXT = Number(args['max-tokens'] || 24);
const BATCH = Number(args.batch || 3000);
if (!MODEL) {
    console.error('usage: node bench/latency.mjs --model M.gguf [--bin build/nightshift]');
    process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* a setting is --interactive-step-ms's value (off, auto, MS), ":kvu" added for --kv-unified */
async function startServer(setting, dir) {
    const [ms, kv] = setting.split(':');
    const srv = spawn(BIN, ['serve', '--model', `m=${MODEL}`, '--data-dir', path.join(dir, 'data'), '--listen', '127.0.0.1:0',
        '--parallel', PAR, '--threads', THREADS, '--interactive-step-ms', ms, ...(kv === 'kvu' ? ['--kv-unified'] : [])],
    { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    const url = await new Promise((resolve, reject) => {
        srv.stderr.on('data', (d) => {
            err += d;
            const m = /listening on (http:\/\/[0-9.:]+)/.exec(err);
            if (m) resolve(m[1]);
        });
        srv.on('exit', () => reject(new Error(err)));
    });
    return { srv, url };
}

/* one streaming chat completion: TTFT and the gaps between its content chunks */
async function stream(url, i) {
    const t0 = performance.now();
    const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', stream: true, max_tokens: MAXT, temperature: 0, ignore_eos: true,
            messages: [{ role: 'user', content: `Question ${i}: what is the capital of country number ${i}?` }] }),
    });
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '', ttft = null, last = null;
    const itl = [];
    for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let k;
        while ((k = buf.indexOf('\n\n')) >= 0) {
            const ev = buf.slice(0, k);
            buf = buf.slice(k + 2);
            if (!/"content":"[^"]/.test(ev)) continue;
            const now = performance.now();
            if (ttft === null) ttft = now - t0;
            else itl.push(now - last);
            last = now;
        }
    }
    return { ttft: ttft ?? performance.now() - t0, itl };
}

/* streams arriving every 1/rate s for `seconds`; all of them awaited */
async function arrivals(url, rate, seconds, base) {
    const runs = [];
    const t0 = performance.now();
    for (let i = 0; performance.now() - t0 < seconds * 1000; i++) {
        runs.push(stream(url, base + i));
        await sleep(1000 / rate);
    }
    const got = await Promise.all(runs);
    return { ttft: got.map((g) => g.ttft), itl: got.flatMap((g) => g.itl) };
}

async function stats(url) {
    return (await fetch(`${url}/v1/nightshift/stats`)).json();
}

/* generated batch tokens per second over `seconds`: the engine's generated tokens less the
 * interactive streams' (each exactly MAXT: ignore_eos); counted as generated, not as lines
 * completed, which a budget spreading tokens round-robin would delay past a short phase */
async function batchRate(url, seconds, during) {
    const tok = async () => {
        const s = await stats(url);
        return ((s.models || [])[0] || {}).engine?.generated_tokens ?? 0;
    };
    const a = await tok(), t0 = performance.now();
    const extra = during ? await during() : null;
    const rest = seconds * 1000 - (performance.now() - t0);
    if (rest > 0) await sleep(rest);
    const b = await tok();
    const interactive = extra ? extra.ttft.length * MAXT : 0;
    return { rate: (b - a - interactive) / ((performance.now() - t0) / 1000), extra };
}

async function submitBatch(url) {
    const lines = [];
    for (let i = 0; i < BATCH; i++)
        lines.push(JSON.stringify({ custom_id: `b${i}`, method: 'POST', url: '/v1/chat/completions',
            body: { model: 'm', max_tokens: 64, ignore_eos: true,
                messages: [{ role: 'user', content: `Batch item ${i}: write a paragraph about topic ${i}.` }] } }));
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([lines.join('\n') + '\n']), 'load.jsonl');
    const file = await (await fetch(`${url}/v1/files`, { method: 'POST', body: form })).json();
    const b = await (await fetch(`${url}/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' }) })).json();
    for (;;) {
        const s = await (await fetch(`${url}/v1/batches/${b.id}`)).json();
        if (s.request_counts.completed > 0) break;
        await sleep(100);
    }
    return b.id;
}

const pct = (xs, p) => {
    if (!xs.length) return NaN;
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const median = (xs) => pct(xs, 50);

const results = {}; // setting -> list of rounds
for (let round = 0; round < ROUNDS; round++) {
    for (const setting of SETTINGS) {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-latency-'));
        const { srv, url } = await startServer(setting, dir);
        await stream(url, -1); // warm-up
        const r = { loaded: {} };
        r.idle = await arrivals(url, Math.min(...RATES), SECONDS / 2, 0);
        const bid = await submitBatch(url);
        r.alone = (await batchRate(url, SECONDS)).rate;
        for (const rate of RATES) {
            const { rate: tps, extra } = await batchRate(url, SECONDS, () => arrivals(url, rate, SECONDS, 10000 * (1 + RATES.indexOf(rate))));
            r.loaded[rate] = { ...extra, batch: tps };
        }
        const st = await stats(url);
        const eng = (st.models || [])[0]?.engine || {};
        r.budget = eng.steps_interactive ? eng.steps_budget_kept / eng.steps_interactive : NaN;
        r.model = [eng.step_ms_base, eng.step_ms_per_token, eng.step_ms_per_sequence, eng.step_ms_per_pass];
        await fetch(`${url}/v1/batches/${bid}/cancel`, { method: 'POST' });
        srv.kill('SIGTERM');
        await new Promise((res) => srv.on('exit', res));
        fs.rmSync(dir, { recursive: true, force: true });
        (results[setting] ||= []).push(r);
    }
}

const f = (x) => (Number.isFinite(x) ? x.toFixed(0) : '-');
console.log(`latency budget: --parallel ${PAR}, --threads ${THREADS}, ${MAXT}-token streams, batch of ${BATCH} x 64 tokens; ` +
    `medians of ${ROUNDS} interleaved rounds, ${SECONDS} s phases`);
for (const setting of SETTINGS) {
    const rs = results[setting];
    const idleT = median(rs.map((r) => pct(r.idle.ttft, 99))), idleI = median(rs.map((r) => pct(r.idle.itl, 99)));
    const alone = median(rs.map((r) => r.alone));
    console.log(`--interactive-step-ms ${setting.replace(':kvu', ' --kv-unified')}: step model a=${median(rs.map((r) => r.model[0] ?? NaN))?.toFixed?.(2)} ms ` +
        `b=${median(rs.map((r) => r.model[1] ?? NaN))?.toFixed?.(3)} ms/token c=${median(rs.map((r) => r.model[2] ?? NaN))?.toFixed?.(3)} ms/sequence ` +
        `d=${median(rs.map((r) => r.model[3] ?? NaN))?.toFixed?.(2)} ms/pass; steps that kept the budget ` +
        `${(100 * median(rs.map((r) => r.budget))).toFixed(0)}%`);
    console.log(`  idle:  TTFT p50 ${f(median(rs.map((r) => pct(r.idle.ttft, 50))))} p99 ${f(idleT)} ms; ` +
        `ITL p50 ${f(median(rs.map((r) => pct(r.idle.itl, 50))))} p99 ${f(idleI)} ms; batch alone ${f(alone)} tok/s`);
    for (const rate of RATES) {
        const t99 = median(rs.map((r) => pct(r.loaded[rate].ttft, 99))), i99 = median(rs.map((r) => pct(r.loaded[rate].itl, 99)));
        const tps = median(rs.map((r) => r.loaded[rate].batch));
        console.log(`  ${rate} req/s under the batch: TTFT p50 ${f(median(rs.map((r) => pct(r.loaded[rate].ttft, 50))))} ` +
            `p99 ${f(t99)} ms (x${(t99 / idleT).toFixed(2)} idle); ITL p50 ${f(median(rs.map((r) => pct(r.loaded[rate].itl, 50))))} ` +
            `p99 ${f(i99)} ms (x${(i99 / idleI).toFixed(2)} idle); batch ${f(tps)} tok/s (${(tps / alone).toFixed(2)} of alone)`);
    }
}
