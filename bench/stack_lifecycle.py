"""Benchmark: cold `stack up` (with installs), warm `stack up`, `stack down`, idle RSS per component.

    .venv/bin/python bench/stack_lifecycle.py [--cold] [--runtime process]

--cold installs into an empty cache (PUSHCTL_CACHE in a temp dir) first; Go's module cache and
Maven's ~/.m2 stay warm, as they would on a developer machine that has built anything before.
Prints a markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def pushctl(*args: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pushctl.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"pushctl {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.monotonic() - started, proc


def rss_kb(pid: int) -> int:
    """RSS of a process and all its descendants (a component's process group)."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pgid = int(fields[2])
        if pgid == pid:
            try:
                for line in (status.parent / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--runtime", default="process")
    ap.add_argument("--idle", type=float, default=20.0, help="seconds idle before measuring RSS")
    args = ap.parse_args()
    env = {**os.environ, "PUSHCTL_RUN_DIR": tempfile.mkdtemp(prefix="pushctl-bench-")}
    rows: list[tuple[str, str]] = []
    if args.cold:
        env["PUSHCTL_CACHE"] = tempfile.mkdtemp(prefix="pushctl-cache-")
        secs, _ = pushctl("stack", "up", "--runtime", args.runtime, env=env)
        rows.append(("cold `stack up` (installs into an empty cache)", f"{secs:.1f} s"))
        secs, _ = pushctl("stack", "down", "--runtime", args.runtime, env=env)
    secs, proc = pushctl("stack", "up", "--runtime", args.runtime, "--json", env=env)
    rows.append(("warm `stack up`", f"{secs:.1f} s"))
    status = json.loads(proc.stdout)
    time.sleep(args.idle)
    total = 0
    rss_rows = []
    for comp in status["components"]:
        if comp["pid"]:
            kb = rss_kb(comp["pid"])
            total += kb
            rss_rows.append((f"RSS idle: {comp['name']}", f"{kb / 1024:.1f} MB"))
    secs, _ = pushctl("stack", "down", "--runtime", args.runtime, env=env)
    rows.append(("`stack down`", f"{secs:.1f} s"))
    rows += rss_rows
    rows.append(("RSS idle: everything", f"{total / 1024:.0f} MB"))
    print("| measure | value |\n|---|---|")  # noqa: T201 - a benchmark prints its table
    for name, value in rows:
        print(f"| {name} | {value} |")  # noqa: T201 - a command-line report: printing is its job


if __name__ == "__main__":
    main()
