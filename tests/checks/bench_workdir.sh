#!/usr/bin/env bash
# bench/lib/common.sh's work dir: removed when a bench script succeeds, kept (with a message
# naming it and the exit status) when it fails, so an hour of measurements in runs.jsonl
# survives a failing report step.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
script() { # STATUS: a bench script that sources common.sh and exits with STATUS
    cat >"$T/s.sh" <<EOS
set -euo pipefail
BENCH_NAME=selftest; ROOT="$ROOT"
. "$ROOT/bench/lib/common.sh"
echo "\$WORK" >"$T/work"
echo '{"seconds":1}' >"\$WORK/runs.jsonl"
exit $1
EOS
}
script 0
bash "$T/s.sh" 2>"$T/err" || { echo "FAIL: the succeeding script exited non-zero"; cat "$T/err"; exit 1; }
[ ! -e "$(cat "$T/work")" ] || { echo "FAIL: a successful run left its work dir"; exit 1; }
script 3
if bash "$T/s.sh" 2>"$T/err"; then echo "FAIL: the failing script exited 0"; exit 1; fi
w=$(cat "$T/work")
[ -f "$w/runs.jsonl" ] || { echo "FAIL: a failed run's work dir was removed"; exit 1; }
grep -q "work files kept in $w (exit status 3" "$T/err" || { echo "FAIL: no message naming the kept dir"; cat "$T/err"; exit 1; }
rm -rf "$w"
echo "ok: work dir removed on success, kept and named on failure"
