"""Logic tier between the two same-city IDCs: switch routing weights, lose an IDC's gateways."""

from __future__ import annotations

import asyncio
from typing import Any

from pushctl.actions.base import Action, ActionContext, PlanStep
from pushctl.actions.common import journaled_crash
from pushctl.contract.topology import Inventory, ServiceKind
from pushctl.errors import UsageError


def parse_weights(inv: Inventory, to: str | None, weights: str | None) -> dict[str, float]:
    """`--to idc2` (all traffic there) or `--weights idc1=30,idc2=70`."""
    if (to is None) == (weights is None):
        raise UsageError("give exactly one of --to IDC or --weights idc1=W,idc2=W")
    if to is not None:
        if to not in inv.idcs:
            raise UsageError(f"unknown idc {to!r}; valid: {', '.join(inv.idcs)}")
        return {idc: (100.0 if idc == to else 0.0) for idc in inv.idcs}
    out: dict[str, float] = {}
    for part in (weights or "").split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in inv.idcs:
            raise UsageError(f"bad weight {part!r}: expected IDC=NUMBER with IDC in {', '.join(inv.idcs)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise UsageError(f"bad weight {part!r}: {value!r} is not a number") from None
        if out[name] < 0:
            raise UsageError(f"bad weight {part!r}: weights are >= 0")
    if sum(out.values()) <= 0:
        raise UsageError("--weights must send traffic somewhere (sum > 0)")
    return {idc: out.get(idc, 0.0) for idc in inv.idcs}


class SwitchIdc(Action):
    name = "switch-idc"

    def __init__(self, inv: Inventory, weights: dict[str, float], *, duration_s: float = 10.0) -> None:
        self.weights = weights
        self.duration_s = duration_s
        self.timeout_s = duration_s + 10

    def params(self) -> dict[str, Any]:
        return {
            "weights": ",".join(f"{k}={v:g}" for k, v in self.weights.items()),
            "duration": f"{self.duration_s:g}s",
        }

    def plan(self) -> list[PlanStep]:
        return [
            PlanStep(
                "logic gateways",
                f"routing weights -> {self.params()['weights']} for {self.duration_s:g}s",
                "GET /v1/routing shows them; delivery holds",
                "routing weights back to what they were",
            )
        ]

    async def apply(self, ctx: ActionContext) -> None:
        before = await ctx.api.routing()
        self.before = before.weights
        ctx.journal.will_undo("set_routing", f"routing weights back to {before.weights}", weights=before.weights)
        after = await ctx.api.set_routing(self.weights)
        ctx.notes.append(f"routing {before.weights} -> {after.weights}")

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        await asyncio.sleep(self.duration_s)
        now = await ctx.api.routing()
        return {"weights_before": self.before, "weights_during": now.weights}


class FailIdc(Action):
    """An IDC's power loss: its logic gateways die; the other IDC carries all traffic."""

    name = "fail-idc"

    def __init__(self, inv: Inventory, idc: str, *, duration_s: float = 15.0) -> None:
        if idc not in inv.idcs:
            raise UsageError(f"unknown idc {idc!r}; valid: {', '.join(inv.idcs)}")
        self.idc = idc
        self.duration_s = duration_s
        self.timeout_s = duration_s + 30
        self.gateways = [n for n, s in inv.services_of(ServiceKind.LOGIC).items() if s.idc == idc]
        if not self.gateways:
            raise UsageError(f"idc {idc!r} has no logic gateway in the inventory")

    def params(self) -> dict[str, Any]:
        return {"idc": self.idc, "duration": f"{self.duration_s:g}s"}

    def plan(self) -> list[PlanStep]:
        return [
            PlanStep(
                gw,
                f"SIGKILL (power loss) for {self.duration_s:g}s",
                "traffic continues through the other IDC; nothing is lost",
                f"restart {gw}",
            )
            for gw in self.gateways
        ]

    async def apply(self, ctx: ActionContext) -> None:
        for gw in self.gateways:
            ctx.notes.append(await journaled_crash(ctx, gw))

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        await asyncio.sleep(self.duration_s)
        return {"idc": self.idc, "gateways_killed": self.gateways}
