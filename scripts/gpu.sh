#!/usr/bin/env bash
# gpu.sh — llama.cpp's prebuilt GPU backends for nightshift, sourced by bootstrap.sh
# (NIGHTSHIFT_GPU=auto|cuda|vulkan|cpu) and by tests/checks/gpu_bootstrap.sh, which fakes
# the machine through the variables below.
#
# DESIGN
# nightshift links the npm package's shared libraries (libllama.<kind>.v0.5.0.so,
# libggml.<kind>.v0.5.0.so, libggml-base.so, libllama-common.so) instead of our static CPU
# build, and the engine loads the package's backends (the best CPU variant for the machine,
# and libggml-vulkan.so or libggml-cuda.so) from the same directory at start. One set of
# libraries from one build, compiled against headers of the same release:
#   - the package is pinned (version = node-llama-cpp's) and its sha512 checked;
#   - its build metadata must name the llama.cpp release our source bundle is (else refused);
#   - a probe compiled against the bundle's headers and linked to the package's libraries
#     must run, and reports ggml's version and commit, which the build records; the engine
#     compares them with the loaded libraries at start and refuses a mismatch.
# The GPU prefix ($CACHE_ROOT/llama-<version>-<kind>) holds include/ (the bundle's headers),
# src (a link to the CPU prefix's source tree: common's headers), bins/ (the package's
# libraries) and nightshift-gpu.cmake, which CMakeLists.txt reads.
#
# Fakeable (tests): GPU_SYSROOT (prefix of /proc/driver/nvidia/version and /dev/dri),
# GPU_LIBDIRS (colon-separated directories searched for host libraries instead of the
# loader's cache), GPU_PACKAGE_TGZ (a package tarball instead of `npm pack`).

GPU_NLC_VERSION="${NLC_VERSION:-3.22.1}"
# dist.integrity of each package at that version (npm view @node-llama-cpp/linux-x64-<kind>@<v> dist.integrity)
gpu_integrity() {
    case "$1" in
        vulkan) echo "sha512-bBxqU+JOcBu1nb5Qj2zcMci+JByT1E8EajHvYodyNfVIPkEhXh+/HMwR1/BT7xP08YK0hks+kM8fglER0P8JEg==" ;;
        cuda) echo "sha512-8rQCjyNNLZJUFit+YpjwlC4hwkKgOMIkB2wuycKBf8NU2O3ySKbiWZQ8aw9ku2nUTXjSnUIrE6KB88itduTBuA==" ;;
        cuda-ext) echo "sha512-4e5ajkiM2aR2WAdB/N/ACk4weEhHvOAIrzxZPsIX0xDFW5+6hhShuy1/vs88SK9NGdgAco9IyE28eYS0H1efpA==" ;;
    esac
}

gpu_say() { printf 'bootstrap: %s\n' "$*" >&2; }
gpu_fail() { printf 'bootstrap: %s\n' "$*" >&2; return 1; }

# is host library $1 (a soname) where the loader finds it?
gpu_have_lib() {
    local d
    if [ -n "${GPU_LIBDIRS:-}" ]; then
        local IFS=:
        for d in $GPU_LIBDIRS; do [ -e "$d/$1" ] && return 0; done
        return 1
    fi
    ldconfig -p 2>/dev/null | awk -v l="$1" '$1 == l { f = 1 } END { exit !f }' && return 0
    if [ -n "${LD_LIBRARY_PATH:-}" ]; then
        local IFS=:
        for d in $LD_LIBRARY_PATH; do [ -e "$d/$1" ] && return 0; done
    fi
    return 1
}

gpu_nvidia_driver() { [ -e "${GPU_SYSROOT:-}/proc/driver/nvidia/version" ] && gpu_have_lib libcuda.so.1; }
# a Vulkan loader and a GPU render node (a CPU-only Vulkan, lavapipe, is not reason enough)
gpu_vulkan_gpu() { gpu_have_lib libvulkan.so.1 && compgen -G "${GPU_SYSROOT:-}/dev/dri/renderD*" >/dev/null; }

# auto -> cuda (an NVIDIA driver), vulkan (a Vulkan loader and a GPU), else cpu
gpu_detect() {
    if gpu_nvidia_driver; then echo cuda
    elif gpu_vulkan_gpu; then echo vulkan
    else echo cpu
    fi
}

# what the host must have for KIND, each missing one named with how to get it; 0 when all there
gpu_check_host() {
    local kind=$1 missing=0
    case "$kind" in
        cuda)
            if [ ! -e "${GPU_SYSROOT:-}/proc/driver/nvidia/version" ] || ! gpu_have_lib libcuda.so.1; then
                gpu_say "NIGHTSHIFT_GPU=cuda: no NVIDIA driver on this machine (libcuda.so.1, /proc/driver/nvidia/version): install the NVIDIA driver (Debian: nvidia-driver), or use NIGHTSHIFT_GPU=vulkan or cpu"
                missing=1
            fi
            for l in libcudart.so.13 libcublas.so.13; do
                gpu_have_lib "$l" || { gpu_say "NIGHTSHIFT_GPU=cuda: $l is missing: install the CUDA 13 runtime (cuda-cudart-13 and libcublas-13 from NVIDIA's CUDA repository, https://developer.nvidia.com/cuda-downloads) or put its lib64 directory on LD_LIBRARY_PATH"; missing=1; }
            done ;;
        vulkan)
            gpu_have_lib libvulkan.so.1 || { gpu_say "NIGHTSHIFT_GPU=vulkan: libvulkan.so.1 is missing: apt-get install libvulkan1 mesa-vulkan-drivers (Mesa's drivers; lavapipe runs Vulkan on the CPU)"; missing=1; } ;;
    esac
    return $missing
}

# libraries a package's backend needs that the loader cannot find (ldd's "not found"): one
# line each, so a host library we did not think of is still named
gpu_check_backend_deps() {
    local bins=$1 kind=$2 lib missing
    lib="$bins/libggml-$kind.so"
    [ -f "$lib" ] || { gpu_fail "the package holds no libggml-$kind.so in $bins"; return 1; }
    missing=$(LD_LIBRARY_PATH="${GPU_LIBDIRS:-}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$lib" 2>/dev/null | awk '/not found/{print $1}' | sort -u)
    [ -z "$missing" ] && return 0
    for l in $missing; do gpu_say "libggml-$kind.so needs $l, which is not on this machine (see docs/OPERATIONS.md, GPU)"; done
    return 1
}

# fetch @node-llama-cpp/linux-x64-KIND at the pinned version into DIR/package, integrity checked
gpu_fetch() {
    local kind=$1 dir=$2 tgz want got
    want=$(gpu_integrity "$kind")
    [ -n "$want" ] || { gpu_fail "no pinned integrity for package kind '$kind'"; return 1; }
    mkdir -p "$dir"
    if [ -n "${GPU_PACKAGE_TGZ:-}" ]; then
        tgz=$GPU_PACKAGE_TGZ
    else
        gpu_say "fetching @node-llama-cpp/linux-x64-$kind@$GPU_NLC_VERSION from the npm registry"
        (cd "$dir" && npm pack --silent "@node-llama-cpp/linux-x64-$kind@$GPU_NLC_VERSION" >/dev/null 2>&1) \
            || { gpu_fail "npm pack @node-llama-cpp/linux-x64-$kind@$GPU_NLC_VERSION failed (network?)"; return 1; }
        tgz="$dir/node-llama-cpp-linux-x64-$kind-$GPU_NLC_VERSION.tgz"
    fi
    got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
    if [ "$got" != "$want" ]; then
        gpu_fail "integrity mismatch for @node-llama-cpp/linux-x64-$kind@$GPU_NLC_VERSION: got $got, want $want: refusing it"
        return 1
    fi
    tar -xzf "$tgz" -C "$dir"
}

# the package is the release of our source bundle: its build metadata's llama.cpp release
# against the bundle's tag (node-llama-cpp's llama.cpp.info.json)
gpu_check_release() {
    local bins=$1 src=$2 theirs ours
    theirs=$(sed -n 's/.*"release":"\([^"]*\)".*/\1/p' "$bins/_nlcBuildMetadata.json" 2>/dev/null)
    ours=$(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$src/.node-llama-cpp-info.json" 2>/dev/null)
    if [ -z "$theirs" ] || [ -z "$ours" ] || [ "$theirs" != "$ours" ]; then
        gpu_fail "ABI mismatch: the GPU package was built from llama.cpp '${theirs:-unknown}' but nightshift's source bundle is '${ours:-unknown}': refusing to mix them (both come from node-llama-cpp $GPU_NLC_VERSION; re-run bootstrap)"
        return 1
    fi
}

# compile a probe against the bundle's headers, link it to the package's libraries, run it:
# prints "GGML_VERSION GGML_COMMIT" (what the build records and the engine checks at start)
gpu_probe() {
    local kind=$1 bins=$2 include=$3 tmp out
    tmp=$(mktemp -d)
    cat >"$tmp/probe.c" <<'EOF'
#include <stdio.h>
#include "llama.h"
int main(void)
{
    struct llama_model_params mp = llama_model_default_params();
    struct llama_context_params cp = llama_context_default_params();
    /* the defaults llama.cpp fills must be the ones our headers describe */
    if (mp.n_gpu_layers != -1 || mp.use_extra_bufts != 1 || cp.n_seq_max != 1 || cp.type_k != GGML_TYPE_F16)
        return 3;
    printf("%s %s\n", ggml_version(), ggml_commit());
    return 0;
}
EOF
    if ! cc -o "$tmp/probe" "$tmp/probe.c" -I"$include" -L"$bins" -l:"libllama.$kind.v0.5.0.so" -l:libggml-base.so \
        -Wl,-rpath,"$bins" 2>"$tmp/cc.log"; then
        gpu_fail "ABI mismatch: a probe against our llama.h does not link to the package's libraries: $(head -3 "$tmp/cc.log")"
        rm -rf "$tmp"; return 1
    fi
    if ! out=$("$tmp/probe" 2>&1); then
        gpu_fail "ABI mismatch: the package's libllama does not behave as our llama.h describes (probe: ${out:-exit $?})"
        rm -rf "$tmp"; return 1
    fi
    rm -rf "$tmp"
    echo "$out"
}

# the whole GPU step: $1 = auto|cuda|vulkan|cpu, $2 = the CPU prefix (source tree, headers),
# $3 = the cache root. Prints the prefix to build against (the CPU one for cpu).
gpu_bootstrap() {
    local want=$1 cpu_prefix=$2 cache_root=$3 kind prefix bins ver
    case "$want" in
        auto) kind=$(gpu_detect); gpu_say "NIGHTSHIFT_GPU=auto: $kind" ;;
        cuda|vulkan|cpu) kind=$want ;;
        *) gpu_fail "NIGHTSHIFT_GPU must be auto, cuda, vulkan or cpu, not '$want'"; return 2 ;;
    esac
    if [ "$kind" = cpu ]; then echo "$cpu_prefix"; return 0; fi
    gpu_check_host "$kind" || return 1
    prefix="$cache_root/llama-$GPU_NLC_VERSION-$kind"
    bins="$prefix/bins"
    if [ ! -f "$prefix/.gpu-ok" ]; then
        rm -rf "$prefix"
        mkdir -p "$prefix/include" "$bins"
        local tmp
        tmp=$(mktemp -d)
        gpu_fetch "$kind" "$tmp" || { rm -rf "$tmp"; return 1; }
        # the Sapphire Rapids CPU variant is left out: ggml's AMX kernels crashed on those
        # machines (see bootstrap.sh); ggml then picks the next best variant
        find "$tmp/package/bins/linux-x64-$kind" -maxdepth 1 -type f ! -name 'llama-addon.node' \
            ! -name 'libggml-cpu-sapphirerapids.so' -exec cp {} "$bins/" \;
        rm -rf "$tmp"
        cp "$cpu_prefix"/include/*.h "$prefix/include/"
        ln -sfn "$cpu_prefix/src" "$prefix/src"
    fi
    gpu_check_release "$bins" "$cpu_prefix/src" || return 1
    gpu_check_backend_deps "$bins" "$kind" || return 1
    ver=$(gpu_probe "$kind" "$bins" "$prefix/include") || return 1
    cat >"$prefix/nightshift-gpu.cmake" <<EOF
# written by scripts/gpu.sh: nightshift links these prebuilt llama.cpp libraries
set(NS_GPU_KIND "$kind")
set(NS_GPU_BINS "$bins")
set(NS_GGML_VERSION "${ver% *}")
set(NS_GGML_COMMIT "${ver#* }")
EOF
    touch "$prefix/.gpu-ok"
    gpu_say "llama.cpp $kind backend ready in $bins (ggml $ver)"
    echo "$prefix"
}
