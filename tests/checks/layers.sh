#!/usr/bin/env bash
# The layers' include rules, which the per-layer libraries cannot see (a header's types
# link nothing): llama.h only in engine/; engine.h (the engine itself, as opposed to the
# request contract in engine/request.h) only in engine/, in backend.c (which owns an
# engine) and in cli/ (which configures one); no source reaches a folder above its own.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT/src"
fail=0
bad() { echo "FAIL: $*"; fail=1; }
for f in $(grep -rl --include='*.[ch]' --include='*.cpp' -E '#include [<"](\.\./)*(llama|ggml|gguf)' . || true); do
    case "$f" in ./engine/*) ;; *) bad "$f includes llama.cpp's headers (engine/ alone does)";; esac
done
for f in $(grep -rlE --include='*.[ch]' '#include "(\.\./engine/)?engine\.h"' . || true); do
    case "$f" in ./engine/*|./backend/backend.c|./cli/*) ;; *) bad "$f includes engine.h (use engine/request.h, and backend_model_info for a model's facts)";; esac
done
# folder order, lowest first; a file may include its own folder and those before it
order=(util store engine proto backend sched http cli)
rank() { local i; for i in "${!order[@]}"; do [ "${order[$i]}" = "$1" ] && echo "$i" && return; done; echo -1; }
for f in $(find . -name '*.[ch]' -o -name '*.cpp'); do
    own=$(echo "$f" | cut -d/ -f2); r=$(rank "$own")
    while read -r inc; do
        [ -n "$inc" ] || continue
        tr=$(rank "$inc")
        # store and engine sit side by side, as do proto and backend: neither may reach the other
        if [ "$tr" -gt "$r" ] || { [ "$own" = store ] && [ "$inc" = engine ]; } || { [ "$own" = engine ] && [ "$inc" = store ]; } \
            || { [ "$own" = backend ] && [ "$inc" = proto ]; } || { [ "$own" = proto ] && [ "$inc" = backend ]; }; then
            bad "$f ($own) includes a header of $inc"
        fi
    done < <(grep -oE '#include "\.\./[a-z]+/' "$f" | sed -E 's|#include "\.\./([a-z]+)/|\1|' | sort -u)
done
[ "$fail" = 0 ] && echo "layers: ok"
exit "$fail"
