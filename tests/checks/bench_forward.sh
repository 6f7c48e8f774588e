#!/usr/bin/env bash
# bench/forward.mjs, small: the forwarding benchmark still runs end to end (instant upstream,
# the bare C relay anchor built with cc, nightshift in front of the upstream, a batch) and
# its report has every row, each with answers and no non-200. A benchmark never fails on
# time, so nothing here checks a number's size.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${NIGHTSHIFT_BIN:-$ROOT/build/nightshift}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
node "$ROOT/bench/forward.mjs" --bin "$BIN" --concurrency 8 --seconds 1 --rate 100 --batch 50 --out "$T/f.md" \
    >"$T/out" 2>"$T/err" || { echo "FAIL: forward.mjs exited non-zero"; cat "$T/err"; exit 1; }
f="$T/f.md"
for row in 'direct to upstream (anchor)' 'through the bare C relay (anchor)' 'real-time through nightshift' \
    'through the bare C relay, 100 req/s fixed schedule (anchor)' 'through nightshift, 100 req/s fixed schedule' \
    'batch of 50 lines (status completed, 50 ok)'; do
    line=$(grep -F "| $row |" "$f") || { echo "FAIL: no row '$row'"; cat "$f"; exit 1; }
    n=$(echo "$line" | awk -F'|' '{ gsub(/ /, "", $3); print $3 }')
    bad=$(echo "$line" | awk -F'|' '{ gsub(/ /, "", $8); print $8 }')
    [ "$n" -gt 0 ] && [ "$bad" = 0 ] || { echo "FAIL: row '$row': $n requests, $bad non-200"; cat "$f"; exit 1; }
done
grep -q '^Anchor for the forwarding itself: a bare C relay' "$f" || { echo "FAIL: no relay anchor line"; cat "$f"; exit 1; }
grep -Eq 'nightshift/relay CPU per request: ([0-9.]+×|n/a \(under one 10 ms clock tick\)) saturated' "$f" || { echo "FAIL: no nightshift/relay ratio"; cat "$f"; exit 1; }
echo "ok: forward.mjs report complete (relay anchor included), every request answered 200"
