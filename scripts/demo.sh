#!/usr/bin/env bash
# demo.sh — the main job on the embedded defaults: a sample OpenAI batch file through the
# built-in engine. Uses $NIGHTSHIFT_MODEL when set; otherwise generates a small
# random-weight model with a real tokenizer (its answers are gibberish, by design).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh release
prefix=$(scripts/bootstrap.sh 2>/dev/null | sed -n 's/^NIGHTSHIFT_LLAMA_PREFIX=//p')
out=${DEMO_DIR:-build/demo}
mkdir -p "$out"
model=${NIGHTSHIFT_MODEL:-}
alias_args=(--model-alias demo)
if [ -z "$model" ]; then
    model="$out/random-small.gguf"
    if [ ! -f "$model" ]; then
        echo "demo: no NIGHTSHIFT_MODEL given: generating a random-weight model (real qwen2 tokenizer, random weights)"
        build/nightshift gen-model --vocab "$prefix/src/models/ggml-vocab-qwen2.gguf" --shape small -o "$model"
    fi
    echo "demo: NOTE: this model has random weights, so its answers are meaningless text; set NIGHTSHIFT_MODEL=/path/model.gguf for a real one"
fi
rm -f "$out/results.jsonl" "$out/results.errors.jsonl" "$out/results.jsonl.state.db"*
echo "demo: running examples/requests.jsonl (chat and completion lines, one with a bad parameter)"
build/nightshift run examples/requests.jsonl -o "$out/results.jsonl" --model "$model" "${alias_args[@]}" \
    --parallel 16 --ctx 8192 --summary "$out/summary.json"
echo
echo "demo: first result line:"
head -n 1 "$out/results.jsonl" | cut -c 1-400
echo "demo: error file ($(wc -l <"$out/results.errors.jsonl") lines):"
cut -c 1-300 "$out/results.errors.jsonl"
