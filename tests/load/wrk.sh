#!/usr/bin/env bash
# wrk.sh [SECONDS] [CONNECTIONS] — load test of `nightshift serve`: wrk holds CONNECTIONS
# connections (default 1000, half on each route) for SECONDS (default 30) against
# GET /v1/batches/{id} and GET /health while a batch runs on the local engine (a generated
# tiny model). Prints requests/s and latency percentiles per route and the server's RSS
# before and after. Fails (exit 1) on any non-2xx answer or socket error, on RSS growth over
# NIGHTSHIFT_LOAD_MAX_RSS_MB (default 50) after a warm-up run, or if the batch does not
# complete afterwards. Exit 77 (CTest: skipped) without wrk (scripts/bootstrap.sh --tools).
#
# Environment: NIGHTSHIFT_BIN (default build/nightshift), NIGHTSHIFT_VOCAB_DIR (llama.cpp's
# vocab files), NIGHTSHIFT_LOAD_THREADS (wrk threads per route, default 2),
# NIGHTSHIFT_LOAD_LINES (batch lines, default 50 a second + 200), NIGHTSHIFT_E2E_KEEP (keep the temp dir).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
secs=${1:-30}
conns=${2:-1000}
bin=${NIGHTSHIFT_BIN:-$repo/build/nightshift}
wthreads=${NIGHTSHIFT_LOAD_THREADS:-2}
nlines=${NIGHTSHIFT_LOAD_LINES:-$((secs * 50 + 200))}  # enough to outlast the run
max_rss_mb=${NIGHTSHIFT_LOAD_MAX_RSS_MB:-50}

say() { printf 'load: %s\n' "$*"; }
command -v wrk >/dev/null || { say "skipped: wrk is not installed (scripts/bootstrap.sh --tools)"; exit 77; }
command -v curl >/dev/null || { say "skipped: curl is not installed"; exit 77; }
vocab=${NIGHTSHIFT_VOCAB_DIR:-}
if [ -z "$vocab" ]; then
    vocab=$(ls -d "$HOME"/.cache/nightshift/llama-3.22.1-*/src/models 2>/dev/null | head -1)
fi
[ -f "$vocab/ggml-vocab-llama-spm.gguf" ] || { echo "load: no llama.cpp vocab files in '$vocab'" >&2; exit 1; }

# wrk and the server each need a descriptor per connection (plus their own): 1,000
# connections are over the usual soft limit of 1024
want=$((conns * 2 + 256))
[ "$(ulimit -n)" -ge "$want" ] || ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge "$((conns + 64))" ] || { echo "load: ulimit -n is $(ulimit -n), too low for $conns connections" >&2; exit 1; }

tmp=$(mktemp -d /tmp/ns-load-XXXXXX)
pid=""
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    [ -n "${NIGHTSHIFT_E2E_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

"$bin" gen-model --vocab "$vocab/ggml-vocab-llama-spm.gguf" -o "$tmp/tiny.gguf" >/dev/null 2>&1
# the server starts with the soft descriptor limit systemd gives a service (1024, whatever
# this shell has): it must raise it itself to take 1,000 connections
launch=()
command -v prlimit >/dev/null && launch=(prlimit "--nofile=${NIGHTSHIFT_LOAD_SERVER_NOFILE:-1024}:$(ulimit -Hn)")
# the log exists before the server does: the wait below reads it at once, and a sed on a
# file the background shell has not created yet failed the script (set -e; seen in CI)
: >"$tmp/serve.log"
"${launch[@]}" "$bin" serve --model "tiny=$tmp/tiny.gguf" --data-dir "$tmp/data" --listen 127.0.0.1:0 --threads 1 \
    --parallel 8 --ctx 4096 2>"$tmp/serve.log" &
pid=$!
port=""
for _ in $(seq 1 600); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/serve.log" | head -1)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve.log" >&2; echo "load: the server exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$port" ] || { cat "$tmp/serve.log" >&2; echo "load: the server did not start" >&2; exit 1; }
url="http://127.0.0.1:$port"

# a batch that keeps the engine busy during the run
for i in $(seq 1 "$nlines"); do
    printf '{"custom_id":"l%d","method":"POST","url":"/v1/chat/completions","body":{"model":"tiny","messages":[{"role":"user","content":"line %d"}],"max_tokens":24,"ignore_eos":true}}\n' "$i" "$i"
done >"$tmp/in.jsonl"
fid=$(curl -sf -F purpose=batch -F "file=@$tmp/in.jsonl" "$url/v1/files" | sed -n 's/.*"id":"\(file-[^"]*\)".*/\1/p')
[ -n "$fid" ] || { echo "load: upload failed" >&2; exit 1; }
bid=$(curl -sf -H 'content-type: application/json' \
    -d "{\"input_file_id\":\"$fid\",\"endpoint\":\"/v1/chat/completions\",\"completion_window\":\"24h\"}" \
    "$url/v1/batches" | sed -n 's/.*"id":"\(batch_[^"]*\)".*/\1/p')
[ -n "$bid" ] || { echo "load: batch create failed" >&2; exit 1; }
say "server pid $pid on $url, batch $bid ($nlines lines) running"

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
status_of() { curl -sf "$url/v1/batches/$bid" | sed -n 's/.*"status":"\([a-z_]*\)".*/\1/p'; }

# one wrk per route, half the connections each, at the same time
half=$((conns / 2))
run_wrk() { # seconds tag
    wrk -t"$wthreads" -c"$half" -d"$1s" --timeout 10s --latency "$url/v1/batches/$bid" >"$tmp/wrk-batch-$2.txt" 2>&1 &
    local w1=$!
    wrk -t"$wthreads" -c"$((conns - half))" -d"$1s" --timeout 10s --latency "$url/health" >"$tmp/wrk-health-$2.txt" 2>&1 &
    local w2=$!
    wait "$w1" "$w2"
}

say "RSS before any load: $(($(rss_kb) / 1024)) MB"
run_wrk 3 warmup
sleep 1
rss0=$(rss_kb)
say "RSS after warm-up: $((rss0 / 1024)) MB"
run_wrk "$secs" main
sleep 1
rss1=$(rss_kb)
say "RSS after ${secs} s at $conns connections: $((rss1 / 1024)) MB ($(((rss1 - rss0) / 1024)) MB more)"
say "batch status right after the run: $(status_of) ($(curl -sf "$url/v1/batches/$bid" | sed -n 's/.*"completed":\([0-9]*\).*/\1/p') lines done)"

fail=0
for route in batch health; do
    f="$tmp/wrk-$route-main.txt"
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    p50=$(awk '$1 == "50%" {print $2}' "$f")
    p99=$(awk '$1 == "99%" {print $2}' "$f")
    total=$(awk '/requests in/ {print $1}' "$f")
    say "GET $([ $route = batch ] && echo "/v1/batches/{id}" || echo /health): $total requests, $rps req/s, p50 $p50, p99 $p99"
    if grep -q 'Non-2xx or 3xx responses' "$f" || grep -q 'Socket errors' "$f"; then
        say "FAIL: errors on $route:"
        grep -E 'Non-2xx|Socket errors' "$f"
        fail=1
    fi
    [ -n "$rps" ] || { say "FAIL: wrk gave no result for $route:"; cat "$f"; fail=1; }
done
if [ $((rss1 - rss0)) -gt $((max_rss_mb * 1024)) ]; then
    say "FAIL: RSS grew by $(((rss1 - rss0) / 1024)) MB (limit $max_rss_mb MB)"
    fail=1
fi
kill -0 "$pid" 2>/dev/null || { say "FAIL: the server died"; tail -20 "$tmp/serve.log"; exit 1; }
# connections the server could not take wait in the listen queue, unanswered: wrk shows them
# only as fewer requests, the server's log says so
if grep -E 'Too many open files|resource limit|Error accepting' "$tmp/serve.log" | sort | uniq -c | sed 's/^/load: FAIL: server: /' | grep .; then
    fail=1
fi

# the batch still completes
st=""
for _ in $(seq 1 1200); do
    st=$(status_of)
    case "$st" in completed|failed|expired|cancelled) break ;; esac
    sleep 0.5
done
say "batch $bid: $st"
[ "$st" = completed ] || fail=1
kill -TERM "$pid"
wait "$pid" || { say "FAIL: the server's exit status was $?"; fail=1; }
pid=""
[ "$fail" = 0 ] && say "ok" || say "FAILED"
exit "$fail"
