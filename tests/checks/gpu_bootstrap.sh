#!/usr/bin/env bash
# The GPU steps of the bootstrap (scripts/gpu.sh) on faked machines: detection (an NVIDIA
# driver, a Vulkan GPU, neither), the refusals (no driver, a missing runtime library, a
# backend that needs a library the host lacks, a package of another llama.cpp release,
# libraries our llama.h does not link to, a package that fails its integrity check, a bad
# NIGHTSHIFT_GPU value), each with the one line it must print. Nothing is downloaded.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/gpu.sh
. "$here/../../scripts/gpu.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "gpu_bootstrap: ok: $*"; }
bad() { echo "gpu_bootstrap: FAIL: $*" >&2; fails=$((fails + 1)); }

# expect STATUS REGEX -- CMD...: CMD exits STATUS and its stderr matches REGEX
expect() {
    local want=$1 re=$2; shift 3
    local out rc
    out=$("$@" 2>&1 >/dev/null); rc=$?
    if [ "$rc" != "$want" ]; then bad "$* exited $rc, not $want: $out"; return; fi
    if [ -n "$re" ] && ! grep -qE -- "$re" <<<"$out"; then bad "$*: no line matching /$re/ in: $out"; return; fi
    ok "$* -> $rc${re:+, says /$re/}"
}

# ---- detection ----------------------------------------------------------------------------
mk_machine() { # name, then any of: nvidia cuda-libs vulkan-lib render-node
    local m="$tmp/$1"; shift
    mkdir -p "$m/root" "$m/lib"
    for f in "$@"; do
        case $f in
            nvidia) mkdir -p "$m/root/proc/driver/nvidia"; echo "NVRM version: 580" >"$m/root/proc/driver/nvidia/version"
                    touch "$m/lib/libcuda.so.1" ;;
            cuda-libs) touch "$m/lib/libcudart.so.13" "$m/lib/libcublas.so.13" ;;
            vulkan-lib) touch "$m/lib/libvulkan.so.1" ;;
            render-node) mkdir -p "$m/root/dev/dri"; touch "$m/root/dev/dri/renderD128" ;;
        esac
    done
    echo "$m"
}
detect_on() { local m=$1; GPU_SYSROOT="$m/root" GPU_LIBDIRS="$m/lib" gpu_detect; }
m_nv=$(mk_machine nv nvidia cuda-libs vulkan-lib render-node)
m_vk=$(mk_machine vk vulkan-lib render-node)
m_lvp=$(mk_machine lvp vulkan-lib)
m_none=$(mk_machine none)
for c in "$m_nv cuda" "$m_vk vulkan" "$m_lvp cpu" "$m_none cpu"; do
    set -- $c
    got=$(detect_on "$1")
    [ "$got" = "$2" ] && ok "auto on $(basename "$1"): $got" || bad "auto on $(basename "$1"): $got, not $2"
done

# ---- host checks --------------------------------------------------------------------------
on() { local m=$1; shift; GPU_SYSROOT="$m/root" GPU_LIBDIRS="$m/lib" "$@"; }
expect 1 'NIGHTSHIFT_GPU=cuda: no NVIDIA driver on this machine \(libcuda.so.1, /proc/driver/nvidia/version\): install the NVIDIA driver' \
    -- on "$m_none" gpu_check_host cuda
expect 1 'NIGHTSHIFT_GPU=cuda: libcudart.so.13 is missing: install the CUDA 13 runtime' -- on "$m_none" gpu_check_host cuda
m_nolibs=$(mk_machine nolibs nvidia)
expect 1 'libcublas.so.13 is missing' -- on "$m_nolibs" gpu_check_host cuda
expect 0 '' -- on "$m_nv" gpu_check_host cuda
expect 1 'NIGHTSHIFT_GPU=vulkan: libvulkan.so.1 is missing: apt-get install libvulkan1 mesa-vulkan-drivers' \
    -- on "$m_none" gpu_check_host vulkan
expect 0 '' -- on "$m_lvp" gpu_check_host vulkan

# ---- a backend that needs a library the host lacks (ldd's "not found") --------------------
# (a made-up soname: a real one, libcudart.so.13, may well be on the machine running this)
bins="$tmp/bins"; stub="$tmp/stub"
mkdir -p "$bins" "$stub"
echo 'int cudart_stub;' >"$tmp/s.c"
cc -shared -fPIC -o "$stub/libnsfake-cudart.so.13" -Wl,-soname,libnsfake-cudart.so.13 "$tmp/s.c"
echo 'int ggml_backend_init;' >"$tmp/b.c"
cc -shared -fPIC -o "$bins/libggml-cuda.so" "$tmp/b.c" -Wl,--no-as-needed -L"$stub" -l:libnsfake-cudart.so.13
expect 0 '' -- env GPU_LIBDIRS="$stub" bash -c ". '$here/../../scripts/gpu.sh'; gpu_check_backend_deps '$bins' cuda"
rm -f "$stub/libnsfake-cudart.so.13"
expect 1 'libggml-cuda.so needs libnsfake-cudart.so.13, which is not on this machine' -- gpu_check_backend_deps "$bins" cuda
expect 1 'the package holds no libggml-vulkan.so' -- gpu_check_backend_deps "$bins" vulkan

# ---- release and ABI ------------------------------------------------------------------------
src="$tmp/src"; mkdir -p "$src"
echo '{ "tag": "v0.5.0", "llamaCppGithubRepo": "ggml-org/llama.cpp" }' >"$src/.node-llama-cpp-info.json"
echo '{"buildOptions":{"gpu":"vulkan","llamaCpp":{"repo":"ggml-org/llama.cpp","release":"v0.5.0"}}}' >"$bins/_nlcBuildMetadata.json"
expect 0 '' -- gpu_check_release "$bins" "$src"
echo '{"buildOptions":{"gpu":"vulkan","llamaCpp":{"repo":"ggml-org/llama.cpp","release":"v0.4.2"}}}' >"$bins/_nlcBuildMetadata.json"
expect 1 "ABI mismatch: the GPU package was built from llama.cpp 'v0.4.2' but nightshift's source bundle is 'v0.5.0': refusing to mix them" \
    -- gpu_check_release "$bins" "$src"
# libraries that do not provide what our llama.h declares
inc="$tmp/include"; mkdir -p "$inc"
printf '#define GGML_TYPE_F16 1\nstruct llama_model_params { int n_gpu_layers; int use_extra_bufts; };\nstruct llama_context_params { int n_seq_max; int type_k; };\nstruct llama_model_params llama_model_default_params(void);\nstruct llama_context_params llama_context_default_params(void);\nconst char *ggml_version(void);\nconst char *ggml_commit(void);\n' >"$inc/llama.h"
echo 'int nothing_here;' >"$tmp/e.c"
cc -shared -fPIC -o "$bins/libllama.vulkan.v0.5.0.so" "$tmp/e.c"
cc -shared -fPIC -o "$bins/libggml-base.so" "$tmp/e.c"
expect 1 "ABI mismatch: a probe against our llama.h does not link to the package's libraries" -- gpu_probe vulkan "$bins" "$inc"
# libraries that link but fill the params otherwise than our header says
cat >"$tmp/l.c" <<'EOF'
struct llama_model_params { int n_gpu_layers; int use_extra_bufts; };
struct llama_context_params { int n_seq_max; int type_k; };
struct llama_model_params llama_model_default_params(void) { struct llama_model_params p = {99, 1}; return p; }
struct llama_context_params llama_context_default_params(void) { struct llama_context_params p = {1, 1}; return p; }
const char *ggml_version(void) { return "0.0.1"; }
const char *ggml_commit(void) { return "abc1234"; }
EOF
cc -shared -fPIC -o "$bins/libllama.vulkan.v0.5.0.so" "$tmp/l.c"
expect 1 "ABI mismatch: the package's libllama does not behave as our llama.h describes" -- gpu_probe vulkan "$bins" "$inc"
sed -i 's/{99, 1}/{-1, 1}/' "$tmp/l.c"
cc -shared -fPIC -o "$bins/libllama.vulkan.v0.5.0.so" "$tmp/l.c"
got=$(gpu_probe vulkan "$bins" "$inc" 2>/dev/null)
[ "$got" = "0.0.1 abc1234" ] && ok "probe reports 'ggml version commit': $got" || bad "probe printed '$got'"

# ---- integrity and the value of NIGHTSHIFT_GPU ---------------------------------------------
echo "not the package" >"$tmp/fake.tgz"
expect 1 'integrity mismatch for @node-llama-cpp/linux-x64-vulkan@3.22.1: got sha512-.*: refusing it' \
    -- env GPU_PACKAGE_TGZ="$tmp/fake.tgz" bash -c ". '$here/../../scripts/gpu.sh'; gpu_fetch vulkan '$tmp/fetch'"
expect 2 "NIGHTSHIFT_GPU must be auto, cuda, vulkan or cpu, not 'metal'" -- gpu_bootstrap metal "$tmp/cpu" "$tmp/cache"
got=$(GPU_SYSROOT="$m_none/root" GPU_LIBDIRS="$m_none/lib" gpu_bootstrap auto "$tmp/cpu-prefix" "$tmp/cache" 2>/dev/null)
[ "$got" = "$tmp/cpu-prefix" ] && ok "auto on a machine without a GPU: the CPU prefix" || bad "auto without a GPU gave '$got'"
expect 1 'NIGHTSHIFT_GPU=cuda: no NVIDIA driver' -- on "$m_none" gpu_bootstrap cuda "$tmp/cpu-prefix" "$tmp/cache"

if [ "$fails" -ne 0 ]; then
    echo "gpu_bootstrap: $fails checks failed" >&2
    exit 1
fi
echo "gpu_bootstrap: all checks passed"
