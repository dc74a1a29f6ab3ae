"""Resolve an experiment against an inventory: every step becomes an Action (or a probe/wait step).

Resolution is pure: it checks names (regions, IDCs, links, services) and the blast radius, and
builds the plan `pushctl experiment plan` prints, without touching the platform.

    resolved = resolve(inv, load_experiment(path))
    for step in resolved.steps: print(step.label, step.plan)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pushctl.actions.base import Action, ActionContext, PlanStep
from pushctl.actions.capacity import CrashComponent, LimitRegion
from pushctl.actions.common import journaled_fault
from pushctl.actions.connections import ConnectionFault, Storm
from pushctl.actions.drain import Drain, Restore
from pushctl.actions.idc import FailIdc, SwitchIdc, parse_weights
from pushctl.actions.redis import FailRedis
from pushctl.actions.region import FailRegion
from pushctl.actions.throttle import ThrottleAccess
from pushctl.contract.topology import Inventory, LinkKind
from pushctl.errors import PushctlError, UsageError
from pushctl.experiments.loader import ExperimentInvalid, Loaded, Problem
from pushctl.experiments.model import (
    ClearFaultsStep,
    ConnectionsStep,
    CrashStep,
    DeliveryCheck,
    DrainStep,
    Experiment,
    FailIdcStep,
    FailRedisStep,
    FailRegionStep,
    FaultStep,
    LimitStep,
    LinkDownStep,
    MetricCheck,
    OfflineStep,
    ProbeStep,
    RestoreStep,
    SpikeStep,
    StormStep,
    SwitchIdcStep,
    ThrottleStep,
    WaitStep,
    step_label,
)
from pushctl.faults.links import FaultSpec, plan_fault, plan_link_down
from pushctl.probe.duration import format_duration
from pushctl.probe.fleet import MAX_DEVICES_PER_PROCESS

STATUS_ROOTS = (
    "stack",
    "policies",
    "regions",
    "connections",
    "routing",
    "throttle",
    "storage",
    "faults",
    "buffer_lag",
    "actions",
)


class LinkFault(Action):
    """A toxic on a link, or the link down, for a while: the `fault` and `link-down` steps."""

    name = "fault"

    def __init__(self, spec: FaultSpec, *, duration_s: float) -> None:
        self.spec = spec
        self.duration_s = duration_s
        self.timeout_s = duration_s + 10

    def params(self) -> dict[str, Any]:
        return {"link": self.spec.link, "fault": self.spec.describe(), "duration": format_duration(self.duration_s)}

    def plan(self) -> list[PlanStep]:
        undo = f"bring link {self.spec.link} up" if self.spec.action == "down" else "remove its toxics"
        return [
            PlanStep(
                f"link {self.spec.link}",
                f"{self.spec.describe()} for {format_duration(self.duration_s)}",
                "the probe measures delivery through it",
                undo,
            )
        ]

    async def apply(self, ctx: ActionContext) -> None:
        ctx.notes.append(await journaled_fault(ctx, self.spec))

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        await asyncio.sleep(self.duration_s)
        return {"link": self.spec.link}


@dataclass
class ResolvedStep:
    """One method or rollback step, ready to run."""

    index: int
    label: str
    kind: str  # action | spike | offline | wait | probe | clear-faults
    model: Any
    action: Action | None = None
    reverts: bool = False  # undone at the end of its own duration (faults, failures, switches)
    duration_s: float | None = None
    background: bool = False
    plan: list[PlanStep] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "label": self.label,
            "kind": self.kind,
            "background": self.background,
            "reverts_after_duration": self.reverts,
            "duration_s": self.duration_s,
            "plan": [s.__dict__ for s in self.plan],
        }


@dataclass
class Resolved:
    loaded: Loaded
    steps: list[ResolvedStep]
    rollbacks: list[ResolvedStep]

    @property
    def experiment(self) -> Experiment:
        return self.loaded.experiment


def cohort_target(inv: Inventory, link: str, cohort: str | None) -> str:
    """The link a step acts on: `link`, or with `cohort: experiment` its region's experiment-cohort link."""
    if cohort is None:
        return link
    found = inv.link(link)
    if found.kind != LinkKind.DEVICE or found.region is None:
        raise UsageError(
            f"cohort: {cohort} applies to device links only; {link} is a {found.kind.value} link, "
            "which both cohorts share"
        )
    return found.name if found.cohort == cohort else inv.cohort_link(found.region).name


def build_action(inv: Inventory, step: Any, index: int) -> Action | None:
    """The Action of a method/rollback step (None for steps that are not platform actions)."""
    if isinstance(step, DrainStep):
        return Drain(inv, step.region, spread_s=step.spread, timeout_s=step.timeout)
    if isinstance(step, RestoreStep):
        return Restore(inv, step.region, timeout_s=step.timeout)
    if isinstance(step, FailRegionStep):
        return FailRegion(inv, step.region, step.mode, duration_s=step.duration, max_impact_s=step.max_impact)
    if isinstance(step, FailIdcStep):
        return FailIdc(inv, step.idc, duration_s=step.duration)
    if isinstance(step, FailRedisStep):
        return FailRedis(inv, step.mode, latency_ms=max(2, round(step.latency * 1000)), duration_s=step.duration)
    if isinstance(step, SwitchIdcStep):
        weights = None if step.weights is None else ",".join(f"{k}={v:g}" for k, v in step.weights.items())
        return SwitchIdc(inv, parse_weights(inv, step.to, weights), duration_s=step.duration)
    if isinstance(step, ThrottleStep):
        return ThrottleAccess(
            limit=step.limit,
            auto=step.auto,
            safe_load=step.safe_load,
            threshold=step.threshold,
            duration_s=step.duration,
        )
    if isinstance(step, FaultStep):
        spec = plan_fault(
            inv,
            cohort_target(inv, step.link, step.cohort),
            step.toxic,
            step.attributes,
            step.stream,
            step.toxicity,
            name=f"exp{index}-{step.toxic}",
            reset_connections=step.reset_connections,
        )
        return LinkFault(spec, duration_s=step.duration)
    if isinstance(step, LinkDownStep):
        return LinkFault(plan_link_down(inv, cohort_target(inv, step.link, step.cohort)), duration_s=step.duration)
    if isinstance(step, LimitStep):
        return LimitRegion(inv, step.region, step.limit, duration_s=step.duration)
    if isinstance(step, CrashStep):
        return CrashComponent(inv, step.service, duration_s=step.duration)
    if isinstance(step, StormStep):
        return Storm(inv, step.region, max_recovery_s=step.max_recovery, cohort=step.cohort)
    if isinstance(step, ConnectionsStep):
        mode, share = ("drop", step.drop) if step.drop is not None else ("half-open", step.half_open)
        return ConnectionFault(
            inv,
            step.region,
            mode,
            (share or 0.0) / 100,
            duration_s=step.duration if step.duration is not None else 10.0,
            max_recovery_s=step.max_recovery,
            keepalive_s=step.keepalive,
            cohort=step.cohort,
        )
    return None


def _resolve_step(inv: Inventory, step: Any, index: int, base_rate: float) -> ResolvedStep:
    label = step_label(step)
    if isinstance(step, WaitStep):
        return ResolvedStep(
            index,
            label,
            "wait",
            step,
            duration_s=step.wait,
            plan=[PlanStep("-", f"wait {format_duration(step.wait)}", "-", "-")],
        )
    if isinstance(step, ProbeStep):
        return ResolvedStep(
            index, label, "probe", step, plan=[PlanStep("probe", f"measure {step.probe.title()}", "tolerance", "-")]
        )
    if isinstance(step, SpikeStep):
        rate = base_rate * step.factor
        change = f"send {step.factor:g}x ({rate:g} pushes/s) for {format_duration(step.duration)}"
        return ResolvedStep(
            index,
            label,
            "spike",
            step,
            duration_s=step.duration,
            background=step.background,
            plan=[PlanStep("probe sender", change, "stop conditions and the SLO watch", f"back to {base_rate:g}/s")],
        )
    if isinstance(step, OfflineStep):
        who = f"{step.devices} of the probe devices" + (f" of {step.region}" if step.region else "")
        if step.region is not None and step.region not in inv.regions:
            raise UsageError(f"unknown region {step.region!r}; valid: {', '.join(inv.regions)}")
        how = "lose their connection" if step.mode == "drop" else "leave (close frame)"
        return ResolvedStep(
            index,
            label,
            "offline",
            step,
            duration_s=step.duration,
            background=step.background,
            plan=[
                PlanStep(
                    "probe devices",
                    f"{who} {how} and stay offline for {format_duration(step.duration)}, then come back",
                    "messages sent meanwhile arrive after they are back, exactly once (the ledger's offline class)",
                    "they come back by themselves",
                )
            ],
        )
    if isinstance(step, ClearFaultsStep):
        what = f"link {step.link}" if step.link else "every link"
        if step.link:
            inv.link(step.link)
        return ResolvedStep(
            index,
            label,
            "clear-faults",
            step,
            plan=[PlanStep(what, "remove every toxic, bring it up", "fault list is empty", "-")],
        )
    action = build_action(inv, step, index)
    assert action is not None  # noqa: S101 - every other step kind is an action
    return ResolvedStep(
        index,
        label,
        "action",
        step,
        action=action,
        # connection faults end by themselves (their undo is then a safety net): undone with their step
        reverts=action.drill
        and (getattr(step, "duration", None) is not None or isinstance(step, StormStep | ConnectionsStep)),
        duration_s=getattr(step, "duration", None),
        background=bool(getattr(step, "background", False)),
        plan=action.plan(),
    )


def resolve(inv: Inventory, loaded: Loaded) -> Resolved:
    """Check the experiment against `inv`; raise ExperimentInvalid listing every problem."""
    exp = loaded.experiment
    problems: list[Problem] = []

    def attempt(loc: tuple[str | int, ...], fn: Any) -> Any:
        try:
            return fn()
        except PushctlError as exc:
            problems.append(loaded.problem(loc, exc.message))
            return None

    steps = [
        attempt(("method", i), lambda s=s, i=i: _resolve_step(inv, s, i, exp.probe.rate))
        for i, s in enumerate(exp.method)
    ]
    rollbacks = [
        attempt(("rollbacks", i), lambda s=s, i=i: _resolve_step(inv, s, i, exp.probe.rate))
        for i, s in enumerate(exp.rollbacks)
    ]
    problems += _check_names(inv, loaded)
    if exp.cohorts is not None and not inv.has_cohorts:
        problems.append(
            loaded.problem(
                ("cohorts",),
                "the inventory declares no experiment-cohort device link for every region "
                '([[links]] with kind = "device", cohort = "experiment")',
            )
        )
    problems += _check_blast_radius(inv, loaded)
    if exp.probe.devices > MAX_DEVICES_PER_PROCESS and any(isinstance(st, OfflineStep) for st in exp.method):
        problems.append(
            loaded.problem(
                ("probe", "devices"),
                f"offline steps need every probe device in one process: at most {MAX_DEVICES_PER_PROCESS}",
            )
        )
    for i, step in enumerate(exp.method):
        if (
            getattr(step, "background", False)
            and getattr(step, "duration", None) is None
            and not isinstance(step, DrainStep)
        ):
            problems.append(
                loaded.problem(
                    ("method", i, "background"), "only a step with a duration (or a drain) can run in the background"
                )
            )
    if problems:
        raise ExperimentInvalid(problems)
    return Resolved(loaded, [s for s in steps if s], [s for s in rollbacks if s])


def _checks(exp: Experiment) -> list[tuple[tuple[str | int, ...], Any]]:
    out: list[tuple[tuple[str | int, ...], Any]] = []
    out += [(("steady_state", "probes", i), c) for i, c in enumerate(exp.steady_state.probes)]
    out += [(("steady_state", "during", i), c) for i, c in enumerate(exp.steady_state.during)]
    out += [(("stop_conditions", i), c) for i, c in enumerate(exp.stop_conditions)]
    out += [(("method", i, "probe"), s.probe) for i, s in enumerate(exp.method) if isinstance(s, ProbeStep)]
    return out


def _check_names(inv: Inventory, loaded: Loaded) -> list[Problem]:
    exp = loaded.experiment
    out: list[Problem] = []
    valid_regions = ", ".join(inv.regions)
    for loc, check in _checks(exp):
        if isinstance(check, DeliveryCheck) and check.region is not None and check.region not in inv.regions:
            out.append(loaded.problem((*loc, "region"), f"unknown region {check.region!r}; valid: {valid_regions}"))
        if isinstance(check, MetricCheck) and check.service not in inv.services:
            out.append(
                loaded.problem(
                    (*loc, "service"), f"unknown service {check.service!r}; valid: " + ", ".join(sorted(inv.services))
                )
            )
        if isinstance(check, MetricCheck) and check.delta and loc[0] == "steady_state":
            out.append(
                loaded.problem(
                    (*loc, "delta"),
                    "delta (the increase while the method ran) only applies to method probes and stop conditions",
                )
            )
        status = getattr(check, "status", None)
        if status is not None and status.split(".")[0] not in STATUS_ROOTS:
            out.append(
                loaded.problem(
                    (*loc, "status"),
                    f"unknown status field {status!r}; it starts with one of: " + ", ".join(STATUS_ROOTS),
                )
            )
    for region in exp.probe.regions or {}:
        if region not in inv.regions:
            out.append(loaded.problem(("probe", "regions", region), f"unknown region; valid: {valid_regions}"))
    return out


def _scope(inv: Inventory, step: Any) -> tuple[set[str], set[str]]:
    """(regions, idcs) a step acts on."""
    regions: set[str] = set()
    idcs: set[str] = set()
    if isinstance(step, DrainStep | RestoreStep | FailRegionStep):
        regions.add(step.region)
    elif isinstance(step, FailIdcStep):
        idcs.add(step.idc)
    elif isinstance(step, SwitchIdcStep):
        idcs.update(inv.idcs)
    elif isinstance(step, FailRedisStep | ThrottleStep):
        kind = "redis-cache" if isinstance(step, FailRedisStep) else None
        svc = (
            inv.services.get(kind)
            if kind
            else next((s for s in inv.services.values() if s.kind.value == "access"), None)
        )
        if svc is not None and svc.idc:
            idcs.add(svc.idc)
    elif isinstance(step, LimitStep | StormStep | ConnectionsStep):
        regions.add(step.region)
    elif isinstance(step, CrashStep):
        svc = inv.services.get(step.service)
        if svc is not None and svc.region:
            regions.add(svc.region)
        if svc is not None and svc.idc:
            idcs.add(svc.idc)
    elif isinstance(step, FaultStep | LinkDownStep):
        link = next((lk for lk in inv.links if lk.name == step.link), None)
        if link is not None:
            if link.region:
                regions.add(link.region)
            if link.idc:
                idcs.add(link.idc)
    return regions, idcs


def _check_blast_radius(inv: Inventory, loaded: Loaded) -> list[Problem]:
    br = loaded.experiment.blast_radius
    out: list[Problem] = []
    for key, allowed, valid in (("regions", br.regions, inv.regions), ("idcs", br.idcs, inv.idcs)):
        for i, name in enumerate(allowed or []):
            if name not in valid:
                out.append(
                    loaded.problem(("blast_radius", key, i), f"unknown {key[:-1]} {name!r}; valid: " + ", ".join(valid))
                )
    for i, step in enumerate(loaded.experiment.method):
        regions, idcs = _scope(inv, step)
        if br.regions is not None and regions - set(br.regions):
            out.append(
                loaded.problem(
                    ("method", i),
                    f"acts on region {', '.join(sorted(regions - set(br.regions)))}"
                    f", outside blast_radius.regions {br.regions}",
                )
            )
        if br.idcs is not None and idcs - set(br.idcs):
            out.append(
                loaded.problem(
                    ("method", i),
                    f"acts on idc {', '.join(sorted(idcs - set(br.idcs)))}, outside blast_radius.idcs {br.idcs}",
                )
            )
    return out
