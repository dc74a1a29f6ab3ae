"""A/B: two code trees side by side in one run, CPU µs per delivery by component.

    .venv/bin/python bench/ab.py -i /tmp/bench/topology.toml --other /tmp/base --rounds 4 \\
        --groups 2000@2 [--rates 3000]

The machine is shared, so numbers from two separate runs are not comparable: this alternates A and B
rounds (A B, B A, A B, ... so a drift in the background load hits both alike) on ONE running stack.
Before each round the stack's services named by --restart (default: the brokers) are restarted with
PYTHONPATH pointing at that round's tree, and the probe runs as `bench/pipeline.py` (this tree's
script) with the same PYTHONPATH and that tree as working directory, so the probe, its device worker
processes and the restarted services all run that tree's code; the load (group sizes and rates,
seeds) is identical. CPU per component comes from /proc (utime + stime of each process group, see
pipeline.py). Prints, per load and component, the median over rounds with min-max, and B vs A.

A is this tree (the one this script is in) unless --this is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from pushctl.contract.topology import load_inventory
from pushctl.runtime.components import components
from pushctl.runtime.process import PidRecord, ProcessRuntime

REPO = Path(__file__).resolve().parent.parent
PIPELINE = Path(__file__).resolve().parent / "pipeline.py"


def out(line: str = "") -> None:
    print(line, flush=True)  # noqa: T201 - a benchmark prints its tables


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def tree_path(tree: Path) -> str:
    """PYTHONPATH that makes `pushctl` and `pushstack` import from `tree` (ahead of the venv's)."""
    return f"{tree}{os.pathsep}{tree / 'stack'}"


def check_code(rec: PidRecord | None, name: str, tree: Path) -> None:
    """Exit when the restarted service does not import from `tree` (a comparison of one tree with itself)."""
    pid = rec.pid if rec else None
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if pid else []
    if f"PYTHONPATH={tree_path(tree)}".encode() not in environ:
        sys.exit(f"{name} (pid {pid}) was not started with PYTHONPATH={tree_path(tree)}")


def restart(inventory: str, tree: Path, prefixes: list[str]) -> None:
    """Restart the named services so they run `tree`'s code (the runtime passes our environment on)."""
    inv = load_inventory(inventory)
    runtime = ProcessRuntime(inv, log=lambda _msg: None)
    names = [c.name for c in components(inv) if any(c.name.startswith(p) for p in prefixes)]
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = tree_path(tree)
    try:
        for name in names:
            asyncio.run(runtime.signal(name, "restart"))
            check_code(runtime.alive(name), name, tree)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def one_round(args: argparse.Namespace, tree: Path) -> list[dict[str, object]]:
    restart(args.inventory, tree, args.restart.split(","))
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = Path(f.name)
    sections = ",".join(s for s, on in (("ceiling", args.rates), ("group", args.groups)) if on)
    argv = [sys.executable, str(PIPELINE), "-i", str(Path(args.inventory).resolve()), "--sections", sections]
    argv += ["--json-out", str(result), "--group-duration", str(args.group_duration), "--step", str(args.step)]
    argv += ["--devices", str(args.devices)]
    if args.groups:
        argv += ["--groups", args.groups]
    if args.rates:
        argv += ["--rates", args.rates]
    env = {**os.environ, "PYTHONPATH": tree_path(tree)}
    proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"round on {tree} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    data = json.loads(result.read_text())
    result.unlink()
    if not data["probe_code"].startswith(f"{tree}/"):
        sys.exit(f"the probe of the round on {tree} ran {data['probe_code']}: PYTHONPATH did not take")
    results: list[dict[str, object]] = data["results"]
    return results


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def report(trees: dict[str, Path], rounds: dict[str, list[list[dict[str, object]]]]) -> None:
    out(f"\nA = {trees['A']}, B = {trees['B']}; median over {len(rounds['A'])} rounds each (min-max)\n")
    loads = [(r["section"], r["spec"]) for r in rounds["A"][0]]
    for section, spec in loads:

        def pick(label: str, key: str, section: object = section, spec: object = spec) -> list[dict[str, float]]:
            return [
                r[key]  # type: ignore[misc]
                for rnd in rounds[label]
                for r in rnd
                if r["section"] == section and r["spec"] == spec and key in r
            ]

        a_us, b_us = pick("A", "cpu_us"), pick("B", "cpu_us")
        names = [n for n in a_us[0] if not n.startswith("other")] + ["other processes (not this stack)"]
        out(f"#### {section} {spec}: CPU µs per delivery\n")
        out("| component | A | B | B vs A |")
        out("|---|---|---|---|")
        for name in names:
            a = [u.get(name, 0.0) for u in a_us]
            b = [u.get(name, 0.0) for u in b_us]
            change = (statistics.median(b) / statistics.median(a) - 1) * 100 if statistics.median(a) else 0.0
            out(f"| {name} | {spread(a)} | {spread(b)} | {change:+.0f} % |")
        a_sys, b_sys = pick("A", "sys_us"), pick("B", "sys_us")
        for name in names:
            if a_sys and name in a_sys[0] and not name.startswith("other") and statistics.median(
                [u.get(name, 0.0) for u in a_us]
            ) >= 20:  # fmt: skip
                a = [u.get(name, 0.0) for u in a_sys]
                b = [u.get(name, 0.0) for u in b_sys]
                out(f"| {name}: of which in the kernel | {spread(a)} | {spread(b)} | |")
        a_tot = [sum(v for k, v in u.items() if not k.startswith("other")) for u in a_us]
        b_tot = [sum(v for k, v in u.items() if not k.startswith("other")) for u in b_us]
        out(
            f"| **stack + probe** | {spread(a_tot)} | {spread(b_tot)} | "
            f"{(statistics.median(b_tot) / statistics.median(a_tot) - 1) * 100:+.0f} % |"
        )
        for key in ("deliveries_per_s", "delivery_rate"):
            a_v = [float(v) for v in pick("A", key)]  # type: ignore[arg-type]
            b_v = [float(v) for v in pick("B", key)]  # type: ignore[arg-type]
            out(f"| {key} | {statistics.median(a_v):.1f} | {statistics.median(b_v):.1f} | |")
        a_load = ", ".join(str(r["load"]) for rnd in rounds["A"] for r in rnd if r["spec"] == spec)
        b_load = ", ".join(str(r["load"]) for rnd in rounds["B"] for r in rnd if r["spec"] == spec)
        out(f"\nload average per round: A {a_load}; B {b_load}\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-i", "--inventory", required=True, help="a running stack (pushctl -i ... stack up)")
    ap.add_argument("--other", required=True, type=Path, help="tree B: a checkout of the other version")
    ap.add_argument("--this", type=Path, default=REPO, help="tree A (default: this script's tree)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per tree")
    ap.add_argument("--groups", default="2000@2", help="group loads (size@groups-per-s,...); '' for none")
    ap.add_argument("--group-duration", type=float, default=8.0)
    ap.add_argument("--rates", default="", help="single-push rates (e.g. 3000); '' for none")
    ap.add_argument("--step", type=float, default=8.0)
    ap.add_argument("--devices", type=int, default=600, help="devices for single pushes")
    ap.add_argument("--restart", default="broker", help="name prefixes of the services to run each tree's code")
    args = ap.parse_args()
    trees = {"A": args.this.resolve(), "B": args.other.resolve()}
    for label, tree in trees.items():
        if not (tree / "pushctl").is_dir() or not (tree / "stack" / "pushstack").is_dir():
            sys.exit(f"tree {label} ({tree}) has no pushctl/ and stack/pushstack/")
    out(f"<!-- A/B start: load average {loadavg()} -->")
    rounds: dict[str, list[list[dict[str, object]]]] = {"A": [], "B": []}
    for i in range(args.rounds):
        for label in ("A", "B") if i % 2 == 0 else ("B", "A"):
            out(f"<!-- round {i + 1} {label}: load average {loadavg()} -->")
            rounds[label].append(one_round(args, trees[label]))
    restart(args.inventory, trees["A"], args.restart.split(","))  # leave the stack on tree A
    out(f"<!-- A/B end: load average {loadavg()} -->")
    report(trees, rounds)


if __name__ == "__main__":
    main()
