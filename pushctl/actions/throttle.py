"""Access-tier throttling onto the Kafka buffer (fixed limit or the 80 %-of-safe-load rule)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from pushctl.actions.base import Action, ActionContext, Outcome, PlanStep
from pushctl.actions.common import wait_until
from pushctl.actions.undo import Log, UndoStep
from pushctl.contract.api import MAX_RATE, Throttle
from pushctl.contract.topology import Inventory
from pushctl.control import PlatformClient
from pushctl.drivers import ThrottleRequest, Verb
from pushctl.errors import PushctlError, UsageError


class RestoreThrottle(UndoStep):
    """Undo of a throttle: the access tier's throttle as it was."""

    op: ClassVar[str] = "set_throttle"
    throttle: Throttle

    def summary(self) -> str:
        return f"throttle back to {self.throttle.mode}"

    async def run(self, inv: Inventory, api: PlatformClient, log: Log) -> str:
        await api.set_throttle(self.throttle)
        return f"throttle back to {self.throttle.mode}"


class ThrottleAccess(Action):
    name = "throttle"
    verb: Verb = "throttle"

    def __init__(
        self,
        *,
        limit: float | None,
        auto: bool,
        safe_load: float | None = None,
        threshold: float = 0.8,
        duration_s: float = 15.0,
    ) -> None:
        if (limit is None) == (not auto):
            raise UsageError("give exactly one of --limit N/s or --auto")
        if limit is not None and not 0 < limit <= MAX_RATE:
            raise UsageError(f"--limit must be in (0, {MAX_RATE:,.0f}] pushes/s")
        if safe_load is not None and not 0 < safe_load <= MAX_RATE:
            raise UsageError(f"--safe-load must be in (0, {MAX_RATE:,.0f}] pushes/s")
        if not 0 < threshold <= 1:
            raise UsageError("--threshold must be in (0, 1]")
        self.limit = limit
        self.auto = auto
        self.safe_load = safe_load
        self.threshold = threshold
        self.duration_s = duration_s
        self.timeout_s = duration_s + 90
        self._before: tuple[float, float] = (0.0, 0.0)  # counters at apply; `recover` never applied

    def params(self) -> dict[str, Any]:
        return {
            "limit": None if self.limit is None else f"{self.limit:g}/s",
            "auto": self.auto,
            "safe_load": self.safe_load,
            "duration": f"{self.duration_s:g}s",
        }

    def _throttle(self, before: Throttle | None = None) -> Throttle:
        base = before or Throttle()
        return Throttle(
            mode="auto" if self.auto else "fixed",
            limit_per_s=self.limit,
            safe_load_per_s=self.safe_load or base.safe_load_per_s,
            threshold=self.threshold,
        )

    def plan(self) -> list[PlanStep]:
        t = self._throttle()
        what = (
            f"limit the direct path to {t.limit_per_s:g}/s"
            if t.mode == "fixed"
            else (f"auto: limit the direct path past {t.threshold:.0%} of the safe load")
        )
        return [
            PlanStep(
                "access",
                f"{what}; the excess goes to the Kafka buffer, drained by the bypass consumer",
                "0 rejected, 0 lost; the buffer drains after the load falls",
                "throttle back to what it was",
            )
        ]

    async def _counts(self, ctx: ActionContext) -> tuple[float, float]:
        """(buffered, rejected) pushes so far, from the access tier's counters."""
        access = ctx.api.access
        buffered = await ctx.api.metric_value(access, "pushstack_access_pushes_total", {"path": "buffer"})
        rejected = await ctx.api.metric_value(access, "pushstack_access_rejected_total")
        return buffered or 0.0, rejected or 0.0

    async def apply(self, ctx: ActionContext) -> None:
        self._before = await self._counts(ctx)
        want = ThrottleRequest(limit=self.limit, auto=self.auto, safe_load=self.safe_load, threshold=self.threshold)
        await ctx.driver.throttle(ctx, want)  # journals its undo first

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        peak = 0.0
        end = time.monotonic() + self.duration_s
        while time.monotonic() < end:
            try:
                lag = await ctx.api.buffer_lag()
            except PushctlError:
                lag = None  # the bypass consumer may be down on purpose (another step): not our failure
            peak = max(peak, lag or 0.0)
            await asyncio.sleep(0.5)

        async def drained() -> bool:
            return (await ctx.api.buffer_lag() or 0.0) == 0.0

        drain_s = await wait_until(drained, timeout=60.0, poll=0.5)
        start = self._before
        try:
            buffered, rejected = await self._counts(ctx)
        except PushctlError:
            return {"peak_buffer_lag": peak, "buffer_drained_s": drain_s, "buffered": None, "rejected": None}
        return {
            "peak_buffer_lag": peak,
            "buffer_drained_s": None if drain_s is None else round(drain_s, 1),
            "buffered": buffered - start[0],  # pushes the access tier sent to the Kafka buffer meanwhile
            "rejected": rejected - start[1],  # pushes no path would take meanwhile (target 0)
        }

    def checks(self, measurements: dict[str, Any]) -> list[Outcome]:
        rejected = measurements.get("rejected")
        drained = measurements.get("buffer_drained_s")
        out = []
        if "rejected" in measurements:
            out.append(
                Outcome(
                    rejected == 0,
                    "no push was rejected"
                    if rejected == 0
                    else "could not read the access tier's counters"
                    if rejected is None
                    else f"the access tier rejected {rejected:g} pushes",
                )
            )
        if "buffer_drained_s" in measurements:
            out.append(
                Outcome(
                    drained is not None,
                    f"the Kafka buffer drained ({drained}s after the throttle)"
                    if drained is not None
                    else "the Kafka buffer never drained (60 s after the throttle)",
                )
            )
        return out
