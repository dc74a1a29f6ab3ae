"""Execute a runbook against a stack: bring on its failure, run each command, check each expectation.

    report = verify_runbooks(runbooks, inv, problems_of, runner=CommandRunner(inv.source))

For each runbook: lint errors stop it before the stack is touched; the stack must be at its baseline;
the `failure:` commands run, then every fenced command in file order (the first failing step stops
the runbook); then, always (also on Ctrl-C or SIGTERM), `pushctl recover --all` and
`pushctl fault clear` put the stack back, and the baseline is checked again. A runbook that cannot
restore the baseline stops the run: later runbooks would only measure its leftovers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pushctl.actions.runner import check_platform
from pushctl.actions.status import live_status
from pushctl.contract.topology import Inventory
from pushctl.errors import PushctlError
from pushctl.runbooks.model import Command, Problem, Runbook
from pushctl.runbooks.runner import CommandRunner, Finished, parse_json

CLEAR_FAULTS = ("fault", "clear", "--json")
RESTORE: tuple[tuple[str, ...], ...] = (("recover", "--all", "--json"), CLEAR_FAULTS)
BASELINE_TIMEOUT_S = 45.0
BASELINE_BEFORE_S = 10.0  # a stack just started (or just restored) may need a moment to settle
OUTPUT_TAIL = 3000


@dataclass
class Check:
    expect: str
    line: int
    ok: bool
    found: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Step:
    phase: str  # failure | a section name | baseline | restore
    line: int
    command: str
    status: str = "skipped"  # passed | failed | skipped
    exit_code: int | None = None
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    message: str = ""
    output: str = ""  # kept only for a failed step

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["checks"] = [c.to_json() for c in self.checks]
        return data


@dataclass
class RunbookResult:
    id: str
    path: str
    title: str
    problems: list[Problem]
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0
    baseline_restored: bool | None = None

    @property
    def passed(self) -> bool:
        return (
            not [p for p in self.problems if p.severity == "error"]
            and bool(self.steps)
            and all(s.status == "passed" for s in self.steps)
        )

    @property
    def failed_step(self) -> Step | None:
        return next((s for s in self.steps if s.status == "failed"), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "title": self.title,
            "passed": self.passed,
            "seconds": self.seconds,
            "baseline_restored": self.baseline_restored,
            "problems": [p.to_json() for p in self.problems],
            "steps": [s.to_json() for s in self.steps],
        }


@dataclass
class VerifyReport:
    inventory: str
    results: list[RunbookResult]
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def passed(self) -> bool:
        return not self.interrupted and all(r.passed for r in self.results)

    @property
    def baseline_lost(self) -> bool:
        return any(r.baseline_restored is False for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {
            "inventory": self.inventory,
            "passed": self.passed,
            "seconds": self.seconds,
            "interrupted": self.interrupted,
            "runbooks": [r.to_json() for r in self.results],
        }


def baseline_problems(status: dict[str, Any], weights: dict[str, float] | None) -> list[str]:
    """What keeps `pushctl status --json` from the baseline (empty: at the baseline)."""
    out: list[str] = []
    for key in ("policies", "faults", "actions"):
        value = status.get(key)
        if value != []:
            out.append(f"{key}: {json.dumps(value, default=str)[:300]}")
    throttle = status.get("throttle") or {}
    if throttle.get("mode") != "off":
        out.append(f"throttle: {throttle.get('mode', throttle)}")
    storage = status.get("storage") or {}
    if storage.get("mode") != "redis":
        out.append(f"storage: {storage.get('mode', storage)}")
    routing = (status.get("routing") or {}).get("weights")
    if weights is not None and routing != weights:
        out.append(f"routing: {routing} (baseline {weights})")
    elif weights is None and (not isinstance(routing, dict) or len(set(routing.values())) != 1):
        out.append(f"routing: {routing} (baseline: an even split)")
    for region, info in (status.get("regions") or {}).items():
        if not info.get("healthy") or info.get("drained"):
            out.append(f"region {region}: healthy={info.get('healthy')} drained={info.get('drained')}")
    unreachable = [r for r, c in (status.get("connections") or {}).items() if c is None]
    if unreachable:
        out.append(f"brokers unreachable: {', '.join(unreachable)}")
    return out


class Verifier:
    """Verifies runbooks one after another against one stack."""

    def __init__(
        self,
        inv: Inventory,
        runner: CommandRunner,
        *,
        on_step: Callable[[Runbook, Step], None] = lambda rb, step: None,
        baseline_timeout: float = BASELINE_TIMEOUT_S,
    ) -> None:
        self.inv = inv
        self.runner = runner
        self.on_step = on_step
        self.baseline_timeout = baseline_timeout
        self.weights: dict[str, float] | None = None

    def verify_all(self, runbooks: list[tuple[Runbook, list[Problem]]]) -> VerifyReport:
        started = time.monotonic()
        report = VerifyReport(self.inv.name, [])
        try:
            for runbook, problems in runbooks:
                result = RunbookResult(runbook.id, str(runbook.path), runbook.title, problems)
                report.results.append(result)
                if report.baseline_lost:
                    result.steps.append(
                        Step(
                            "baseline",
                            0,
                            "",
                            message="skipped: an earlier runbook left the stack away from its baseline",
                        )
                    )
                    continue
                self.verify(runbook, result)
        except KeyboardInterrupt:
            report.interrupted = True
        report.seconds = round(time.monotonic() - started, 1)
        return report

    def verify(self, runbook: Runbook, result: RunbookResult) -> None:
        started = time.monotonic()
        try:
            if [p for p in result.problems if p.severity == "error"]:
                return  # lint errors: never touch the stack
            before = self._step(runbook, result, Step("baseline", 0, "the stack is at its baseline"))
            problems = self._baseline(wait=BASELINE_BEFORE_S, first=self.weights is None)
            self._close(runbook, before, not problems, "; ".join(problems))
            if problems:
                result.baseline_restored = False
                return
            commands = [*runbook.failure, *runbook.commands]
            steps = [Step(c.section, c.line, c.text) for c in commands]
            result.steps += steps
            touched = False
            try:
                for command, step in zip(commands, steps, strict=True):
                    touched = True
                    if not self._run(runbook, command, step):
                        break
            finally:
                if touched:
                    result.baseline_restored = self._restore(runbook, result)
        finally:
            result.seconds = round(time.monotonic() - started, 1)

    # -- steps -----------------------------------------------------------------------------------

    def _step(self, runbook: Runbook, result: RunbookResult, step: Step) -> Step:
        result.steps.append(step)
        return step

    def _close(self, runbook: Runbook, step: Step, ok: bool, message: str = "") -> None:
        step.status = "passed" if ok else "failed"
        step.message = message
        self.on_step(runbook, step)

    def _run(self, runbook: Runbook, command: Command, step: Step) -> bool:
        argv = list(command.argv)
        if command.wants_json and "--json" not in argv:
            argv.append("--json")
        deadline = time.monotonic() + command.within
        started = time.monotonic()
        while True:
            done = self.runner.run(argv)
            checks = evaluate(command, done)
            if all(c.ok for c in checks) or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        step.exit_code = done.exit_code
        step.seconds = round(time.monotonic() - started, 1)
        step.checks = checks
        failed = [c for c in checks if not c.ok]
        if failed:
            step.output = _tail(done)
        message = "; ".join(f"expected {c.expect}, found {c.found}" for c in failed)
        if done.timed_out:
            message = f"timed out after {self.runner.timeout:g}s; " + message
        self._close(runbook, step, not failed, message)
        return not failed

    def _restore(self, runbook: Runbook, result: RunbookResult) -> bool:
        ok = True
        for argv in RESTORE:
            if argv == CLEAR_FAULTS and not self._faults_left():
                continue  # `fault clear` visits every link: skip it when nothing is left to clear
            step = self._step(runbook, result, Step("restore", 0, "pushctl " + " ".join(argv)))
            started = time.monotonic()
            done = self.runner.run(list(argv))
            step.exit_code, step.seconds = done.exit_code, round(time.monotonic() - started, 1)
            if done.exit_code != 0:
                step.output = _tail(done)
            self._close(runbook, step, done.exit_code == 0, "" if done.exit_code == 0 else f"exit {done.exit_code}")
            ok = ok and done.exit_code == 0
        step = self._step(runbook, result, Step("restore", 0, "the stack is back at its baseline"))
        started = time.monotonic()
        problems = self._baseline(wait=self.baseline_timeout)
        step.seconds = round(time.monotonic() - started, 1)
        self._close(runbook, step, not problems, "; ".join(problems))
        return ok and not problems

    def _faults_left(self) -> bool:
        try:
            status = asyncio.run(live_status(self.inv))
        except PushctlError:
            return True
        return status.get("faults") != []

    def _baseline(self, *, wait: float, first: bool = False) -> list[str]:
        """Poll the live status until it is at the baseline or `wait` has passed; the problems left."""
        deadline = time.monotonic() + wait
        while True:
            problems = self._baseline_once(first=first)
            if not problems or time.monotonic() >= deadline:
                return problems
            time.sleep(0.5)

    def _baseline_once(self, *, first: bool) -> list[str]:
        try:
            status = asyncio.run(live_status(self.inv))
            asyncio.run(check_platform(self.inv))
        except PushctlError as exc:
            return [exc.message]
        problems = baseline_problems(status, self.weights)
        if first and not problems:
            self.weights = (status.get("routing") or {}).get("weights")
        return problems


def evaluate(command: Command, done: Finished) -> list[Check]:
    """Every expectation of `command` against its result (an implicit `exit 0` when none is given)."""
    data = parse_json(done.stdout) if command.wants_json else None
    checks: list[Check] = []
    if not any(e.exit_code is not None for e in command.expects):
        checks.append(Check("exit 0", command.line, done.exit_code == 0, f"exit {done.exit_code}"))
    for expect in command.expects:
        ok, found = expect.check(done.exit_code, data)
        checks.append(Check(expect.text, expect.line, ok, found))
    return checks


def _tail(done: Finished) -> str:
    text = done.stdout.rstrip() + ("\n--- stderr ---\n" + done.stderr.rstrip() if done.stderr.strip() else "")
    return text if len(text) <= OUTPUT_TAIL else "...\n" + text[-OUTPUT_TAIL:]
