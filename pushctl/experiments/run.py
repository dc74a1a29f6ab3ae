"""Run one experiment: steady state before -> method (SLO watch, stop conditions) -> after -> rollbacks.

    result = await run_experiment(inv, resolved, RunSettings(log=print))
    result.status, result.deviated, result.exit_code, result.journal_path

One probe runs from before the first hypothesis check until the rollbacks are done. The target's
lock, the signals and each action's journal and undo are the change life cycle's
(`pushctl.actions.lifecycle`, shared with single actions): every action is journaled before it
changes anything, so `pushctl recover` undoes what a `kill -9`ed run left; the rollbacks run in
`finally`, on an exception, a stop condition, SIGINT or SIGTERM (a second signal waits for them);
one experiment (or action) at a time per target.

Every check that does not hold is a finding (`pushctl.actions.verdict`); once the probe has
stopped, the whole run's ledger is checked too (nothing lost, no push nobody sent, duplicates and
rejections within the experiment's declared tolerance). The verdict is passed, failed, or
inconclusive when only timing checks failed while the rig could not keep up (exit 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pushctl.actions.base import ActionContext, Outcome
from pushctl.actions.common import wait_platform_back
from pushctl.actions.journal import Journal
from pushctl.actions.lifecycle import ChangeLifecycle
from pushctl.actions.runner import check_platform
from pushctl.actions.undo import failures
from pushctl.actions.verdict import EXIT_INCONCLUSIVE, Finding, failed_claims, judge
from pushctl.contract.api import Policy
from pushctl.contract.topology import Inventory
from pushctl.control import PlatformClient
from pushctl.drivers import driver_for
from pushctl.errors import ComponentFailed, PushctlError, RollbackFailed, TargetUnreachable
from pushctl.experiments.cohorts import cohort_checks, cohort_series, compare, render_cohorts
from pushctl.experiments.measure import CheckResult, Measurer
from pushctl.experiments.model import (
    INSTANT_MEASURES,
    DeliveryCheck,
    OfflineStep,
    ProbeStep,
    SpikeStep,
)
from pushctl.experiments.resolve import Resolved, ResolvedStep
from pushctl.experiments.run_journal import RunJournal, RunStatus
from pushctl.experiments.score import add_margins
from pushctl.experiments.watch import Timeline, Watch
from pushctl.faults.links import clear_faults
from pushctl.probe.ledger import LedgerSummary
from pushctl.probe.probe import Probe, ProbeOptions

EXIT_PASSED, EXIT_DEVIATED, EXIT_UNREACHABLE, EXIT_LOCKED, EXIT_ROLLBACK, EXIT_INTERRUPTED = 0, 1, 4, 6, 7, 130
SEVERITY = (
    EXIT_ROLLBACK,
    EXIT_INTERRUPTED,
    EXIT_UNREACHABLE,
    5,
    EXIT_LOCKED,
    3,
    EXIT_DEVIATED,
    EXIT_INCONCLUSIVE,
    EXIT_PASSED,
)
SETTLE_POLL_S = 0.2
LEFT_BEHIND_TIMEOUT_S = 30.0  # the scheduler withdraws an auto drain 5-10 s after the region heals


class _Aborted(Exception):
    """A stop condition fired (or a background step failed): leave the method now."""


@dataclass
class RunSettings:
    log: Callable[[str], None]
    runtime: str = "process"
    journal_path: Path | None = None
    on_update: Callable[[LiveState], None] | None = None  # the live view
    batch: str | None = None  # one `experiment run` of several files: its runs share this (the trend's points)
    prometheus: str | None = None  # promql checks ask this Prometheus; None: the inventory's own


@dataclass
class LiveState:
    """What the live view shows; updated in place by the runner."""

    title: str
    phase: str = "starting"
    step: str = ""
    active: dict[int, str] = field(default_factory=dict)  # applied, not yet undone
    probe: Probe | None = None
    watch: Watch | None = None
    rates: list[float | None] = field(default_factory=list)


@dataclass
class RunResult:
    title: str
    file: str
    status: RunStatus
    deviated: bool
    exit_code: int
    journal_path: Path
    journal: dict[str, Any]

    @property
    def passed(self) -> bool:
        return self.exit_code == EXIT_PASSED


@dataclass
class _Applied:
    step: ResolvedStep
    journal: Journal
    ctx: ActionContext
    record: dict[str, Any]
    window: dict[str, Any]


class ExperimentRun:
    """One run's state; `run_experiment` is the entry point."""

    def __init__(self, inv: Inventory, resolved: Resolved, settings: RunSettings) -> None:
        self.inv = inv
        self.resolved = resolved
        self.exp = resolved.experiment
        self.settings = settings
        self.log = settings.log
        self.journal = RunJournal.create(
            inv,
            str(resolved.loaded.path),
            self.exp.model_dump(mode="json", by_alias=True),
            path=settings.journal_path,
        )
        self.journal.data["batch"] = settings.batch
        self.live = LiveState(self.exp.title)
        self.applied: list[_Applied] = []
        self.background: list[asyncio.Task[None]] = []
        self.halt = asyncio.Event()  # a stop condition fired, or a background step failed
        self.halt_reason: str | None = None
        self.deviated = False
        self.status: RunStatus = "running"
        self.exit_code = EXIT_PASSED
        self.error: str | None = None
        self.life: ChangeLifecycle | None = None
        self.probe: Probe | None = None
        self.api: PlatformClient | None = None
        self.measurer: Measurer | None = None
        self.watch: Watch | None = None
        self.method_window: tuple[float, float] | None = None
        self._start_state: tuple[frozenset[tuple[str, str]], str] | None = None  # drains in force, storage
        self.findings: list[Finding] = []
        self.verdict = "passed"
        self.inconclusive: list[str] = []

    # ---- the whole run ---------------------------------------------------------------------------
    async def run(self) -> RunResult:
        timeline_task: asyncio.Task[None] | None = None
        live_task = asyncio.create_task(self._live_routine(), name="experiment-live")
        try:
            self.life = ChangeLifecycle(
                self.inv,
                f"experiment {self.exp.title!r}",
                log=self.log,
                on_interrupt="stopping the experiment, rolling back ...",
            )
            async with self.life as life:  # from here on, whatever happens, the rollbacks run
                try:
                    with life.cancellable():
                        self.api = PlatformClient(self.inv)
                        try:
                            await check_platform(self.inv)
                        except ComponentFailed as exc:
                            raise TargetUnreachable(exc.message, hint=exc.hint) from exc
                        self._start_state = await self._platform_state()
                        timeline_task = await self._start_probe()
                        await self._phases()
                    if life.interrupted:
                        self._fail("interrupted", EXIT_INTERRUPTED, f"interrupted by {life.interrupted}")
                except PushctlError as exc:
                    self._fail("failed", _run_code(exc), exc.message)
                finally:
                    try:
                        await self._rollback()
                        if not life.interrupted and self.exit_code != EXIT_ROLLBACK:
                            await self._check_left_behind()
                    finally:
                        await self._stop_probe(timeline_task)
                        if self.api is not None:
                            await self.api.aclose()
        except PushctlError as exc:  # the target is locked, or an earlier run left changes behind
            self._fail("failed", _run_code(exc), exc.message)
        finally:
            live_task.cancel()
        if self.interrupted and self.status != "interrupted":  # a signal after the method: nothing was cut short
            self._fail("interrupted", EXIT_INTERRUPTED, f"interrupted by {self.interrupted}")
        self._decide()
        self.journal.data["verdict"] = self.verdict
        self.journal.data["inconclusive"] = self.inconclusive
        self.journal.data["findings"] = [f.to_json() for f in self.findings]
        add_margins(self.journal.data)
        self.journal.finish(self.status, deviated=self.deviated, exit_code=self.exit_code, error=self.error)
        self.live.phase = "done"
        self._update()
        return RunResult(
            self.exp.title,
            str(self.resolved.loaded.path),
            self.status,
            self.deviated,
            self.exit_code,
            self.journal.path,
            self.journal.data,
        )

    @property
    def interrupted(self) -> str | None:
        """The signal that stopped the run, if one did."""
        return self.life.interrupted if self.life is not None else None

    def _decide(self) -> None:
        """The verdict from the findings, unless the run already ended on something worse."""
        if self.exit_code not in (EXIT_PASSED, EXIT_DEVIATED) or self.status == "interrupted":
            self.verdict = "failed"
            return
        trouble = self.probe.rig.trouble if self.probe is not None else (lambda _a, _b: [])
        judgement = judge(self.findings, trouble)
        self.verdict = judgement.verdict
        if judgement.verdict == "passed":
            if self.status == "running":
                self.status = "completed"
            return
        if judgement.verdict == "inconclusive":
            self.inconclusive = judgement.reasons
            self.deviated = False
            self.exit_code = EXIT_INCONCLUSIVE
            if self.status == "running":
                self.status = "completed"
            self.log(f"{self.exp.title}: INCONCLUSIVE: the rig could not keep up: " + "; ".join(judgement.reasons))
            return
        self.deviated = any(f.where != "error" for f in self.findings)
        self.exit_code = EXIT_DEVIATED
        if self.status == "running":
            self.status = "failed"

    def _found(self, result: CheckResult, where: str) -> None:
        """Record a check that did not hold."""
        if not result.ok:
            self.findings.append(Finding(result.title, result.detail, result.timing, result.since, result.until, where))

    def _fail(self, status: RunStatus, code: int, message: str) -> None:
        if status != "interrupted":
            now = time.time()
            self.findings.append(Finding(message, message, False, now, now, "error"))
        if self.status in ("running", "failed", "aborted") and _worse(code, self.exit_code):
            self.exit_code = code
        if self.status == "running" or status == "interrupted":
            self.status = status
        self.error = self.error or message
        self.log(f"{self.exp.title}: {message}")

    def _update(self) -> None:
        if self.settings.on_update is not None:
            self.settings.on_update(self.live)

    async def _live_routine(self) -> None:
        """Refresh the live view twice a second (from the event loop: the view reads the ledger)."""
        if self.settings.on_update is None:
            return
        while True:
            self._update()
            await asyncio.sleep(0.5)

    async def _start_probe(self) -> asyncio.Task[None]:
        p = self.exp.probe
        opts = ProbeOptions(
            devices=p.devices,
            rate=p.rate,
            group_rate=p.group_rate,
            group_size=p.group_size,
            region_group_rate=p.region_group_rate,
            duration=None,
            deadline=p.deadline,
            grace=p.grace,
            regions=p.regions,
            keepalive=p.keepalive,
            seed=p.seed,
            cohort_share=None if self.exp.cohorts is None else self.exp.cohorts.share / 100,
        )
        self.journal.phase("probe")
        self.live.phase = "connecting probe devices"
        self._update()
        self.probe = Probe(self.inv, opts)
        self.live.probe = self.probe
        await self.probe.start()
        assert self.api is not None  # noqa: S101 - set before the probe starts
        self.measurer = Measurer(self.inv, self.api, self.probe, prometheus=self.settings.prometheus)
        timeline = Timeline(self.measurer, self.journal, settle=p.grace)
        self.timeline = timeline
        task = asyncio.create_task(timeline.run(), name="experiment-timeline")
        await asyncio.sleep(p.warmup)
        return task

    async def _phases(self) -> None:
        before = await self._hypothesis("before")
        if not before["met"]:
            assert self.probe is not None  # noqa: S101 - started before the hypothesis
            missed = [f for f in self.findings if f.where == "before"]
            judgement = judge(missed, self.probe.rig.trouble)
            if judgement.verdict != "inconclusive":
                self._fail(
                    "failed", EXIT_DEVIATED, "the steady state did not hold before the method: nothing was changed"
                )
                return
            # only timing missed, and the rig could not keep up: the platform looks sound, go on (the
            # verdict can then be no better than inconclusive, and a real breakage still fails it)
            self.log("steady state before: only timing missed while the rig could not keep up; going on")
        self.journal.phase("method")
        self.live.phase = "method"
        assert self.measurer is not None  # noqa: S101 - set by _start_probe
        self.watch = Watch(
            self.measurer, list(self.exp.stop_conditions), self.exp.blast_radius, self.exp.probe.deadline
        )
        self.live.watch = self.watch
        await self.measurer.take_baselines(
            [s.probe for s in self.exp.method if isinstance(s, ProbeStep)] + list(self.exp.stop_conditions)
        )
        watch_task = asyncio.create_task(self._watch_routine(), name="experiment-watch")
        started = time.time()
        try:
            await self._until_halt(self._method())
            if self.background:
                await self._until_halt(self._await_background())
        except _Aborted:
            self._cancel_background_soon()
            fired = self.watch.fired_by
            if fired is not None:
                self.status = "aborted"
                self.exit_code = EXIT_DEVIATED
                self.error = f"stop condition {fired.name!r} fired: {fired.last.detail if fired.last else ''}"
                self.log(f"{self.exp.title}: ABORTED: {self.error}")
                last = fired.last
                self.findings.append(
                    Finding(
                        f"stop condition: {fired.name}",
                        self.error,
                        bool(last is not None and last.timing),
                        (last.since if last is not None and last.since is not None else fired.broken_since),
                        fired.fired_at,
                        "stop condition",
                    )
                )
            elif self.error is None:
                self._fail("failed", EXIT_DEVIATED, self.halt_reason or "a background step failed")
        finally:
            self.method_window = (started, time.time())
            watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch_task
            self.journal.data["stop_conditions"] = [s.to_json() for s in self.watch.states]
            self.journal.flush()
        if self.status == "running":
            await self._hypothesis("after")

    async def _watch_routine(self) -> None:
        assert self.watch is not None  # noqa: S101 - narrows the type for mypy; set before this step runs
        await self.watch.run()
        if self.watch.fired.is_set():
            self.halt.set()

    async def _until_halt(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro`, cancelling it the moment a stop condition fires."""
        work = asyncio.ensure_future(coro)
        halted = asyncio.ensure_future(self.halt.wait())
        try:
            await asyncio.wait({work, halted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (work, halted):
                if not t.done():
                    t.cancel()
            await asyncio.wait({work, halted})
        if work.cancelled() or self.halt.is_set():
            raise _Aborted
        work.result()

    # ---- hypothesis ----------------------------------------------------------------------------
    async def _hypothesis(self, when: str) -> dict[str, Any]:
        assert self.measurer is not None and self.probe is not None  # noqa: S101 - narrows the type for mypy; set before this step runs
        self.journal.phase(f"steady-state-{when}")
        self.live.phase = f"steady state {when}"
        self._update()
        checks = list(self.exp.steady_state.probes)
        results = await self._evaluate(checks)
        for r in results:
            self._found(r, when)
        met = all(r.ok for r in results)
        out = {"title": self.exp.steady_state.title, "met": met, "checks": [r.to_json() for r in results]}
        self.journal.data["steady_states"][when] = out
        self.journal.flush()
        verdict = "holds" if met else "DOES NOT HOLD"
        self.log(
            f"steady state {when}: {verdict}" + "".join(f"\n  {'ok ' if r.ok else 'BAD'} {r.detail}" for r in results)
        )
        return out

    async def _evaluate(self, checks: list[Any]) -> list[CheckResult]:
        """Windowed probe checks over the next `window` (read after the grace); the others at its end.

        Reading platform state at the end of the window gives it that long to settle (e.g. the
        access tier back on Redis a moment after Redis is).
        """
        assert self.measurer is not None  # noqa: S101 - narrows the type for mypy; set before this step runs
        start = time.time()
        windowed = [
            (i, c) for i, c in enumerate(checks) if isinstance(c, DeliveryCheck) and c.measure not in INSTANT_MEASURES
        ]
        end = start + max((c.window for _, c in windowed), default=0.0)
        await asyncio.sleep(max(0.0, end - time.time()))
        results: dict[int, CheckResult] = {}
        for i, c in enumerate(checks):
            if i not in dict(windowed):
                results[i] = await self.measurer.now(c, since=start, until=end, cutoff=end)
        if windowed:
            since = end - max(c.window for _, c in windowed)
            cutoff = await self._settled(since, end)
            for i, c in windowed:
                results[i] = self.measurer.delivery(c, since=end - c.window, until=end, cutoff=cutoff)
        return [results[i] for i in range(len(checks))]

    async def _settled(self, since: float, until: float) -> float:
        """When to read a window: once every message sent in it arrived, at the latest after the grace.

        Reading early changes nothing (every expected delivery is already in); waiting the whole
        grace only when something is missing keeps each hypothesis seconds shorter.
        """
        assert self.probe is not None  # noqa: S101 - narrows the type for mypy; set before this step runs
        deadline = time.time() + self.exp.probe.grace
        while time.time() < deadline:
            now = time.time()
            s = self.probe.ledger.summary(cutoff=now, since=since, until=until)
            if s.lost == 0 and s.pending == 0:
                return now
            await asyncio.sleep(SETTLE_POLL_S)
        return time.time()

    # ---- method --------------------------------------------------------------------------------
    async def _method(self) -> None:
        for step in self.resolved.steps:
            await self._run_step(step)

    async def _run_step(self, rs: ResolvedStep) -> None:
        record: dict[str, Any] = {
            **rs.to_json(),
            "started_at": time.time(),
            "ended_at": None,
            "status": "running",
            "output": {},
            "journal": None,
        }
        self.journal.step(record)
        self.live.step = rs.label
        self._update()
        self.log(f"step {rs.index + 1}: {rs.label}")
        try:
            if rs.kind == "wait":
                await asyncio.sleep(rs.duration_s or 0.0)
            elif rs.kind == "probe":
                await self._probe_step(rs, record)
            elif rs.kind in ("spike", "offline"):
                window = self._window(rs, record)
                coro = self._spike(rs, record, window) if rs.kind == "spike" else self._offline(rs, record, window)
                if rs.background:
                    self._in_background(rs, record, coro)
                    return
                await coro
            else:
                await self._action_step(rs, record)
                if rs.background:
                    return
        except asyncio.CancelledError:
            record.update(status="cancelled", ended_at=time.time())
            self.journal.flush()
            raise
        except PushctlError as exc:
            record.update(status="failed", ended_at=time.time(), error=exc.message)
            self.journal.flush()
            raise
        if record["status"] == "running":
            record["status"] = "ok"
        record["ended_at"] = record["ended_at"] or time.time()
        self.journal.flush()

    async def _probe_step(self, rs: ResolvedStep, record: dict[str, Any]) -> None:
        assert isinstance(rs.model, ProbeStep)  # noqa: S101 - narrows the type for mypy; set before this step runs
        (result,) = await self._evaluate([rs.model.probe])
        record["output"] = result.to_json()
        self._found(result, f"method step {rs.index + 1}")
        if not result.ok:
            record["status"] = "deviated"
        self.log(f"  {'ok ' if result.ok else 'BAD'} {result.detail}")

    def _window(self, rs: ResolvedStep, record: dict[str, Any]) -> dict[str, Any]:
        window = {"label": rs.label, "step": rs.index, "start": time.time(), "end": None}
        self.journal.data["windows"].append(window)
        record["window"] = window
        self.live.active[rs.index] = rs.label
        return window

    def _close_window(self, rs: ResolvedStep, window: dict[str, Any]) -> None:
        window["end"] = window["end"] or time.time()
        self.live.active.pop(rs.index, None)

    async def _spike(self, rs: ResolvedStep, record: dict[str, Any], window: dict[str, Any]) -> None:
        assert isinstance(rs.model, SpikeStep) and self.probe is not None  # noqa: S101 - narrows the type for mypy; set before this step runs
        base = self.probe.rate
        self.probe.set_rate(base * rs.model.factor)
        try:
            await asyncio.sleep(rs.model.duration)
        finally:
            self.probe.set_rate(base)
            self._close_window(rs, window)
            sender = self.probe.snapshot().sender
            record["output"] = {
                "base_rate": base,
                "spike_rate": base * rs.model.factor,
                "buffered": sender.buffered,
                "rejected": sender.rejected,
            }
            record["ended_at"] = time.time()

    async def _offline(self, rs: ResolvedStep, record: dict[str, Any], window: dict[str, Any]) -> None:
        """Take probe devices offline for the step's duration; they come back by themselves."""
        assert isinstance(rs.model, OfflineStep) and self.probe is not None  # noqa: S101 - narrows the type for mypy; set before this step runs
        step = rs.model
        homes = [d for d, home in self.probe.devices if step.region is None or home == step.region]
        rng = random.Random(None if self.exp.probe.seed is None else self.exp.probe.seed + rs.index)  # noqa: S311 - reproducible simulation, not security
        taken = self.probe.take_offline(
            step.count(len(homes)), duration=step.duration, region=step.region, mode=step.mode, rng=rng
        )
        record["output"] = {"devices": len(taken), "mode": step.mode, "region": step.region}
        try:
            await asyncio.sleep(step.duration)
        finally:
            self._close_window(rs, window)
            record["ended_at"] = time.time()

    async def _action_step(self, rs: ResolvedStep, record: dict[str, Any]) -> None:
        action = rs.action
        assert action is not None and self.api is not None and self.life is not None  # noqa: S101 - narrows the type for mypy; set before this step runs
        ctx = ActionContext(self.inv, self.api, None, self.settings.runtime, self.log, self.probe)  # type: ignore[arg-type]
        await action.preflight(ctx)
        journal = self.life.begin(action)
        ctx.journal = journal
        record["journal"] = journal.entry.path
        window = self._window(rs, record)
        applied = _Applied(rs, journal, ctx, record, window)
        self.applied.append(applied)
        ctx.applied_at = window["start"] = time.time()
        await action.apply(ctx)
        journal.set_status("applied")
        record["notes"] = ctx.notes
        self.journal.flush()
        if rs.background:
            self._in_background(rs, record, self._effect(applied))
        else:
            await self._effect(applied)

    async def _effect(self, applied: _Applied) -> None:
        """Wait for the action's effect; a step with a duration then undoes itself."""
        rs, ctx, record = applied.step, applied.ctx, applied.record
        action = rs.action
        assert action is not None and self.life is not None  # noqa: S101 - narrows the type for mypy; set before this step runs
        measurements = await asyncio.wait_for(action.await_effect(ctx), timeout=action.timeout_s + 30)
        if not action.drill:
            self.life.keep(applied.journal, drill=False)  # nothing to undo (restore is itself an undo)
            self._close_window(rs, applied.window)
        elif rs.reverts:
            outcomes = await self.life.rollback(applied.journal)
            ok = all(o.ok for o in outcomes)
            self._close_window(rs, applied.window)
            record["undo"] = [o.to_json() for o in outcomes]
            self.journal.data["rollbacks"] += [
                {
                    "step": o.step.describe,
                    "of": f"{rs.label} (at the end of its duration)",
                    "ok": o.ok,
                    "detail": o.detail,
                    "journal": applied.journal.entry.path,
                    "at": time.time(),
                }
                for o in outcomes
            ]
            if not ok:
                raise RollbackFailed("; ".join(failures(outcomes)))
            measurements.update(await asyncio.wait_for(action.after_rollback(ctx), timeout=60))
        checks: list[Outcome] = action.checks(measurements)
        record["output"] = measurements
        record["checks"] = [c.to_json() for c in checks]
        record["ended_at"] = time.time()
        self.findings += failed_claims(checks, record["started_at"], record["ended_at"], rs.label)
        if any(not c.ok for c in checks):
            record["status"] = "deviated"
        self.journal.flush()

    def _in_background(self, rs: ResolvedStep, record: dict[str, Any], coro: Coroutine[Any, Any, None]) -> None:
        async def routine() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                record.update(status="cancelled", ended_at=time.time())
                raise
            except PushctlError as exc:
                record.update(status="failed", ended_at=time.time(), error=exc.message)
                self.halt_reason = f"background step {rs.label!r} failed: {exc.message}"
                self.halt.set()
                raise
            if record["status"] == "running":
                record["status"] = "ok"
            self.journal.flush()

        self.background.append(asyncio.create_task(routine(), name=f"experiment-step-{rs.index}"))

    async def _await_background(self) -> None:
        results = await asyncio.gather(*self.background, return_exceptions=True)
        for result in results:
            if isinstance(result, PushctlError):
                raise result

    def _cancel_background_soon(self) -> None:
        for t in self.background:
            t.cancel()

    # ---- rollback ----------------------------------------------------------------------------------
    async def _rollback(self) -> None:
        """Undo every applied action still open (newest first), then the listed rollback steps."""
        for t in self.background:
            t.cancel()
        if self.background:
            await asyncio.wait(self.background)
        self.journal.phase("rollback")
        self.live.phase = "rollback"
        self._update()
        records: list[dict[str, Any]] = self.journal.data["rollbacks"]
        failed: list[str] = []
        for applied in reversed(self.applied):
            entry = applied.journal.entry
            if not entry.open or self.life is None:
                continue
            outcomes = await self.life.rollback(applied.journal)
            ok = all(o.ok for o in outcomes)
            self._close_window(applied.step, applied.window)
            for o in outcomes:
                records.append(
                    {
                        "step": o.step.describe,
                        "of": applied.step.label,
                        "ok": o.ok,
                        "detail": o.detail,
                        "journal": entry.path,
                        "at": time.time(),
                    }
                )
            failed += failures(outcomes)
            if ok and not self.interrupted and applied.step.action is not None:
                with contextlib.suppress(PushctlError, TimeoutError):
                    await asyncio.wait_for(applied.step.action.after_rollback(applied.ctx), timeout=30)
        for rs in self.resolved.rollbacks:
            records.append(await self._extra_rollback(rs))
            if not records[-1]["ok"]:
                failed.append(f"{rs.label}: {records[-1]['detail']}")
        self.journal.flush()
        if failed:
            self.status = "failed" if self.status == "running" else self.status
            self.exit_code = EXIT_ROLLBACK
            self.error = "rollback failed: " + "; ".join(failed)
            self.log(f"{self.exp.title}: {self.error} (fix the cause, then `pushctl recover`)")

    async def _platform_state(self) -> tuple[frozenset[tuple[str, str]], str]:
        """What the platform does by itself and must undo by itself: drains in force (by origin and
        region) and where the access tier stores payloads."""
        assert self.api is not None  # noqa: S101 - narrows the type for mypy; set before this step runs
        policies = frozenset((p.origin, p.region) for p in (await self.api.policies()).policies)
        return policies, (await self.api.storage()).mode

    async def _check_left_behind(self) -> None:
        """A run ends where it began. The rollbacks undo what the run did; what the platform did by
        itself (the scheduler's auto drain of a region it saw fail, the storage fallback) must go by
        itself too, within LEFT_BEHIND_TIMEOUT_S. Otherwise it is this run's finding, not a "steady
        state did not hold" in whichever experiment runs next."""
        if self.api is None or self._start_state is None:
            return
        start_policies, start_storage = self._start_state

        def new(policy: Policy) -> bool:
            return (policy.origin, policy.region) not in start_policies

        self.journal.phase("left behind")
        started = time.time()
        seconds, left = await wait_platform_back(
            self.api, stray=new, storage=start_storage, timeout=LEFT_BEHIND_TIMEOUT_S, poll=0.5
        )
        if seconds is not None:
            return
        detail = f"the platform was left changed {LEFT_BEHIND_TIMEOUT_S:.0f}s after the rollbacks: " + (
            ", ".join(left) or "its state could not be read"
        )
        title = "the platform is back where the run began"
        self.findings.append(Finding(title, detail, False, started, time.time(), "after"))
        self.log(f"{self.exp.title}: {detail}")

    async def _extra_rollback(self, rs: ResolvedStep) -> dict[str, Any]:
        out: dict[str, Any] = {"step": rs.label, "of": "rollbacks", "ok": True, "detail": "", "at": time.time()}
        try:
            if rs.kind == "wait":
                await asyncio.sleep(rs.duration_s or 0.0)
            elif rs.kind == "clear-faults":
                results = await clear_faults(self.inv, getattr(rs.model, "link", None))
                out["detail"] = "; ".join(f"{r.link}: {r.connections}" for r in results if r.changed) or "no fault"
            elif rs.action is not None:
                assert self.api is not None and self.life is not None  # noqa: S101 - narrows the type for mypy; set before this step runs
                journal = self.life.begin(rs.action)
                ctx = ActionContext(self.inv, self.api, journal, self.settings.runtime, self.log, self.probe)
                await rs.action.apply(ctx)
                self.life.keep(journal, drill=rs.action.drill)  # a restore is itself an undo: complete
                out["detail"] = "; ".join(ctx.notes) or "done"
        except (PushctlError, TimeoutError) as exc:
            out.update(ok=False, detail=str(exc))
        return out

    async def _stop_probe(self, timeline_task: asyncio.Task[None] | None) -> None:
        if timeline_task is not None:
            timeline_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timeline_task
        if self.probe is None:
            return
        if self.interrupted:
            await self.probe.close()
            return
        try:
            self.live.phase = "collecting late deliveries"
            self._update()
            summary = await self.probe.stop()
        except PushctlError as exc:
            self.log(f"the probe failed to stop cleanly: {exc.message}")
            return
        finally:
            await self.probe.close()
        self.timeline.finish(summary, time.time())
        self.journal.data["summary"] = {k: v for k, v in summary.to_json().items() if k != "per_second"}
        if self.method_window is not None and self.status in ("running",):
            self._during(*self.method_window)
            self._cohorts(*self.method_window)
        self._whole_run(summary)
        self.journal.flush()

    def _whole_run(self, summary: LedgerSummary) -> None:
        """The whole run's ledger, every message of it (not only the checked windows)."""
        assert self.probe is not None  # noqa: S101 - narrows the type for mypy; set before this step runs
        tol = self.exp.ledger
        start = self.probe.started_at
        end = time.time()
        away = f" ({summary.offline.lost} to devices away on purpose)" if summary.offline.lost else ""
        rows = [
            ("nothing lost over the whole run", summary.lost, 0,
             f"lost {summary.lost} of {summary.sent} expected deliveries{away}"),
            ("no push nobody sent", summary.unexpected, 0,
             f"{summary.unexpected} deliveries of pushes nobody sent to that device (or the platform refused)"),
            (f"at most {tol.duplicates} app-visible duplicates", summary.duplicates, tol.duplicates,
             f"{summary.duplicates} duplicates reached the app ({summary.raw_duplicates} frames received twice)"),
            (f"at most {tol.rejected} pushes rejected", summary.rejected, tol.rejected,
             f"{summary.rejected} pushes visibly rejected by the platform"),
        ]  # fmt: skip
        results = []
        for title, value, most, detail in rows:
            ok = value <= most
            result = CheckResult(title, "ledger", f"<= {most}", value, ok, detail, end, start, end, False)
            results.append(result)
            self._found(result, "whole run")
        self._record_state("run", "the whole run's ledger", "the whole run", results)

    def _record_state(self, key: str, title: str, said: str, results: list[CheckResult]) -> None:
        """A hypothesis judged over a span (the whole run, the method): in the journal and the log."""
        met = all(r.ok for r in results)
        self.journal.data["steady_states"][key] = {"title": title, "met": met, "checks": [r.to_json() for r in results]}
        self.log(
            f"{said}: {'holds' if met else 'DOES NOT HOLD'}"
            + "".join(f"\n  {'ok ' if r.ok else 'BAD'} {r.detail}" for r in results)
        )

    def _cohorts(self, since: float, until: float) -> None:
        """Control vs experiment over the method: both cohorts, the difference and its interval, the
        experiment's tolerances on it (`pushctl.experiments.cohorts`)."""
        settings, probe = self.exp.cohorts, self.probe
        if settings is None or probe is None or not probe.cohorts:
            return
        cmp = compare(probe, since=since, until=until, confidence=settings.confidence / 100)
        results = cohort_checks(cmp, settings, at=time.time())
        for r in results:
            self._found(r, "cohorts")
        self.journal.data["cohorts"] = {**cmp.to_json(), "series": cohort_series(probe)}
        self.log(render_cohorts(cmp))
        self._record_state("cohorts", "control vs experiment cohorts", "cohorts over the method", results)

    def _during(self, since: float, until: float) -> None:
        """The `during` hypothesis: exact, over every message sent while the method ran."""
        assert self.probe is not None and self.measurer is not None  # noqa: S101 - narrows the type for mypy; set before this step runs
        checks = self.exp.steady_state.during
        if not checks:
            return
        summary = self.probe.summary(since=since, until=until)
        results = [self.measurer.delivery(c, since=since, until=until, cutoff=0.0, summary=summary) for c in checks]
        for r in results:
            self._found(r, "during")
        self._record_state("during", "during the method", "during the method", results)


def _run_code(exc: PushctlError) -> int:
    """The exit code an error ends a run with: its own when the run knows it, else "deviated"."""
    return exc.exit_code if exc.exit_code in SEVERITY else EXIT_DEVIATED


def _worse(code: int, than: int) -> bool:
    rank = {c: i for i, c in enumerate(SEVERITY)}
    return rank.get(code, len(SEVERITY)) < rank.get(than, len(SEVERITY))


def worst_exit(codes: list[int]) -> int:
    """The exit code of several runs: the most severe one."""
    out = EXIT_PASSED
    for code in codes:
        if _worse(code, out):
            out = code
    return out


async def run_experiment(inv: Inventory, resolved: Resolved, settings: RunSettings) -> RunResult:
    """Run one resolved experiment against `inv`; never leaves an applied action behind."""
    driver = driver_for(inv)
    for rs in (*resolved.steps, *resolved.rollbacks):  # a verb the driver cannot do: refused before any step
        if rs.action is not None:
            driver.require(rs.action.verb, rs.action.title())
    return await ExperimentRun(inv, resolved, settings).run()
