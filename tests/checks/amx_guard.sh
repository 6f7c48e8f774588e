#!/usr/bin/env bash
# AMX guard: ggml's AMX matmul kernel crashed on our Sapphire Rapids build machines when
# llama.cpp was built with plain GGML_NATIVE=ON. bootstrap.sh builds with -mno-amx-*; this
# checks the static libraries really hold no AMX tile instruction. (tests/unit/test_engine
# runs the batched Q8_0 matmuls that used to crash.)
set -euo pipefail
prefix=${1:?usage: amx_guard.sh LLAMA_PREFIX}
hits=0
for lib in "$prefix"/lib/libggml-cpu.a "$prefix"/lib/libggml-base.a "$prefix"/lib/libllama.a; do
    n=$(objdump -d --no-show-raw-insn "$lib" 2>/dev/null | grep -cE '\s(ldtilecfg|sttilecfg|tileloadd|tileloaddt1|tilestored|tilezero|tdpb[su][su]d|tdpbf16ps|tilerelease)\b' || true)
    echo "amx_guard: $lib: $n AMX instructions"
    hits=$((hits + n))
done
if [ "$hits" -ne 0 ]; then
    echo "amx_guard: FAIL: the llama.cpp build contains AMX instructions; rebuild with scripts/bootstrap.sh" >&2
    exit 1
fi
echo "amx_guard: ok"
