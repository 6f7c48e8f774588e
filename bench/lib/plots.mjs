// plots.mjs — the PNG plots of a benchmark report, drawn with gnuplot from the report's own
// tables, so a committed report can be re-plotted at any time:
//
//   node bench/lib/plots.mjs REPORT.md OUTDIR [--prefix NAME]
//
// Reads the markdown bench/run assembles (the sections of bench/core.sh, bench/prefix.sh,
// bench/ttft.mjs, bench/forward.mjs, bench/ingest.mjs and bench/json_ingest.c), writes the
// numbers it plots as whitespace-separated .dat files and the gnuplot script beside them
// (OUTDIR/NAME-*.dat, NAME-plots.gp; NAME defaults to "plot"), runs gnuplot (pngcairo, or
// png when cairo is missing) and prints a markdown "## Plots" section with relative image
// links to stdout. A plot whose data the report lacks is skipped (and said so).
//   core-N-throughput.png  generated tok/s vs parallelism: nightshift --parallel K and
//                          llama-server -np K (warm-up sweep), batched-bench at P; one per
//                          core section (model, uniform or heavy-tailed)
//   prefix.png             shared-prefix workload: time and prompt tokens computed,
//                          nightshift vs llama-server
//   ttft.png               TTFT distribution (CDF) idle vs under batch load when the report
//                          has the samples, else p50/p99 bars
//   forward.png            p50/p99 latency direct to the upstream, through a bare relay, through nightshift
//   ingest.png             MB/s: nightshift run --validate-only, cat, the JSON libraries
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const [reportPath, outDir] = process.argv.slice(2);
const pi = process.argv.indexOf('--prefix');
const NAME = pi > 0 ? process.argv[pi + 1] : 'plot';
if (!reportPath || !outDir) {
  console.error('usage: node bench/lib/plots.mjs REPORT.md OUTDIR [--prefix NAME]');
  process.exit(2);
}
const text = fs.readFileSync(reportPath, 'utf8');
const lines = text.split('\n');
fs.mkdirSync(outDir, { recursive: true });

const num = (s) => parseFloat(String(s).replace(/[^0-9.eE+-].*$/, ''));
const cells = (l) => l.split('|').slice(1, -1).map((c) => c.trim());
const notes = [];
const plots = [];   // { file, title, what }
const gp = [];      // gnuplot commands
const dat = (suffix, rows) => {
  const f = `${NAME}-${suffix}.dat`;
  fs.writeFileSync(path.join(outDir, f), rows.map((r, i) => (i ? '' : '# ') + r.join('\t')).join('\n') + '\n');
  return f;
};
const q = (s) => `'${String(s).replace(/'/g, "''")}'`;   // a gnuplot string

// blocks: from a heading line to the next level-1 heading
function blocks(re) {
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    if (!re.test(lines[i])) continue;
    let j = i + 1;
    while (j < lines.length && !/^# /.test(lines[j])) j++;
    out.push(lines.slice(i, j));
  }
  return out;
}

// ---- core: throughput vs parallelism --------------------------------------------------------
blocks(/^# nightshift core benchmark/).forEach((b, idx) => {
  const head = b.join('\n');
  const heavy = /Workload \(heavy-tailed\)/.test(head);
  const model = (/model (qwen2-[^ ]+\.gguf \([^)]*\))/i.exec(head) || [])[1] || '?';
  const N = num((/Workload[^:]*: (\d+) unique/.exec(head) || [])[1]);
  const GEN = num((/exactly (\d+) generated tokens each/.exec(head) || [])[1]);
  const P = num((/nightshift --parallel (\d+)/.exec(head) || [])[1]);
  const rows = new Map();   // K -> { ns, srv }
  const disturbed = [];     // sweep runs kept although other processes used > 10% of the CPU
  let bb = null;
  const ti = b.findIndex((l) => /^\| parallelism K \|/.test(l));
  if (ti >= 0) {
    const wide = cells(b[ti]).length >= 5;   // with the others' CPU share of each run
    for (let i = ti + 2; i < b.length && b[i].startsWith('|'); i++) {
      const c = cells(b[i]);
      const [ns, srv] = wide ? [c[1], c[3]] : [c[1], c[2]];
      rows.set(num(c[0]), { ns: ns === '–' ? NaN : num(ns), srv: srv === '–' ? NaN : num(srv) });
      if (wide && num(c[2]) > 10) disturbed.push(`nightshift --parallel ${c[0]} ran while other processes used ${c[2]} of the CPU`);
      if (wide && num(c[4]) > 10) disturbed.push(`llama-server -np ${c[0]} ran while other processes used ${c[4]} of the CPU`);
    }
  } else if (N && GEN) {
    // an older report: llama-server's sweep from "Every run" (last attempt of each -np)
    for (const l of b) {
      const c = l.startsWith('| sweep |') ? cells(l) : null;
      if (!c || /repeated/.test(c[5] || '')) continue;
      const m = /server -np (\d+)/.exec(c[1]);
      const reqs = num((/(\d+) requests/.exec(c[5]) || [])[1]) || N;
      if (m) rows.set(+m[1], { ns: NaN, srv: (reqs * GEN) / num(c[2]) });
      if (m && num(c[3]) > 10) disturbed.push(`llama-server -np ${m[1]} ran while other processes used ${c[3]} of the CPU`);
    }
    // nightshift at P from the measured pairs (median of the "Times" table)
    const t = b.find((l) => l.startsWith('| nightshift (after load) |'));
    if (t && P) rows.set(P, { ...(rows.get(P) || { srv: NaN }), ns: num(cells(t)[2]) });
  }
  const tb = b.find((l) => l.startsWith('| batched-bench ×'));
  if (tb && P) bb = [P, num(cells(tb)[2])];
  if (!rows.size) { notes.push(`core section ${idx + 1}: no throughput data`); return; }
  const Ks = [...rows.keys()].sort((a, x) => a - x);
  const f = dat(`core-${idx + 1}-throughput`, [['K', 'nightshift_tok_s', 'llama_server_tok_s'],
    ...Ks.map((k) => [k, Number.isNaN(rows.get(k).ns) ? 'NaN' : rows.get(k).ns, Number.isNaN(rows.get(k).srv) ? 'NaN' : rows.get(k).srv])]);
  const png = `${NAME}-core-${idx + 1}-throughput.png`;
  const title = `${heavy ? 'heavy-tailed lengths' : 'unique prompts'}: ${model}`;
  const bbf = bb ? dat(`core-${idx + 1}-batched`, [['P', 'tok_s'], bb]) : null;
  gp.push(`set output ${q(png)}`,
    `set title ${q(`Generated tokens/s vs parallelism — ${title}`)}`,
    'set xlabel "parallelism (nightshift --parallel K, llama-server -np K)"', 'set ylabel "generated tokens/s"',
    'set logscale x 2', `set xrange [${Ks[0] / 1.5}:${Ks[Ks.length - 1] * 1.5}]`, 'set yrange [0:*]', 'set key top left',
    'set style data linespoints', 'unset style fill',
    `plot ${q(f)} using 1:2 title "nightshift" lw 2 pt 7 ps 1.2, ` +
    `'' using 1:3 title "llama-server" lw 2 pt 5 ps 1.2` +
    (bbf ? `, ${q(bbf)} using 1:2 with points pt 9 ps 1.8 title "llama-batched-bench (ceiling)"` : ''),
    'unset logscale x', 'unset xrange', 'set xrange [*:*]');
  plots.push({ file: png, what: `Generated tokens/s vs parallelism, ${title}` +
    (ti >= 0 ? ' (warm-up sweep, one run per point).' : ' (llama-server: warm-up sweep; nightshift and batched-bench: the measured pairs at P).') +
    (disturbed.length ? ` Caution: ${disturbed.join('; ')}.` : '') });
});

// ---- prefix: time and prompt tokens computed -------------------------------------------------
{
  const b = blocks(/^# nightshift prefix-cache benchmark/)[0];
  const ns = b && b.find((l) => l.startsWith('| nightshift (after load) |'));
  const sv = b && b.find((l) => /^\| llama-server -np \d+ \|/.test(l));
  if (ns && sv) {
    const a = cells(ns), c = cells(sv);
    const f = dat('prefix', [['side', 'seconds', 'prompt_tokens_computed', 'prompt_tokens_submitted'],
      ['nightshift', num(a[1]), num(a[4]), num(a[3])], [`"${c[0]}"`, num(c[1]), num(c[4]), num(c[3])]]);
    const png = `${NAME}-prefix.png`;
    const shared = (/the same (\d+)-token instruction/.exec(b.join('\n')) || [])[1] || '?';
    gp.push(`set output ${q(png)}`, 'unset title', 'unset logscale', 'set xrange [*:*]',
      'set style data histograms', 'set style histogram clustered gap 1', 'set style fill solid 0.8 border -1',
      'set boxwidth 0.8', 'set yrange [0:*]', 'set key off', 'unset xlabel',
      'set multiplot layout 1,2 title ' + q(`Shared ${shared}-token instruction + short items (same requests, same model)`),
      'set title "wall time (s), lower is better"', 'set ylabel "seconds"',
      `plot ${q(f)} using 2:xtic(1) lc rgb "#1f77b4"`,
      'set title "prompt tokens computed, lower is better"', 'set ylabel "tokens"',
      `plot ${q(f)} using 3:xtic(1) lc rgb "#ff7f0e"`, 'unset multiplot');
    plots.push({ file: png, what: 'Shared-prefix workload: wall time and prompt tokens computed, nightshift vs llama-server.' });
  } else notes.push('prefix: no shared-workload table');
}

// ---- ttft: CDF (samples) or p50/p99 bars -----------------------------------------------------
{
  const idleS = /idle samples \(ms\): ([0-9. ]+)/.exec(text), loadS = /loaded samples \(ms\): ([0-9. ]+)/.exec(text);
  const idle = /idle:\s+p50 (\d+) ms\s+p99 (\d+) ms/.exec(text), load = /loaded:\s+p50 (\d+) ms\s+p99 (\d+) ms/.exec(text);
  const png = `${NAME}-ttft.png`;
  if (idleS && loadS) {
    const cdf = (s) => {
      const v = s.trim().split(/\s+/).map(Number).sort((a, b) => a - b);
      return [[v[0], 0], ...v.map((x, i) => [x, (i + 1) / v.length])];
    };
    const fi = dat('ttft-idle', [['ms', 'fraction'], ...cdf(idleS[1])]);
    const fl = dat('ttft-loaded', [['ms', 'fraction'], ...cdf(loadS[1])]);
    gp.push(`set output ${q(png)}`, 'unset multiplot', 'set style data steps', 'unset style fill',
      'set title "Time to first token of real-time requests: idle vs while a batch runs"', 'set xlabel "TTFT (ms, log scale)"',
      'set ylabel "fraction of requests"', 'set logscale x', 'set xrange [*:*]', 'set yrange [0:1.02]', 'set key bottom right',
      `plot ${q(fi)} using 1:2 with steps lw 2 title "idle", ${q(fl)} using 1:2 with steps lw 2 title "under batch load"`,
      'unset logscale x');
    plots.push({ file: png, what: 'TTFT distribution (CDF) of streaming chat completions, idle vs under batch load.' });
  } else if (idle && load) {
    const f = dat('ttft', [['state', 'p50_ms', 'p99_ms'], ['idle', idle[1], idle[2]], ['"under batch load"', load[1], load[2]]]);
    gp.push(`set output ${q(png)}`, 'unset multiplot', 'unset logscale',
      'set style data histograms', 'set style histogram clustered gap 1', 'set style fill solid 0.8 border -1',
      'set title "Time to first token of real-time requests: idle vs while a batch runs"', 'unset xlabel', 'set ylabel "ms"',
      'set xrange [*:*]', 'set yrange [0:*]', 'set key top left',
      `plot ${q(f)} using 2:xtic(1) title "p50", '' using 3 title "p99"`);
    plots.push({ file: png, what: 'TTFT p50/p99 idle vs under batch load (this report has no per-request samples; newer runs plot the CDF).' });
  } else notes.push('ttft: no TTFT lines');
}

// ---- forward: latency added ------------------------------------------------------------------
{
  const d = lines.find((l) => l.startsWith('| direct to upstream')), n = lines.find((l) => l.startsWith('| real-time through nightshift'));
  if (d && n) {
    const a = cells(d), c = cells(n);
    const rows = [['path', 'p50_ms', 'p99_ms'], ['"direct,\\nsaturated"', num(a[3]), num(a[4])]];
    // the bare C relay anchor (newer runs): what any forwarder adds on this machine
    const r = lines.find((l) => l.startsWith('| through the bare C relay (anchor)'));
    if (r) rows.push(['"bare relay,\\nsaturated"', num(cells(r)[3]), num(cells(r)[4])]);
    rows.push(['"nightshift,\\nsaturated"', num(c[3]), num(c[4])]);
    // the fixed-schedule phase (newer runs): latency where neither side is saturated
    const rd = lines.find((l) => l.startsWith('| direct, ')), rn = lines.find((l) => l.startsWith('| through nightshift, '));
    if (rd && rn) {
      rows.push(['"direct,\\nfixed rate"', num(cells(rd)[3]), num(cells(rd)[4])]);
      const rr = lines.find((l) => l.startsWith('| through the bare C relay, '));
      if (rr) rows.push(['"bare relay,\\nfixed rate"', num(cells(rr)[3]), num(cells(rr)[4])]);
      rows.push(['"nightshift,\\nfixed rate"', num(cells(rn)[3]), num(cells(rn)[4])]);
    }
    const f = dat('forward', rows);
    const png = `${NAME}-forward.png`;
    gp.push(`set output ${q(png)}`, 'unset multiplot', 'unset logscale',
      'set style data histograms', 'set style histogram clustered gap 1', 'set style fill solid 0.8 border -1',
      'set title "Upstream forwarding: request latency, saturated and at a fixed rate (same machine, instant upstream)"', 'unset xlabel',
      'set ylabel "ms"', 'set xrange [*:*]', 'set yrange [0:*]', 'set key top left',
      `plot ${q(f)} using 2:xtic(1) title "p50", '' using 3 title "p99"`);
    plots.push({ file: png, what: 'Forwarding to an upstream: p50/p99 latency direct, through a bare C relay, and through nightshift.' });
  } else notes.push('forward: no latency table');
}

// ---- ingest: MB/s ---------------------------------------------------------------------------
{
  const rows = [];
  const v = lines.find((l) => l.startsWith('| nightshift run --validate-only'));
  const c = lines.find((l) => l.startsWith('| cat FILE'));
  if (v) rows.push(['"nightshift run\\n--validate-only"', num(cells(v)[2])]);
  for (const l of lines) {
    const m = /^(cJSON|jansson|json-c|memchr \(floor\))\s+\S+\s+[0-9.]+\s+([0-9.]+)\s+\d+/.exec(l);
    if (m) rows.push([m[1].startsWith('memchr') ? '"memchr\\n(split only)"' : `"${m[1]}\\n(parse only)"`, +m[2]]);
  }
  if (c) rows.push(['"cat (read only)"', num(cells(c)[2])]);
  if (rows.length) {
    const f = dat('ingest', [['what', 'MB_per_s'], ...rows]);
    const png = `${NAME}-ingest.png`;
    gp.push(`set output ${q(png)}`, 'unset multiplot', 'set style data histograms',
      'set style histogram clustered gap 1', 'set style fill solid 0.8 border -1', 'set logscale y', 'set yrange [1:*]',
      'set xrange [*:*]', 'set title "Batch-file ingest throughput (MB/s, log scale)"', 'unset xlabel', 'set ylabel "MB/s"', 'set key off',
      `plot ${q(f)} using 2:xtic(1) lc rgb "#2ca02c"`, 'unset logscale y');
    const mb = (/^# ingest: ([0-9.]+ MB) batch file/m.exec(text) || [])[1] || 'a';
    plots.push({ file: png, what: v ? `Ingest: a ${mb} batch file through nightshift run --validate-only, against reading it (cat) and the JSON parsers alone (in memory).`
      : 'Ingest: the JSON parsers on an in-memory batch file (bench/json_ingest.c).' });
  } else notes.push('ingest: no numbers');
}

// ---- gnuplot ------------------------------------------------------------------------------------
const term = /pngcairo/.test(spawnSync('gnuplot', ['-e', 'set terminal'], { encoding: 'utf8' }).stdout +
  spawnSync('gnuplot', ['-e', 'set terminal'], { encoding: 'utf8' }).stderr)
  ? 'set terminal pngcairo size 900,520 noenhanced font "sans,10"' : 'set terminal png size 900,520 noenhanced';
const script = [term, 'set grid ytics', 'set bmargin 4', 'set datafile missing "NaN"', 'set offsets 0, 0, graph 0.08, 0', ...gp, 'unset output'].join('\n') + '\n';
const gpFile = path.join(outDir, `${NAME}-plots.gp`);
fs.writeFileSync(gpFile, script);
const r = spawnSync('gnuplot', [path.basename(gpFile)], { cwd: outDir, encoding: 'utf8' });   // relative names
if (r.error || r.status !== 0) {
  console.error(`gnuplot failed: ${r.error ? r.error.message : r.stderr}`);
  process.exit(1);
}
const md = ['## Plots', '', `Drawn by \`node bench/lib/plots.mjs\` with gnuplot from this report's tables (data: \`${NAME}-*.dat\`, script: \`${NAME}-plots.gp\`).`, ''];
for (const p of plots) md.push(`![${p.what.replace(/ \(.*$|[.:].*$/, '')}](${p.file})`, '', `*${p.what}*`, '');
if (notes.length) md.push(`Not plotted: ${notes.join('; ')}.`, '');
console.log(md.join('\n'));
