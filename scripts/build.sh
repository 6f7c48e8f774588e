#!/usr/bin/env bash
# build.sh [release|asan] — bootstrap (idempotent), then configure and build nightshift.
#   release: build/       -O2, -Werror
#   asan:    build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer, -Werror
#   vulkan:  build-vulkan/ -O2, linked to llama.cpp's prebuilt Vulkan libraries (NIGHTSHIFT_GPU=vulkan)
#   cuda:    build-cuda/   the same with the CUDA ones (NIGHTSHIFT_GPU=cuda)
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
case "$kind" in vulkan|cuda) export NIGHTSHIFT_GPU=$kind ;; esac
prefix=$(scripts/bootstrap.sh | sed -n 's/^NIGHTSHIFT_LLAMA_PREFIX=//p')
[ -n "$prefix" ] || { echo "build: bootstrap did not report the llama.cpp prefix" >&2; exit 1; }
case "$kind" in
    release) dir=build; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DNS_SANITIZE=OFF) ;;
    asan)    dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=Debug -DNS_SANITIZE=ON) ;;
    vulkan|cuda) dir=build-$kind; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DNS_SANITIZE=OFF) ;;
    *) echo "build: unknown kind '$kind' (release, asan, vulkan or cuda)" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -DLLAMA_PREFIX="$prefix" -DNS_WERROR=ON "${flags[@]}" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; exit 1; }
# a failed build fails here, even where an older binary is left from an earlier build
status=0
# a GPU build is the program only: the tests that use it (tests/e2e/vulkan.test.mjs) run
# from the release build's tree
target=(); case "$kind" in vulkan|cuda) target=(--target nightshift) ;; esac
cmake --build "$dir" -j"$(nproc)" "${target[@]}" >"$dir.build.log" 2>&1 || status=$?
grep -vE '^(\[ *[0-9]+%\]|g?make\[)' "$dir.build.log" || true
[ "$status" = 0 ] || { echo "build: the $kind build failed (log: $dir.build.log)" >&2; exit 1; }
test -x "$dir/nightshift" || { echo "build: $dir/nightshift was not built" >&2; exit 1; }
echo "build: $dir/nightshift ready"
