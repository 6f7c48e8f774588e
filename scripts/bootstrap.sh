#!/usr/bin/env bash
# bootstrap.sh — everything nightshift needs on a fresh Debian machine, idempotent.
#
#   1. Debian packages (compilers, libmicrohttpd, libcurl, SQLite, libpq, cJSON, cmocka, node/npm).
#   2. llama.cpp, from the git bundle inside the npm package node-llama-cpp (pinned version,
#      integrity checked), built once into a cache outside the repo keyed by that version and
#      by the CPU flags, so a second run costs seconds.
#
# The llama.cpp build targets this machine's CPU (-march=native) with AMX switched off:
# a plain GGML_NATIVE=ON build crashed in ggml's AMX matmul kernel on Sapphire Rapids build
# machines. tests/e2e/test_amx_guard.sh checks the built library holds no AMX instruction and
# that batched matmuls run.
#
# 3. With NIGHTSHIFT_GPU=auto|cuda|vulkan (default cpu: nothing more), llama.cpp's prebuilt GPU
#    backends of the same release from the npm registry (scripts/gpu.sh): integrity, release
#    and ABI checked, host libraries named when missing; the prefix printed is then the GPU
#    one (a separate cache directory: the CPU build is never touched).
#
# Usage: [NIGHTSHIFT_GPU=...] scripts/bootstrap.sh [--tools]   (--tools also builds llama-server, llama-batched-bench
#                                          and installs gnuplot-nox, libjansson-dev, libjson-c-dev,
#                                          and wrk, the HTTP load generator of tests/load)
# Prints the cache prefix on its last line as  NIGHTSHIFT_LLAMA_PREFIX=...
set -euo pipefail

NLC_VERSION="3.22.1"
UPLOT_VERSION=1.6.32   # keep in step with NS_UPLOT_VERSION in CMakeLists.txt
UPLOT_INTEGRITY="sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
NLC_INTEGRITY="sha512-bltIipuWmc123H7tMIgDGKSsSrhmhlQYeVUC48XTjVW7XGJJiJJyCdlTMzQ/LiWoPkGDpcL4FviDpgw7qfTiDw=="
WANT_TOOLS=0
[ "${1:-}" = "--tools" ] && WANT_TOOLS=1

say() { printf 'bootstrap: %s\n' "$*" >&2; }

# ---- 1. Debian packages (prometheus: its promtool checks our metrics and alert rules in tests;
#      libinih: the --config file parser; nettle: SHA-256, HMAC and base64; systemd: its systemd-analyze verifies our units in
#      tests, no running systemd needed; clang: libFuzzer for tests/fuzz; valgrind: the leak
#      check of the release build's serve cycle; postgresql: the PostgreSQL store's tests start
#      a real server) ----
PKGS="build-essential cmake git pkg-config ca-certificates libmicrohttpd-dev libcurl4-openssl-dev
libsqlite3-dev sqlite3 libpq-dev postgresql libcjson-dev libcmocka-dev libinih-dev nettle-dev nodejs npm binutils prometheus systemd chromium clang
valgrind"
# --tools (benchmarks and the load test): gnuplot renders bench/run's plots; jansson and
# json-c are the other JSON libraries bench/json_ingest.c compares cJSON with; wrk drives
# tests/load/wrk.sh (which skips itself without it)
[ "$WANT_TOOLS" = 1 ] && PKGS="$PKGS gnuplot-nox libjansson-dev libjson-c-dev wrk"
# NIGHTSHIFT_GPU=vulkan: the Vulkan loader, and Mesa's drivers (lavapipe: Vulkan on the CPU,
# which the tests run on)
GPU_WANT="${NIGHTSHIFT_GPU:-cpu}"
[ "$GPU_WANT" = vulkan ] && PKGS="$PKGS libvulkan1 mesa-vulkan-drivers"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# node/npm may come from elsewhere on some images; accept them when on PATH
case " $missing " in *" nodejs "*) command -v node >/dev/null && missing="${missing/ nodejs/}";; esac
case " $missing " in *" npm "*) command -v npm >/dev/null && missing="${missing/ npm/}";; esac
if [ -n "${missing// /}" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    say "installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    say "Debian packages present"
fi

# ---- 2. llama.cpp from node-llama-cpp -----------------------------------------------
CACHE_ROOT="${NIGHTSHIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nightshift}"
# Key the build by package version and by what -march=native means on this CPU.
cpukey=$(gcc -march=native -Q --help=target 2>/dev/null | grep -E '^\s+-m(arch|avx|amx|fma|f16c|bmi)' | sha256sum | cut -c1-12)
PREFIX="$CACHE_ROOT/llama-$NLC_VERSION-$cpukey"
SRC="$PREFIX/src"
mkdir -p "$CACHE_ROOT"

if [ ! -f "$SRC/.nightshift-ok" ]; then
    say "fetching node-llama-cpp@$NLC_VERSION from the npm registry"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "node-llama-cpp@$NLC_VERSION" >/dev/null 2>&1)
    tgz="$tmp/node-llama-cpp-$NLC_VERSION.tgz"
    got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
    if [ "$got" != "$NLC_INTEGRITY" ]; then
        say "integrity mismatch for node-llama-cpp-$NLC_VERSION.tgz: got $got"; exit 1
    fi
    say "integrity ok; cloning llama/gitRelease.bundle"
    tar -xzf "$tgz" -C "$tmp" package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
    rm -rf "$SRC"
    git clone -q "$tmp/package/llama/gitRelease.bundle" "$SRC" 2>/dev/null
    cp "$tmp/package/llama/llama.cpp.info.json" "$SRC/.node-llama-cpp-info.json"
    rm -rf "$tmp"
    touch "$SRC/.nightshift-ok"
fi

BUILD="$PREFIX/build"
ARCHFLAGS="-march=native -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
if [ ! -f "$PREFIX/.lib-ok" ]; then
    say "building libllama into $PREFIX (once; a few minutes on 2 cores)"
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF \
        -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
        -DCMAKE_C_FLAGS="$ARCHFLAGS" -DCMAKE_CXX_FLAGS="$ARCHFLAGS" \
        -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
        -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_COMMON=ON \
        -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        -DCMAKE_INSTALL_PREFIX="$PREFIX" >"$PREFIX/cmake-configure.log" 2>&1 \
        || { tail -30 "$PREFIX/cmake-configure.log"; exit 1; }
    cmake --build "$BUILD" --target llama -j"$(nproc)" >"$PREFIX/build-lib.log" 2>&1 \
        || { tail -40 "$PREFIX/build-lib.log"; exit 1; }
    # install headers + static libs by hand (cmake --install would want every tool built)
    mkdir -p "$PREFIX/include" "$PREFIX/lib"
    cp "$SRC"/include/llama.h "$SRC"/ggml/include/*.h "$PREFIX/include/"
    find "$BUILD" -name '*.a' -exec cp {} "$PREFIX/lib/" \;
    touch "$PREFIX/.lib-ok"
fi

# llama.cpp's common library (chat templates, tool-call formats and parsers, reasoning,
# JSON Schema -> grammar), which src/engine/chat.cpp wraps; its headers are read from $SRC
if [ ! -f "$PREFIX/.common-ok" ]; then
    say "building llama.cpp's common library (chat templates, tool calls, schemas)"
    cmake --build "$BUILD" --target llama-common -j"$(nproc)" >"$PREFIX/build-common.log" 2>&1 \
        || { tail -40 "$PREFIX/build-common.log"; exit 1; }
    mkdir -p "$PREFIX/lib"
    cp "$BUILD/common/libllama-common.a" "$BUILD/common/libllama-common-base.a" "$PREFIX/lib/"
    touch "$PREFIX/.common-ok"
fi

if [ "$WANT_TOOLS" = 1 ] && [ ! -f "$PREFIX/.tools-ok" ]; then
    say "building llama-server and llama-batched-bench (benchmark anchors)"
    cmake --build "$BUILD" --target llama-server llama-batched-bench -j"$(nproc)" >"$PREFIX/build-tools.log" 2>&1 \
        || { tail -40 "$PREFIX/build-tools.log"; exit 1; }
    mkdir -p "$PREFIX/bin"
    cp "$BUILD/bin/llama-server" "$BUILD/bin/llama-batched-bench" "$PREFIX/bin/"
    touch "$PREFIX/.tools-ok"
fi

# ---- 3. uPlot (the dashboard's charts), from the npm registry, pinned and checked ----------
UPLOT_DIR="$CACHE_ROOT/uplot-$UPLOT_VERSION"
if [ ! -f "$UPLOT_DIR/.ok" ]; then
    say "fetching uplot@$UPLOT_VERSION from the npm registry"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null 2>&1)
    got="sha512-$(openssl dgst -sha512 -binary "$tmp/uplot-$UPLOT_VERSION.tgz" | base64 -w0)"
    if [ "$got" != "$UPLOT_INTEGRITY" ]; then
        say "integrity mismatch for uplot-$UPLOT_VERSION.tgz: got $got"; exit 1
    fi
    tar -xzf "$tmp/uplot-$UPLOT_VERSION.tgz" -C "$tmp" package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE
    mkdir -p "$UPLOT_DIR"
    cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$tmp/package/LICENSE" "$UPLOT_DIR/"
    rm -rf "$tmp"
    touch "$UPLOT_DIR/.ok"
fi

# ---- 4. GPU backends (NIGHTSHIFT_GPU) --------------------------------------------------------
if [ "$GPU_WANT" != cpu ]; then
    # shellcheck source=scripts/gpu.sh
    . "$(dirname "$0")/gpu.sh"
    PREFIX=$(gpu_bootstrap "$GPU_WANT" "$PREFIX" "$CACHE_ROOT") || exit 1
fi

say "llama.cpp ready ($(git -C "$SRC" rev-parse --short HEAD), node-llama-cpp $NLC_VERSION); uplot $UPLOT_VERSION"
echo "NIGHTSHIFT_LLAMA_PREFIX=$PREFIX"
