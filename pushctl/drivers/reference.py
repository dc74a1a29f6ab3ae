"""The reference driver: pushctl's own control API (docs/protocol.md), Toxiproxy links and the runtime.

It does exactly what the actions did before drivers existed, with the same typed undo steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pushctl.contract.api import PolicyIn, Throttle
from pushctl.contract.topology import Inventory
from pushctl.drivers import StorageFault, ThrottleRequest, Verb

if TYPE_CHECKING:
    from pushctl.actions.base import ActionContext


class ReferenceDriver:
    """Drives the reference push stack (or any platform implementing its control API)."""

    kind = "reference"

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv

    def require(self, verb: Verb, what: str) -> None:
        """Every verb, and the reference stack's own mechanics: nothing to refuse."""

    async def drain(self, ctx: ActionContext, region: str, spread_s: float) -> str:
        from pushctl.actions.drain import WithdrawDrainPolicy

        ctx.journal.will_undo(WithdrawDrainPolicy(region=region))
        policy = await ctx.api.add_policy(PolicyIn(region=region, spread_s=spread_s))
        ctx.journal.event("policy added", id=policy.id)
        return f"drain policy {policy.id}"

    async def restore(self, ctx: ActionContext, region: str) -> str:
        policies = await ctx.api.policies()
        mine = [p for p in policies.policies if p.region == region and p.kind == "drain"]
        for policy in mine:
            await ctx.api.remove_policy(policy.id)
        return f"{region} had no drain policy" if not mine else f"withdrew {len(mine)} drain policy of {region}"

    async def switch(self, ctx: ActionContext, weights: dict[str, float]) -> str:
        from pushctl.actions.idc import RestoreRoutingWeights

        before = await ctx.api.routing()
        ctx.journal.will_undo(RestoreRoutingWeights(weights=before.weights))
        after = await ctx.api.set_routing(weights)
        return f"routing {before.weights} -> {after.weights}"

    async def throttle(self, ctx: ActionContext, want: ThrottleRequest) -> str:
        from pushctl.actions.throttle import RestoreThrottle

        before = await ctx.api.throttle()
        ctx.journal.will_undo(RestoreThrottle(throttle=before))
        await ctx.api.set_throttle(
            Throttle(
                mode="auto" if want.auto else "fixed",
                limit_per_s=want.limit,
                safe_load_per_s=want.safe_load or before.safe_load_per_s,
                threshold=want.threshold,
            )
        )
        return f"throttle {before.mode} -> {want.mode}"

    async def storage_fault(self, ctx: ActionContext, fault: StorageFault) -> str:
        from pushctl.actions.common import journaled_crash, journaled_fault
        from pushctl.faults.links import plan_fault, plan_link_down

        if fault.mode in ("crash", "pause"):
            return await journaled_crash(ctx, fault.service, fault.mode)
        notes = []
        for lk in fault.links:
            spec = (
                plan_link_down(ctx.inv, lk)
                if fault.mode == "down"
                else plan_fault(
                    ctx.inv,
                    lk,
                    "latency",
                    {"latency": fault.latency_ms // 2},
                    stream="both",
                    name="redis-slow",
                    reset_connections=True,
                )
            )
            notes.append(await journaled_fault(ctx, spec))
        return "; ".join(n for n in notes if n)

    async def snapshot(self) -> str | None:
        """None: the actions' own checks (after_rollback) judge the reference stack's return to its baseline."""
        return None

    async def wait_baseline(self, before: str) -> tuple[float | None, str]:
        return 0.0, before
