// bench/ingest.mjs — a 200 MB batch file through `nightshift run --validate-only`: the ingest
// and validation phase alone (read, split, parse and check every line; the model is not
// loaded, only its name read from the GGUF header), in MB/s and lines/s.
//
//   node bench/ingest.mjs --bin build/nightshift --model M.gguf [--mb 200] [--lines 50000]
//                         [--runs 3] [--out REPORT.md]
//
// The file: --lines OpenAI Batch lines (POST /v1/chat/completions, a system and a user message
// of pseudo-English text, max_tokens, temperature) whose lengths vary ±50% around an average
// chosen so that the file is just under --mb × 10^6 bytes. The defaults are OpenAI's own
// limits for one batch file (200 MB, 50,000 requests), which are nightshift run's defaults
// too (--max-bytes 200MB, --max-lines 50000). Seeded: the same arguments give the same file.
//
// Protocol: one untimed warm-up run (the file is then in the page cache, as it is right
// after an upload), then --runs timed runs; median and min–max of summary.wall_seconds
// (process start to the end of validation) and of the process's wall time. Anchor: `cat`
// of the same file to /dev/null (reading it, nothing more). A benchmark: it prints numbers,
// it never fails on time; exit status 1 only if nightshift errs or a line is invalid.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mulberry32 } from './lib/rand.mjs';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => {
  if (v.startsWith('--')) a.push([v.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : 'true']);
  return a;
}, []));
const BIN = args.bin || 'build/nightshift';
const MODEL = args.model;
const MB = Number(args.mb || 200);
const LINES = Number(args.lines || 50000);
const RUNS = Number(args.runs || 3);
if (!MODEL || !(MB > 0) || !(LINES > 0) || !(RUNS > 0)) {
  console.error('usage: node bench/ingest.mjs --model M.gguf [--bin build/nightshift] [--mb 200] [--lines 50000] [--runs 3] [--out F]');
  process.exit(2);
}

const WORDS = ('the of and to in is was for on that with as by at from his her an be this are which or had not ' +
  'but all were one their there has been have more when who will would can time into year people way day man ' +
  'thing woman life child world school state family student group country problem hand part place case week ' +
  'company system program question work government number night point home water room mother area money story')
  .split(' ');

// ---- the file ------------------------------------------------------------------------------
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-ingest-'));
const file = path.join(dir, 'batch.jsonl');
const target = Math.floor(MB * 1e6) - 1024;   // just under the limit
const rnd = mulberry32(20261123);
const text = (n) => { let s = ''; while (s.length < n) s += WORDS[Math.floor(rnd() * WORDS.length)] + ' '; return s.slice(0, n); };
const lineOf = (i, contentLen) => JSON.stringify({
  custom_id: `req-${i}`, method: 'POST', url: '/v1/chat/completions',
  body: { model: 'bench', max_tokens: 1 + (i % 512), temperature: 0.7,
    messages: [{ role: 'system', content: 'You are a helpful assistant. Answer briefly.' },
      { role: 'user', content: contentLen > 0 ? text(contentLen) : 'hi' }] },
}) + '\n';
const overhead = Buffer.byteLength(lineOf(LINES, 0)) - 2;   // a line without its content
const avgContent = Math.max(1, Math.floor(target / LINES) - overhead);
const t0 = performance.now();
const fd = fs.openSync(file, 'w');
let bytes = 0, chunk = [];
for (let i = 0; i < LINES; i++) {
  const remaining = LINES - i;
  let len = Math.max(1, Math.round(avgContent * (0.5 + rnd())));
  // keep the total on target: the last lines absorb the difference
  const budget = target - bytes - (remaining - 1) * (overhead + 1);
  len = Math.max(1, Math.min(len, budget - overhead));
  const l = lineOf(i, len);
  bytes += Buffer.byteLength(l);
  chunk.push(l);
  if (chunk.length === 1000) { fs.writeSync(fd, chunk.join('')); chunk = []; }
}
fs.writeSync(fd, chunk.join(''));
fs.closeSync(fd);
const genSeconds = (performance.now() - t0) / 1000;
const size = fs.statSync(file).size;

// ---- the runs ------------------------------------------------------------------------------
const median = (a) => { const s = [...a].sort((x, y) => x - y), m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
function runNs() {
  const summary = path.join(dir, 'summary.json');
  fs.rmSync(summary, { force: true });
  const t = performance.now();
  const r = spawnSync(BIN, ['run', file, '--validate-only', '--model', MODEL, '--model-alias', 'bench',
    '--summary', summary], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const wall = (performance.now() - t) / 1000;
  if (r.status !== 0) {
    console.error(`nightshift run --validate-only failed (exit ${r.status}):\n${r.stderr}\n${r.stdout}`);
    process.exit(1);
  }
  const s = JSON.parse(fs.readFileSync(summary, 'utf8'));
  if (s.status !== 'validated' || s.request_counts.total !== LINES || s.request_counts.failed !== 0) {
    console.error(`unexpected summary: ${JSON.stringify(s).slice(0, 500)}`);
    process.exit(1);
  }
  return { wall, summary: s.wall_seconds };
}
function runCat() {
  const t = performance.now();
  const r = spawnSync('cat', [file], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) process.exit(1);
  return (performance.now() - t) / 1000;
}
runNs(); // warm-up: the file in the page cache, the binary and the model header read once
const ns = [], cat = [];
for (let i = 0; i < RUNS; i++) { ns.push(runNs()); cat.push(runCat()); }
fs.rmSync(dir, { recursive: true, force: true });

const f = (x, d = 2) => x.toFixed(d);
const mbs = (s) => size / 1e6 / s;
const sw = ns.map((r) => r.summary), pw = ns.map((r) => r.wall);
const out = [];
out.push(`# ingest: ${f(size / 1e6, 1)} MB batch file through \`nightshift run --validate-only\``);
out.push('');
out.push(`File: ${LINES} lines (POST /v1/chat/completions, system + user message, ${f(size / LINES, 0)} bytes per line on average, ` +
  `±50%), generated in ${f(genSeconds, 1)} s. ${RUNS} timed run(s) after one warm-up (file in the page cache). ` +
  `MB = 10^6 bytes.`);
out.push('');
out.push('| side | seconds, median [min–max] | MB/s | lines/s |');
out.push('|---|---|---:|---:|');
out.push(`| nightshift run --validate-only (summary.wall_seconds: process start to validated) | ${f(median(sw), 3)} [${f(Math.min(...sw), 3)}–${f(Math.max(...sw), 3)}] | ${f(mbs(median(sw)), 1)} | ${f(LINES / median(sw), 0)} |`);
out.push(`| the same, whole process (exit included) | ${f(median(pw), 3)} [${f(Math.min(...pw), 3)}–${f(Math.max(...pw), 3)}] | ${f(mbs(median(pw)), 1)} | ${f(LINES / median(pw), 0)} |`);
out.push(`| cat FILE > /dev/null (reading only: the floor) | ${f(median(cat), 3)} [${f(Math.min(...cat), 3)}–${f(Math.max(...cat), 3)}] | ${f(mbs(median(cat)), 1)} | ${f(LINES / median(cat), 0)} |`);
out.push('');
out.push(`Command: \`${path.relative(process.cwd(), BIN) || BIN} run FILE --validate-only --model ${path.basename(MODEL)} --model-alias bench --summary S.json\``);
const md = out.join('\n');
if (args.out) fs.writeFileSync(args.out, md + '\n');
console.log(md);
