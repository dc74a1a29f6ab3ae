#!/usr/bin/env python3
"""Mutation testing of the resilience gate: plant each defect, run the experiments meant to catch it.

    python mutations/run.py                       # every mutant against its targeted experiments
    python mutations/run.py --only M02,M07        # some of them
    python mutations/run.py --full                # every mutant against the whole library (a benchmark)
    python mutations/run.py --control             # first, the same experiments on the unmutated copy
    python mutations/run.py --json out.json --junit out.xml

How: `stack/` is copied to a work directory; the copy's topology is derived (renamed, not the
reference, every port shifted) and its stack started with PYTHONPATH pointing at the copy, so its
services run the copy's code. For each mutant the pristine copy is restored, the patch applied with
`git apply`, the push services restarted (Redis, Kafka and Toxiproxy keep running), and the
experiments run through the CLI a user runs. A mutant is *caught* when an experiment fails (exit 1)
on a check whose message matches the mutant's symptom. An experiment that fails on something else,
passes, or is inconclusive does not catch it.

Exit 0 when every mutant was caught, 1 otherwise, 2 on bad input. Nothing is left behind: the
derived stack is stopped and the work directory removed (`--keep` keeps it, for a post-mortem).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from pushctl.contract.derive import derived_inventory
from pushctl.contract.topology import PUSH_SERVICE_KINDS, load_inventory
from pushctl.runtime.pids import pid_alive

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "mutations"
LIBRARY = REPO / "experiments"
NAME = "mutants"
DEFAULT_SHIFT = 6000  # 17xxx -> 23xxx, 18xxx -> 24xxx: beside the reference stack and the tests' other stacks
EXIT_FAILED = 1


@dataclass(frozen=True)
class Mutant:
    id: str
    patch: Path
    title: str
    path: str
    experiments: tuple[str, ...]
    symptom: re.Pattern[str]


@dataclass
class Outcome:
    """What one mutant did to the gate."""

    mutant: Mutant
    caught: bool = False
    by: list[str] = field(default_factory=list)  # "experiment: the check that named the symptom"
    runs: list[dict[str, Any]] = field(default_factory=list)  # per experiment: exit, verdict, failures
    seconds: float = 0.0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        m = self.mutant
        return {
            "id": m.id,
            "title": m.title,
            "path": m.path,
            "patch": m.patch.name,
            "experiments": list(m.experiments),
            "caught": self.caught,
            "by": self.by,
            "runs": self.runs,
            "seconds": round(self.seconds, 1),
            "error": self.error,
        }


def load_catalog(path: Path = HERE / "catalog.toml") -> list[Mutant]:
    """Every mutant of the catalog; a bad entry is one clear error (exit 2)."""
    data = tomllib.loads(path.read_text())
    out = []
    for i, raw in enumerate(data.get("mutant", [])):
        try:
            mutant = Mutant(
                id=str(raw["id"]),
                patch=HERE / str(raw["patch"]),
                title=str(raw["title"]),
                path=str(raw["path"]),
                experiments=tuple(str(e) for e in raw["experiments"]),
                symptom=re.compile(str(raw["symptom"]), re.IGNORECASE),
            )
        except (KeyError, TypeError, re.error) as exc:
            raise SystemExit(f"error: {path}: mutant {i + 1}: {exc!r}") from None
        if not mutant.patch.is_file():
            raise SystemExit(f"error: {path}: {mutant.id}: no patch file {mutant.patch.name}")
        missing = [e for e in mutant.experiments if not (LIBRARY / e).is_file()]
        if missing:
            raise SystemExit(f"error: {path}: {mutant.id}: no experiment {', '.join(missing)} in {LIBRARY}")
        out.append(mutant)
    return out


# ---- the derived stack on a copy of stack/ -------------------------------------------------------
class Workbench:
    """A copy of stack/ and the stack that runs it; `plant` swaps the copy's code between mutants."""

    def __init__(self, work: Path, shift: int, log: Any) -> None:
        self.work = work
        self.copy = work / "stack"
        self.pristine = work / "pristine"  # pristine/stack/...: what every mutant starts from
        self.shift = shift
        self.log = log
        self.topology = work / "topology.toml"
        # one run directory for every run of this script: a run killed with -9 leaves its stack's
        # pid files here, and the next run stops that stack before starting its own
        self.run_dir = Path(tempfile.gettempdir()) / f"pushctl-mutations-run-{shift}"
        shutil.copytree(REPO / "stack", self.copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copytree(self.copy, self.pristine / "stack")
        self._write_topology()
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.copy), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "PUSHCTL_RUN_DIR": str(self.run_dir),
            "PUSHCTL_INVENTORY": str(self.topology),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("PUSHCTL_CONFIRM_TARGET", None)
        self._touched: set[Path] = set()

    def _write_topology(self) -> None:
        text = (self.copy / "topology.toml").read_text()
        self.topology.write_text(derived_inventory(text, name=NAME, shift=self.shift))

    def pushctl(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pushctl.cli.main", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def up(self) -> None:
        self.down()  # whatever a killed run left (see run_dir)
        self._start()

    def _start(self) -> None:
        proc = self.pushctl("stack", "up", timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"stack up failed ({proc.returncode}): {proc.stderr[-3000:]}")

    def down(self) -> None:
        """Stop the derived stack and delete its run files (Redis and Kafka data too: no run inherits
        another's policies, routes or queues)."""
        self.pushctl("stack", "down", "--purge", timeout=120)

    def plant(self, patch: Path | None) -> None:
        """Restore the pristine copy, apply `patch` (None: stay pristine), restart the push services."""
        for rel in self._touched:
            shutil.copy2(self.pristine / rel, self.work / rel)
        self._touched = set()
        if patch is not None:
            self._touched = patched_files(patch)
            proc = subprocess.run(
                ["git", "apply", "--whitespace=nowarn", str(patch)],
                cwd=self.work,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"{patch.name} does not apply to stack/: {proc.stderr.strip()}")
        self._write_topology()
        self.restart_services()

    def restart_services(self) -> None:
        inv = load_inventory(self.topology)
        names = [n for n, s in inv.services.items() if s.kind in PUSH_SERVICE_KINDS]
        pids = [pid for n in names if (pid := self._pid(n)) is not None]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 6
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        self._start()  # starts what is not running: the push services, on the copy's code

    def _pid(self, name: str) -> int | None:
        path = self.run_dir / NAME / "pids" / f"{name}.json"
        try:
            return int(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def at_baseline(self, within: float = 30.0) -> str | None:
        """None once no fault, policy or throttle is left (waiting up to `within`); else what is left."""
        deadline = time.monotonic() + within
        left = "status unreadable"
        while time.monotonic() < deadline:
            proc = self.pushctl("status", "--json", timeout=60)
            try:
                status = json.loads(proc.stdout)
            except ValueError:
                status = None
            if status is not None:
                left = ", ".join(
                    what
                    for what, bad in (
                        (f"faults {status.get('faults')}", bool(status.get("faults"))),
                        (f"policies {status.get('policies')}", bool(status.get("policies"))),
                        (f"throttle {status.get('throttle')}", (status.get("throttle") or {}).get("mode") != "off"),
                    )
                    if bad
                )
                if not left:
                    return None
            time.sleep(1.0)
        return left

    def run_experiments(self, files: tuple[str, ...]) -> list[dict[str, Any]]:
        """Run library experiments against the bench's stack; their journals (timeline left out)."""
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            for name in files:
                shutil.copy2(LIBRARY / name, Path(tmp) / name)
            shutil.copy2(LIBRARY / "schema.json", Path(tmp) / "schema.json")
            proc = self.pushctl(
                "experiment", "run", tmp, "--confirm-target", NAME, "--no-live", "--json", timeout=300 * len(files)
            )
        try:
            runs: list[dict[str, Any]] = json.loads(proc.stdout[proc.stdout.index("[") :])
        except ValueError:
            raise RuntimeError(f"experiment run exited {proc.returncode}, no report: {proc.stderr[-2000:]}") from None
        # `experiment run DIR` runs a directory's files in name order, whatever order they were given in
        for run, name in zip(runs, sorted(files), strict=False):
            run["_file"] = name
        return runs


def patched_files(patch: Path) -> set[Path]:
    """Paths (relative to the work directory) a patch changes."""
    return {
        Path(line.split(" b/", 1)[1])
        for line in patch.read_text().splitlines()
        if line.startswith("diff --git ") and " b/" in line
    }


# ---- judging -------------------------------------------------------------------------------------
def failures(run: dict[str, Any], *, hard_only: bool = False) -> list[str]:
    """The messages of a run's checks that did not hold (its findings); `hard_only`: leave out timing
    checks, which a busy machine could fail too (a catch must not depend on the rig being slow)."""
    out = []
    for f in run.get("findings") or []:
        if hard_only and f.get("timing"):
            continue
        title, detail = str(f.get("title")), str(f.get("detail"))
        out.append(detail if detail.startswith(title) or title == detail else f"{title}: {detail}")
    return out


def judge(mutant: Mutant, runs: list[dict[str, Any]]) -> Outcome:
    """Caught when an experiment failed (exit 1) on a check whose message names the symptom and
    that is not a timing check."""
    out = Outcome(mutant)
    for run in runs:
        msgs = failures(run)
        out.runs.append(
            {
                "experiment": run.get("_file"),
                "exit_code": run.get("exit_code"),
                "verdict": run.get("verdict"),
                "failures": msgs,
                "rollbacks_ok": all(r.get("ok") for r in run.get("rollbacks") or []),
                "seconds": run.get("duration_s"),
            }
        )
        if run.get("exit_code") == EXIT_FAILED:
            named = [m for m in failures(run, hard_only=True) if mutant.symptom.search(m)]
            if named:
                out.caught = True
                out.by.append(f"{run.get('_file')}: {named[0]}")
    return out


def run_matrix(
    bench: Workbench, mutants: list[Mutant], *, full: bool, control: bool, log: Any
) -> tuple[list[Outcome], list[dict[str, Any]]]:
    library = tuple(sorted(p.name for p in LIBRARY.glob("*.yaml")))
    controls: list[dict[str, Any]] = []
    if control:
        bench.plant(None)
        targets = library if full else tuple(sorted({e for m in mutants for e in m.experiments}))
        log(f"control: {len(targets)} experiments on the unmutated copy")
        for run in bench.run_experiments(targets):
            controls.append({"experiment": run.get("_file"), "exit_code": run.get("exit_code"),
                             "verdict": run.get("verdict"), "failures": failures(run)})  # fmt: skip
            log(f"  {run.get('_file')}: exit {run.get('exit_code')} ({run.get('verdict')})")
    outcomes = []
    for mutant in mutants:
        started = time.monotonic()
        log(f"{mutant.id}: {mutant.title}")
        try:
            bench.plant(mutant.patch)
            left = bench.at_baseline()
            if left:
                log(f"  waiting did not bring the stack to its baseline ({left}); running anyway")
            outcome = judge(mutant, bench.run_experiments(library if full else mutant.experiments))
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            outcome = Outcome(mutant, error=str(exc))
        outcome.seconds = time.monotonic() - started
        log(f"  {'CAUGHT' if outcome.caught else 'MISSED'} in {outcome.seconds:.0f}s" +
            "".join(f"\n    by {b}" for b in outcome.by[:3]) +
            (f"\n    error: {outcome.error}" if outcome.error else "") +
            "".join(f"\n    {r['experiment']}: exit {r['exit_code']} ({r['verdict']})" for r in outcome.runs
                    if not outcome.caught))  # fmt: skip
        outcomes.append(outcome)
    bench.plant(None)
    return outcomes, controls


def junit(outcomes: list[Outcome], path: Path) -> None:
    suite = ET.Element("testsuite", name="mutations", tests=str(len(outcomes)))
    suite.set("failures", str(sum(1 for o in outcomes if not o.caught)))
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname="mutations", name=f"{o.mutant.id} {o.mutant.title}",
                             time=f"{o.seconds:.1f}")  # fmt: skip
        if not o.caught:
            msg = o.error or "; ".join(f"{r['experiment']}: exit {r['exit_code']} ({r['verdict']})" for r in o.runs)
            ET.SubElement(case, "failure", message=f"missed: {msg}")
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="unicode", xml_declaration=True)


@contextlib.contextmanager
def workbench(shift: int, keep: bool, log: Any) -> Iterator[Workbench]:
    work = Path(tempfile.mkdtemp(prefix="pushctl-mutations-"))
    bench = Workbench(work, shift, log)
    try:
        log(f"starting the derived stack {NAME!r} (ports +{shift}) from a copy of stack/ in {work}")
        bench.up()
        yield bench
    finally:
        bench.down()
        if keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", help="comma-separated mutant ids (default: all)")
    parser.add_argument("--full", action="store_true", help="every mutant against every experiment")
    parser.add_argument("--control", action="store_true", help="first run the experiments unmutated")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--junit", type=Path, help="write a JUnit report here")
    parser.add_argument("--shift", type=int, default=DEFAULT_SHIFT, help="port shift of the derived stack")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    mutants = load_catalog()
    if args.only:
        wanted = [m.strip() for m in args.only.split(",") if m.strip()]
        unknown = sorted(set(wanted) - {m.id for m in mutants})
        if unknown:
            print(f"error: unknown mutant {', '.join(unknown)}; known: {', '.join(m.id for m in mutants)}",
                  file=sys.stderr)  # fmt: skip
            return 2
        mutants = [m for m in mutants if m.id in wanted]
    if not 1000 <= args.shift <= 14000:
        print("error: --shift must keep every port below 32768 (1000..14000)", file=sys.stderr)
        return 2

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def terminated(signum: int, _frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}: the derived stack is stopped first")

    signal.signal(signal.SIGTERM, terminated)  # `finally` stops the derived stack, as on Ctrl-C

    started = time.monotonic()
    with workbench(args.shift, args.keep, log) as bench:
        outcomes, controls = run_matrix(bench, mutants, full=args.full, control=args.control, log=log)
    caught = sum(1 for o in outcomes if o.caught)
    report = {
        "caught": caught,
        "mutants": len(outcomes),
        "full": args.full,
        "seconds": round(time.monotonic() - started, 1),
        "control": controls,
        "results": [o.to_json() for o in outcomes],
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    if args.junit:
        junit(outcomes, args.junit)
    print(f"{caught} of {len(outcomes)} mutants caught in {report['seconds']:.0f}s")
    for o in outcomes:
        print(f"  {o.mutant.id} {'caught' if o.caught else 'MISSED'}: {o.mutant.title}")
        for by in o.by[:1]:
            print(f"      by {by}")
    return 0 if caught == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
