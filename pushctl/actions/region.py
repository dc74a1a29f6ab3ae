"""Unplanned region failure (device link down, VPC down, brokers crashed) and its healing.

Devices fail over on their own with their three-region address set; the scheduler notices the
region is unhealthy and drains it by itself, and withdraws that policy when the region recovers.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pushctl.actions.base import Action, ActionContext, Outcome, PlanStep
from pushctl.actions.common import journaled_crash, journaled_fault, wait_until
from pushctl.actions.drain import check_region
from pushctl.contract.topology import Inventory
from pushctl.drivers import Verb
from pushctl.errors import UsageError
from pushctl.faults.links import plan_link_down

RegionMode = Literal["link-down", "vpc-down", "crash", "pause"]
MODES: tuple[str, ...] = ("link-down", "vpc-down", "crash", "pause")


class FailRegion(Action):
    name = "fail-region"

    def __init__(
        self, inv: Inventory, region: str, mode: str, *, duration_s: float = 15.0, max_impact_s: float = 10.0
    ) -> None:
        self.max_impact_s = max_impact_s
        self.region = check_region(inv, region)
        if mode not in MODES:
            raise UsageError(f"unknown --mode {mode!r}; valid: {', '.join(MODES)}")
        self.mode = mode
        self.duration_s = duration_s
        self.timeout_s = duration_s + 30
        self.broker, _ = inv.broker(region)
        self.inv = inv

    def params(self) -> dict[str, Any]:
        return {"region": self.region, "mode": self.mode, "duration": f"{self.duration_s:g}s"}

    def _target(self) -> str:
        if self.mode == "link-down":
            return self.inv.device_link(self.region).name
        if self.mode == "vpc-down":
            return self.inv.vpc_link(self.region).name
        return self.broker

    def plan(self) -> list[PlanStep]:
        target = self._target()
        change = {
            "link-down": f"take link {target} down (the region's public network)",
            "vpc-down": f"take link {target} down (the region's VPC: logic cannot reach {self.broker})",
            "crash": f"SIGKILL {self.broker}",
            "pause": f"freeze {self.broker} (SIGSTOP / docker pause: a hung broker)",
        }[self.mode]
        undo = {"crash": f"restart {self.broker}", "pause": f"resume {self.broker}"}.get(
            self.mode, f"bring link {target} up"
        )
        return [
            PlanStep(
                target if self.mode not in ("crash", "pause") else self.broker,
                f"{change} for {self.duration_s:g}s",
                "devices fail over by themselves; the scheduler drains the region itself; nothing is lost",
                undo,
            ),
            PlanStep(
                "scheduler",
                "(by itself) auto drain policy",
                "policy appears",
                "withdrawn by the scheduler on recovery",
            ),
        ]

    async def apply(self, ctx: ActionContext) -> None:
        if self.mode in ("crash", "pause"):
            ctx.notes.append(await journaled_crash(ctx, self.broker, self.mode))
        else:
            ctx.notes.append(await journaled_fault(ctx, plan_link_down(ctx.inv, self._target())))

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        async def auto_drained() -> bool:
            policies = await ctx.api.policies()
            return any(p.region == self.region and p.kind == "drain" for p in policies.policies)

        detect = await wait_until(auto_drained, timeout=self.duration_s)
        remaining = self.duration_s - (detect or self.duration_s)
        await asyncio.sleep(max(0.0, remaining))
        out: dict[str, Any] = {
            "region": self.region,
            "mode": self.mode,
            "scheduler_detected_s": None if detect is None else round(detect, 2),
        }
        if ctx.probe is not None:
            stats = ctx.probe.drain_stats(since=ctx.applied_at)
            out.update(devices_moved=stats.reconnects, moved_to=stats.to_region, per_device_max_s=stats.max_s)
        return out

    def checks(self, measurements: dict[str, Any]) -> list[Outcome]:
        detected = measurements.get("scheduler_detected_s")
        out = [
            Outcome(
                detected is not None,
                f"the scheduler detected the failed region and drained {self.region} ({detected}s)"
                if detected is not None
                else f"the scheduler never detected the failure: no drain of {self.region} within {self.duration_s:g}s",
            )
        ]
        impact = measurements.get("delivery_impact_s")
        if impact is not None:
            out.append(
                Outcome(
                    impact <= self.max_impact_s,
                    f"delivery recovered {impact:g}s after the failure (max {self.max_impact_s:g}s)",
                    timing=True,
                )
            )
        if "auto_drain_withdrawn_s" in measurements:
            ok = measurements["auto_drain_withdrawn_s"] is not None
            out.append(
                Outcome(
                    ok,
                    "the scheduler withdrew its auto drain after recovery"
                    if ok
                    else f"the auto drain of {self.region} was never withdrawn after recovery",
                )
            )
        return out

    async def after_rollback(self, ctx: ActionContext) -> dict[str, Any]:
        async def withdrawn() -> bool:
            policies = await ctx.api.policies()
            return not any(p.region == self.region and p.origin == "auto" for p in policies.policies)

        seconds = await wait_until(withdrawn, timeout=20.0, poll=0.2)
        return {"auto_drain_withdrawn_s": None if seconds is None else round(seconds, 1)}


class Heal(Action):
    """Undo held failures of one kind (`fail ... --hold`), e.g. heal region south."""

    drill = False
    requires_healthy = False
    verb: Verb = "journal"  # it only replays journaled undo steps, whichever driver wrote them

    def __init__(self, inv: Inventory, of_action: str, match: dict[str, str]) -> None:
        self.name = f"heal-{of_action.removeprefix('fail-')}"
        self.of_action = of_action
        self.match = match

    def params(self) -> dict[str, Any]:
        return dict(self.match)

    def plan(self) -> list[PlanStep]:
        return [PlanStep("journal", f"find held {self.of_action} {self.match}", "each undo step succeeds", "-")]

    async def apply(self, ctx: ActionContext) -> None:
        from pushctl.actions.recover import undo_held

        healed = await undo_held(ctx.inv, self.of_action, self.match, log=ctx.log)
        if not healed:
            raise UsageError(f"nothing to heal: no held {self.of_action} matching {self.match}")
        ctx.notes.extend(healed)
