"""Profile one stack service under probe load: cProfile around `pushstack.run NAME`.

    .venv/bin/python bench/profile_service.py -i /tmp/bench/topology.toml --service access --rate 1500

Stops the stack's own process for that service, starts it by hand under cProfile (same argv, env and
working directory as the process runtime), drives --rate single pushes for --seconds, stops it with
SIGTERM (a graceful stop: the profile is written), prints the top functions by own time, then runs
`pushctl stack up` so the managed process is back. cProfile roughly doubles the cost of Python
calls, so the profiled service is slower than it would be: read the shares, not the absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pushctl.contract.topology import load_inventory
from pushctl.probe.probe import Probe, ProbeOptions

REPO = Path(__file__).resolve().parent.parent
WRAPPER = """
import cProfile, sys
from pushstack.run import main
prof = cProfile.Profile()
prof.enable()
try:
    main(sys.argv[2:])
finally:
    prof.disable()
    prof.dump_stats(sys.argv[1])
"""


def pushctl(inventory: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pushctl.cli.main", "-i", inventory, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )


def wait_port(port: int, up: bool, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            is_up = s.connect_ex(("127.0.0.1", port)) == 0
        if is_up == up:
            return True
        time.sleep(0.1)
    return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-i", "--inventory", required=True)
    ap.add_argument("--service", default="access")
    ap.add_argument("--rate", type=float, default=1500.0)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--devices", type=int, default=600)
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()
    inv = load_inventory(args.inventory)
    spec = inv.service(args.service)
    status = json.loads(pushctl(args.inventory, "stack", "status", "--json").stdout)
    comp = next(c for c in status["components"] if c["name"] == args.service)
    data_dir = Path(status["run_dir"]) / "data" / args.service
    prof_path = Path(tempfile.mkdtemp(prefix="bench-prof-")) / f"{args.service}.prof"
    os.killpg(comp["pid"], signal.SIGTERM)
    if not wait_port(spec.port, up=False, within=10):
        sys.exit(f"{args.service} did not stop")
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PUSHCTL_DATA_DIR": str(data_dir),
        "PUSHCTL_INVENTORY": args.inventory,
    }
    log = (Path(status["run_dir"]) / "logs" / f"{args.service}.profiled.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, str(prof_path), args.service, "--inventory", args.inventory],
        cwd=data_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        if not wait_port(spec.port, up=True, within=20):
            sys.exit(f"profiled {args.service} did not come up")
        time.sleep(2)
        opts = ProbeOptions(devices=args.devices, rate=args.rate, duration=args.seconds, seed=5)
        summary = asyncio.run(Probe(inv, opts).run())
        print(  # noqa: T201 - a benchmark prints its results
            f"<!-- {args.rate:.0f}/s for {args.seconds:.0f} s with {args.service} under cProfile: delivery "
            f"{summary.delivery_rate:.3f}%, p50 {summary.latency_ms.p50} ms, p99 {summary.latency_ms.p99} ms, "
            f"lost {summary.lost}; load {' '.join(Path('/proc/loadavg').read_text().split()[:3])} -->"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        up = pushctl(args.inventory, "stack", "up")
        if up.returncode != 0:
            print(f"stack up after profiling failed:\n{up.stderr[-2000:]}", file=sys.stderr)  # noqa: T201 - a command-line report: printing is its job
    if not prof_path.exists():
        sys.exit("no profile written")
    buf = io.StringIO()
    stats = pstats.Stats(str(prof_path), stream=buf)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    print(buf.getvalue())  # noqa: T201 - a command-line report: printing is its job
    print(f"profile: {prof_path}")  # noqa: T201 - a command-line report: printing is its job


if __name__ == "__main__":
    main()
