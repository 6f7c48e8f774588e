#!/usr/bin/env bash
# bench/lora.sh — the LoRA batching designs measured on llama.cpp (bench/lora.c): a mixed
# two-adapter batch's throughput against a single-adapter batch of the same size, as
# (a) adapter-homogeneous steps in one context, switching its adapter set between steps,
# (b) one context per adapter over the shared base weights, steps interleaved (on one
#     thread; (b') and (b'') on a thread each, as the engine runs them, taking turns for the
#     decode only or for the whole step);
# and the cost of one adapter switch. Prints ratios against the single-adapter anchor
# measured in the same run (interleaved rounds), never pass/fail.
#
#   bench/lora.sh [SHAPE=small] [N=16] [P=32] [G=32] [ROUNDS=5]
#
# Models: a generated base of SHAPE (nightshift gen-model, Qwen2 tokenizer, Q8_0) and two
# generated adapters of rank 8 (gen-model --lora-of), in a temporary directory. Builds
# build/bench_lora (and build/nightshift) first. Set BENCH_LOCK=1 to hold /work/bench.lock
# during the measurement (on the shared development machine: other helpers' builds wait).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHAPE=${1:-small} N=${2:-16} P=${3:-32} G=${4:-32} ROUNDS=${5:-5}
BUILD=${BUILD:-$ROOT/build}
VOCAB=${NIGHTSHIFT_VOCAB_DIR:-$HOME/.cache/nightshift/llama-3.22.1-11c34fdc1f60/src/models}/ggml-vocab-qwen2.gguf
cmake --build "$BUILD" --target nightshift bench_lora -j2 >/dev/null
WORK=$(mktemp -d /tmp/ns-lora-bench.XXXXXX)
cleanup() { rm -rf "$WORK"; [ "${HELD:-0}" = 1 ] && rm -f /work/bench.lock; true; }
trap cleanup EXIT
"$BUILD/nightshift" gen-model --vocab "$VOCAB" --shape "$SHAPE" -o "$WORK/base.gguf"
"$BUILD/nightshift" gen-model --lora-of "$WORK/base.gguf" --seed 1 -o "$WORK/a.gguf"
"$BUILD/nightshift" gen-model --lora-of "$WORK/base.gguf" --seed 2 -o "$WORK/b.gguf"
if [ "${BENCH_LOCK:-0}" = 1 ]; then
    while [ -e /work/bench.lock ]; do sleep 5; done
    echo "lora.sh $$" > /work/bench.lock; HELD=1
    # commands started before the lock still run: wait (up to 2 minutes) for them to end
    for _ in $(seq 24); do
        awk '{ exit !($1 < 0.7) }' /proc/loadavg && break
        sleep 5
    done
fi
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
"$BUILD/bench_lora" "$WORK/base.gguf" "$WORK/a.gguf" "$WORK/b.gguf" "$N" "$P" "$G" "$ROUNDS" "$(nproc)"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
