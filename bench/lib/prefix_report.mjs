// prefix_report.mjs — the markdown report of bench/prefix.sh from its runs.jsonl and NSP_*
// variables.
//   node bench/lib/prefix_report.mjs RUNS.jsonl > report.md
import { readFileSync } from 'node:fs';

const all = readFileSync(process.argv[2], 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
// a run repeated because of foreign CPU load: only its last attempt counts
const key = (r) => `${r.side}/${r.workload}/${r.cache ?? ''}/${r.phase}/${r.pair}/${r.K ?? ''}`;
const lastAttempt = new Map();
for (const r of all) lastAttempt.set(key(r), Math.max(lastAttempt.get(key(r)) ?? 0, r.attempt ?? 0));
for (const r of all) r.used = (r.attempt ?? 0) === lastAttempt.get(key(r));
const runs = all.filter((r) => r.used);
const E = process.env;
const N = +E.NSP_N, NU = +E.NSP_NU, P = +E.NSP_P, GEN = +E.NSP_GEN, S = +E.NSP_SHARED, I = +E.NSP_ITEM;
const PLEN = S + I, K = +E.NSP_BESTK;

const median = (a) => {
  const s = [...a].sort((x, y) => x - y), m = s.length >> 1;
  return s.length ? (s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2) : NaN;
};
const f = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? '–' : Number(x).toFixed(d));
const spread = (a, d = 2) => (a.length ? `${f(median(a), d)} [${f(Math.min(...a), d)}–${f(Math.max(...a), d)}]` : '–');
const mm = (a, d = 2) => (a.length ? `${f(Math.min(...a), d)}–${f(Math.max(...a), d)}` : '–');
const cpu = (r) => r.user_seconds + r.sys_seconds;

// shared pairs
const sp = [...new Set(runs.filter((r) => r.phase === 'pair').map((r) => r.pair))].sort((a, b) => a - b);
const get = (pred) => runs.find(pred);
const srows = sp.map((p) => {
  const ns = get((r) => r.phase === 'pair' && r.pair === p && r.side === 'nightshift');
  const sv = get((r) => r.phase === 'pair' && r.pair === p && r.side === 'server');
  return { p, ns, sv, t: sv.seconds / ns.seconds, t_incl: sv.total_seconds / ns.total_seconds,
           c: ns.engine.prompt_tokens_computed / sv.prompt_n };
});
// unique pairs
const up = [...new Set(runs.filter((r) => r.phase === 'upair').map((r) => r.pair))].sort((a, b) => a - b);
const urows = up.map((p) => {
  const on = get((r) => r.phase === 'upair' && r.pair === p && r.cache === 'on');
  const off = get((r) => r.phase === 'upair' && r.pair === p && r.cache === 'off');
  // Same llama.cpp work on both sides: the same steps, prompt tokens and runs of sequence
  // ids per step (the batches differ at most in which slot a line sits in). Then the time
  // outside llama_decode is the cache's whole cost, and the decode time's difference is the
  // machine's: on a shared VM one process computes the same batches up to ~15% slower than
  // the next (seen on the 2-core EPYC VM with step-by-step traces), far above the target.
  const sameWork = ['steps', 'prompt_tokens_computed', 'sequence_runs_per_step']
    .every((k) => on.engine[k] !== undefined && on.engine[k] === off.engine[k]);
  const hasDec = on.engine.decode_seconds !== undefined && off.engine.decode_seconds !== undefined;
  const own = (r) => r.seconds - r.engine.decode_seconds;
  const o_wall = (on.seconds / off.seconds - 1) * 100;
  const o_own = hasDec ? (own(on) - own(off)) / off.seconds * 100 : NaN;
  return { p, on, off, sameWork, hasDec, o_wall, o_own, o_cpu: (cpu(on) / cpu(off) - 1) * 100,
           o_dec: hasDec ? (on.engine.decode_seconds / off.engine.decode_seconds - 1) * 100 : NaN,
           // the judged overhead: own time when the work is the same, else the wall time
           o: hasDec && sameWork ? o_own : o_wall };
});

const T = srows.map((r) => r.t), C = srows.map((r) => r.c), Ti = srows.map((r) => r.t_incl);
const O = urows.map((r) => r.o), Oc = urows.map((r) => r.o_cpu), Ow = urows.map((r) => r.o_wall);
const Od = urows.filter((r) => r.hasDec).map((r) => r.o_dec);
const oOwn = urows.length > 0 && urows.every((r) => r.hasDec && r.sameWork);
const nsS = srows.map((r) => r.ns), svS = srows.map((r) => r.sv);
const uOn = urows.map((r) => r.on), uOff = urows.map((r) => r.off);
const ge = (x, t) => (x >= t ? `meets the target (≥ ${t})` : `misses the target (≥ ${t})`);
const le = (x, t, u = '') => (x <= t ? `meets the target (≤ ${t}${u})` : `misses the target (≤ ${t}${u})`);
const lt = (x, t, u = '') => (x < t ? `meets the target (< ${t}${u})` : `misses the target (< ${t}${u})`);

const out = [];
const w = (s = '') => out.push(s);
w(`# nightshift prefix-cache benchmark (${E.NSP_MODE}) — ${E.NSP_DATE}`);
w();
w(`Shared workload: ${N} /v1/completions prompts = the same ${S}-token instruction + a unique ${I}-token item, ` +
  `exactly ${GEN} generated tokens each (ignore_eos, temperature 0). Unique workload: ${NU} prompts of ${PLEN} tokens ` +
  `that share not even their first token, ${GEN} generated tokens each. Model ${E.NSP_MODEL}` +
  (E.NSP_UMODEL !== E.NSP_MODEL ? ` (unique workload: ${E.NSP_UMODEL}, see below)` : '') + `; ${E.NSP_THREADS} threads ` +
  `everywhere; nightshift --parallel ${P} --ctx ${E.NSP_CTX}; llama-server at its best -np over the warm-up sweep ` +
  `(chosen: **-np ${K}**, -c ${K}×${E.NSP_SLOT}, cache_prompt on); ${E.NSP_PAIRS} shared pair(s) and ${E.NSP_UPAIRS} ` +
  `unique pair(s) after one warm-up round.`);
w();
w('## Result');
w();
w('| ratio | median over pairs | min–max | target | |');
w('|---|---|---|---|---|');
w(`| (t) llama-server time / nightshift time, shared workload | **${f(median(T))}** | ${mm(T)} | ≥ 2 | ${ge(median(T), 2)} |`);
w(`| (c) prompt tokens computed, nightshift / llama-server, shared workload | **${f(median(C), 3)}** | ${mm(C, 3)} | ≤ 0.3 | ${le(median(C), 0.3)} |`);
w(oOwn
  ? `| (o) prefix-cache overhead, unique workload: (own time with the cache − own time with --no-prefix-cache) / time with --no-prefix-cache, own time = time after load − time in llama_decode, the decode work being the same (below) | **${f(median(O), 2)}%** | ${mm(O, 2)}% | < 3% | ${lt(median(O), 3, '%')} |`
  : `| (o) prefix-cache overhead, unique workload: time(cache on) / time(--no-prefix-cache) − 1 (the decode work differed or was not counted: the own time cannot be told apart) | **${f(median(O), 1)}%** | ${mm(O, 1)}% | < 3% | ${lt(median(O), 3, '%')} |`);
if (oOwn)
  w(`| (o') wall time: time(cache on) / time(--no-prefix-cache) − 1 | ${f(median(Ow), 1)}% | ${mm(Ow, 1)}% | – | |`);
w(`| (o'') as (o') on CPU time (user+sys) of the process | ${f(median(Oc), 1)}% | ${mm(Oc, 1)}% | – | |`);
if (Od.length)
  w(`| (o''') time in llama_decode: cache on / off − 1 (llama.cpp's speed, process to process) | ${f(median(Od), 1)}% | ${mm(Od, 1)}% | – | |`);
w(`| (t') as (t), model load included on both sides | ${f(median(Ti))} | ${mm(Ti)} | – | |`);
w();
// A decode-time difference of one sign in every pair is not shown to be the machine's
// noise, even with the same batches: say so next to (o), which does not count it.
if (oOwn && Od.length >= 3 && (Od.every((x) => x > 0) || Od.every((x) => x < 0)))
  w(`**Caution:** llama_decode took ${Od[0] > 0 ? 'longer' : 'less time'} with the cache on in every pair ` +
    `(${f(median(Od), 1)}% median, ${mm(Od, 1)}%), with the same steps, prompt tokens and runs per step. (o) counts ` +
    'only nightshift\'s own time; a decode-time difference of one sign in every pair is not shown to be noise.\n');
w(`Ratio of medians: (t) ${f(median(svS.map((r) => r.seconds)) / median(nsS.map((r) => r.seconds)))}, ` +
  `(c) ${f(median(nsS.map((r) => r.engine.prompt_tokens_computed)) / median(svS.map((r) => r.prompt_n)), 3)}, ` +
  `(o') ${f((median(uOn.map((r) => r.seconds)) / median(uOff.map((r) => r.seconds)) - 1) * 100, 1)}%.`);
w();
w('## Shared workload (median [min–max] over the pairs)');
w();
w('| side | time (s) | generated tok/s | prompt tokens submitted | prompt tokens computed | computed per request | notes |');
w('|---|---|---|---|---|---|---|');
w(`| nightshift (after load) | ${spread(nsS.map((r) => r.seconds))} | ${f(N * GEN / median(nsS.map((r) => r.seconds)), 1)} | ` +
  `${spread(nsS.map((r) => r.engine.prompt_tokens_submitted), 0)} | ${spread(nsS.map((r) => r.engine.prompt_tokens_computed), 0)} | ` +
  `${f(median(nsS.map((r) => r.engine.prompt_tokens_computed)) / N, 1)} | load ${spread(nsS.map((r) => r.load_seconds))} s; ` +
  `cached ${spread(nsS.map((r) => r.engine.prompt_tokens_cached), 0)}; ${spread(nsS.map((r) => r.engine.steps), 0)} steps, ` +
  `${spread(nsS.map((r) => r.engine.avg_sequences_per_step), 1)} seq/step; CPU ${spread(nsS.map(cpu), 1)} s |`);
w(`| llama-server -np ${K} | ${spread(svS.map((r) => r.seconds))} | ${f(N * GEN / median(svS.map((r) => r.seconds)), 1)} | ` +
  `${spread(svS.map((r) => r.prompt_tokens), 0)} | ${spread(svS.map((r) => r.prompt_n), 0)} | ` +
  `${f(median(svS.map((r) => r.prompt_n)) / N, 1)} | start-to-healthy ${spread(svS.map((r) => r.load_seconds))} s; ` +
  `server CPU ${spread(svS.map((r) => r.cpu_seconds), 1)} s |`);
w();
const idealNs = PLEN + (N - 1) * I, idealSv = Math.min(K, N) * PLEN + Math.max(0, N - K) * I;
const nsComp = median(nsS.map((r) => r.engine.prompt_tokens_computed));
w(`- Prompt tokens computed if the instruction were computed once and every item once: ${PLEN} + ${N - 1}×${I} = ` +
  `**${idealNs}**; nightshift computed ${f(nsComp, 0)} (${nsComp > idealNs ? `${f(nsComp - idealNs, 0)} more, ` +
  `${f((nsComp - idealNs) / S, 2)} instructions' worth` : 'no more than that'}).`);
w(`- llama-server's per-slot cache at best computes the full prompt once per slot and then only the items: ` +
  `${Math.min(K, N)}×${PLEN} + ${Math.max(0, N - K)}×${I} = ${idealSv}; it computed ${f(median(svS.map((r) => r.prompt_n)), 0)}` +
  ` (≈ ${f((median(svS.map((r) => r.prompt_n)) - N * I) / S, 1)} full instructions).`);
const nsLines = runs.filter((r) => r.side === 'nightshift' && r.workload === 'shared');
w(`- nightshift per line (output file usage, every shared run): prompt_tokens from ${Math.min(...nsLines.map((r) => r.line_prompt_min))} ` +
  `to ${Math.max(...nsLines.map((r) => r.line_prompt_max))} (${PLEN} intended); cached_tokens from ${Math.min(...nsLines.map((r) => r.line_cached_min))} ` +
  `to ${Math.max(...nsLines.map((r) => r.line_cached_max))}; lines with ≥ ${S} cached: ` +
  `${nsS.map((r) => r.lines_cached_ge_shared).join(', ')} of ${N} per pair; lines with 0 cached: ${nsS.map((r) => r.lines_cached_zero).join(', ')}.`);
w();
w(`## Unique workload (${NU} prompts of ${PLEN} tokens, model ${E.NSP_UMODEL}, median [min–max] over the pairs)`);
w();
if (E.NSP_UMODEL !== E.NSP_MODEL)
  w(`This workload runs on ${E.NSP_UMODEL}, not on the shared workload's model: ${NU}×${PLEN} prompt tokens on the larger ` +
    'model take far too long on this machine. The cache\'s own costs (trie, slot choice, ordering) do not grow with the ' +
    'model, so against a cheaper model they weigh more: this errs on the side of a higher overhead.\n');
const dec = (r) => r.engine.decode_seconds ?? NaN;
const ownOf = (r) => r.seconds - dec(r);
w('| nightshift | time after load (s) | in llama_decode (s) | own time (s) | CPU user+sys (s) | prompt tokens computed | cached | steps | seq/step | runs/step |');
w('|---|---|---|---|---|---|---|---|---|---|');
for (const [name, a] of [['prefix cache on (default)', uOn], ['--no-prefix-cache', uOff]])
  w(`| ${name} | ${spread(a.map((r) => r.seconds))} | ${spread(a.map(dec))} | ${spread(a.map(ownOf), 3)} | ${spread(a.map(cpu), 1)} | ` +
    `${spread(a.map((r) => r.engine.prompt_tokens_computed), 0)} | ` +
    `${spread(a.map((r) => r.engine.prompt_tokens_cached), 0)} | ${spread(a.map((r) => r.engine.steps), 0)} | ${spread(a.map((r) => r.engine.avg_sequences_per_step), 1)} | ` +
    `${spread(a.map((r) => r.engine.sequence_runs_per_step ?? NaN), 3)} |`);
w();
w('Own time: time after load minus time inside llama_decode (summary.engine.decode_seconds): scheduling, sampling, ' +
  'the prefix cache, checkpoints and the output files. Same decode work in a pair: the same steps, prompt tokens ' +
  'computed and runs of sequence ids per step on both sides.');
w();
w('Per pair: ' + urows.map((r) => `pair ${r.p}: on ${f(r.on.seconds)} s / off ${f(r.off.seconds)} s → ${f(r.o_wall, 1)}% ` +
  `(CPU ${f(cpu(r.on), 1)} / ${f(cpu(r.off), 1)} s → ${f(r.o_cpu, 1)}%; own ${f(ownOf(r.on), 3)} / ${f(ownOf(r.off), 3)} s → ` +
  `${f(r.o_own, 2)}%; same decode work: ${r.sameWork ? 'yes' : 'no'})`).join('; ') + '.');
w();
w('## Every run');
w();
w(`| round | side | seconds | others' CPU share | load avg (1 min) | details |`);
w('|---|---|---|---|---|---|');
for (const r of all) {
  const round = r.phase === 'pair' ? `shared pair ${r.pair}` : r.phase === 'upair' ? `unique pair ${r.pair}`
    : r.phase === 'uwarmup' ? 'warm-up (unique model)' : r.phase;
  let side, det;
  if (r.side === 'nightshift') {
    const e = r.engine;
    side = `nightshift ${r.workload}, cache ${r.cache}${r.model ? `, ${r.model}` : ''}`;
    det = `${r.requests} requests, ${e.steps} steps, ${f(e.avg_sequences_per_step, 1)} seq/step; prompt tokens ${e.prompt_tokens_submitted} ` +
      `submitted (${f(r.prompt_tokens / r.requests, 1)}/request, lines ${r.line_prompt_min}–${r.line_prompt_max}), ` +
      `${e.prompt_tokens_computed} computed, ${e.prompt_tokens_cached} cached; preemptions ${e.preemptions}; CPU ${f(cpu(r), 1)} s; ` +
      `load ${f(r.load_seconds)} s, wall_seconds ${f(r.wall_seconds)}; ${r.n_ctx_seq ?? '?'} cells per sequence`;
  } else {
    side = `server -np ${r.K}`;
    det = `${r.requests} requests, ${f(r.seconds / r.requests, 3)} s/request; usage.prompt_tokens ${r.prompt_tokens} ` +
      `(${f(r.prompt_tokens / r.requests, 1)}/request), Σ timings.prompt_n ${r.prompt_n} (${f(r.prompt_n / r.requests, 1)}/request); ` +
      `CPU ${f(r.cpu_seconds, 1)} s; n_ctx_slot ${r.n_ctx_slot ?? '?'}`;
  }
  if (!r.used) det = `**repeated (others used ${f(r.foreign * 100, 0)}% of the CPU)**; ` + det;
  w(`| ${round} | ${side} | ${f(r.seconds)} | ${f(r.foreign * 100, 0)}% | ${f(r.load1)} | ${det} |`);
}
w();
w('## What is timed');
w();
w('- nightshift: from its "nightshift: model …" line on stderr (printed right after the model is loaded and the context ' +
  'created) to process exit: the engine run, checkpoint writes, writing the output files and teardown — the time ' +
  'bench/core.sh uses. summary.wall_seconds (shown per run) also includes validation and the model load.');
w('- llama-server: from the first request sent to the last answer received by a client holding K requests in flight; the ' +
  'server is started and /health is OK before the clock starts.');
w('- Prompt tokens computed: nightshift summary.engine.prompt_tokens_computed; llama-server Σ timings.prompt_n over the answers.');
w(`- (t') uses the server's spawn-to-healthy time plus its run, against nightshift's whole process.`);
w(E.NSP_UMODEL !== E.NSP_MODEL
  ? '- The unique workload\'s model gets one warm-up run of its own (a subset of its requests) before its pairs.'
  : '- The unique workload has no warm-up of its own: it runs after the shared rounds on the same model and binary.');
w();
w('## Setup');
w();
w(`- machine: ${E.NSP_CPU}, ${E.NSP_NPROC} CPUs, ${E.NSP_MEM}; flags: ${E.NSP_FLAGS || '(none of avx2/avx512/amx)'}`);
w(`- load average: ${E.NSP_LOAD} (the machine is shared: compare ratios from the same run only). "Others' CPU share" ` +
  `is the machine's busy CPU time during a run minus the measured processes' own, over nproc × wall; a measured run ` +
  `above ${f(+E.NSP_MAX_FOREIGN * 100, 0)}% is repeated up to ${E.NSP_RETRIES} time(s) and only the last attempt counts. ` +
  `Measured runs' shares: ${spread([...nsS, ...svS, ...uOn, ...uOff].map((r) => r.foreign * 100), 0)}%.`);
w(`- nightshift ${E.NSP_NS_VERSION.replace(/^nightshift /, '')}, git ${E.NSP_GIT}; llama.cpp ${E.NSP_LLAMA}; node ${E.NSP_NODE}`);
w(`- KV context: nightshift --ctx ${E.NSP_CTX} (${E.NSP_SLOT} cells per sequence, split KV, nightshift's default); ` +
  `llama-server -c K×${E.NSP_SLOT} without --kv-unified (its default with an explicit -np; slot size as it reported: ` +
  `${[...new Set(runs.filter((r) => r.side === 'server').map((r) => `-np ${r.K}: ${r.n_ctx_slot ?? '?'}`))].join(', ')}). ` +
  'f16 KV, flash attention auto, -b 2048 -ub 512 everywhere; llama-server otherwise at its defaults (--cache-ram 8192 MiB).');
w(`- warm-up sweep: ${E.NSP_SWEEP_N} requests per -np; duration: ${E.NSP_DURATION} s in all (shared part ` +
  `${E.NSP_DURATION_SHARED} s, unique part ${E.NSP_DURATION_UNIQUE} s)`);
w('- commands:');
w('  ```');
w(`  ${E.NSP_CMD_BENCH}`);
w(`  ${E.NSP_CMD_PROMPTS}`);
w(`  ${E.NSP_CMD_NS}`);
w(`  ${E.NSP_CMD_SRV}`);
w(`  ${E.NSP_CMD_CLIENT}`);
w('  ```');
console.log(out.join('\n'));
