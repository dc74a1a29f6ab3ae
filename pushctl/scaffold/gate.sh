#!/bin/sh
# The resilience gate for CI, made by `pushctl init`: check the files, then run every experiment
# against the platform. The exit code is the verdict (0 every hypothesis held, 1 one deviated,
# 2 bad input, 4 unreachable, 7 a rollback failed: `pushctl --help` lists them all); the JUnit and
# HTML reports in reports/ are for the CI's test view and artifacts.
#
#   ./gate.sh                                   # the inventory beside this file
#   PUSHCTL_INVENTORY=staging.toml ./gate.sh    # another one (its name must be @NAME@, or edit below)
set -eu
cd "$(dirname "$0")"
inventory="${PUSHCTL_INVENTORY:-topology.toml}"
mkdir -p reports
pushctl -i "$inventory" experiment validate experiments
pushctl -i "$inventory" runbook lint --dir runbooks
pushctl -i "$inventory" experiment run experiments --confirm-target @NAME@ \
    --junit reports/experiments.xml --html reports/experiments.html
