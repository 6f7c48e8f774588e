# bench/lib/common.sh — the setup bench/core.sh and bench/prefix.sh share. Sourced, not run.
#
#   BENCH_NAME=core; ROOT=...; . "$ROOT/bench/lib/common.sh"
#
# Gives the sourcing script:
#   say MSG / die MSG       "[BENCH_NAME hh:mm:ss] MSG" on stderr (die exits 1)
#   calc EXPR               awk arithmetic, 6 decimals
#   WORK                    a fresh /tmp/ns-BENCH_NAME-bench.XXXXXX, removed at a successful exit
#                           (kept when the script fails, or with KEEP_WORK=1)
#   SERVER_PID, stop_server the llama-server this script started (stopped at exit too)
#   bench_tools             bootstrap --tools and a Release build in build-bench/: sets LP (llama.cpp
#                           prefix), SERVER_BIN, BB_BIN, NS (nightshift)
#   bench_model SHAPE TYPE  prints the path of the generated model qwen2-SHAPE-TYPE.gguf in the
#                           cache (NIGHTSHIFT_CACHE or ~/.cache/nightshift/models), made once
#   server_start LOG PORT ARGS...  starts llama-server -m ... with ARGS, waits for /health
#   free_port               a free TCP port on 127.0.0.1
#   loadavg, busy_ticks, HZ, NPROC, foreign_share, last_share, measure FN ARGS...
#                           the shared-machine guard: a run during which other processes used more
#                           than MAX_FOREIGN of the CPU is repeated up to RETRIES times (both read
#                           when measure runs; records are appended to RUNS by FN)
#   bench_facts             sets CPU_FLAGS, GIT_DESC (rev, "+ uncommitted changes in src/"),
#                           LLAMA_DESC, CPU_MODEL, MEM_DESC for the reports
# Only processes this script started are stopped; nothing else is touched.

say() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }

command -v node >/dev/null || die "node is required (bench/lib/*.mjs)"

# ---- cleanup: only what this script started ---------------------------------------
WORK=$(mktemp -d "/tmp/ns-$BENCH_NAME-bench.XXXXXX")
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
# A failed run keeps its work dir: the measurements of an hour-long run are in WORK/runs.jsonl
cleanup() {
    local rc=$?
    stop_server
    if [ "$rc" != 0 ]; then
        say "work files kept in $WORK (exit status $rc; runs.jsonl holds every run measured)"
    elif [ "${KEEP_WORK:-0}" = 1 ]; then
        say "work files kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- llama.cpp anchors and nightshift ----------------------------------------------------
bench_tools() {
    local boot_out
    say "bootstrap (llama.cpp + anchors)"
    boot_out=$("$ROOT/scripts/bootstrap.sh" --tools 2>"$WORK/bootstrap.log") || { cat "$WORK/bootstrap.log" >&2; die "bootstrap failed"; }
    LP=$(printf '%s\n' "$boot_out" | sed -n 's/^NIGHTSHIFT_LLAMA_PREFIX=//p' | tail -1)
    [ -x "$LP/bin/llama-server" ] && [ -x "$LP/bin/llama-batched-bench" ] || die "no anchors under '$LP'"
    SERVER_BIN="$LP/bin/llama-server"
    BB_BIN="$LP/bin/llama-batched-bench"

    local build="$ROOT/build-bench"
    say "building nightshift (Release) in $build"
    if [ ! -f "$build/CMakeCache.txt" ]; then
        cmake -S "$ROOT" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_PREFIX="$LP" -DBUILD_TESTING=OFF \
            >"$WORK/cmake.log" 2>&1 || { tail -30 "$WORK/cmake.log" >&2; die "cmake configure failed"; }
    fi
    cmake --build "$build" --target nightshift -j"$(nproc)" >"$WORK/build.log" 2>&1 \
        || { tail -30 "$WORK/build.log" >&2; die "build failed"; }
    NS="$build/nightshift"
}

# ---- generated models ------------------------------------------------------------------
MODELS="${NIGHTSHIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nightshift}/models"
bench_model() { # shape type -> path of the cached generated model (made once)
    local m="$MODELS/qwen2-$1-$2.gguf"
    mkdir -p "$MODELS"
    if [ ! -f "$m" ]; then
        say "generating the model $m"
        "$NS" gen-model --vocab "$LP/src/models/ggml-vocab-qwen2.gguf" -o "$m.tmp.$$" --shape "$1" --type "$2" \
            >"$WORK/genmodel.log" 2>&1 || { cat "$WORK/genmodel.log" >&2; rm -f "$m.tmp.$$"; die "gen-model failed"; }
        mv "$m.tmp.$$" "$m"
    fi
    printf '%s\n' "$m"
}

# ---- llama-server ------------------------------------------------------------------------
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

server_start() { # log port args...: start llama-server on 127.0.0.1:port, wait until /health is OK
    local log=$1 port=$2 ok=0
    shift 2
    "$SERVER_BIN" --host 127.0.0.1 --port "$port" "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1200); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        if node -e 'fetch(process.argv[1]).then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))' \
            "http://127.0.0.1:$port/health" 2>/dev/null; then ok=1; break; fi
        sleep 0.25
    done
    [ "$ok" = 1 ] || { tail -20 "$log" >&2; stop_server; die "llama-server did not become healthy"; }
}

# ---- the shared-machine guard --------------------------------------------------------------
loadavg() { cut -d' ' -f1 /proc/loadavg; }
HZ=$(getconf CLK_TCK)
NPROC=$(nproc)
# CPU time spent by the whole machine (USER_HZ ticks: user nice system irq softirq steal)
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
# share of the machine's CPU capacity used by others during a run: busy ticks minus what the
# measured processes used, over nproc x wall. The machines are shared; a run with a high
# share is repeated (up to RETRIES more times) and the table shows every attempt.
foreign_share() { # busy0 busy1 own_seconds wall_seconds
    awk -v b0="$1" -v b1="$2" -v own="$3" -v w="$4" -v hz="$HZ" -v n="$NPROC" \
        'BEGIN { f = ((b1 - b0) / hz - own) / (n * w); if (f < 0) f = 0; printf "%.4f", f }'
}
last_share() { tail -1 "$RUNS" | node -e 'console.log(JSON.parse(require("fs").readFileSync(0)).foreign)'; }
# measure FN args: run FN (one attempt, appends a record to RUNS) until the share of foreign
# CPU load is at most MAX_FOREIGN or RETRIES extra attempts are spent
measure() {
    local fn=$1 a sh
    shift
    for a in $(seq 0 "$RETRIES"); do
        ATTEMPT=$a "$fn" "$@"
        sh=$(last_share)
        if awk -v s="$sh" -v m="$MAX_FOREIGN" 'BEGIN { exit !(s <= m) }'; then return 0; fi
        if [ "$a" -lt "$RETRIES" ]; then
            say "             other processes used $(awk -v s="$sh" 'BEGIN{printf "%.0f", s*100}')% of the CPU during that run: repeating it"
        else
            say "             other processes used $(awk -v s="$sh" 'BEGIN{printf "%.0f", s*100}')% of the CPU during that run; no retries left, keeping it"
        fi
    done
}

# ---- facts for the reports ---------------------------------------------------------------
bench_facts() {
    local rev dirty
    CPU_FLAGS=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|avx512_bf16|avx_vnni|amx_tile|amx_int8|amx_bf16)$' | tr '\n' ' ' || true)
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
    dirty=$(git -C "$ROOT" status --porcelain -- src CMakeLists.txt 2>/dev/null | wc -l)
    GIT_DESC=$rev
    [ "$dirty" != 0 ] && GIT_DESC="$GIT_DESC + uncommitted changes in src/"
    LLAMA_DESC="$(git -C "$LP/src" rev-parse --short HEAD 2>/dev/null) ($(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$LP/src/.node-llama-cpp-info.json" 2>/dev/null), bundled with node-llama-cpp $(basename "$LP" | cut -d- -f2))"
    CPU_MODEL="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    MEM_DESC="$(free -g | awk '/^Mem:/{print $2" GiB"}')"
}
