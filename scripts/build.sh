#!/usr/bin/env bash
# build.sh [release|asan] — bootstrap (idempotent), then configure and build nightshift.
#   release: build/       -O2, -Werror
#   asan:    build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer, -Werror
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
prefix=$(scripts/bootstrap.sh | sed -n 's/^NIGHTSHIFT_LLAMA_PREFIX=//p')
[ -n "$prefix" ] || { echo "build: bootstrap did not report the llama.cpp prefix" >&2; exit 1; }
case "$kind" in
    release) dir=build; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DNS_SANITIZE=OFF) ;;
    asan)    dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=Debug -DNS_SANITIZE=ON) ;;
    *) echo "build: unknown kind '$kind' (release or asan)" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -DLLAMA_PREFIX="$prefix" -DNS_WERROR=ON "${flags[@]}" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; exit 1; }
# a failed build fails here, even where an older binary is left from an earlier build
status=0
cmake --build "$dir" -j"$(nproc)" >"$dir.build.log" 2>&1 || status=$?
grep -vE '^(\[ *[0-9]+%\]|g?make\[)' "$dir.build.log" || true
[ "$status" = 0 ] || { echo "build: the $kind build failed (log: $dir.build.log)" >&2; exit 1; }
test -x "$dir/nightshift" || { echo "build: $dir/nightshift was not built" >&2; exit 1; }
echo "build: $dir/nightshift ready"
