"""Benchmark: failover drills under steady probe traffic, through the CLI (`--json`).

    .venv/bin/python bench/failover.py -i /tmp/bench/topology.toml --devices 3000 --rate 300 \
        [--drills drain,redis,throttle] [--spike 1500 --limit 500/s]

- drain:    `pushctl drain --region south`: drain time (broker-south at 0 connections), per-device
            reconnect p50/max, delivery during the drain (SLO 99.9 %, deadline 1 s).
- redis:    `pushctl fail redis --mode down --duration 30s`: delivery while the payload cache is down.
- throttle: `pushctl throttle access --limit L --duration 15s` with the probe sending a spike of
            --spike pushes/s (> L): buffered share and delivery (the action's own SLO: 99 %, 5 s).
- spike:    `pushctl experiment run bench/experiments/spike-10x-30s.yaml`: 10,000 devices at 300/s,
            then 10x for 30 s with the 80 % rule on (its probe settings are in the file, not
            --devices/--rate): rejected, lost, peak buffer lag, time to drain the buffer.

Each drill runs its own probe (the CLI's); wall time includes connecting the devices. Prints a
markdown table for bench/RESULTS.md, and the load average before every drill.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def out(line: str = "") -> None:
    print(line, flush=True)  # noqa: T201 - a benchmark prints its tables


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pushctl(inventory: str, *args: str, timeout: float) -> tuple[int, dict[str, Any] | None, str, float]:
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pushctl.cli.main", "-i", inventory, *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return -1, None, "timed out", time.monotonic() - started
    secs = time.monotonic() - started
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        data = None
    err = (proc.stderr.strip().splitlines() or [""])[-1]
    return proc.returncode, data, err, secs


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def experiment_as_drill(run: dict[str, Any]) -> dict[str, Any]:
    """An experiment's journal in the shape of an action report: the ledger, the steps' measurements."""
    measurements: dict[str, Any] = {"status": run.get("status"), "deviated": run.get("deviated")}
    for step in run.get("method") or []:
        output = step.get("output") or {}
        if "value" in output:  # a probe step
            measurements[output.get("title", "probe")] = output["value"]
        else:
            measurements.update({k: v for k, v in output.items() if not isinstance(v, (list, dict))})
    return {"during": run.get("summary"), "overall": run.get("summary"), "measurements": measurements}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-i", "--inventory", default=str(REPO / "stack" / "topology.toml"))
    ap.add_argument("--drills", default="drain,redis,throttle", help="any of drain,redis,throttle,spike")
    ap.add_argument("--confirm-target", default=None, help="the inventory's name when it is not the reference")
    ap.add_argument("--devices", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--redis-duration", default="30s")
    ap.add_argument("--spread", default="5s", help="drain: the window reconnect orders are spread over")
    ap.add_argument("--spike", type=float, default=1500.0, help="probe rate during the throttle drill")
    ap.add_argument("--limit", default="500/s")
    ap.add_argument("--timeout", type=float, default=600.0, help="per drill, seconds")
    args = ap.parse_args()
    confirm = ["--confirm-target", args.confirm_target] if args.confirm_target else []
    common = ["--devices", str(args.devices), *confirm, "--json"]
    drills = {
        "drain": ["drain", "--region", "south", "--spread", args.spread, "--rate", str(args.rate), *common],
        "redis": [
            "fail",
            "redis",
            "--mode",
            "down",
            "--duration",
            args.redis_duration,
            "--rate",
            str(args.rate),
            *common,
        ],
        "throttle": [
            "throttle",
            "access",
            "--limit",
            args.limit,
            "--duration",
            "15s",
            "--rate",
            str(args.spike),
            *common,
        ],
        "spike": ["experiment", "run", "bench/experiments/spike-10x-30s.yaml", "--no-live", *confirm, "--json"],
    }
    rows = []
    for name in args.drills.split(","):
        load = loadavg()
        rc, data, err, secs = pushctl(args.inventory, *drills[name], timeout=args.timeout)
        out(f"<!-- {name}: rc {rc} in {secs:.0f} s, load {load}; {err} -->")
        if data is None:
            rows.append((name, " ".join(drills[name]), rc, secs, load, None))
            continue
        (Path(tempfile.gettempdir()) / f"bench-failover-{name}.json").write_text(json.dumps(data, indent=1))
        if isinstance(data, list):  # an experiment run: its summary and its steps' outputs
            data = experiment_as_drill(data[0])
        rows.append((name, " ".join(drills[name]), rc, secs, load, data))
        time.sleep(5)
    out(
        f"\n### Failover drills ({args.devices} devices, {args.rate:.0f} pushes/s; throttle spike {args.spike:.0f}/s)\n"
    )
    out(
        "| drill | exit | wall s | during: sent | delivery % | late | lost | p99 ms | p99.9 ms | "
        "overall delivery % | measurements | load avg |"
    )
    out("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, _cmd, rc, secs, load, data in rows:
        if data is None:
            out(f"| {name} | {rc} | {secs:.0f} | - | - | - | - | - | - | - | (no JSON) | {load} |")
            continue
        d, o = data.get("during") or {}, data.get("overall") or {}
        lat = d.get("latency_ms") or {}
        meas = data.get("measurements") or {}
        keep = {
            k: (round(v, 2) if isinstance(v, float) else v)
            for k, v in meas.items()
            if not isinstance(v, (list, dict)) or k in ("moved_to",)
        }
        out(
            f"| {name} | {rc} | {secs:.0f} | {d.get('sent', '-')} | {pct(d.get('delivery_rate'))} | "
            f"{d.get('late', '-')} | {d.get('lost', '-')} | {ms(lat.get('p99'))} | {ms(lat.get('p999'))} | "
            f"{pct(o.get('delivery_rate'))} | {json.dumps(keep)[:400]} | {load} |"
        )
    out("\nCommands (each with `-i <inventory>`):\n")
    for name, cmd, *_ in rows:
        out(f"- {name}: `pushctl {cmd}`")


if __name__ == "__main__":
    main()
