#!/usr/bin/env bash
# bench/prefix.sh — nightshift's prefix cache against llama-server's per-slot prompt cache.
#
# Workload "shared" (the issue's): N requests (default 256) = the same instruction of about
# SHARED tokens (1500) + a unique item of ITEM tokens (48), exactly GEN (32) generated
# tokens each (ignore_eos, temperature 0), as /v1/completions prompts (a string) on both
# sides so both tokenize the same text the same way; one generated model (default: the
# ~0.5B Qwen2-like shape, Q8_0, random weights, real Qwen2 tokenizer).
#
# Two ratios (targets from the issue), per pair and then the median over the pairs:
#   (t) llama-server wall time at its best -np K over 8/16/32, cache_prompt on, driven by a
#       client keeping K requests in flight  /  nightshift's time                    (>= 2)
#   (c) prompt tokens nightshift computed (summary.engine.prompt_tokens_computed)  /
#       prompt tokens llama-server computed (sum of timings.prompt_n)                 (<= 0.3)
#
# Workload "unique" (no shared prefix): NU requests (default N) of SHARED+ITEM tokens
# each that share not even their first token; nightshift with the prefix cache (default)
# against nightshift --no-prefix-cache, in interleaved pairs:
#   (o) overhead = (own time on - own time off) / time off                             (< 3%)
#       own time = time after load - time inside llama_decode (summary.engine.decode_seconds),
#       used when both runs did the same decode work (same steps, prompt tokens computed and
#       runs of sequence ids per step), else the wall-time ratio below stands in for it
#   (o') time(cache on) / time(cache off) - 1, and (o'') the same on CPU time (user+sys)
# Why not the wall time alone: on the 2-core VM this was measured on, one process computes
# the very same batches up to ~15% slower or faster than the next (step-by-step traces of
# identical batches: every prompt step 12% apart from the first step on, before the cache
# could matter), in either direction, so 3 pairs of wall times cannot resolve 3%.
# Its model is the "small" (~60M) shape in both modes: 256 x 1548 prompt tokens on the
# 0.5B shape take over an hour per run on 2 cores. A model 10x cheaper per token makes
# any fixed cost of the cache (trie, slot choice, ordering) weigh 10x more against the
# compute, so this errs on the side of a higher overhead. NS_BENCH_UNIQUE_SHAPE=0.5b
# runs it on the shared workload's model instead (then lower NS_BENCH_UNIQUE_N).
#
# What "nightshift's time" is (as in bench/core.sh): from the "nightshift: model ..." line
# on stderr (model loaded, context created) to process exit: engine run, checkpoint,
# export, teardown. llama-server's: first request sent to last answer received, the
# server started and healthy before the clock starts. Neither includes the model load.
#
# Protocol (docs: /work/shared/docs/benchmarking.md): same GGUF, same -t (nproc), same
# -b 2048 / -ub 512, f16 KV, greedy, fixed generated length on every side. One warm-up
# round (nightshift once on the shared workload; llama-server once per K on SWEEP_N
# requests, the K with the shortest time per request is used in the measured pairs),
# then PAIRS interleaved shared pairs whose order alternates (nightshift, server / server,
# nightshift), then UPAIRS unique pairs alternating (cache on, off / off, on).
#
# Context: nightshift --ctx P*SLOT, llama-server -c K*SLOT without --kv-unified (its
# default with an explicit -np): each sequence/slot gets SLOT cells >= prompt + GEN + pad
# (1664 for 1500+48+32; llama.cpp may round a slot up, the report shows what it used).
# llama-server's other defaults stay (cache_prompt on, --cache-ram 8192 MiB host cache,
# slot chosen by prompt similarity).
#
# Usage: bench/prefix.sh [--quick] [--pairs N] [--unique-pairs N] [--help]
#   --quick   64 requests, the "small" (~60M) shape, a 600-token instruction, 1 pair of
#             each workload: a few minutes end to end
# Full (default): shared 256 requests on the 0.5B shape, 3 pairs; unique 256 requests on
# the small shape, 5 pairs.
# Environment overrides: NS_BENCH_P (32), NS_BENCH_N, NS_BENCH_SHAPE, NS_BENCH_TYPE (q8_0),
#   NS_BENCH_SHARED (instruction tokens), NS_BENCH_ITEM (48), NS_BENCH_GEN (32),
#   NS_BENCH_UNIQUE_N (requests of the unique workload), NS_BENCH_UNIQUE_SHAPE (small),
#   NS_BENCH_PAIRS,
#   NS_BENCH_UNIQUE_PAIRS, NS_BENCH_SERVER_NP ("8 16 32"), NS_BENCH_SWEEP_N (requests per
#   K in the sweep; default N), NS_BENCH_THREADS (nproc), NS_BENCH_SERVER_ARGS (extra
#   llama-server flags), NS_BENCH_RESULTS (bench/results), NS_BENCH_MAX_FOREIGN (0.10),
#   NS_BENCH_RETRIES (1): a measured run during which other processes used more than that
#   share of the machine's CPU is repeated, up to RETRIES times (every attempt is listed;
#   the last one counts). KEEP_WORK=1 keeps the work dir.
# It prints numbers; it never fails on time. Exit status 1 only if a side errs or a run
# produces the wrong token counts.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB="$ROOT/bench/lib"

QUICK=0
PAIRS_ARG=""
UPAIRS_ARG=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --pairs) PAIRS_ARG="${2:?--pairs needs a number}"; shift ;;
    --unique-pairs) UPAIRS_ARG="${2:?--unique-pairs needs a number}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "prefix.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    D_N=64; D_SHAPE=small; D_SHARED=600; D_PAIRS=1; D_UPAIRS=1
else
    D_N=256; D_SHAPE=0.5b; D_SHARED=1500; D_PAIRS=3; D_UPAIRS=5
fi
PAR=${NS_BENCH_P:-32}
N=${NS_BENCH_N:-$D_N}
SHAPE=${NS_BENCH_SHAPE:-$D_SHAPE}
MTYPE=${NS_BENCH_TYPE:-q8_0}
SHARED=${NS_BENCH_SHARED:-$D_SHARED}
ITEM=${NS_BENCH_ITEM:-48}
GEN=${NS_BENCH_GEN:-32}
NU=${NS_BENCH_UNIQUE_N:-$N}
USHAPE=${NS_BENCH_UNIQUE_SHAPE:-small}
PAIRS=${PAIRS_ARG:-${NS_BENCH_PAIRS:-$D_PAIRS}}
UPAIRS=${UPAIRS_ARG:-${NS_BENCH_UNIQUE_PAIRS:-$D_UPAIRS}}
SERVER_NP=${NS_BENCH_SERVER_NP:-"8 16 32"}
SWEEP_N=${NS_BENCH_SWEEP_N:-$N}
THREADS=${NS_BENCH_THREADS:-$(nproc)}
SERVER_ARGS=${NS_BENCH_SERVER_ARGS:-}
RESULTS=${NS_BENCH_RESULTS:-$ROOT/bench/results}
PLEN=$((SHARED + ITEM))
# KV cells per sequence: prompt + generated + 32, rounded up to 128 (1664 for 1500+48+32)
SLOT=$(( (PLEN + GEN + 32 + 127) / 128 * 128 ))
CTX=$((PAR * SLOT))

BENCH_NAME=prefix
# shellcheck source=bench/lib/common.sh
. "$LIB/common.sh"

for v in PAR N NU PAIRS UPAIRS SWEEP_N THREADS GEN SHARED ITEM; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[ "$SWEEP_N" -le "$N" ] || SWEEP_N=$N

# ---- 1. llama.cpp anchors, nightshift, models (bench/lib/common.sh) -------------------
bench_tools
"$NS" run --help 2>&1 | grep -q -- '--no-prefix-cache' || die "this nightshift has no --no-prefix-cache (no prefix cache?)"
MODEL=$(bench_model "$SHAPE" "$MTYPE")
UMODEL=$(bench_model "$USHAPE" "$MTYPE")
MODEL_MIB=$(( $(stat -c %s "$MODEL") / 1048576 ))
UMODEL_MIB=$(( $(stat -c %s "$UMODEL") / 1048576 ))

# ---- 2. the requests -------------------------------------------------------------------
gen() { node "$LIB/prefix_prompts.mjs" --shared-tokens "$SHARED" --item-tokens "$ITEM" --max-tokens "$GEN" --model bench "$@" >/dev/null; }
gen --mode shared --n "$N" --batch "$WORK/shared.jsonl" --list "$WORK/shared.json"
gen --mode shared --n "$SWEEP_N" --batch "$WORK/shared-sweep.jsonl" --list "$WORK/shared-sweep.json"
gen --mode unique --n "$NU" --batch "$WORK/unique.jsonl"
UWARM_N=$(( NU < PAR ? NU : PAR ))
gen --mode unique --n "$UWARM_N" --batch "$WORK/unique-warm.jsonl"

RUNS="$WORK/runs.jsonl"
: >"$RUNS"
MAX_FOREIGN=${NS_BENCH_MAX_FOREIGN:-0.10}
RETRIES=${NS_BENCH_RETRIES:-1}

# ---- 3. the sides ----------------------------------------------------------------------
# nightshift: one `nightshift run` over a batch file; records a run.
CMD_NS="$NS run BATCH -o OUT --model MODEL --model-alias bench --parallel $PAR --ctx $CTX --threads $THREADS --summary S.json --progress-interval 3600 [--no-prefix-cache]"
run_nightshift() { # phase pair workload(shared|unique) cache(on|off)
    local phase=$1 pair=$2 wl=$3 cache=$4 d="$WORK/ns-$1-$2-$3-$4-${ATTEMPT:-0}" la n b0 b1 m
    local extra=()
    [ "$cache" = off ] && extra=(--no-prefix-cache)
    if [ "$wl" = shared ]; then n=$N; m=$MODEL; else n=$NU; m=$UMODEL; fi
    mkdir -p "$d"
    rm -f "$d"/out.jsonl* "$d"/summary.json   # out.jsonl.state.db too: a leftover would resume
    la=$(loadavg)
    say "nightshift  ($phase $pair) $wl, prefix cache $cache, $n requests, $(basename "$m"), P=$PAR ctx=$CTX"
    b0=$(busy_ticks)
    node "$LIB/timeproc.mjs" --mark '^nightshift: model ' --out "$d/time.json" --log "$d/log.txt" -- \
        "$NS" run "${BATCH_FILE:-$WORK/$wl.jsonl}" -o "$d/out.jsonl" --model "$m" --model-alias bench \
        --parallel "$PAR" --ctx "$CTX" --threads "$THREADS" --summary "$d/summary.json" --progress-interval 3600 \
        "${extra[@]}" >/dev/null || { tail -20 "$d/log.txt" >&2; die "nightshift run failed"; }
    b1=$(busy_ticks)
    node -e '
const fs = require("fs");
const [d, phase, pair, wl, cache, N, GEN, PLEN, SHARED, ITEM, la, b0, b1, hz, nproc, attempt, model] = process.argv.slice(1);
const t = JSON.parse(fs.readFileSync(d + "/time.json")), s = JSON.parse(fs.readFileSync(d + "/summary.json"));
const err = fs.existsSync(d + "/out.errors.jsonl") ? fs.readFileSync(d + "/out.errors.jsonl", "utf8").trim() : "";
// per line, from the output file: prompt tokens and cached tokens as the API reports them
const pt = [], ct = [];
for (const l of fs.readFileSync(d + "/out.jsonl", "utf8").split("\n").filter(Boolean)) {
  const u = JSON.parse(l).response.body.usage;
  pt.push(u.prompt_tokens); ct.push(u.prompt_tokens_details?.cached_tokens ?? 0);
}
const bad = [];
if (s.request_counts.completed !== +N) bad.push(`completed ${s.request_counts.completed} of ${N}`);
if (s.usage.output_tokens !== N * GEN) bad.push(`output_tokens ${s.usage.output_tokens} != ${N * GEN}`);
if (pt.length !== +N) bad.push(`${pt.length} output lines`);
if (err) bad.push("errors: " + err.slice(0, 300));
if (t.after_mark_seconds === null) bad.push("no \"nightshift: model\" line on stderr");
if (!s.engine) bad.push("no engine object in the summary");
if (bad.length) { console.error("nightshift run is wrong: " + bad.join("; ")); process.exit(1); }
const own = t.user_seconds + t.sys_seconds;
const foreign = Math.max(0, ((b1 - b0) / hz - own) / (nproc * t.total_seconds));
const m = /^nightshift: model .*context (\d+) \((\d+) per sequence/m.exec(fs.readFileSync(d + "/log.txt", "utf8"));
console.log(JSON.stringify({ side: "nightshift", workload: wl, cache, phase, pair: +pair, attempt: +attempt, model,
  load1: +la, foreign, requests: +N,
  seconds: t.after_mark_seconds, total_seconds: t.total_seconds, load_seconds: t.mark_seconds,
  wall_seconds: s.wall_seconds, user_seconds: t.user_seconds, sys_seconds: t.sys_seconds,
  prompt_tokens: s.usage.input_tokens, output_tokens: s.usage.output_tokens,
  cached_tokens: s.usage.input_tokens_details.cached_tokens,
  line_prompt_min: Math.min(...pt), line_prompt_max: Math.max(...pt),
  line_cached_min: Math.min(...ct), line_cached_max: Math.max(...ct),
  lines_cached_ge_shared: ct.filter((c) => c >= +SHARED).length, lines_cached_zero: ct.filter((c) => c === 0).length,
  n_ctx_seq: m ? +m[2] : null, engine: s.engine }));
' "$d" "$phase" "$pair" "$wl" "$cache" "$n" "$GEN" "$PLEN" "$SHARED" "$ITEM" "$la" "$b0" "$b1" "$HZ" "$NPROC" "${ATTEMPT:-0}" "$(basename "$m")" \
        >>"$RUNS" || die "nightshift run check failed ($d)"
    tail -1 "$RUNS" | node -e 'const r=JSON.parse(require("fs").readFileSync(0));const e=r.engine;console.error(`             ${r.seconds.toFixed(2)} s after load (load ${r.load_seconds.toFixed(2)} s), CPU ${(r.user_seconds+r.sys_seconds).toFixed(1)} s, ${e.steps} steps, ${e.avg_sequences_per_step.toFixed(1)} seq/step; prompt tokens ${e.prompt_tokens_submitted} submitted, ${e.prompt_tokens_computed} computed, ${e.prompt_tokens_cached} cached (${(r.prompt_tokens/r.requests).toFixed(1)} per line); others used ${(r.foreign*100).toFixed(0)}% of the CPU`)'
}

# llama-server: start (untimed), drive with K in flight, stop.
CMD_SRV="$SERVER_BIN -m $MODEL --host 127.0.0.1 --port PORT -np K -c K*$SLOT -t $THREADS -tb $THREADS -b 2048 -ub 512 $SERVER_ARGS"
run_server() { # phase pair K prompts-file
    local phase=$1 pair=$2 K=$3 plist=$4 d="$WORK/srv-$1-$2-$3-${ATTEMPT:-0}" port la t0 t1 c
    mkdir -p "$d"
    port=$(free_port)
    c=$((K * SLOT))
    say "llama-server ($phase $pair) shared, -np $K -c $c port $port"
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    server_start "$d/server.log" "$port" -m "$MODEL" -np "$K" -c "$c" \
        -t "$THREADS" -tb "$THREADS" -b 2048 -ub 512 $SERVER_ARGS
    t1=$(date +%s.%N)
    local cpu0 cpu1 b0 b1 nreq
    nreq=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).length)' "$plist")
    la=$(loadavg)
    cpu0=$(awk '{print $14+$15}' "/proc/$SERVER_PID/stat")
    b0=$(busy_ticks)
    node "$LIB/client.mjs" --url "http://127.0.0.1:$port" --prompts "$plist" --concurrency "$K" \
        --max-tokens "$GEN" --out "$d/client.json" >/dev/null \
        || { cat "$d/client.json" >&2 2>/dev/null; tail -20 "$d/server.log" >&2; stop_server; die "client failed"; }
    b1=$(busy_ticks)
    cpu1=$(awk '{print $14+$15}' "/proc/$SERVER_PID/stat")
    stop_server
    local slot_ctx
    slot_ctx=$(sed -n 's/.*n_ctx_slot = \([0-9]*\).*/\1/p' "$d/server.log" | head -1)
    node -e '
const fs = require("fs");
const [d, phase, pair, K, GEN, la, tload, cpu, hz, b0, b1, nproc, attempt, nreq, slotctx] = process.argv.slice(1);
const c = JSON.parse(fs.readFileSync(d + "/client.json"));
if (c.failures || c.short || c.requests !== +nreq || c.completion_tokens !== c.requests * GEN) {
  console.error("llama-server run is wrong: " + JSON.stringify(c)); process.exit(1); }
const own = cpu / hz + c.client_cpu_seconds;
const foreign = Math.max(0, ((b1 - b0) / hz - own) / (nproc * c.wall_seconds));
console.log(JSON.stringify({ side: "server", workload: "shared", phase, pair: +pair, K: +K, attempt: +attempt,
  load1: +la, foreign, requests: c.requests, client_cpu_seconds: c.client_cpu_seconds,
  seconds: c.wall_seconds, load_seconds: +tload, total_seconds: +tload + c.wall_seconds,
  cpu_seconds: cpu / hz, prompt_tokens: c.prompt_tokens, prompt_n: c.prompt_n,
  predicted_n: c.predicted_n, output_tokens: c.completion_tokens, n_ctx_slot: slotctx ? +slotctx : null }));
' "$d" "$phase" "$pair" "$K" "$GEN" "$la" "$(calc "$t1 - $t0")" "$((cpu1 - cpu0))" "$HZ" "$b0" "$b1" "$NPROC" "${ATTEMPT:-0}" "$nreq" "$slot_ctx" \
        >>"$RUNS" || die "server run check failed ($d)"
    tail -1 "$RUNS" | node -e 'const r=JSON.parse(require("fs").readFileSync(0));console.error(`             ${r.seconds.toFixed(2)} s for ${r.requests} requests (load ${r.load_seconds.toFixed(2)} s), prompt tokens ${r.prompt_tokens} submitted, ${r.prompt_n} computed (timings.prompt_n); others used ${(r.foreign*100).toFixed(0)}% of the CPU`)'
}

# ---- 4. warm-up, then interleaved pairs -------------------------------------------------
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "shared workload: $N requests x ($SHARED shared + $ITEM unique prompt tokens, $GEN generated), model $(basename "$MODEL"), -t $THREADS, P=$PAR, $SLOT cells per sequence"
say "unique workload: $NU requests x $PLEN unique prompt tokens, $GEN generated, model $(basename "$UMODEL")"
say "warm-up: nightshift once, llama-server at -np $SERVER_NP ($SWEEP_N requests each)"
BATCH_FILE="$WORK/shared-sweep.jsonl" N=$SWEEP_N run_nightshift warmup 0 shared on
BEST_K=""
BEST_RATE=""
for K in $SERVER_NP; do
    measure run_server sweep 0 "$K" "$WORK/shared-sweep.json"
    rate=$(tail -1 "$RUNS" | node -e 'const r=JSON.parse(require("fs").readFileSync(0));console.log(r.seconds/r.requests)')
    if [ -z "$BEST_K" ] || awk "BEGIN { exit !($rate < $BEST_RATE) }"; then BEST_K=$K; BEST_RATE=$rate; fi
done
say "llama-server's best: -np $BEST_K"

for i in $(seq 1 "$PAIRS"); do
    say "shared pair $i of $PAIRS"
    if [ $((i % 2)) = 1 ]; then
        measure run_nightshift pair "$i" shared on
        measure run_server pair "$i" "$BEST_K" "$WORK/shared.json"
    else
        measure run_server pair "$i" "$BEST_K" "$WORK/shared.json"
        measure run_nightshift pair "$i" shared on
    fi
done
T_SHARED=$(date +%s)
if [ "$UMODEL" != "$MODEL" ]; then
    say "warm-up of the unique workload's model: nightshift once on $UWARM_N of its requests"
    BATCH_FILE="$WORK/unique-warm.jsonl" NU=$UWARM_N run_nightshift uwarmup 0 unique off
fi
for i in $(seq 1 "$UPAIRS"); do
    say "unique pair $i of $UPAIRS"
    if [ $((i % 2)) = 1 ]; then
        measure run_nightshift upair "$i" unique on
        measure run_nightshift upair "$i" unique off
    else
        measure run_nightshift upair "$i" unique off
        measure run_nightshift upair "$i" unique on
    fi
done
T_END=$(date +%s)

# ---- 5. report -----------------------------------------------------------------------
mkdir -p "$RESULTS"
STAMP=$(date +%Y%m%d-%H%M%S)
SUFFIX=""
[ "$QUICK" = 1 ] && SUFFIX=-quick
OUTMD="$RESULTS/prefix-$STAMP$SUFFIX.md"
bench_facts
export NSP_MODE=$([ "$QUICK" = 1 ] && echo quick || echo full)
export NSP_N=$N NSP_NU=$NU NSP_P=$PAR NSP_GEN=$GEN NSP_SHARED=$SHARED NSP_ITEM=$ITEM NSP_THREADS=$THREADS
export NSP_CTX=$CTX NSP_SLOT=$SLOT NSP_BESTK=$BEST_K NSP_PAIRS=$PAIRS NSP_UPAIRS=$UPAIRS NSP_SWEEP_N=$SWEEP_N
export NSP_MAX_FOREIGN=$MAX_FOREIGN NSP_RETRIES=$RETRIES
export NSP_MODEL="$(basename "$MODEL") ($SHAPE, $MTYPE, $MODEL_MIB MiB)"
export NSP_UMODEL="$(basename "$UMODEL") ($USHAPE, $MTYPE, $UMODEL_MIB MiB)"
export NSP_CPU="$CPU_MODEL"
export NSP_NPROC=$(nproc) NSP_FLAGS="$CPU_FLAGS" NSP_MEM="$MEM_DESC"
export NSP_NS_VERSION="$("$NS" --version 2>&1 | head -1)"
export NSP_LLAMA="$LLAMA_DESC" NSP_GIT="$GIT_DESC"
export NSP_NODE="$(node --version)" NSP_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
export NSP_DURATION=$((T_END - T_START)) NSP_DURATION_SHARED=$((T_SHARED - T_START)) NSP_DURATION_UNIQUE=$((T_END - T_SHARED))
export NSP_LOAD="start $LOAD_START, end $(cut -d' ' -f1-3 /proc/loadavg)"
export NSP_CMD_NS="$CMD_NS" NSP_CMD_SRV="$CMD_SRV"
export NSP_CMD_CLIENT="node bench/lib/client.mjs --concurrency K --max-tokens $GEN (POST /v1/completions {prompt, max_tokens: $GEN, temperature: 0, ignore_eos: true, cache_prompt: true})"
export NSP_CMD_PROMPTS="node bench/lib/prefix_prompts.mjs --mode shared|unique --n $N|$NU --shared-tokens $SHARED --item-tokens $ITEM --max-tokens $GEN --model bench"
export NSP_CMD_BENCH="bench/prefix.sh${SUFFIX:+ --quick} (pairs $PAIRS, unique pairs $UPAIRS)"
node "$LIB/prefix_report.mjs" "$RUNS" >"$WORK/report.md" || die "report failed"
cp "$WORK/report.md" "$OUTMD"
cat "$WORK/report.md"
say "written to $OUTMD"
