"""Planned drain of a region and its restore (the scheduler's drain policy)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pushctl.actions.base import Action, ActionContext, PlanStep
from pushctl.actions.journal import Journal, load_entries
from pushctl.contract.api import PolicyIn
from pushctl.contract.topology import Inventory
from pushctl.errors import UsageError


def check_region(inv: Inventory, region: str) -> str:
    if region not in inv.regions:
        raise UsageError(f"unknown region {region!r}; valid: {', '.join(inv.regions)}")
    return region


async def wait_for_connections(
    ctx: ActionContext, region: str, *, done: Any, timeout: float, poll: float = 0.2
) -> tuple[bool, float, int | None]:
    """Poll the region's broker until `done(count)`; (reached, seconds, last count)."""
    started = time.monotonic()
    count: int | None = None
    while time.monotonic() - started < timeout:
        conns = (await ctx.api.all_connections()).get(region)
        count = conns.count if conns is not None else None
        if count is not None and done(count):
            return True, time.monotonic() - started, count
        await asyncio.sleep(poll)
    return False, time.monotonic() - started, count


class Drain(Action):
    """Move every device off a region without losing a message, spread over a window."""

    name = "drain"

    def __init__(self, inv: Inventory, region: str, *, spread_s: float = 5.0, timeout_s: float | None = None) -> None:
        self.region = check_region(inv, region)
        if not 0 <= spread_s <= 600:
            raise UsageError("--spread must be between 0s and 600s")
        self.spread_s = spread_s
        self.timeout_s = timeout_s if timeout_s is not None else spread_s + 20.0
        self.broker, _ = inv.broker(region)

    def params(self) -> dict[str, Any]:
        return {"region": self.region, "spread": f"{self.spread_s:g}s"}

    def plan(self) -> list[PlanStep]:
        return [
            PlanStep(
                "scheduler",
                f"add drain policy for {self.region} (reconnect orders spread over {self.spread_s:g}s)",
                f"{self.broker} holds 0 connections within {self.timeout_s:g}s; dispatcher leaves {self.region} out",
                f"withdraw the drain policy for {self.region}",
            )
        ]

    async def preflight(self, ctx: ActionContext) -> None:
        policies = await ctx.api.policies()
        # the scheduler's own (auto) drain may be taken over by an operator; another operator drain may not
        if any(p.region == self.region and p.kind == "drain" and p.origin == "operator" for p in policies.policies):
            raise UsageError(f"{self.region} is already drained", hint=f"`pushctl restore --region {self.region}`")

    async def apply(self, ctx: ActionContext) -> None:
        before = (await ctx.api.all_connections()).get(self.region)
        ctx.notes.append(f"{before.count if before else '?'} devices on {self.region} before the drain")
        self._before = before.count if before else None
        ctx.journal.will_undo("remove_policy", f"withdraw the drain policy for {self.region}", region=self.region)
        policy = await ctx.api.add_policy(PolicyIn(region=self.region, spread_s=self.spread_s))
        ctx.journal.event("policy added", id=policy.id)

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        reached, seconds, left = await wait_for_connections(
            ctx, self.region, done=lambda n: n == 0, timeout=self.timeout_s
        )
        out: dict[str, Any] = {
            "region": self.region,
            "drained": reached,
            "devices_before": self._before,
            "devices_left": left,
            "drain_time_s": round(seconds, 2),
        }
        if ctx.probe is not None:
            stats = ctx.probe.drain_stats(since=ctx.applied_at)
            out.update(
                devices_moved=stats.reconnects,
                moved_to=stats.to_region,
                per_device_p50_s=stats.p50_s,
                per_device_max_s=stats.max_s,
            )
        if not reached:
            ctx.notes.append(f"{self.region} still had {left} devices after {self.timeout_s:g}s")
        return out


class Restore(Action):
    """Withdraw a region's drain policy; devices come back gradually on their own."""

    name = "restore"
    drill = False

    def __init__(self, inv: Inventory, region: str, *, timeout_s: float = 30.0) -> None:
        self.region = check_region(inv, region)
        self.timeout_s = timeout_s

    def params(self) -> dict[str, Any]:
        return {"region": self.region}

    def plan(self) -> list[PlanStep]:
        return [
            PlanStep(
                "scheduler",
                f"withdraw every operator drain policy for {self.region}",
                f"the dispatcher hands {self.region} out again and devices return",
                "none: restore is the undo of a drain (drain again to revert)",
            )
        ]

    async def apply(self, ctx: ActionContext) -> None:
        policies = await ctx.api.policies()
        mine = [p for p in policies.policies if p.region == self.region and p.kind == "drain"]
        if not mine:
            ctx.notes.append(f"{self.region} had no drain policy")
        for policy in mine:
            await ctx.api.remove_policy(policy.id)
        # a drain held with --hold is now undone: its journal entry no longer waits for recovery
        for entry in load_entries(ctx.inv):
            if entry.action == "drain" and entry.status == "held" and entry.params.get("region") == self.region:
                Journal(entry).set_status("recovered")

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        if ctx.probe is None:  # no devices of ours to watch come back: report, do not wait
            conns = (await ctx.api.all_connections()).get(self.region)
            return {"region": self.region, "devices_back": conns.count if conns else None}
        reached, seconds, count = await wait_for_connections(
            ctx, self.region, done=lambda n: n > 0, timeout=self.timeout_s
        )
        return {
            "region": self.region,
            "devices_back": count,
            "first_return_s": round(seconds, 2) if reached else None,
        }
