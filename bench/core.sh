#!/usr/bin/env bash
# bench/core.sh — nightshift's batch engine against llama.cpp's own anchors.
#
# Workload: N requests (default 256), each a unique prompt of about 200 tokens and exactly
# 64 generated tokens (ignore_eos), greedy, on one generated model (default: the ~0.5B
# Qwen2-like shape, Q8_0, random weights, real Qwen2 tokenizer).
#
# Two ratios (targets from the issue):
#   (a) llama-server wall time for the same requests, at its best -np K over 8/16/32,
#       driven by a client keeping K requests in flight  /  nightshift's time     (>= 1.3)
#   (b) llama-batched-bench time for the same token counts at nightshift's parallelism P:
#       (N/P) x the "T s" of its row -npp 200 -ntg 64 -npl P    /  nightshift's time  (>= 0.9)
#
# What "nightshift's time" is: summary.wall_seconds of `nightshift run` starts when the
# process starts and covers validation, the model load, the run and writing the output
# files (src/cli/run.c: t0 at the top of cli_run, wall taken after run_export). The anchors'
# times exclude their model load (llama-server is started and healthy before the clock
# starts; batched-bench's table times only its decode calls). So the ratios use nightshift's
# time from the moment it prints "nightshift: model ..." (right after engine_init: model
# loaded, context created) to process exit: engine run + checkpoint + export + teardown.
# A secondary ratio (a') includes the load on both sides (server: spawn to last answer;
# nightshift: whole process).
#
# Protocol (docs: /work/shared/docs/benchmarking.md): same GGUF, same -t (nproc), same
# -b 2048 / -ub 512, f16 KV, greedy, fixed generated length on every side. One warm-up
# round (nightshift once and llama-server once per K, on SWEEP_N requests; the K with the
# shortest time per request is used in the measured pairs), then PAIRS interleaved rounds whose order alternates
# (nightshift, server, batched-bench / batched-bench, server, nightshift). Medians and
# min-max are reported; ratios are per round and medians of those.
#
# Context: nightshift gets --ctx P*SLOT (SLOT = 288 cells >= 200+64+pad; a KV stream of SLOT
# cells per sequence, its default). llama-server runs WITHOUT --kv-unified by default,
# -c K*SLOT, so each of its K slots holds 288 cells, the same per-sequence room (llama.cpp
# pads a slot to 512). NS_BENCH_SERVER_KVU=1 runs it with --kv-unified -c P*SLOT instead.
# batched-bench gets -c P*SLOT (its default: one KV stream per sequence).
#
# Heavy-tailed workload (--heavy): the same protocol, but each request's prompt length and
# max_tokens are drawn from log-normal distributions (fixed seed; bench/lib/prompts.mjs
# --dist lognormal): prompt words median NS_BENCH_WORDS (150), max_tokens median
# NS_BENCH_GEN (48), sigma NS_BENCH_SIGMA (1.0), clipped to NS_BENCH_MAX_WORDS (1200) and
# NS_BENCH_MAX_GEN (384) (quick: 80/24, 300/96, and 32 requests). Equal KV memory on both sides: every
# sequence/slot must hold the longest request, so SLOT = max prompt + max generated + pad
# and both get P*SLOT cells in all: nightshift --ctx P*SLOT, llama-server -c P*SLOT at every
# -np K (<= P, so each slot holds >= SLOT). Only ratio (a): batched-bench has one fixed
# length per sequence, so it is not run.
#
# Throughput vs parallelism: the warm-up round also runs nightshift at each K of the sweep
# (--parallel K); the report lists them beside llama-server's sweep (bench/run plots them).
#
# Usage: bench/core.sh [--quick] [--heavy] [--pairs N] [--help]
#   --quick   64 requests (sweep on 32), the "small" (~60M) shape, 1 pair: a few minutes end to end
#   --heavy   the heavy-tailed workload above
# Environment overrides: NS_BENCH_P (32), NS_BENCH_N, NS_BENCH_SHAPE, NS_BENCH_TYPE (q8_0),
#   NS_BENCH_PAIRS, NS_BENCH_SIGMA, NS_BENCH_MAX_WORDS, NS_BENCH_MAX_GEN, NS_BENCH_SERVER_NP ("8 16 32"), NS_BENCH_SWEEP_N (requests per K in
#   the warm-up sweep; default N, 32 with --quick), NS_BENCH_THREADS (nproc), NS_BENCH_GEN (64),
#   NS_BENCH_WORDS (180 words = about 200 tokens), NS_BENCH_SERVER_KVU (0),
#   NS_BENCH_SERVER_ARGS (extra llama-server flags), NS_BENCH_RESULTS (bench/results),
#   NS_BENCH_MAX_FOREIGN (0.10), NS_BENCH_RETRIES (2): a measured run during which other
#   processes used more than that share of the machine's CPU is repeated, up to RETRIES
#   times (every attempt is listed; the last one counts). KEEP_WORK=1 keeps the work dir.
# It prints numbers; it never fails on time. Exit status 1 only if a side errs or a run
# produces the wrong token counts.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB="$ROOT/bench/lib"

QUICK=0
HEAVY=0
PAIRS_ARG=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --heavy) HEAVY=1 ;;
    --pairs) PAIRS_ARG="${2:?--pairs needs a number}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "core.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    # the sweep on 32 requests (one wave at K = 32): with 64, bench/run --quick took 311 s
    # end to end here, over its 5-minute budget
    D_N=64; D_SHAPE=small; D_PAIRS=1; D_SWEEP_N=32
    [ "$HEAVY" = 1 ] && D_N=32
else
    D_N=256; D_SHAPE=0.5b; D_PAIRS=3; D_SWEEP_N=
fi
PAR=${NS_BENCH_P:-32}
N=${NS_BENCH_N:-$D_N}
SHAPE=${NS_BENCH_SHAPE:-$D_SHAPE}
MTYPE=${NS_BENCH_TYPE:-q8_0}
PAIRS=${PAIRS_ARG:-${NS_BENCH_PAIRS:-$D_PAIRS}}
SERVER_NP=${NS_BENCH_SERVER_NP:-"8 16 32"}
SWEEP_N=${NS_BENCH_SWEEP_N:-${D_SWEEP_N:-$N}}
THREADS=${NS_BENCH_THREADS:-$(nproc)}
if [ "$HEAVY" = 0 ]; then
    GEN=${NS_BENCH_GEN:-64}
    WORDS=${NS_BENCH_WORDS:-180}
    SLOT=288    # KV cells per sequence: 200 + 64 + pad
    DIST_ARGS=()
else
    if [ "$QUICK" = 1 ]; then D_W=80; D_G=24; D_MW=300; D_MG=96; else D_W=150; D_G=48; D_MW=1200; D_MG=384; fi
    GEN=${NS_BENCH_GEN:-$D_G}            # median max_tokens
    WORDS=${NS_BENCH_WORDS:-$D_W}        # median prompt words
    MAX_WORDS=${NS_BENCH_MAX_WORDS:-$D_MW}
    MAX_GEN=${NS_BENCH_MAX_GEN:-$D_MG}
    SIGMA=${NS_BENCH_SIGMA:-1.0}
    # the longest request: MAX_WORDS words (+ about 6 tokens and the "(note i)." suffix),
    # MAX_GEN generated, padded and rounded up to 128 cells
    SLOT=$(( (MAX_WORDS + 32 + MAX_GEN + 32 + 127) / 128 * 128 ))
    DIST_ARGS=(--dist lognormal --sigma "$SIGMA" --max-words "$MAX_WORDS" --max-gen "$MAX_GEN")
fi
PP=200          # batched-bench -npp: the nominal prompt length
SERVER_KVU=${NS_BENCH_SERVER_KVU:-0}
SERVER_ARGS=${NS_BENCH_SERVER_ARGS:-}
RESULTS=${NS_BENCH_RESULTS:-$ROOT/bench/results}
CTX=$((PAR * SLOT))

BENCH_NAME=core
# shellcheck source=bench/lib/common.sh
. "$LIB/common.sh"

for v in PAR N PAIRS SWEEP_N THREADS GEN WORDS SLOT; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[ "$SWEEP_N" -le "$N" ] || SWEEP_N=$N

# ---- 1. llama.cpp anchors, nightshift, model ----------------------------------------
bench_tools
MODEL=$(bench_model "$SHAPE" "$MTYPE")
MODEL_MIB=$(( $(stat -c %s "$MODEL") / 1048576 ))

# ---- 2. the requests -------------------------------------------------------------------
node "$LIB/prompts.mjs" --n "$N" --words "$WORDS" --max-tokens "$GEN" --model bench "${DIST_ARGS[@]}" \
    --batch "$WORK/batch.jsonl" --list "$WORK/prompts.json" --stats "$WORK/stats.json"
node "$LIB/prompts.mjs" --n "$SWEEP_N" --words "$WORDS" --max-tokens "$GEN" --model bench "${DIST_ARGS[@]}" \
    --batch "$WORK/batch-sweep.jsonl" --list "$WORK/prompts-sweep.json" --stats "$WORK/stats-sweep.json"
# generated tokens each batch must produce (N x GEN, or the sum of the drawn max_tokens)
stat_of() { node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1]))[process.argv[2]])' "$1" "$2"; }
OUT_TOKENS=$(stat_of "$WORK/stats.json" max_tokens_sum)
SWEEP_OUT_TOKENS=$(stat_of "$WORK/stats-sweep.json" max_tokens_sum)

RUNS="$WORK/runs.jsonl"
: >"$RUNS"
record() { printf '%s\n' "$1" >>"$RUNS"; }
MAX_FOREIGN=${NS_BENCH_MAX_FOREIGN:-0.10}
RETRIES=${NS_BENCH_RETRIES:-2}

# ---- 3. the three sides ----------------------------------------------------------------
# nightshift: one `nightshift run` over the batch file; prints nothing, records a run.
CMD_NS="$NS run BATCH -o OUT --model $MODEL --model-alias bench --parallel $PAR --ctx $CTX --threads $THREADS --summary S.json"
run_nightshift() { # phase pair [parallel]: parallel (default P) with its ctx (uniform: parallel x SLOT;
                   # heavy: P x SLOT, equal KV memory)
    local phase=$1 pair=$2 par=${3:-$PAR} d="$WORK/ns-$1-$2-${3:-$PAR}-${ATTEMPT:-0}" la ctx
    if [ "$HEAVY" = 1 ]; then ctx=$CTX; else ctx=$((par * SLOT)); fi
    mkdir -p "$d"
    rm -f "$d"/out.jsonl* "$d"/summary.json
    la=$(loadavg)
    say "nightshift  ($phase $pair) P=$par ctx=$ctx"
    local b0 b1
    b0=$(busy_ticks)
    node "$LIB/timeproc.mjs" --mark '^nightshift: model ' --out "$d/time.json" --log "$d/log.txt" -- \
        "$NS" run "${BATCH_FILE:-$WORK/batch.jsonl}" -o "$d/out.jsonl" --model "$MODEL" --model-alias bench \
        --parallel "$par" --ctx "$ctx" --threads "$THREADS" --summary "$d/summary.json" --progress-interval 3600 \
        >/dev/null || { tail -20 "$d/log.txt" >&2; die "nightshift run failed"; }
    b1=$(busy_ticks)
    node -e '
const fs = require("fs");
const [d, phase, pair, N, OUT, la, b0, b1, hz, nproc, attempt, par] = process.argv.slice(1);
const t = JSON.parse(fs.readFileSync(d + "/time.json")), s = JSON.parse(fs.readFileSync(d + "/summary.json"));
const err = fs.existsSync(d + "/out.errors.jsonl") ? fs.readFileSync(d + "/out.errors.jsonl", "utf8").trim() : "";
const bad = [];
if (s.request_counts.completed !== +N) bad.push(`completed ${s.request_counts.completed} of ${N}`);
if (s.usage.output_tokens !== +OUT) bad.push(`output_tokens ${s.usage.output_tokens} != ${OUT}`);
if (err) bad.push("errors: " + err.slice(0, 300));
if (t.after_mark_seconds === null) bad.push("no \"nightshift: model\" line on stderr");
if (bad.length) { console.error("nightshift run is wrong: " + bad.join("; ")); process.exit(1); }
const own = t.user_seconds + t.sys_seconds;
const foreign = Math.max(0, ((b1 - b0) / hz - own) / (nproc * t.total_seconds));
console.log(JSON.stringify({ side: "nightshift", phase, pair: +pair, K: +par, attempt: +attempt, load1: +la, foreign, requests: +N,
  seconds: t.after_mark_seconds, total_seconds: t.total_seconds, load_seconds: t.mark_seconds,
  wall_seconds: s.wall_seconds, user_seconds: t.user_seconds, sys_seconds: t.sys_seconds,
  prompt_tokens: s.usage.input_tokens, output_tokens: s.usage.output_tokens,
  cached_tokens: s.usage.input_tokens_details.cached_tokens, engine: s.engine }));
' "$d" "$phase" "$pair" "$N" "${EXPECT_OUT:-$OUT_TOKENS}" "$la" "$b0" "$b1" "$HZ" "$NPROC" "${ATTEMPT:-0}" "$par" >>"$RUNS" \
        || die "nightshift run check failed ($d)"
    tail -1 "$RUNS" | node -e 'const r=JSON.parse(require("fs").readFileSync(0));console.error(`             ${r.seconds.toFixed(2)} s after load (load ${r.load_seconds.toFixed(2)} s, wall_seconds ${r.wall_seconds.toFixed(2)}), ${r.engine.steps} steps, ${r.engine.avg_sequences_per_step.toFixed(1)} seq/step; others used ${(r.foreign*100).toFixed(0)}% of the CPU`)'
}

# llama-server: start (untimed), drive with K in flight, stop.
CMD_SRV="$SERVER_BIN -m $MODEL --host 127.0.0.1 --port PORT -np K -c K*$SLOT -t $THREADS -tb $THREADS -b 2048 -ub 512 $SERVER_ARGS"
[ "$HEAVY" = 1 ] && CMD_SRV="$SERVER_BIN -m $MODEL --host 127.0.0.1 --port PORT -np K -c $CTX -t $THREADS -tb $THREADS -b 2048 -ub 512 $SERVER_ARGS"
[ "$SERVER_KVU" = 1 ] && CMD_SRV="$SERVER_BIN -m $MODEL --host 127.0.0.1 --port PORT -np K --kv-unified -c $CTX -t $THREADS -tb $THREADS -b 2048 -ub 512 $SERVER_ARGS"
run_server() { # phase pair K prompts-file
    local phase=$1 pair=$2 K=$3 plist=$4 d="$WORK/srv-$1-$2-$3-${ATTEMPT:-0}" port la t0 t1 c
    mkdir -p "$d"
    port=$(free_port)
    if [ "$SERVER_KVU" = 1 ] || [ "$HEAVY" = 1 ]; then c=$CTX; else c=$((K * SLOT)); fi
    local kvu=()
    [ "$SERVER_KVU" = 1 ] && kvu=(--kv-unified)
    say "llama-server ($phase $pair) -np $K -c $c${kvu:+ --kv-unified} port $port"
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    server_start "$d/server.log" "$port" -m "$MODEL" -np "$K" "${kvu[@]}" -c "$c" \
        -t "$THREADS" -tb "$THREADS" -b 2048 -ub 512 $SERVER_ARGS
    t1=$(date +%s.%N)
    local cpu0 cpu1 b0 b1
    la=$(loadavg)
    cpu0=$(awk '{print $14+$15}' "/proc/$SERVER_PID/stat")
    b0=$(busy_ticks)
    node "$LIB/client.mjs" --url "http://127.0.0.1:$port" --prompts "$plist" --concurrency "$K" \
        --max-tokens "$GEN" --out "$d/client.json" >/dev/null \
        || { cat "$d/client.json" >&2 2>/dev/null; tail -20 "$d/server.log" >&2; stop_server; die "client failed"; }
    b1=$(busy_ticks)
    cpu1=$(awk '{print $14+$15}' "/proc/$SERVER_PID/stat")
    stop_server
    node -e '
const fs = require("fs");
const [d, phase, pair, K, GEN, la, tload, cpu, hz, b0, b1, nproc, attempt] = process.argv.slice(1);
const c = JSON.parse(fs.readFileSync(d + "/client.json"));
if (c.failures || c.short || c.completion_tokens !== c.expected_tokens) {
  console.error("llama-server run is wrong: " + JSON.stringify(c)); process.exit(1); }
const own = cpu / hz + c.client_cpu_seconds;
const foreign = Math.max(0, ((b1 - b0) / hz - own) / (nproc * c.wall_seconds));
console.log(JSON.stringify({ side: "server", phase, pair: +pair, K: +K, attempt: +attempt, load1: +la, foreign,
  requests: c.requests, client_cpu_seconds: c.client_cpu_seconds,
  seconds: c.wall_seconds, load_seconds: +tload, total_seconds: +tload + c.wall_seconds,
  cpu_seconds: cpu / hz, prompt_tokens: c.prompt_tokens, prompt_n: c.prompt_n,
  predicted_n: c.predicted_n, output_tokens: c.completion_tokens }));
' "$d" "$phase" "$pair" "$K" "$GEN" "$la" "$(calc "$t1 - $t0")" "$((cpu1 - cpu0))" "$HZ" "$b0" "$b1" "$NPROC" "${ATTEMPT:-0}" \
        >>"$RUNS" || die "server run check failed ($d)"
    tail -1 "$RUNS" | node -e 'const r=JSON.parse(require("fs").readFileSync(0));console.error(`             ${r.seconds.toFixed(2)} s for ${r.requests} requests (load ${r.load_seconds.toFixed(2)} s), prompt_n mean ${(r.prompt_n/r.requests).toFixed(1)}; others used ${(r.foreign*100).toFixed(0)}% of the CPU`)'
}

# llama-batched-bench at nightshift's parallelism
CMD_BB="$BB_BIN -m $MODEL -c $CTX -b 2048 -ub 512 -npp $PP -ntg $GEN -npl $PAR -t $THREADS"
run_bb() { # phase pair
    local phase=$1 pair=$2 d="$WORK/bb-$1-$2-${ATTEMPT:-0}" la b0 b1 tw own
    mkdir -p "$d"
    la=$(loadavg)
    say "batched-bench ($phase $pair) -npp $PP -ntg $GEN -npl $PAR"
    b0=$(busy_ticks)
    /usr/bin/time -f '%e %U %S' -o "$d/time.txt" "$BB_BIN" -m "$MODEL" -c "$CTX" -b 2048 -ub 512 -npp "$PP" -ntg "$GEN" -npl "$PAR" -t "$THREADS" \
        >"$d/log.txt" 2>&1 || { tail -20 "$d/log.txt" >&2; die "llama-batched-bench failed"; }
    b1=$(busy_ticks)
    read -r tw own <<<"$(awk 'END { print $1, $2 + $3 }' "$d/time.txt")"
    # | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
    local row
    row=$(awk -F'|' -v b="$PAR" '$4+0 == b && $2+0 > 0 {gsub(/ /,""); print $6, $7, $8, $9, $10; exit}' "$d/log.txt")
    [ -n "$row" ] || { tail -20 "$d/log.txt" >&2; die "no batched-bench row for B=$PAR"; }
    read -r tpp spp ttg stg tt <<<"$row"
    record "{\"side\":\"batched\",\"phase\":\"$phase\",\"pair\":$pair,\"attempt\":${ATTEMPT:-0},\"load1\":$la,\"foreign\":$(foreign_share "$b0" "$b1" "$own" "$tw"),\"process_seconds\":$tw,\"t_pp\":$tpp,\"s_pp\":$spp,\"t_tg\":$ttg,\"s_tg\":$stg,\"t\":$tt,\"seconds\":$(calc "$tt * $N / $PAR")}"
    say "             T ${tt} s per $PAR sequences -> $(printf '%.2f' "$(calc "$tt * $N / $PAR")") s for $N (S_PP $spp, S_TG $stg t/s); others used $(last_share | awk '{printf "%.0f", $1*100}')% of the CPU"
}

# ---- 4. warm-up, then interleaved pairs -------------------------------------------------
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$HEAVY" = 1 ]; then
    say "workload (heavy-tailed): $N requests, prompt words log-normal median $WORDS (max $MAX_WORDS), max_tokens median $GEN (max $MAX_GEN), sigma $SIGMA: $OUT_TOKENS generated tokens in all; model $(basename "$MODEL"), -t $THREADS, P=$PAR, $SLOT cells per sequence"
else
    say "workload: $N requests x (~200 prompt + $GEN generated tokens), model $(basename "$MODEL"), -t $THREADS, P=$PAR"
fi
say "warm-up: nightshift once, then nightshift and llama-server at -np $SERVER_NP ($SWEEP_N requests each)"
run_nightshift_warm() { local keep=$N; N=$SWEEP_N; EXPECT_OUT=$SWEEP_OUT_TOKENS BATCH_FILE="$WORK/batch-sweep.jsonl" run_nightshift "$@"; N=$keep; }
run_nightshift_warm warmup 0
for K in $SERVER_NP; do
    [ "$K" -le "$PAR" ] || continue
    measure run_nightshift_warm sweep 0 "$K"
done
BEST_K=""
BEST_RATE=""
for K in $SERVER_NP; do
    measure run_server sweep 0 "$K" "$WORK/prompts-sweep.json"
    rate=$(tail -1 "$RUNS" | node -e 'const r=JSON.parse(require("fs").readFileSync(0));console.log(r.seconds/r.requests)')
    if [ -z "$BEST_K" ] || awk "BEGIN { exit !($rate < $BEST_RATE) }"; then BEST_K=$K; BEST_RATE=$rate; fi
done
say "llama-server's best: -np $BEST_K"

for i in $(seq 1 "$PAIRS"); do
    say "pair $i of $PAIRS"
    if [ $((i % 2)) = 1 ]; then
        measure run_nightshift pair "$i"
        measure run_server pair "$i" "$BEST_K" "$WORK/prompts.json"
        [ "$HEAVY" = 1 ] || measure run_bb pair "$i"
    else
        [ "$HEAVY" = 1 ] || measure run_bb pair "$i"
        measure run_server pair "$i" "$BEST_K" "$WORK/prompts.json"
        measure run_nightshift pair "$i"
    fi
done
T_END=$(date +%s)

# ---- 5. report -----------------------------------------------------------------------
mkdir -p "$RESULTS"
STAMP=$(date +%Y%m%d-%H%M%S)
SUFFIX=""
[ "$QUICK" = 1 ] && SUFFIX="-quick"
[ "$HEAVY" = 1 ] && SUFFIX="-heavy$SUFFIX"
OUTMD="$RESULTS/core-$STAMP$SUFFIX.md"
bench_facts
NSB_MODE=full
[ "$QUICK" = 1 ] && NSB_MODE=quick
[ -n "${NS_BENCH_N:-}${NS_BENCH_PAIRS:-}${PAIRS_ARG}${NS_BENCH_SERVER_NP:-}${NS_BENCH_SWEEP_N:-}" ] && NSB_MODE="$NSB_MODE, with overrides"
[ "$HEAVY" = 1 ] && NSB_MODE="heavy-tailed, $NSB_MODE"
export NSB_MODE
export NSB_HEAVY=$HEAVY NSB_OUT_TOKENS=$OUT_TOKENS NSB_SWEEP_OUT_TOKENS=$SWEEP_OUT_TOKENS NSB_STATS="$(cat "$WORK/stats.json")"
export NSB_N=$N NSB_P=$PAR NSB_GEN=$GEN NSB_PP=$PP NSB_THREADS=$THREADS NSB_CTX=$CTX NSB_SLOT=$SLOT NSB_BESTK=$BEST_K
export NSB_PAIRS=$PAIRS NSB_SWEEP_N=$SWEEP_N NSB_SERVER_KVU=$SERVER_KVU NSB_MAX_FOREIGN=$MAX_FOREIGN NSB_RETRIES=$RETRIES
export NSB_MODEL="$(basename "$MODEL") ($SHAPE, $MTYPE, $MODEL_MIB MiB)"
export NSB_CPU="$CPU_MODEL"
export NSB_NPROC=$(nproc) NSB_FLAGS="$CPU_FLAGS" NSB_MEM="$MEM_DESC"
export NSB_NS_VERSION="$("$NS" --version 2>&1 | head -1)"
export NSB_LLAMA="$LLAMA_DESC" NSB_GIT="$GIT_DESC"
export NSB_NODE="$(node --version)" NSB_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
export NSB_DURATION=$((T_END - T_START)) NSB_LOAD="start $LOAD_START, end $(cut -d' ' -f1-3 /proc/loadavg)"
export NSB_CMD_NS="$CMD_NS" NSB_CMD_SRV="$CMD_SRV" NSB_CMD_BB="$CMD_BB"
export NSB_CMD_CLIENT="node bench/lib/client.mjs --concurrency K --max-tokens $GEN (POST /v1/completions {prompt, max_tokens: $GEN, temperature: 0, ignore_eos: true, cache_prompt: true})"
env | grep '^NSB_' >"$WORK/report.env" || true
node "$LIB/report.mjs" "$RUNS" >"$WORK/report.md" || die "report failed"
cp "$WORK/report.md" "$OUTMD"
cat "$WORK/report.md"
say "written to $OUTMD"
