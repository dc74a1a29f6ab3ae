"""Redis (the payload cache) outage: down, slow or crashed; the disk-KV / inline fallback carries on."""

from __future__ import annotations

import asyncio
from typing import Any

from pushctl.actions.base import Action, ActionContext, Outcome, PlanStep
from pushctl.actions.common import wait_until
from pushctl.contract.topology import Inventory, LinkKind
from pushctl.drivers import StorageFault, Verb
from pushctl.errors import UsageError

MODES = ("down", "latency", "crash", "pause")


class FailRedis(Action):
    name = "fail-redis"
    verb: Verb = "storage_fault"

    def __init__(
        self,
        inv: Inventory,
        mode: str,
        *,
        latency_ms: int = 200,
        duration_s: float = 15.0,
        service: str = "redis-cache",
    ) -> None:
        if mode not in MODES:
            raise UsageError(f"unknown --mode {mode!r}; valid: {', '.join(MODES)}")
        self.mode = mode
        self.latency_ms = latency_ms
        self.duration_s = duration_s
        self.timeout_s = duration_s + 30
        inv.service(service)  # an unknown service is a usage error naming the valid ones
        self.service = service
        # every path to the cache: the idc1 storage link and idc2's cross-IDC link
        self.links = [
            lk.name
            for lk in inv.links
            if lk.upstream.split(":")[0] == service and lk.kind in (LinkKind.STORAGE, LinkKind.CROSS_IDC)
        ]

    def params(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "latency_ms": self.latency_ms if self.mode == "latency" else None,
            "duration": f"{self.duration_s:g}s",
        }

    def plan(self) -> list[PlanStep]:
        verify = (
            "delivery >= SLO; nothing lost (a cache slower than the platform's threshold is treated as down)"
            if self.mode == "latency"
            else "the access tier switches to fallback storage within 1 s; delivery >= SLO; nothing lost"
        )
        if self.mode == "crash":
            return [PlanStep(self.service, f"SIGKILL for {self.duration_s:g}s", verify, f"restart {self.service}")]
        change = "take the link down" if self.mode == "down" else f"add {self.latency_ms} ms latency (both streams)"
        return [
            PlanStep(f"link {lk}", f"{change} for {self.duration_s:g}s", verify, "revert the fault")
            for lk in self.links
        ]

    async def apply(self, ctx: ActionContext) -> None:
        fault = StorageFault(mode=self.mode, service=self.service, latency_ms=self.latency_ms, links=tuple(self.links))
        ctx.notes.append(await ctx.driver.storage_fault(ctx, fault))  # journals its undo first

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        switched_at: list[float] = []

        async def fallback() -> bool:
            storage = await ctx.api.storage()
            if storage.mode == "fallback":
                switched_at.append(storage.since)
            return bool(switched_at)

        waited = await wait_until(fallback, timeout=self.duration_s, poll=0.05)
        await asyncio.sleep(max(0.0, self.duration_s - (waited or self.duration_s)))
        # the access tier stamps the switch itself: detection is measured from the fault, not from our poll
        detect = None if not switched_at else max(0.0, switched_at[0] - ctx.applied_at)
        return {"mode": self.mode, "fallback_detected_s": None if detect is None else round(detect, 2)}

    def checks(self, measurements: dict[str, Any]) -> list[Outcome]:
        detect = measurements.get("fallback_detected_s")
        out: list[Outcome] = []
        if self.mode != "latency":
            out.append(
                Outcome(
                    detect is not None,
                    f"the access tier switched to fallback storage ({detect}s after the fault)"
                    if detect is not None
                    else f"the access tier never switched to fallback storage while Redis was {self.mode}",
                )
            )
        if detect is not None and self.mode != "latency":
            out.append(Outcome(detect <= 1.0, f"fallback storage within 1 s of the fault ({detect}s)", timing=True))
        if "storage_recovered_s" in measurements:  # absent when held: Redis is still failed on purpose
            ok = measurements["storage_recovered_s"] is not None
            text = (
                "payloads back in Redis after the rollback"
                if ok
                else "storage still on the fallback 20s after rollback"
            )
            out.append(Outcome(ok, text))
        return out

    async def after_rollback(self, ctx: ActionContext) -> dict[str, Any]:
        """The drill is over only when the access tier stores payloads in Redis again."""

        async def back_on_redis() -> bool:
            return (await ctx.api.storage()).mode == "redis"

        seconds = await wait_until(back_on_redis, timeout=20.0, poll=0.1)
        return {"storage_recovered_s": None if seconds is None else round(seconds, 1)}
