#!/usr/bin/env bash
# bench/gpu.sh — nightshift on an NVIDIA GPU against llama-server on the same llama.cpp GPU
# libraries (issue 30). One command, under 8 minutes with its setup on a machine with a GPU.
#
# Setup: NIGHTSHIFT_GPU=cuda scripts/build.sh cuda (the npm package's libraries of our
# release; build-cuda/nightshift), and a llama-server built from our source bundle as shared
# libraries and run on the package's libraries (its libllama/libggml/libggml-base and
# backends under the names it links, in one directory with it): both sides then run the very
# same GPU code. Models: generated (random weights, Qwen2 tokenizer, Q8_0), a ~0.5B and a
# ~1.5B (Qwen2-1.5B shape).
#
# Workloads, on each model (prompt words are single Qwen2 tokens: bench/lib/prompts.mjs):
#   core         N unique prompts of ~200 tokens, 64 generated (ignore_eos), greedy:
#                nightshift run --parallel P vs llama-server -np P driven at P in flight.
#                ratio = server wall / nightshift wall (engine time: from "model loaded")
#   prefix       N prompts = one shared 1,500-token instruction + a 48-token item, 32 generated:
#                ratio as above, and the prompt tokens each computed / submitted
#   interactive  time to first token of streaming chat requests, idle and while a batch
#                saturates the engine: nightshift (bench/ttft.mjs) and llama-server (the same
#                requests beside P in-flight completions)
# Targets (issue 30): core >= 1.3, prefix >= 2 and <= 0.3 of the prompt tokens computed. A
# benchmark prints; it never fails on time.
#
# Usage: bench/gpu.sh [--cpu]
#   --cpu  dry run of the whole path on the CPU: the CPU build and the CPU llama-server of
#          scripts/bootstrap.sh --tools, the "tiny" and "small" shapes, few requests
# Environment: NS_GPU_N (256; --cpu 16), NS_GPU_P (64; --cpu 4), NS_GPU_RESULTS
#   (bench/results/gpu-<time>.txt), NS_GPU_SHAPES ("0.5b 1.5b"; --cpu "tiny small").
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=gpu
[ "${1:-}" = --cpu ] && MODE=cpu
[ "${1:-}" = --help ] && { sed -n '2,30p' "$0"; exit 0; }
T0=$(date +%s)
say() { printf '[gpu.sh %4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
WORK=$(mktemp -d /tmp/ns-gpu-bench-XXXXXX)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
NPROC=$(nproc)
OUT=${NS_GPU_RESULTS:-bench/results/gpu-$(date +%Y%m%d-%H%M%S)-$MODE.txt}
mkdir -p "$(dirname "$OUT")"

# ---- setup -----------------------------------------------------------------------------------
if [ "$MODE" = gpu ]; then
    N=${NS_GPU_N:-256}; P=${NS_GPU_P:-64}; SHAPES=${NS_GPU_SHAPES:-"0.5b 1.5b"}
    say "building nightshift against llama.cpp's CUDA libraries (NIGHTSHIFT_GPU=cuda)"
    scripts/build.sh cuda >&2
    NS=build-cuda/nightshift
    PREFIX=$(NIGHTSHIFT_GPU=cuda scripts/bootstrap.sh 2>/dev/null | sed -n 's/^NIGHTSHIFT_LLAMA_PREFIX=//p')
    BINS="$PREFIX/bins"
    # llama-server from our bundle, shared; then run with the package's libraries in its place
    SRV_BUILD="$PREFIX/server-build"
    if [ ! -x "$SRV_BUILD/bin/llama-server" ]; then
        say "building llama-server (shared libraries, from the same source bundle)"
        cmake -S "$PREFIX/src" -B "$SRV_BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON \
            -DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
            -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
            -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >"$WORK/srv-cmake.log" 2>&1 || { tail -20 "$WORK/srv-cmake.log"; exit 1; }
        cmake --build "$SRV_BUILD" --target llama-server -j"$NPROC" >"$WORK/srv-build.log" 2>&1 || { tail -30 "$WORK/srv-build.log"; exit 1; }
    fi
    SRVDIR="$WORK/server"; mkdir -p "$SRVDIR"
    cp "$SRV_BUILD/bin/llama-server" "$SRVDIR/"
    for f in "$BINS"/*.so; do ln -sf "$f" "$SRVDIR/"; done
    # the names llama-server was linked with -> the package's files
    for need in $(readelf -d "$SRVDIR/llama-server" | sed -n 's/.*Shared library: \[\(lib\(llama\|ggml\|mtmd\)[^]]*\)\].*/\1/p'); do
        case "$need" in
            libllama-common*) ln -sf "$BINS/libllama-common.so" "$SRVDIR/$need" ;;
            libllama*) ln -sf "$BINS/libllama.cuda.v0.5.0.so" "$SRVDIR/$need" ;;
            libggml-base*) ln -sf "$BINS/libggml-base.so" "$SRVDIR/$need" ;;
            libggml*) ln -sf "$BINS/libggml.cuda.v0.5.0.so" "$SRVDIR/$need" ;;
            *) cp -L "$SRV_BUILD/bin/$need" "$SRVDIR/" 2>/dev/null || true ;;
        esac
    done
    SERVER="$SRVDIR/llama-server"
    export LD_LIBRARY_PATH="$SRVDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    GPUFLAGS=(--gpu-layers all)
    SRVFLAGS=(-ngl 999)
else
    N=${NS_GPU_N:-16}; P=${NS_GPU_P:-4}; SHAPES=${NS_GPU_SHAPES:-"tiny small"}
    say "dry run on the CPU: the CPU build and the CPU llama-server (scripts/bootstrap.sh --tools)"
    PREFIX=$(scripts/bootstrap.sh --tools 2>/dev/null | sed -n 's/^NIGHTSHIFT_LLAMA_PREFIX=//p')
    scripts/build.sh release >&2
    NS=build/nightshift
    SERVER="$PREFIX/bin/llama-server"
    GPUFLAGS=(--gpu-layers 0)
    SRVFLAGS=(-ngl 0)
fi
VOCAB="$PREFIX/src/models/ggml-vocab-qwen2.gguf"
[ -x "$SERVER" ] || { echo "gpu.sh: no llama-server at $SERVER" >&2; exit 1; }

# ---- models --------------------------------------------------------------------------------
declare -A MODELS
for shape in $SHAPES; do
    m="$WORK/model-$shape.gguf"
    case "$shape" in
        1.5b) "$NS" gen-model --vocab "$VOCAB" -o "$m" --shape 1b --layers 28 --embd 1536 --ff 8960 --heads 12 --kv-heads 2 --type q8_0 >/dev/null ;;
        *) "$NS" gen-model --vocab "$VOCAB" -o "$m" --shape "$shape" --type q8_0 >/dev/null ;;
    esac
    MODELS[$shape]=$m
done
say "models: ${SHAPES}; N=$N P=$P"

# ---- helpers -------------------------------------------------------------------------------
start_server() { # model, extra args...
    local m=$1; shift
    local port=$((20000 + RANDOM % 20000))
    "$SERVER" -m "$m" --host 127.0.0.1 --port "$port" -np "$P" -t "$NPROC" -b 2048 -ub 512 "${SRVFLAGS[@]}" "$@" \
        >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && { SRV_URL="http://127.0.0.1:$port"; return 0; }
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/server.log" >&2; return 1; }
        sleep 0.2
    done
    return 1
}
stop_server() { kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; }

# nightshift run: prints "<engine seconds> <prompt computed> <prompt submitted>"
ns_run() { # model batch.jsonl ctx-per-seq extra...
    local m=$1 in=$2 per=$3; shift 3
    local d; d=$(mktemp -d "$WORK/run-XXXX")
    local t0 t1
    "$NS" run "$in" -o "$d/out.jsonl" --model "$m" --model-alias '*' --parallel "$P" --ctx $((P * per)) \
        --threads "$NPROC" --summary "$d/sum.json" --progress-interval 3600 "${GPUFLAGS[@]}" "$@" >/dev/null 2>"$d/err" &
    local pid=$!
    # engine time: from the model-loaded line (as bench/core.sh) to exit
    while ! grep -q "nightshift: model" "$d/err" 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.05; done
    t0=$(date +%s.%N)
    wait $pid || { cat "$d/err" >&2; return 1; }
    t1=$(date +%s.%N)
    node -e 'const s=require(process.argv[1]);console.log((process.argv[3]-process.argv[2]).toFixed(3),s.engine.prompt_tokens_computed,s.engine.prompt_tokens_submitted,JSON.stringify(s.device.where))' \
        "$d/sum.json" "$t0" "$t1"
}

ratio() { node -e 'console.log((process.argv[1]/process.argv[2]).toFixed(2))' "$1" "$2"; }

{
echo "bench/gpu.sh ($MODE) $(date -u +%FT%TZ) on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo 'no GPU (dry run)'); N=$N P=$P"
for shape in $SHAPES; do
    m=${MODELS[$shape]}
    echo "== model $shape ($(du -h "$m" | cut -f1))"
    # core
    node bench/lib/prompts.mjs --n "$N" --words 190 --max-tokens 64 --model x --batch "$WORK/core.jsonl" --list "$WORK/core.json" >/dev/null
    read -r ns_s ns_pc ns_ps where < <(ns_run "$m" "$WORK/core.jsonl" 288)
    start_server "$m" -c $((P * 512))
    srv=$(node bench/lib/client.mjs --url "$SRV_URL" --prompts "$WORK/core.json" --concurrency "$P" --max-tokens 64)
    stop_server
    srv_s=$(node -e 'console.log(JSON.parse(process.argv[1]).wall_seconds.toFixed(3))' "$srv")
    echo "core:        nightshift ${ns_s}s on $where, llama-server -np $P ${srv_s}s: ratio $(ratio "$srv_s" "$ns_s") (target >= 1.3)"
    # prefix
    node bench/lib/prefix_prompts.mjs --mode shared --n "$N" --shared-tokens 1500 --item-tokens 48 --max-tokens 32 --model x \
        --batch "$WORK/prefix.jsonl" --list "$WORK/prefix.json" >/dev/null
    read -r ns_s ns_pc ns_ps where < <(ns_run "$m" "$WORK/prefix.jsonl" 1600 --kv-unified)
    start_server "$m" -c $((P * 2048)) --kv-unified
    srv=$(node bench/lib/client.mjs --url "$SRV_URL" --prompts "$WORK/prefix.json" --concurrency "$P" --max-tokens 32)
    stop_server
    read -r srv_s srv_pn srv_pt < <(node -e 'const j=JSON.parse(process.argv[1]);console.log(j.wall_seconds.toFixed(3),j.prompt_n,j.prompt_tokens)' "$srv")
    echo "prefix:      nightshift ${ns_s}s (computed $ns_pc of $ns_ps prompt tokens: $(ratio "$ns_pc" "$ns_ps")), llama-server ${srv_s}s (computed $srv_pn of $srv_pt): ratio $(ratio "$srv_s" "$ns_s") (targets >= 2, <= 0.3)"
    # interactive latency: nightshift
    node bench/ttft.mjs --bin "$NS" --model "$m" --requests 10 --batch $((P * 4)) --parallel "$P" --threads "$NPROC" --max-tokens 16 \
        2>/dev/null | grep -E "idle:|loaded:|ratio" | sed 's/^/interactive nightshift /'
    # interactive latency: llama-server, the same streaming requests idle and beside P in-flight completions
    start_server "$m" -c $((P * 512))
    node --input-type=module -e '
const url = process.argv[1], P = Number(process.argv[2]);
const one = async () => { const t = performance.now();
  const r = await fetch(url + "/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: "Tell me a short story" }], stream: true, max_tokens: 16, temperature: 0 }) });
  const rd = r.body.getReader(); await rd.read(); const ms = performance.now() - t; while (!(await rd.read()).done); return ms; };
const pct = (a, p) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p / 100))];
const idle = []; for (let i = 0; i < 10; i++) idle.push(await one());
let stop = false; const load = async () => { while (!stop) await fetch(url + "/v1/completions", { method: "POST",
  headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 64, ignore_eos: true }) }); };
const bg = Array.from({ length: P }, load); await new Promise((r) => setTimeout(r, 2000));
const loaded = []; for (let i = 0; i < 10; i++) loaded.push(await one()); stop = true; await Promise.all(bg);
console.log(`interactive llama-server idle: p50 ${pct(idle, 50).toFixed(0)} ms  p99 ${pct(idle, 99).toFixed(0)} ms; loaded: p50 ${pct(loaded, 50).toFixed(0)} ms  p99 ${pct(loaded, 99).toFixed(0)} ms`);
' "$SRV_URL" "$P"
    stop_server
done
echo "total $(( $(date +%s) - T0 )) s"
} | tee "$OUT"
say "written to $OUT"
