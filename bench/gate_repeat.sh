#!/usr/bin/env bash
# Repeat a CI resilience gate N times on one clean reference stack and count the passes.
#
#   bench/gate_repeat.sh experiments 20 [PORT_OFFSET [FILE|DIR]]   # pushctl experiment run experiments/
#   bench/gate_repeat.sh runbooks 20 [PORT_OFFSET [NAME]]           # pushctl runbook verify (all runbooks)
#
# The other half of the measurement, a broken failover path must fail every time: start the stack
# with the path switched off and count the failures, e.g.
#   PUSHCTL_INLINE_FALLBACK=0 PUSHCTL_OFFLINE_STORAGE=0 bench/gate_repeat.sh experiments 10 11000 \
#       experiments/redis-outage.yaml
#
# A gate that cries wolf is worse than none, so this is how we measure it (bench/RESULTS.md). Each run
# counts as passed (exit 0), inconclusive (exit 8: only timing missed while the rig could not keep up)
# or failed (anything else). bench/gate_under_load.sh runs it with two CPU hogs beside it.
# PORT_OFFSET (default 0) shifts every port of the reference inventory so two loops, or a loop and a
# developer's own stack, can run side by side; the copy is then a non-reference target and every run
# passes --confirm-target. Each iteration prints: iteration, exit code, seconds, failed testcases.
set -euo pipefail
cd "$(dirname "$0")/.."

gate=${1:?usage: bench/gate_repeat.sh experiments|runbooks N [PORT_OFFSET [TARGET]]}
runs=${2:-20}
offset=${3:-0}
target=${4:-}
work=$(mktemp -d "/tmp/pushctl-gate-${gate}-XXXXXX")
export PUSHCTL_RUN_DIR="$work/run"
pushctl=.venv/bin/pushctl
confirm=()
if [ "$offset" != 0 ]; then
  .venv/bin/python - "$offset" "$gate" "$work/topology.toml" <<'EOF'
import sys
from pathlib import Path
from pushctl.contract.derive import derived_inventory
offset, gate, out = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
out.write_text(derived_inventory(Path("stack/topology.toml").read_text(), name=f"gate-{gate}", shift=offset))
EOF
  export PUSHCTL_INVENTORY="$work/topology.toml"
  confirm=(--confirm-target "gate-$gate")
fi

case "$gate" in
  experiments) cmd=(experiment run "${target:-experiments/}" --no-live) ;;
  runbooks) cmd=(runbook verify ${target:+"$target"}) ;;
  *) echo "unknown gate: $gate (experiments|runbooks)" >&2; exit 2 ;;
esac

trap '$pushctl stack down >/dev/null 2>&1 || true' EXIT
$pushctl stack up >/dev/null
passed=0
failed=0
unsure=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  rc=0
  timeout 1200 $pushctl "${cmd[@]}" "${confirm[@]}" --junit "$work/junit-$i.xml" >"$work/out-$i.log" 2>&1 || rc=$?
  failing=$(.venv/bin/python - "$work/junit-$i.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception as exc:  # no report at all is itself a finding
    print(f"(no junit: {exc.__class__.__name__})"); sys.exit()
bad = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
       if c.find("failure") is not None or c.find("error") is not None]
unsure = [f"{c.get('classname')}::{c.get('name')} (inconclusive)" for c in root.iter("testcase")
          if (s := c.find("skipped")) is not None and "inconclusive" in (s.get("message") or "")]
print(", ".join(bad + unsure) or "-")
EOF
)
  case "$rc" in
    0) passed=$((passed + 1)) ;;
    8) unsure=$((unsure + 1)) ;;  # inconclusive: only timing missed while the rig could not keep up
    *) failed=$((failed + 1)) ;;
  esac
  echo "$gate run $i/$runs: exit $rc in $(( $(date +%s) - start )) s; not passed: $failing"
done
echo "$gate: $passed/$runs passed, $unsure inconclusive, $failed failed (logs in $work)"
