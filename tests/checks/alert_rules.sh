#!/usr/bin/env bash
# The example alert rules shipped in ops/prometheus must load in Prometheus.
set -euo pipefail
rules="$(dirname "$0")/../../ops/prometheus/nightshift-alerts.yml"
if ! command -v promtool >/dev/null; then
    echo "alert_rules: promtool missing (scripts/bootstrap.sh installs Debian's prometheus package)" >&2
    exit 1
fi
promtool check rules "$rules"
