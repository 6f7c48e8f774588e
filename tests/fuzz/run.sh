#!/usr/bin/env bash
# run.sh [seconds] [target...] — build the libFuzzer targets (clang, NS_FUZZ=ON, in
# build-fuzz/) and run each for `seconds` (default 60) over its corpus.
#
# The checked-in corpus (tests/fuzz/corpus/<target>/) is only read: new inputs go to a
# scratch corpus under build-fuzz/, so a run leaves the tree as it was. A crash stops the
# run with the reproducer written to build-fuzz/crashes/<target>/ (crash-<sha1>); replay
# it with build-fuzz/tests/fuzz/fuzz_<target> FILE, fix, and check it in under
# tests/fuzz/corpus/<target>/ as a regression input (every corpus input is run first).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(batchfile oai anthropic responses ollama gemini chat_template http utf8 toolwire hub)
command -v clang >/dev/null || { echo "fuzz: clang is not installed (scripts/bootstrap.sh installs it)" >&2; exit 1; }
prefix=$(scripts/bootstrap.sh | sed -n 's/^NIGHTSHIFT_LLAMA_PREFIX=//p')
[ -n "$prefix" ] || { echo "fuzz: bootstrap did not report the llama.cpp prefix" >&2; exit 1; }
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DLLAMA_PREFIX="$prefix" -DNS_FUZZ=ON -DBUILD_TESTING=OFF \
    -DNS_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >build-fuzz.configure.log 2>&1 \
    || { cat build-fuzz.configure.log; exit 1; }
for t in "${targets[@]}"; do
    cmake --build build-fuzz -j"$(nproc)" --target "fuzz_$t" 2>&1 | grep -vE '^(\[ *[0-9]+%\]|g?make\[)' || true
    test -x "build-fuzz/tests/fuzz/fuzz_$t" || { echo "fuzz: fuzz_$t was not built" >&2; exit 1; }
done
export NIGHTSHIFT_VOCAB_DIR="$prefix/src/models"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0
for t in "${targets[@]}"; do
    work="build-fuzz/corpus/$t"
    crashes="build-fuzz/crashes/$t"
    mkdir -p "$work" "$crashes"
    echo "== fuzz_$t (${secs}s)"
    # -rss_limit_mb: a parser that balloons on small input is a bug too;
    # -max_len: big enough for nested JSON and multi-line files, small enough to stay fast
    if ! "build-fuzz/tests/fuzz/fuzz_$t" -max_total_time="$secs" -max_len=16384 -rss_limit_mb=2048 -timeout=10 \
        -dict=tests/fuzz/json.dict -artifact_prefix="$crashes/" -print_final_stats=1 \
        "$work" "tests/fuzz/corpus/$t" >"build-fuzz/fuzz_$t.log" 2>&1; then
        tail -60 "build-fuzz/fuzz_$t.log"
        echo "fuzz: fuzz_$t FAILED; reproducer in $crashes/" >&2
        status=1
    else
        grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|Done )' "build-fuzz/fuzz_$t.log" | tail -2
    fi
done
exit $status
