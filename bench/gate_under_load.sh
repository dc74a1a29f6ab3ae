#!/usr/bin/env bash
# The resilience gate measured both ways on a loaded machine: two CPU hogs (stress-ng --cpu 2) run
# throughout while
#   1. the mutation matrix runs once: every planted defect must still be caught (failed, on a
#      non-timing check naming its symptom);
#   2. the whole experiment library runs N times on one clean derived stack: no run may fail
#      (inconclusive is allowed: it says the rig could not keep up, with the reason).
#
#   bench/gate_under_load.sh [N=20] [PORT_OFFSET=9000]
#
# stress-ng comes from Debian (apt-get, as root, through the machine's own apt sources).
# Results: bench/RESULTS.md ("The gate under load"). Everything stops by itself; the hogs are
# killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
offset=${2:-9000}
if ! command -v stress-ng >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "gate_under_load: stress-ng is missing and only root may install it (apt-get install stress-ng)" >&2
        exit 2
    fi
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends stress-ng >/dev/null
fi
out=$(mktemp -d /tmp/pushctl-gate-under-load-XXXXXX)
# bounded: the hogs stop by themselves after 6 hours even if this script is killed with -9
stress-ng --cpu 2 --timeout 6h --quiet &
hogs=$!
trap 'kill "$hogs" 2>/dev/null || true; wait "$hogs" 2>/dev/null || true' EXIT
sleep 2
echo "== mutation matrix, two CPU hogs (load: $(cut -d' ' -f1-3 /proc/loadavg))"
rc=0
.venv/bin/python mutations/run.py --json "$out/mutations.json" 2>"$out/mutations.err" | tee "$out/mutations.log" || rc=$?
echo "== clean gate, $runs runs, two CPU hogs (load: $(cut -d' ' -f1-3 /proc/loadavg))"
bench/gate_repeat.sh experiments "$runs" "$offset" | tee "$out/clean.log"
echo "results in $out"
exit "$rc"
