"""A region run at its connection limit, and a component crashed for a while.

`limit` lowers a region broker's connection limit for a while: connections past it are refused
(`over_limit`) and the refused devices must land in another region without losing a message. The
broker's own count is polled throughout. Connections it held before keep going (a limit refuses,
it does not evict), so what may never happen is an admission past the limit: once the count has
been at or below `max(limit, the lowest count seen)`, it may not rise above it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from pushctl.actions.base import Action, ActionContext, Outcome, PlanStep
from pushctl.actions.common import journaled_crash
from pushctl.actions.drain import check_region
from pushctl.actions.undo import Log, UndoStep
from pushctl.contract.topology import PUSH_SERVICE_KINDS, Inventory
from pushctl.control import PlatformClient
from pushctl.errors import PushctlError, UsageError

MAX_LIMIT = 1_000_000
POLL_S = 0.2


class RestoreConnectionLimit(UndoStep):
    """Undo of a limit: the region broker's connection limit as it was."""

    op: ClassVar[str] = "set_limit"
    region: str
    limit: int

    def summary(self) -> str:
        return f"{self.region} connection limit back to {self.limit}"

    async def run(self, inv: Inventory, api: PlatformClient, log: Log) -> str:
        await api.set_limit(self.region, self.limit)
        return f"{self.region} connection limit back to {self.limit}"


class LimitRegion(Action):
    """Hold a region's broker to `limit` connections for `duration_s`."""

    name = "limit"

    def __init__(self, inv: Inventory, region: str, limit: int, *, duration_s: float = 10.0) -> None:
        self.region = check_region(inv, region)
        if not 0 <= limit <= MAX_LIMIT:
            raise UsageError(f"--limit must be between 0 and {MAX_LIMIT:,}")
        self.limit = limit
        self.duration_s = duration_s
        self.timeout_s = duration_s + 10
        self.broker, _ = inv.broker(region)
        self.before: int | None = None

    def params(self) -> dict[str, Any]:
        return {"region": self.region, "limit": self.limit, "duration": f"{self.duration_s:g}s"}

    def plan(self) -> list[PlanStep]:
        return [
            PlanStep(
                self.broker,
                f"connection limit {self.limit} for {self.duration_s:g}s",
                f"{self.broker} never holds more than {self.limit} connections; refused devices land elsewhere; "
                "nothing is lost",
                "connection limit back to what it was",
            )
        ]

    async def apply(self, ctx: ActionContext) -> None:
        before = await ctx.api.connections(self.region)
        self.before = before.limit
        ctx.journal.will_undo(
            RestoreConnectionLimit(
                region=self.region,
                limit=before.limit,
                describe=f"{self.broker} connection limit back to {before.limit}",
            )
        )
        after = await ctx.api.set_limit(self.region, self.limit)
        ctx.notes.append(f"{self.broker}: limit {before.limit} -> {after.limit} ({after.count} connected)")

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        refused_before = await self._refused(ctx)
        counts: list[int] = []
        end = time.monotonic() + self.duration_s
        while time.monotonic() < end:
            try:
                conns = await ctx.api.connections(self.region)
            except PushctlError:
                conns = None
            if conns is not None:
                counts.append(conns.count)
            await asyncio.sleep(POLL_S)
        refused_after = await self._refused(ctx)
        low, worst = over_limit(counts, self.limit)
        return {
            "region": self.region,
            "limit": self.limit,
            "limit_before": self.before,
            "peak_connections": max(counts, default=0),
            "lowest_connections": low,
            "admitted_past_limit": worst,
            "samples": len(counts),
            "refused_over_limit": None
            if refused_before is None or refused_after is None
            else refused_after - refused_before,
        }

    async def _refused(self, ctx: ActionContext) -> float | None:
        try:
            value = await ctx.api.metric_value(self.broker, "pushstack_broker_refused_total", {"reason": "over_limit"})
        except PushctlError:
            return None
        return value or 0.0

    def checks(self, measurements: dict[str, Any]) -> list[Outcome]:
        past = measurements.get("admitted_past_limit", 0)
        refused = measurements.get("refused_over_limit")
        low, peak = measurements.get("lowest_connections"), measurements.get("peak_connections")
        if past:
            return [
                Outcome(
                    False,
                    f"{self.broker} admitted {past} connections past its limit of {self.limit} (from {low} up to "
                    f"{peak}): the limit is not enforced",
                )
            ]
        refusals = "" if refused is None else f"; {refused:g} refused over the limit"
        return [Outcome(True, f"{self.broker} admitted no connection past its limit of {self.limit}{refusals}")]


def over_limit(counts: list[int], limit: int) -> tuple[int | None, int]:
    """(lowest count, most connections admitted past the limit) over successive counts.

    Connections held before the limit was set may stay; the ceiling is the limit, or the lowest count
    seen so far when that is higher (connections leave, none may come back past the limit).
    """
    lowest: int | None = None
    worst = 0
    for count in counts:
        lowest = count if lowest is None else min(lowest, count)
        worst = max(worst, count - max(limit, lowest))
    return lowest, worst


class CrashComponent(Action):
    """SIGKILL one component (or kill its container) for a while, then restart it."""

    name = "crash"

    def __init__(self, inv: Inventory, service: str, *, duration_s: float = 5.0) -> None:
        svc = inv.service(service)  # an unknown name is a usage error naming the valid ones
        if svc.kind not in PUSH_SERVICE_KINDS:
            raise UsageError(f"crash takes a push service; {service!r} is a {svc.kind.value} (use fail-redis)")
        self.service = service
        self.duration_s = duration_s
        self.timeout_s = duration_s + 30

    def params(self) -> dict[str, Any]:
        return {"service": self.service, "duration": f"{self.duration_s:g}s"}

    def plan(self) -> list[PlanStep]:
        return [
            PlanStep(
                self.service,
                f"SIGKILL for {self.duration_s:g}s",
                "nothing it had taken is lost (the whole run's ledger)",
                f"restart {self.service}",
            )
        ]

    async def apply(self, ctx: ActionContext) -> None:
        ctx.notes.append(await journaled_crash(ctx, self.service))

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        await asyncio.sleep(self.duration_s)
        return {"service": self.service}
