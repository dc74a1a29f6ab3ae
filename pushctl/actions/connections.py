"""Long-connection faults: a reconnect storm, a share of live connections dropped, a share left half-open.

    Storm(inv, "north")                              # every connection of the region's device link reset at once
    ConnectionFault(inv, "north", "drop", 0.3)       # each live connection reset with probability 0.3
    ConnectionFault(inv, "north", "half-open", 0.1)  # each live connection silenced with probability 0.1

All three act on the region's device link (its Toxiproxy proxy), so the platform meets them as it
meets a real network, and Toxiproxy draws a toxic's `toxicity` once per connection, so each live
connection is picked independently with the asked probability:

- storm: the proxy disabled and re-enabled: every open connection closed at once, new ones accepted.
- drop: a `reset_peer` toxic on the device-to-broker stream. It fires on a picked connection's next
  data, not when it is added (Toxiproxy `toxics/reset_peer.go`): on the broker-to-device stream,
  idle devices were spared (12 % dropped of 30 % asked, 0.3 pushes/s per device). Devices' keepalive
  pings reach every live connection, so the toxic stays one keepalive and a margin, then goes:
  devices that reconnect later are spared.
- half-open: a `latency` toxic of an hour on the broker-to-device stream: the connection stays open
  and nothing reaches the device until its keepalive notices. Not `timeout`: removing a timeout toxic
  closes every connection of the link, picked or not (its `Cleanup`), which would end each half-open
  fault with a storm of the whole region. One stream only: Toxiproxy draws each stream's toxic on its
  own, so a toxic per direction would hit 1-(1-p)^2 of the connections, half of them one way only.

What each reports (`pushctl.actions.reconnects`): the devices the fault reached and when every one
was back, dispatcher requests/s and broker handshakes/s at the peak, refusals, and delivery to the
affected devices beside the rest.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Literal

from pushctl.actions.base import Action, ActionContext, Outcome, PlanStep
from pushctl.actions.common import RevertFault
from pushctl.actions.drain import check_region
from pushctl.actions.reconnects import (
    MetricSampler,
    ReconnectWatch,
    back_outcomes,
    cohort_ledgers,
    cohort_outcomes,
)
from pushctl.contract.topology import Inventory
from pushctl.errors import PushctlError, UsageError
from pushctl.faults.links import FaultSpec, apply_fault, plan_fault, plan_link_down, reset_connections, revert_fault

Mode = Literal["drop", "half-open"]
SETTLE_S = 2.0  # after every device is back: the storm's tail, deliveries still under way
SILENT_MS = 3_600_000  # a half-open connection's data is held an hour: silent (removing the toxic frees it)
CUTOFF_AGE_S = 1.0  # the cohort ledgers count messages at least this old (a push takes ms; late ones, 1 s)
DROP_WINDOW_S = 1.5  # beyond one keepalive: every live connection has sent a frame, and met the toxic
MAX_RECOVERY_S = 600.0


def parse_share(text: str, *, what: str) -> float:
    """A share of connections: `30%` or `0.3` -> 0.3; anything else, or outside (0, 100 %], is a usage error."""
    raw = text.strip()
    try:
        share = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"{what} must be a share like 30% or 0.3, not {text!r}") from None
    if not math.isfinite(share) or not 0 < share <= 1:
        raise UsageError(f"{what} must be more than 0% and at most 100% (got {text!r})")
    return share


def share_tolerance(share: float, devices: int) -> float:
    """How far the share picked may stray from `share` by chance alone: three standard deviations of a
    binomial draw over `devices` connections, at least 5 points."""
    if devices <= 0:
        return 1.0
    return max(0.05, 3 * math.sqrt(share * (1 - share) / devices))


def _check_bounds(max_recovery_s: float) -> float:
    if not 0 < max_recovery_s <= MAX_RECOVERY_S:
        raise UsageError(f"--max-recovery must be in (0s, {MAX_RECOVERY_S:g}s]")
    return max_recovery_s


class _ConnectionAction(Action):
    """What the three faults share: a watch on the region's devices and the platform's counters."""

    def __init__(
        self,
        inv: Inventory,
        region: str,
        *,
        max_recovery_s: float,
        cohort: str | None = None,
        cohort_share: float | None = None,
    ) -> None:
        self.region = check_region(inv, region)
        # with a cohort: only the experiment cohort's device link, and only its devices are watched.
        # `cohort_share` (the CLI's --cohort): the action splits its own probe and compares the cohorts
        self.cohort_share = cohort_share
        self.cohort = "experiment" if cohort_share is not None else cohort
        self.link = (inv.cohort_link(region) if self.cohort else inv.device_link(region)).name
        self.max_recovery_s = _check_bounds(max_recovery_s)
        self.watch: ReconnectWatch | None = None
        self.sampler: MetricSampler | None = None
        self.broker_before: int | None = None
        self.began_at = 0.0

    def _cohort_hints(self) -> dict[str, Any]:
        return {} if self.cohort_share is None else {"cohort_share": self.cohort_share}

    def _cohort_params(self) -> dict[str, Any]:
        return {} if self.cohort_share is None else {"cohort": f"{self.cohort_share * 100:g}%"}

    async def _begin(self, ctx: ActionContext) -> None:
        """Before the fault: who is on the region, and the counters' starting point."""
        self.began_at = time.time()
        if ctx.probe is not None:
            only = None
            if self.cohort is not None:
                only = ctx.probe.cohorts.get(self.cohort)
                if only is None:
                    raise UsageError(f"a {self.cohort}-cohort fault needs a probe split into cohorts (cohorts:)")
            self.watch = ReconnectWatch(ctx, self.region, only=only)
        self.sampler = MetricSampler(ctx.api, ctx.inv)
        await self.sampler.start()
        before = (await ctx.api.all_connections()).get(self.region)
        self.broker_before = before.count if before is not None else None

    async def _finish(self, ctx: ActionContext, *, expect: int | None = None) -> dict[str, Any]:
        """Wait until every affected device is back, let the tail settle, and measure."""
        out: dict[str, Any] = {
            "region": self.region,
            "link": self.link,
            "broker_connections_before": self.broker_before,
        }
        if self.watch is not None:
            await self.watch.wait_back(timeout=self.max_recovery_s, expect=expect)
        await asyncio.sleep(SETTLE_S)
        if self.sampler is not None:
            out.update(await self.sampler.stop())
        if self.watch is not None:
            out.update(self.watch.measurements())
            out["cohorts"] = cohort_ledgers(self.watch, until=time.time() - CUTOFF_AGE_S)
        if self.cohort_share is not None and ctx.probe is not None:
            from pushctl.experiments.cohorts import compare

            cmp = compare(ctx.probe, since=self.began_at, until=time.time() - CUTOFF_AGE_S, confidence=0.95)
            out["cohort_comparison"] = cmp.to_json()
            out["fault_cost"] = cmp.verdict()
        return out

    async def _stop_sampling(self) -> None:
        if self.sampler is not None:
            await self.sampler.cancel()


class Storm(_ConnectionAction):
    """Every device of a region disconnected at once: a reconnect storm."""

    name = "storm"

    def __init__(
        self,
        inv: Inventory,
        region: str,
        *,
        max_recovery_s: float = 20.0,
        cohort: str | None = None,
        cohort_share: float | None = None,
    ) -> None:
        super().__init__(inv, region, max_recovery_s=max_recovery_s, cohort=cohort, cohort_share=cohort_share)
        self.timeout_s = max_recovery_s + 10
        self.spec = plan_link_down(inv, self.link)

    def params(self) -> dict[str, Any]:
        return {"region": self.region, "max_recovery": f"{self.max_recovery_s:g}s", **self._cohort_params()}

    def probe_hints(self) -> dict[str, Any]:
        return self._cohort_hints()

    def plan(self) -> list[PlanStep]:
        return [
            PlanStep(
                f"link {self.link}",
                "reset every open connection (disable, then enable the proxy): every device of "
                f"{self.region} disconnected at once",
                f"every device on {self.region} lost its connection and all were back within "
                f"{self.max_recovery_s:g}s; nothing sent to them lost; peak dispatcher requests/s, broker "
                "handshakes/s and refusals reported",
                f"bring link {self.link} up (if the reset left it down)",
            )
        ]

    async def apply(self, ctx: ActionContext) -> None:
        await self._begin(ctx)
        ctx.journal.will_undo(RevertFault(spec=self.spec, describe=f"bring link {self.link} up"))
        try:
            result = await reset_connections(ctx.inv, self.link)
        except BaseException:
            await self._stop_sampling()
            raise
        ctx.notes.append(f"{self.link}: {result.connections}")

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        expect = len(self.watch.on_region) if self.watch is not None else None
        return await self._finish(ctx, expect=expect)

    def checks(self, measurements: dict[str, Any]) -> list[Outcome]:
        m = measurements
        out: list[Outcome] = []
        if "affected" in m:
            on, hit = m.get("devices_on_region", 0), m.get("affected", 0)
            out.append(
                Outcome(
                    on > 0 and hit == on,
                    f"the storm disconnected {hit} of the {on} devices on {self.region}",
                )
            )
        out += back_outcomes(m, self.max_recovery_s)
        out += cohort_outcomes(m, SETTLE_S)
        return out


class ConnectionFault(_ConnectionAction):
    """A share of a region's live connections dropped (reset), or left half-open (silent) for a while."""

    def __init__(
        self,
        inv: Inventory,
        region: str,
        mode: str,
        share: float,
        *,
        duration_s: float = 10.0,
        max_recovery_s: float | None = None,
        keepalive_s: float = 1.0,
        cohort: str | None = None,
        cohort_share: float | None = None,
    ) -> None:
        if mode not in ("drop", "half-open"):
            raise UsageError(f"unknown connection fault {mode!r}; valid: drop, half-open")
        if not 0 < share <= 1:
            raise UsageError("the share of connections must be more than 0% and at most 100%")
        if not 0 < duration_s <= 3600:
            raise UsageError("--duration must be in (0s, 1h]")
        if not 0.1 <= keepalive_s <= 300:
            raise UsageError("--keepalive must be between 0.1s and 300s")
        recovery = max_recovery_s if max_recovery_s is not None else (duration_s if mode == "half-open" else 15.0)
        super().__init__(inv, region, max_recovery_s=recovery, cohort=cohort, cohort_share=cohort_share)
        self.mode: Mode = "drop" if mode == "drop" else "half-open"
        self.name = "drop-connections" if self.mode == "drop" else "half-open-connections"
        self.share = share
        self.duration_s = duration_s
        self.keepalive_s = keepalive_s
        self.timeout_s = (duration_s if self.mode == "half-open" else DROP_WINDOW_S) + self.max_recovery_s + 10
        # drop: reset on the connection's next device frame; half-open: nothing reaches the device until removed
        if self.mode == "drop":
            self.spec: FaultSpec = plan_fault(
                inv, self.link, "reset_peer", {"timeout": 0}, "up", share, name="pushctl-drop"
            )
        else:
            silent = {"latency": SILENT_MS}
            self.spec = plan_fault(inv, self.link, "latency", silent, "down", share, name="pushctl-half-open")

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"region": self.region, self.mode: f"{self.share * 100:g}%"}
        if self.mode == "half-open":
            out["duration"] = f"{self.duration_s:g}s"
        out["max_recovery"] = f"{self.max_recovery_s:g}s"
        return out | self._cohort_params()

    def probe_hints(self) -> dict[str, Any]:
        # half-open: only a keepalive notices silence; drop: a reset_peer fires on a connection's next
        # data, so every live connection must send some (a ping) while the toxic is there
        return {"keepalive": self.keepalive_s, **self._cohort_hints()}

    def plan(self) -> list[PlanStep]:
        pct = f"{self.share * 100:g}%"
        if self.mode == "drop":
            change = (
                f"reset_peer toxic on the device-to-broker stream (toxicity {self.share:g}, drawn per connection): "
                f"about {pct} of the live connections of {self.region} reset on their next frame; the toxic "
                f"removed after {self.keepalive_s + DROP_WINDOW_S:g}s (a keepalive of {self.keepalive_s:g}s, and more)"
            )
            verify = (
                f"the share of {self.region}'s devices that lost their connection is {pct} within chance; every "
                f"one back within {self.max_recovery_s:g}s; nothing sent to them lost"
            )
        else:
            change = (
                f"latency toxic of an hour on the broker-to-device stream (toxicity {self.share:g}, drawn per "
                f"connection): about {pct} of the connections of {self.region} open but silent for {self.duration_s:g}s"
            )
            verify = (
                f"devices notice the silence (keepalive {self.keepalive_s:g}s) and are back within "
                f"{self.max_recovery_s:g}s; the broker lets go of the silent connections; nothing sent to them lost"
            )
        return [PlanStep(f"link {self.link}", change, verify, f"remove toxic {self.spec.toxics[0].name}")]

    async def apply(self, ctx: ActionContext) -> None:
        await self._begin(ctx)
        ctx.journal.will_undo(RevertFault(spec=self.spec))
        try:
            result = await apply_fault(self.spec)
        except BaseException:
            await self._stop_sampling()
            raise
        ctx.notes.append(f"{self.link}: {', '.join(result.summaries)}")

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        if self.mode == "drop":
            await asyncio.sleep(self.keepalive_s + DROP_WINDOW_S)
            removed = await revert_fault(self.spec)  # later connections are spared; the journal's undo is then a no-op
            ctx.notes.append(f"{self.link}: {removed.connections}")
            return await self._finish(ctx)
        await asyncio.sleep(self.duration_s)
        ghosts = await self._ghosts(ctx)
        out = await self._finish(ctx)
        out["broker_ghost_connections"] = ghosts
        return out

    async def _ghosts(self, ctx: ActionContext) -> int | None:
        """Connections the region's broker still holds beyond the probe devices connected to it."""
        if ctx.probe is None:
            return None
        try:
            conns = await ctx.api.connections(self.region)
        except PushctlError:
            return None
        return max(0, conns.count - ctx.probe.snapshot().connected.get(self.region, 0))

    def checks(self, measurements: dict[str, Any]) -> list[Outcome]:
        m = measurements
        out: list[Outcome] = []
        if "affected" in m:
            out.append(self._share_outcome(m))
        out += back_outcomes(m, self.max_recovery_s)
        if self.mode == "half-open" and m.get("broker_ghost_connections") is not None:
            ghosts = m["broker_ghost_connections"]
            out.append(
                Outcome(
                    ghosts <= GHOST_SLACK,
                    f"{self.region}'s broker let go of the silent connections the devices gave up "
                    f"({ghosts} held beyond the probe's devices at the end of the fault)"
                    if ghosts <= GHOST_SLACK
                    else f"{self.region}'s broker still held {ghosts} connections no device was using at the end "
                    f"of the fault: it does not notice connections gone silent",
                )
            )
        out += cohort_outcomes(m, SETTLE_S)
        return out

    def _share_outcome(self, m: dict[str, Any]) -> Outcome:
        on, hit = m.get("devices_on_region", 0), m.get("affected", 0)
        verb = "dropped" if self.mode == "drop" else "silenced and noticed"
        if not on:
            return Outcome(False, f"no probe device was on {self.region} when the fault began")
        got, tol = hit / on, share_tolerance(self.share, on)
        return Outcome(
            abs(got - self.share) <= tol,
            f"{verb}: {hit} of {on} connections ({got * 100:.0f}%; asked {self.share * 100:g}% ± {tol * 100:.0f})",
        )


GHOST_SLACK = 2  # connections the broker may hold beyond the probe's (a health check's WebSocket, one closing)
