"""Planned drain of a region and its restore (the scheduler's drain policy).

A drain is verified, not assumed: the region's broker must hold no connection by the timeout, the
dispatcher must leave the region out of every answer it gives while the drain is in force (asked
directly, and as the probe's joining and reconnecting devices saw it), and the reconnect orders
must be spread over the window (when each device was told to move, and the connection storm that
followed, in 100 ms buckets).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, ClassVar

from pushctl.actions.base import Action, ActionContext, Outcome, PlanStep
from pushctl.actions.journal import Journal, load_entries
from pushctl.actions.undo import Log, UndoStep
from pushctl.contract.topology import Inventory
from pushctl.control import PlatformClient
from pushctl.drivers import Verb
from pushctl.errors import PushctlError, UsageError

POLICY_PROPAGATION_S = 1.5  # the scheduler pushes at once; followers poll every second as a backstop
MIN_ORDERS_FOR_SPREAD = 5  # fewer orders say nothing about spreading
SPREAD_MIN_SHARE = 0.5  # the slots must cover at least half the window
PEAK_FACTOR = 3.0  # connections per 100 ms may be this many times the even share (at least PEAK_FLOOR)
PEAK_FLOOR = 6


class WithdrawDrainPolicy(UndoStep):
    """Undo of a drain: remove the operator's policy of that kind for the region (the scheduler's own
    auto policies are the scheduler's to withdraw)."""

    op: ClassVar[str] = "remove_policy"
    region: str
    kind: str = "drain"

    def summary(self) -> str:
        return f"withdraw the {self.kind} policy for {self.region}"

    async def run(self, inv: Inventory, api: PlatformClient, log: Log) -> str:
        removed = 0
        for policy in (await api.policies()).policies:
            if policy.region == self.region and policy.origin == "operator" and policy.kind == self.kind:
                await api.remove_policy(policy.id)
                removed += 1
        return f"removed {removed} {self.kind} policy for {self.region}"


class SetAutoPolicies(UndoStep):
    """Turn the scheduler's auto policies back on (or off). No action records it today; journals of
    earlier versions may, and still replay."""

    op: ClassVar[str] = "set_auto"
    enabled: bool

    async def run(self, inv: Inventory, api: PlatformClient, log: Log) -> str:
        await api.set_auto(self.enabled)
        return f"scheduler auto policies {'on' if self.enabled else 'off'}"


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


async def ask_dispatcher(ctx: ActionContext) -> dict[str, list[str]] | None:
    """What the dispatcher answers a new device of each home region now (None: it did not answer)."""
    try:
        return {home: await ctx.api.endpoint_regions(f"pushctl-verify-{home}", home) for home in ctx.inv.regions}
    except PushctlError:
        return None


async def settle_policy(ctx: ActionContext) -> None:
    """Give the policy the time followers need to see it before judging the dispatcher."""
    await asyncio.sleep(max(0.0, ctx.applied_at + POLICY_PROPAGATION_S - time.time()))


class Drain(Action):
    """Move every device off a region without losing a message, spread over a window."""

    name = "drain"
    verb: Verb = "drain"

    def __init__(self, inv: Inventory, region: str, *, spread_s: float = 5.0, timeout_s: float | None = None) -> None:
        self.region = check_region(inv, region)
        if not 0 <= spread_s <= 600:
            raise UsageError("--spread must be between 0s and 600s")
        self.spread_s = spread_s
        self.timeout_s = timeout_s if timeout_s is not None else spread_s + 20.0
        self.broker, _ = inv.broker(region)
        self._before: int | None = None

    def params(self) -> dict[str, Any]:
        return {"region": self.region, "spread": f"{self.spread_s:g}s"}

    def plan(self) -> list[PlanStep]:
        return [
            PlanStep(
                "scheduler",
                f"add drain policy for {self.region} (reconnect orders spread over {self.spread_s:g}s)",
                f"{self.broker} holds 0 connections within {self.timeout_s:g}s; dispatcher leaves {self.region} "
                f"out; reconnect orders spread over the window",
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
        await ctx.driver.drain(ctx, self.region, self.spread_s)  # journals its undo first

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        reached, seconds, left = await wait_for_connections(
            ctx, self.region, done=lambda n: n == 0, timeout=self.timeout_s
        )
        await settle_policy(ctx)
        out: dict[str, Any] = {
            "region": self.region,
            "drained": reached,
            "devices_before": self._before,
            "devices_left": left,
            "drain_time_s": round(seconds, 2),
            "spread_s": self.spread_s,
            "dispatcher": await ask_dispatcher(ctx),
        }
        if ctx.probe is not None:
            stats = ctx.probe.drain_stats(since=ctx.applied_at)
            answers = ctx.probe.dispatcher_answers(since=ctx.applied_at + POLICY_PROPAGATION_S)
            out.update(
                devices_moved=stats.reconnects,
                moved_to=stats.to_region,
                per_device_p50_s=stats.p50_s,
                per_device_max_s=stats.max_s,
                spread=stats.spread.to_json() if stats.spread else None,
                probe_dispatcher_answers=len(answers),
                probe_offered_drained=sum(1 for _, regions in answers if self.region in regions),
            )
        if not reached:
            ctx.notes.append(f"{self.region} still had {left} devices after {self.timeout_s:g}s")
        return out

    def checks(self, measurements: dict[str, Any]) -> list[Outcome]:
        m = measurements
        region = self.region
        out: list[Outcome] = []
        if m.get("drained"):
            out.append(Outcome(True, f"{region} emptied in {m.get('drain_time_s')}s"))
        else:
            out.append(
                Outcome(
                    False,
                    f"drain did not empty {region}: {m.get('devices_left')} devices left after {self.timeout_s:g}s",
                )
            )
        out.append(dispatcher_outcome(region, m, drained=True))
        out += spread_outcomes(m.get("spread"), self.spread_s)
        return out


def dispatcher_outcome(region: str, m: dict[str, Any], *, drained: bool) -> Outcome:
    """The dispatcher leaves a drained region out (or, restored, hands it out again)."""
    direct: dict[str, list[str]] | None = m.get("dispatcher")
    if direct is None:
        return Outcome(False, "the dispatcher did not answer")
    offering = sorted(home for home, regions in direct.items() if region in regions)
    if not drained:
        missing = ", ".join(sorted(set(direct) - set(offering)))
        if missing:
            return Outcome(False, f"the dispatcher still leaves {region} out for devices of {missing}")
        return Outcome(True, f"the dispatcher hands {region} out again")
    answers, offered = m.get("probe_dispatcher_answers"), m.get("probe_offered_drained")
    seen = "" if answers is None else f"; probe devices that joined or reconnected: {offered} of {answers} answers"
    if offering or offered:
        return Outcome(
            False,
            f"the dispatcher handed out drained {region}: to new devices of {', '.join(offering) or 'no home'}"
            + (f"{seen} offered it" if answers is not None else ""),
        )
    return Outcome(True, f"the dispatcher left {region} out of every answer during the drain{seen}")


def spread_outcomes(spread: dict[str, Any] | None, window_s: float) -> list[Outcome]:
    """The drain storm measured: orders' slots spread over the window; the connection storm's peak."""
    if not spread or spread.get("orders", 0) < MIN_ORDERS_FOR_SPREAD or window_s < 1.0:
        return []
    orders = spread["orders"]
    span = spread.get("planned_span_s") or 0.0
    out = [
        Outcome(
            span >= SPREAD_MIN_SHARE * window_s,
            f"reconnect orders spread over {span:.2f}s of the {window_s:g}s window ({orders} devices)"
            if span >= SPREAD_MIN_SHARE * window_s
            else f"reconnect orders were not spread: {orders} devices told to move within {span:.2f}s "
            f"(window {window_s:g}s)",
        )
    ]
    even = orders * 0.1 / window_s
    limit = max(PEAK_FLOOR, math.ceil(PEAK_FACTOR * even))
    peak = spread.get("connected_peak_per_100ms", 0)
    out.append(
        Outcome(
            peak <= limit,
            f"reconnections peaked at {peak} per 100 ms (limit {limit}; an even spread is {even:.1f})",
            timing=True,
        )
    )
    return out


class Restore(Action):
    """Withdraw a region's drain policy; devices come back gradually on their own."""

    name = "restore"
    verb: Verb = "restore"
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
        ctx.notes.append(await ctx.driver.restore(ctx, self.region))
        # a drain held with --hold is now undone: its journal entry no longer waits for recovery
        for entry in load_entries(ctx.inv):
            if entry.action == "drain" and entry.status == "held" and entry.params.get("region") == self.region:
                Journal(entry).set_status("recovered")

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        await settle_policy(ctx)
        dispatcher = await ask_dispatcher(ctx)
        if ctx.probe is None:  # no devices of ours to watch come back: report, do not wait
            conns = (await ctx.api.all_connections()).get(self.region)
            return {"region": self.region, "devices_back": conns.count if conns else None, "dispatcher": dispatcher}
        reached, seconds, count = await wait_for_connections(
            ctx, self.region, done=lambda n: n > 0, timeout=self.timeout_s
        )
        return {
            "region": self.region,
            "devices_back": count,
            "first_return_s": round(seconds, 2) if reached else None,
            "dispatcher": dispatcher,
        }

    def checks(self, measurements: dict[str, Any]) -> list[Outcome]:
        out = [dispatcher_outcome(self.region, measurements, drained=False)]
        if "first_return_s" in measurements:
            back = measurements["first_return_s"]
            out.append(
                Outcome(
                    back is not None,
                    f"devices came back to {self.region} ({back}s after the restore)"
                    if back is not None
                    else f"no device came back to {self.region} within {self.timeout_s:g}s",
                    timing=True,
                )
            )
        return out
