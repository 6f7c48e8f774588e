#!/usr/bin/env bash
# test.sh — every test: the suite under a -Werror release build (and a Vulkan build for the
# GPU tests, on Mesa's lavapipe), then again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then a short run of every libFuzzer target
# (tests/fuzz/run.sh; NIGHTSHIFT_FUZZ_SECONDS per target, default 20, 0 skips it).
# Runs from a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
# llama-server too: the upstream-backend tests run against it (cached after the first time)
scripts/bootstrap.sh --tools >/dev/null
scripts/build.sh release
scripts/build.sh asan
status=0
# the Vulkan build (llama.cpp's prebuilt Vulkan libraries; Debian's libvulkan1 and
# mesa-vulkan-drivers: lavapipe) for tests/e2e/vulkan.test.mjs, which runs in both suites
scripts/build.sh vulkan || { echo "== the Vulkan build failed: tests/e2e/vulkan.test.mjs skips" >&2; status=1; }
echo "== tests (release build)"
(cd build && ctest --output-on-failure -j1) || status=1
echo "== tests (ASan + UBSan build)"
(cd build-asan && ctest --output-on-failure -j1) || status=1
fuzz_secs=${NIGHTSHIFT_FUZZ_SECONDS:-20}
if [ "$fuzz_secs" != 0 ]; then
    echo "== fuzzing (${fuzz_secs}s per target)"
    tests/fuzz/run.sh "$fuzz_secs" || status=1
fi
exit $status
