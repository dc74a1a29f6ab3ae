"""Logic tier between the two same-city IDCs: switch routing weights, lose a whole IDC.

Both are verified by what each IDC delivered: the gateways' own `acked` counters, read before and
after the change has settled, against the routing weights (switch) or against what the probe sent
while the IDC was dark (power loss).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from pushctl.actions.base import Action, ActionContext, Outcome, PlanStep
from pushctl.actions.common import journaled_crash, journaled_fault
from pushctl.actions.undo import Log, UndoStep
from pushctl.contract.topology import Inventory, LinkKind, ServiceKind
from pushctl.control import PlatformClient
from pushctl.drivers import Verb
from pushctl.errors import PushctlError, UsageError
from pushctl.faults.links import plan_link_down

ACKED = "pushstack_logic_messages_total"
SETTLE_S = 3.0  # the access tier and the bypass consumer read the weights every second; retries finish
SHARE_TOLERANCE = 0.05  # an IDC weighted 0 (or 100) may carry this share of deliveries anyway (stragglers)
MIN_DELIVERIES = 20  # below this, shares say nothing
SURVIVORS_MIN = 0.5  # surviving IDCs deliver at least this share of what the probe sent meanwhile


class RestoreRoutingWeights(UndoStep):
    """Undo of a switch: the logic gateways' routing weights as they were."""

    op: ClassVar[str] = "set_routing"
    weights: dict[str, float]

    def summary(self) -> str:
        return f"routing weights back to {self.weights}"

    async def run(self, inv: Inventory, api: PlatformClient, log: Log) -> str:
        await api.set_routing(dict(self.weights))
        return f"routing weights back to {self.weights}"


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


def gateways_by_idc(inv: Inventory) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, svc in inv.services_of(ServiceKind.LOGIC).items():
        if svc.idc:
            out.setdefault(svc.idc, []).append(name)
    return out


async def acked_by_idc(ctx: ActionContext, idcs: list[str] | None = None) -> dict[str, float | None]:
    """Messages each IDC's gateways delivered (acked) so far; None where a gateway did not answer."""
    out: dict[str, float | None] = {}
    for idc, names in gateways_by_idc(ctx.inv).items():
        if idcs is not None and idc not in idcs:
            continue
        total: float | None = 0.0
        for name in names:
            try:
                value = await ctx.api.metric_value(name, ACKED, {"result": "acked"})
            except PushctlError:
                value = None
            total = None if total is None or value is None else total + value
        out[idc] = total
    return out


def deltas(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float | None]:
    return {
        idc: (None if before.get(idc) is None or after.get(idc) is None else after[idc] - before[idc])  # type: ignore[operator]
        for idc in after
    }


class SwitchIdc(Action):
    name = "switch-idc"
    verb: Verb = "switch"

    def __init__(self, inv: Inventory, weights: dict[str, float], *, duration_s: float = 10.0) -> None:
        self.weights = weights
        self.duration_s = duration_s
        self.timeout_s = duration_s + 10
        self.before: dict[str, float] = {}
        self.before_by_gateway: dict[str, dict[str, float] | None] = {}

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
                "every gateway's GET /v1/routing shows them; each IDC delivers its weight's share; delivery holds",
                "routing weights back to what they were",
            )
        ]

    async def apply(self, ctx: ActionContext) -> None:
        self.before = (await ctx.api.routing()).weights
        self.before_by_gateway = await ctx.api.routing_by_gateway()
        ctx.notes.append(await ctx.driver.switch(ctx, self.weights))  # journals its undo first

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        settle = min(SETTLE_S, self.duration_s / 2)
        await asyncio.sleep(settle)
        first = await acked_by_idc(ctx)
        t1 = time.monotonic()
        await asyncio.sleep(max(0.0, self.duration_s - settle - 0.5))
        last = await acked_by_idc(ctx)
        seen = await ctx.api.routing_by_gateway()
        return {
            "weights_before": self.before,
            "weights_before_by_gateway": self.before_by_gateway,
            "weights_wanted": self.weights,
            "weights_by_gateway": seen,
            "acked_by_idc": deltas(first, last),
            "measured_s": round(time.monotonic() - t1, 1),
        }

    def checks(self, measurements: dict[str, Any]) -> list[Outcome]:
        out: list[Outcome] = []
        seen: dict[str, dict[str, float] | None] = measurements.get("weights_by_gateway") or {}
        stale = {gw: w for gw, w in seen.items() if w != self.weights}
        out.append(
            Outcome(
                not stale,
                "every logic gateway routes by the new weights"
                if not stale
                else "stale routing weights: "
                + "; ".join(f"{gw} still answers {w if w is not None else 'nothing'}" for gw, w in stale.items()),
            )
        )
        out += share_outcomes(measurements.get("acked_by_idc") or {}, self.weights)
        return out


def share_outcomes(acked: dict[str, float | None], weights: dict[str, float]) -> list[Outcome]:
    """Each IDC delivered its weight's share (exactly for 0 and 100: a hash split of few devices is
    only near its weights otherwise)."""
    if any(v is None for v in acked.values()):
        missing = ", ".join(idc for idc, v in acked.items() if v is None)
        return [Outcome(False, f"could not read the delivery counters of {missing}")]
    total = sum(v for v in acked.values() if v is not None)
    if total < MIN_DELIVERIES:
        return []
    weight_sum = sum(weights.values()) or 1.0
    out = []
    for idc, value in sorted(acked.items()):
        share = (value or 0.0) / total
        want = weights.get(idc, 0.0) / weight_sum
        tolerance = SHARE_TOLERANCE if want in (0.0, 1.0) else 0.25
        ok = abs(share - want) <= tolerance
        out.append(
            Outcome(
                ok,
                f"{idc} delivered {share:.0%} of {total:g} pushes (weight {want:.0%})"
                if ok
                else f"{idc} delivered {share:.0%} of {total:g} pushes against a weight of {want:.0%}: "
                "routing ignores the weights",
                # counted after the switch settled; a rig too slow to send on time can still blur it
                timing=True,
            )
        )
    return out


class FailIdc(Action):
    """An IDC's power loss: its logic gateways die and every link that lives there goes down.

    The reference stack keeps its storage servers in idc1 (the seed's store "lives in idc1");
    what dies with idc1 is its own path to them (the `storage` links) and its logic, so the other
    IDC, which reaches storage through its own cross-IDC links, must carry every push.
    """

    name = "fail-idc"

    def __init__(self, inv: Inventory, idc: str, *, duration_s: float = 15.0) -> None:
        if idc not in inv.idcs:
            raise UsageError(f"unknown idc {idc!r}; valid: {', '.join(inv.idcs)}")
        self.idc = idc
        self.duration_s = duration_s
        self.timeout_s = duration_s + 30
        self.gateways = gateways_by_idc(inv).get(idc, [])
        if not self.gateways:
            raise UsageError(f"idc {idc!r} has no logic gateway in the inventory")
        self.links = [
            lk.name
            for lk in inv.links
            if lk.idc == idc and lk.kind in (LinkKind.INTERNAL, LinkKind.STORAGE, LinkKind.CROSS_IDC)
        ]
        self.survivors = [i for i in gateways_by_idc(inv) if i != idc]

    def params(self) -> dict[str, Any]:
        return {"idc": self.idc, "duration": f"{self.duration_s:g}s"}

    def plan(self) -> list[PlanStep]:
        verify = f"{', '.join(self.survivors) or 'no other IDC'} delivers what the probe sends; nothing is lost"
        steps = [
            PlanStep(gw, f"SIGKILL (power loss) for {self.duration_s:g}s", verify, f"restart {gw}")
            for gw in self.gateways
        ]
        steps += [
            PlanStep(f"link {lk}", f"down with {self.idc} for {self.duration_s:g}s", verify, f"bring link {lk} up")
            for lk in self.links
        ]
        return steps

    async def apply(self, ctx: ActionContext) -> None:
        for gw in self.gateways:
            ctx.notes.append(await journaled_crash(ctx, gw))
        for lk in self.links:
            ctx.notes.append(await journaled_fault(ctx, plan_link_down(ctx.inv, lk)))

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        settle = min(SETTLE_S, self.duration_s / 2)
        await asyncio.sleep(settle)
        first = await acked_by_idc(ctx, self.survivors)
        t1 = time.time()
        await asyncio.sleep(max(0.0, self.duration_s - settle - 0.5))
        last = await acked_by_idc(ctx, self.survivors)
        t2 = time.time()
        out: dict[str, Any] = {
            "idc": self.idc,
            "gateways_killed": self.gateways,
            "links_down": self.links,
            "survivors_acked": deltas(first, last),
        }
        if ctx.probe is not None:
            out["probe_sent"] = ctx.probe.summary(since=t1 - 0.5, until=t2 - 0.5).sent
        return out

    def checks(self, measurements: dict[str, Any]) -> list[Outcome]:
        sent = measurements.get("probe_sent")
        acked = measurements.get("survivors_acked") or {}
        if sent is None or sent < MIN_DELIVERIES or not acked:
            return []
        if any(v is None for v in acked.values()):
            return [Outcome(False, f"the surviving gateways did not answer while {self.idc} was dark")]
        delivered = sum(v for v in acked.values() if v is not None)
        share = delivered / sent
        where = ", ".join(acked)
        return [
            Outcome(
                share >= SURVIVORS_MIN,
                f"{where} delivered {delivered:g} pushes while {self.idc} was dark ({share:.0%} of the {sent} sent)"
                if share >= SURVIVORS_MIN
                else f"{where} delivered only {delivered:g} of {sent} pushes while {self.idc} was dark: "
                "the surviving IDC cannot carry the traffic",
                timing=True,  # a count, but of what was delivered by the end of a window: a slow machine lags it
            )
        ]
