"""What a connection fault did, measured: who lost a connection, how long until all were back, the
load the reconnections put on the platform, and delivery to the devices hit beside those spared.

    watch = ReconnectWatch(ctx, region)        # at apply time: which probe devices are on the region
    sampler = MetricSampler(ctx.api, ctx.inv)   # Prometheus counters of the dispatcher and brokers
    ...                                         # make the fault
    back_s = await watch.wait_back(timeout=20)  # every device that lost its connection has one again
    out = watch.measurements() | await sampler.stop() | await cohort_ledgers(ctx, watch, ...)

Affected devices are the probe's own account: a device that was connected to the region when the
fault began and then lost that connection (its device-side `lost` episode, or one still open). The
platform's side comes from its counters (docs/protocol.md, metrics): dispatcher endpoint requests
(`pushstack_dispatcher_requests_total`), broker handshakes (`pushstack_broker_connects_total` plus
`pushstack_broker_refused_total`: every WebSocket that reached authentication) and refusals by reason.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pushctl.actions.base import ActionContext, Outcome
from pushctl.contract.topology import Inventory, ServiceKind
from pushctl.control import PlatformClient, sum_samples
from pushctl.errors import PushctlError
from pushctl.probe.device import DeviceStats, ReconnectEvent

SAMPLE_EVERY_S = 0.5
REFUSAL_REASONS = ("over_limit", "draining")


@dataclass
class _Sample:
    at: float
    requests: float | None
    handshakes: float | None
    refused: dict[str, float] = field(default_factory=dict)


def peak_rate(points: list[tuple[float, float]]) -> float | None:
    """The highest rate between consecutive (time, counter) points; a counter reset counts as 0."""
    rates = [max(0.0, (v1 - v0) / (t1 - t0)) for (t0, v0), (t1, v1) in itertools.pairwise(points) if t1 > t0]
    return round(max(rates), 1) if rates else None


class MetricSampler:
    """Polls the dispatcher's and every broker's counters while a fault plays out."""

    def __init__(self, api: PlatformClient, inv: Inventory, *, every_s: float = SAMPLE_EVERY_S) -> None:
        self.api = api
        self.every_s = every_s
        self.dispatchers = list(inv.services_of(ServiceKind.DISPATCHER))
        self.brokers = list(inv.services_of(ServiceKind.BROKER))
        self.samples: list[_Sample] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.samples.append(await self._sample())
        self._task = asyncio.create_task(self._sample_routine(), name="_sample_routine")

    async def _sample_routine(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            self.samples.append(await self._sample())

    async def _read(self, service: str) -> str | None:
        try:
            return await self.api.metrics(service)
        except PushctlError:
            return None  # a service down (or busy) during the fault: this sample lacks it

    async def _sample(self) -> _Sample:
        at = time.monotonic()
        texts = await asyncio.gather(*(self._read(s) for s in [*self.dispatchers, *self.brokers]))
        disp, brokers = texts[: len(self.dispatchers)], texts[len(self.dispatchers) :]
        requests = _total([sum_samples(t, "pushstack_dispatcher_requests_total") for t in disp if t is not None])
        read = [t for t in brokers if t is not None]
        connects = _total([sum_samples(t, "pushstack_broker_connects_total") for t in read])
        refused_all = _total([sum_samples(t, "pushstack_broker_refused_total") for t in read])
        refused = {
            reason: _total([sum_samples(t, "pushstack_broker_refused_total", {"reason": reason}) for t in read]) or 0.0
            for reason in REFUSAL_REASONS
        }
        complete = len(read) == len(brokers)
        handshakes = (connects or 0.0) + (refused_all or 0.0) if complete and connects is not None else None
        return _Sample(at, requests if None not in disp else None, handshakes, refused)

    async def cancel(self) -> None:
        """Stop polling (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def stop(self) -> dict[str, Any]:
        """Stop polling; the peaks and the refusals since `start()`."""
        await self.cancel()
        self.samples.append(await self._sample())
        first, last = self.samples[0], self.samples[-1]
        return {
            "dispatcher_requests_peak_per_s": peak_rate(
                [(s.at, s.requests) for s in self.samples if s.requests is not None]
            ),
            "broker_handshakes_peak_per_s": peak_rate(
                [(s.at, s.handshakes) for s in self.samples if s.handshakes is not None]
            ),
            "refused": {r: max(0.0, last.refused.get(r, 0.0) - first.refused.get(r, 0.0)) for r in REFUSAL_REASONS},
            "metric_samples": len(self.samples),
        }


def _total(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


class ReconnectWatch:
    """The probe devices on `region` when a fault began, and which of them lost their connection."""

    def __init__(self, ctx: ActionContext, region: str, *, only: Collection[str] | None = None) -> None:
        if ctx.probe is None:
            raise ValueError("a ReconnectWatch needs the probe")
        self.probe = ctx.probe
        self.region = region
        self.since = time.time()
        stats = self.probe.device_stats()
        # `only`: the devices the fault can reach (a cohort's, behind its own device link)
        self.on_region = frozenset(s.device for s in stats if s.region == region and (only is None or s.device in only))
        self.everyone = frozenset(s.device for s in stats)
        self.affected: frozenset[str] = frozenset()
        self.back: dict[str, float] = {}  # device -> when it had a connection again (epoch seconds)

    def update(self) -> None:
        """Read the devices again: who lost the region's connection, who has one again."""
        affected, back = set(), {}
        for stats in self.probe.device_stats():
            if stats.device not in self.on_region:
                continue
            lost = _lost_since(stats, self.since)
            if lost is None:
                continue
            affected.add(stats.device)
            if lost.connected_at is not None:
                back[stats.device] = lost.connected_at
        self.affected, self.back = frozenset(affected), back

    @property
    def missing(self) -> frozenset[str]:
        return self.affected - set(self.back)

    async def wait_back(self, *, timeout: float, expect: int | None = None, poll: float = 0.25) -> float | None:
        """Seconds from the fault until every affected device is back (None: not within `timeout`).

        `expect`: how many devices must have lost their connection before "every one is back" counts
        (a storm hits them all); without it, the affected set is whatever the probe has seen so far.
        """
        end = self.since + timeout
        while True:
            self.update()
            enough = expect is None or len(self.affected) >= expect
            if enough and self.affected and not self.missing:
                return round(max(self.back.values()) - self.since, 2)
            if time.time() >= end:
                return None
            await asyncio.sleep(poll)

    def measurements(self) -> dict[str, Any]:
        self.update()
        durations = sorted(at - self.since for at in self.back.values())
        return {
            "region": self.region,
            "devices_on_region": len(self.on_region),
            "affected": len(self.affected),
            "affected_share": round(len(self.affected) / len(self.on_region), 3) if self.on_region else None,
            "back": len(self.back),
            "not_back": len(self.missing),
            "all_back_s": round(durations[-1], 2) if durations and not self.missing else None,
            "back_p50_s": round(durations[len(durations) // 2], 2) if durations else None,
        }


def _lost_since(stats: DeviceStats, since: float) -> ReconnectEvent | None:
    """The device's first loss of a connection to its region at or after `since` (None: it kept it)."""
    for event in stats.events:
        if event.started_at >= since and event.cause == "lost":
            return event
    return None


def cohort_ledgers(watch: ReconnectWatch, *, until: float) -> dict[str, dict[str, Any]]:
    """Delivery of the messages sent from the fault until `until`: to affected devices, and to the rest."""
    spared = watch.everyone - watch.affected
    out = {}
    for name, devices in (("affected", watch.affected), ("unaffected", spared)):
        summary = watch.probe.summary(since=watch.since, until=until, devices=devices)
        out[name] = {
            "devices": len(devices),
            "sent": summary.sent,
            "on_time": summary.on_time,
            "late": summary.late,
            "lost": summary.lost,
            "duplicates": summary.duplicates,
            "delivery_rate": summary.delivery_rate,
        }
    return out


# ---- checks shared by the connection faults -------------------------------------------------------
def back_outcomes(m: dict[str, Any], bound_s: float) -> list[Outcome]:
    """Every affected device reconnected (a fact), within `bound_s` (a timing claim)."""
    if "affected" not in m:
        return []  # no probe: nothing to say about devices
    not_back, affected, back_s = m.get("not_back", 0), m.get("affected", 0), m.get("all_back_s")
    if not affected:
        return [Outcome(False, f"no probe device on {m.get('region')} lost its connection")]
    if not_back:
        return [Outcome(False, f"{not_back} of {affected} devices that lost their connection never came back")]
    return [
        Outcome(True, f"all {affected} devices that lost their connection came back"),
        Outcome(
            back_s is not None and back_s <= bound_s,
            f"every affected device was back {back_s}s after the fault (max {bound_s:g}s)",
            timing=True,
        ),
    ]


def cohort_outcomes(m: dict[str, Any], settle_s: float) -> list[Outcome]:
    """Nothing sent to an affected device meanwhile went missing (counted `settle_s` after all were back)."""
    cohorts = m.get("cohorts")
    if not cohorts:
        return []
    hit = cohorts["affected"]
    lost = hit["lost"]
    return [
        Outcome(
            lost == 0,
            f"affected devices: {hit['on_time']} of {hit['sent']} on time, {hit['late']} late, "
            + (f"{lost} undelivered {settle_s:g}s after they were back" if lost else "none undelivered"),
        )
    ]
