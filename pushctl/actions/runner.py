"""Run one action the safe way: plan -> preflight -> journal -> apply -> verify -> report -> rollback.

The lock, the journal, the rollback and Ctrl-C / SIGTERM are the change life cycle's
(`pushctl.actions.lifecycle`, shared with experiments): a signal cancels the run, the rollback then
runs to completion (further signals only say so) and the command exits 130. `kill -9` leaves the
journal for `pushctl recover`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from pushctl._http import tls
from pushctl.actions.base import Action, ActionContext, Outcome
from pushctl.actions.common import RestartComponent
from pushctl.actions.journal import Journal, load_entries
from pushctl.actions.lifecycle import ChangeLifecycle
from pushctl.actions.undo import UndoOutcome
from pushctl.actions.verdict import Trouble, delivery_outcomes, failed_claims, judge
from pushctl.contract.topology import PUSH_SERVICE_KINDS, Inventory
from pushctl.control import PlatformClient
from pushctl.drivers import Driver, driver_for
from pushctl.errors import ComponentFailed, Inconclusive, PushctlError, RollbackFailed, SloBreached
from pushctl.probe.ledger import LedgerSummary
from pushctl.probe.probe import Probe, ProbeOptions

SETTLE_AFTER_ROLLBACK_S = 2.0


@dataclass
class RunOptions:
    slo: float = 99.9
    probe: ProbeOptions | None = field(default_factory=ProbeOptions)
    hold: bool = False
    warmup_s: float = 1.0
    runtime: str = "process"


@dataclass
class ActionReport:
    action: str
    params: dict[str, Any]
    plan: list[str]
    journal: str
    held: bool
    measurements: dict[str, Any]
    during: dict[str, Any] | None
    overall: dict[str, Any] | None
    rollback: list[dict[str, Any]]
    slo: float
    passed: bool
    verdict: str
    seconds: float
    checks: list[dict[str, Any]] = field(default_factory=list)
    inconclusive: list[str] = field(default_factory=list)  # why the rig could not keep up, when that decided

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def held_components(inv: Inventory) -> set[str]:
    """Components a held action stopped or froze on purpose (`fail ... --hold`)."""
    return {
        step.component
        for entry in load_entries(inv)
        if entry.status == "held"
        for step in entry.undo
        if isinstance(step, RestartComponent)  # a resume is a restart's kin: it too names a component
    }


async def check_platform(inv: Inventory, *, expected_down: set[str] | frozenset[str] = frozenset()) -> None:
    """Every push service answers /healthz (but those held down on purpose); raise ComponentFailed otherwise."""
    bad: list[str] = []
    async with httpx.AsyncClient(verify=tls(), timeout=2.0, trust_env=False) as http:

        async def one(name: str, url: str) -> None:
            try:
                resp = await http.get(url)
                if resp.status_code != 200:
                    bad.append(f"{name} (HTTP {resp.status_code})")
            except httpx.HTTPError as exc:
                bad.append(f"{name} ({type(exc).__name__})")

        await asyncio.gather(
            *(
                one(n, f"http://{s.host}:{s.port}/healthz")
                for n, s in inv.services.items()
                if s.kind in PUSH_SERVICE_KINDS and n not in expected_down
            )
        )
    if bad:
        raise ComponentFailed(
            f"the platform is not healthy: {', '.join(sorted(bad))}", hint="see `pushctl stack status`"
        )


def _impact_seconds(summary: LedgerSummary, probe: Probe | None, applied_at: float) -> float:
    """From the change until the end of the last second in which a message was late or lost."""
    t0 = probe.ledger.t0 if probe is not None and probe.ledger.t0 is not None else applied_at
    bad = [s.t for s in summary.per_second if s.late or s.lost]
    return 0.0 if not bad else round(max(0.0, t0 + max(bad) + 1 - applied_at), 1)


def _verdict(
    summary: LedgerSummary | None, slo: float, checks: list[Outcome], trouble: Trouble, window: tuple[float, float]
) -> tuple[str, str, list[str]]:
    """passed | failed | inconclusive, the verdict line, and why the rig could not keep up (inconclusive)."""
    delivery = delivery_outcomes(summary, slo)
    outcomes = delivery + checks
    judgement = judge(failed_claims(outcomes, *window), trouble)
    verdict, reasons = judgement.verdict, judgement.reasons
    breached = "SLO BREACHED: " if any(not o.ok for o in delivery) else "FAILED: "
    head = {"passed": "SLO held: ", "failed": breached, "inconclusive": "INCONCLUSIVE: "}[verdict]
    if summary is None:
        head = "no probe ran (--no-probe): delivery not verified; " if verdict == "passed" else "FAILED: "
    shown = [o for o in outcomes if not o.ok] or outcomes
    if summary is not None and verdict == "passed":
        shown = outcomes[:2] + checks
    text = head + "; ".join(o.text for o in shown if o.text)
    if reasons:
        text += " (the rig could not keep up: " + "; ".join(reasons) + ")"
    return verdict, text, reasons


async def back_at_baseline(driver: Driver, journal: Journal, before: str) -> str | None:
    """None once the driver's baseline command prints `before` again; else what it prints (the journal is
    marked rollback-failed: the change may still be in place, `recover` retries)."""
    try:
        seconds, now = await driver.wait_baseline(before)
    except PushctlError as exc:
        seconds, now = None, f"the baseline command failed: {exc.message}"
    if seconds is not None:
        journal.event("back at baseline", seconds=round(seconds, 2))
        return None
    journal.set_status("rollback-failed")
    return f"baseline {_clip(before)!r}, now {_clip(now)!r}"


def _clip(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _no_trouble(since: float, until: float) -> list[str]:
    return []


async def execute(inv: Inventory, action: Action, opts: RunOptions, *, log: Any) -> ActionReport:
    """Run `action` against `inv`; always leaves the platform at its baseline unless `opts.hold`."""
    started = time.monotonic()
    journal: Journal | None = None
    probe: Probe | None = None
    outcomes: list[UndoOutcome] = []
    measurements: dict[str, Any] = {}
    applied_at = ended_at = 0.0
    summary = during = None
    driver = driver_for(inv)
    driver.require(action.verb, action.title())  # a verb the driver cannot do: refused before anything runs
    baseline: str | None = None
    left_away: str | None = None  # the target's state when it did not come back to the baseline
    async with ChangeLifecycle(inv, action.title(), log=log) as life:
        try:
            try:
                with life.cancellable():
                    async with PlatformClient(inv) as api:
                        if action.requires_healthy:
                            await check_platform(inv, expected_down=held_components(inv))
                        if opts.probe is not None:
                            probe = Probe(inv, opts.probe)
                            await probe.start()
                            await asyncio.sleep(opts.warmup_s)
                        ctx = ActionContext(inv, api, None, opts.runtime, log, probe, driver=driver)  # type: ignore[arg-type]
                        await action.preflight(ctx)
                        baseline = await driver.snapshot()
                        journal = life.begin(action)
                        ctx.journal = journal
                        if baseline is not None:
                            journal.event("baseline", state=baseline)  # `recover` compares with it too
                        applied_at = ctx.applied_at = time.time()
                        await action.apply(ctx)
                        journal.set_status("applied")
                        measurements = await asyncio.wait_for(action.await_effect(ctx), timeout=action.timeout_s + 30)
                        ended_at = time.time()
            finally:
                ended_at = ended_at or time.time()
                if journal is not None and (not opts.hold or life.interrupted or journal.entry.status != "applied"):
                    outcomes = await life.rollback(journal)
                    if baseline is not None and all(o.ok for o in outcomes):
                        left_away = await back_at_baseline(driver, journal, baseline)
                    if not life.interrupted and all(o.ok for o in outcomes):
                        async with PlatformClient(inv) as api:
                            settle_ctx = ActionContext(inv, api, journal, opts.runtime, log, probe, applied_at)
                            measurements.update(await asyncio.wait_for(action.after_rollback(settle_ctx), 60))
                elif journal is not None:
                    life.keep(journal, drill=action.drill)
            if probe is not None and not life.interrupted:
                if journal is not None:
                    await asyncio.sleep(SETTLE_AFTER_ROLLBACK_S)
                summary = await probe.stop()
                during = probe.summary(since=applied_at, until=ended_at)
        finally:
            if probe is not None:
                await probe.close()  # also when the run failed or was interrupted: no device left connected
    life.raise_for(outcomes, journal)
    if left_away is not None:
        raise RollbackFailed(
            f"the undo commands ran, but the target is not back at its baseline: {left_away}",
            hint=f"check the undo templates of {inv.source}; then `pushctl recover`",
        )
    if during is not None:
        measurements["delivery_impact_s"] = _impact_seconds(during, probe, applied_at)
    checks = action.checks(measurements) if journal is not None else []
    trouble = probe.rig.trouble if probe is not None else _no_trouble
    outcome, verdict, rig = _verdict(during, opts.slo, checks, trouble, (applied_at, ended_at))
    return ActionReport(
        action=action.name,
        params=action.params(),
        plan=[s.describe() for s in action.plan()],
        journal=journal.entry.path if journal else "",
        held=opts.hold,
        measurements=measurements,
        during=during.to_json() if during else None,
        overall=summary.to_json() if summary else None,
        rollback=[o.to_json() for o in outcomes],
        slo=opts.slo,
        passed=outcome == "passed",
        verdict=verdict,
        seconds=round(time.monotonic() - started, 2),
        checks=[o.to_json() for o in delivery_outcomes(during, opts.slo) + checks],
        inconclusive=rig,
    )


def raise_for_verdict(report: ActionReport) -> None:
    if report.passed:
        return
    if report.inconclusive:
        raise Inconclusive(report.verdict, hint="re-run on a quieter machine, or with fewer devices")
    raise SloBreached(report.verdict)
