"""Evaluate checks: probe measures over windows of sent messages, platform status, metrics, PromQL.

A windowed delivery check looks at messages *sent* in [start, end) and is read once every one of
them has had its chance: `cutoff` is when it is read, and a message not delivered by then counts
as lost. The hypothesis waits the probe's grace period after a window (as the probe's own final
summary does); a stop condition reads its window one deadline later, so there "lost" means "not
delivered within the deadline yet" (late or lost), the earliest a breach can be known.

    m = Measurer(inv, api, probe)
    result = m.delivery(check, since=t0, until=t1, cutoff=time.time())
    result.ok, result.value, result.detail
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pushctl.actions.status import live_status
from pushctl.contract.topology import Inventory
from pushctl.control import PlatformClient
from pushctl.errors import PushctlError
from pushctl.experiments.model import (
    INSTANT_MEASURES,
    DeliveryCheck,
    Measure,
    MetricCheck,
    PromqlCheck,
    StatusCheck,
)
from pushctl.probe.ledger import Counts, LedgerSummary
from pushctl.probe.probe import Probe
from pushctl.promql import instant_query, numbers, prometheus_url


@dataclass
class CheckResult:
    """One evaluation of one check. `timing`: a slow rig could make it fail (see model.TIMING_MEASURES)."""

    title: str
    kind: str  # delivery | status | metric | promql
    tolerance: str
    value: Any
    ok: bool
    detail: str
    at: float
    since: float | None = None
    until: float | None = None
    timing: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:g}"
    return "n/a" if value is None else str(value)


def counts_value(counts: Counts, measure: Measure, summary: LedgerSummary | None = None) -> float | int | None:
    """A measure read from ledger counts (None when there is nothing to measure).

    `unexpected` and `rejected` are properties of the whole summary, not of a region or kind.
    """
    if measure == Measure.UNEXPECTED:
        return None if summary is None else summary.unexpected
    if measure == Measure.REJECTED:
        return None if summary is None else summary.rejected
    lat = counts.latency_ms
    return {
        Measure.DELIVERY_RATE: counts.delivery_rate,
        Measure.LOST: counts.lost,
        Measure.LATE: counts.late,
        Measure.SENT: counts.sent,
        Measure.ON_TIME: counts.on_time,
        Measure.DUPLICATES: counts.duplicates,
        Measure.RAW_DUPLICATES: counts.raw_duplicates,
        Measure.LATENCY_P50_MS: lat.p50,
        Measure.LATENCY_P95_MS: lat.p95,
        Measure.LATENCY_P99_MS: lat.p99,
    }.get(measure)


def status_value(data: Any, path: str) -> Any:
    """Walk a dotted path into `pushctl status --json`; a list ends as its length."""
    current = data
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return len(current) if isinstance(current, list) else current


class Measurer:
    """Reads the probe and the platform for checks."""

    def __init__(self, inv: Inventory, api: PlatformClient, probe: Probe, *, prometheus: str | None = None) -> None:
        self.inv = inv
        self.api = api
        self.probe = probe
        self.prometheus = prometheus  # --prometheus URL; None: the inventory's own
        self.baselines: dict[tuple[str, str, tuple[tuple[str, str], ...]], float | None] = {}

    async def take_baselines(self, checks: list[Any]) -> None:
        """Read every `delta` metric check's counter now: the method's starting point."""
        for check in checks:
            if isinstance(check, MetricCheck) and check.delta:
                key = _metric_key(check)
                try:
                    self.baselines[key] = await self.api.metric_value(check.service, check.metric, check.labels)
                except PushctlError:
                    self.baselines[key] = None

    # ---- the probe ------------------------------------------------------------------------------
    def window_summary(self, *, since: float, until: float, cutoff: float) -> LedgerSummary:
        return self.probe.ledger.summary(cutoff=cutoff, since=since, until=until)

    def delivery(
        self,
        check: DeliveryCheck,
        *,
        since: float,
        until: float,
        cutoff: float,
        summary: LedgerSummary | None = None,
    ) -> CheckResult:
        """A windowed check over messages sent in [since, until), read at `cutoff`."""
        if check.measure in INSTANT_MEASURES:
            return self.instant(check)
        if check.measure == Measure.DISPATCHER_OFFERED:
            return self.dispatcher(check, since=since, until=until)
        summary = summary or self.window_summary(since=since, until=until, cutoff=cutoff)
        counts = select_counts(summary, check)
        value = None if counts is None else counts_value(counts, check.measure, summary)
        sent = 0 if counts is None else counts.sent
        whole = check.measure in (Measure.UNEXPECTED, Measure.REJECTED, Measure.SENT)
        ok = value is not None and check.tolerance.holds(value) and (sent > 0 or whole)
        where = (f" in {check.region}" if check.region else "") + (f" ({check.kind})" if check.kind else "")
        where += f" ({check.population} devices)" if check.population else ""
        detail = (
            f"{check.measure.value}{where} = {fmt_value(value)} (want {check.tolerance.describe()}) over {sent} "
            f"messages sent in {until - since:.1f}s"
            + ("" if counts is None else f" (on time {counts.on_time}, late {counts.late}, lost {counts.lost})")
        )
        if sent == 0 and not whole:
            detail += ": nothing was sent in the window"
        return CheckResult(
            check.title(), "delivery", check.tolerance.describe(), value, ok, detail, time.time(), since, until,
            check.timing,
        )  # fmt: skip

    def dispatcher(self, check: DeliveryCheck, *, since: float, until: float) -> CheckResult:
        """How many dispatcher answers to probe devices in [since, until) offered `check.region`."""
        answers = self.probe.dispatcher_answers(since=since, until=until)
        value = sum(1 for _, regions in answers if check.region in regions)
        ok = check.tolerance.holds(value)
        detail = (
            f"the dispatcher offered {check.region} in {value} of {len(answers)} answers to joining or reconnecting "
            f"probe devices in {until - since:.1f}s (want {check.tolerance.describe()})"
        )
        return CheckResult(
            check.title(), "delivery", check.tolerance.describe(), value, ok, detail, time.time(), since, until, False
        )

    def instant(self, check: DeliveryCheck) -> CheckResult:
        snap = self.probe.snapshot()
        if check.measure == Measure.CONNECTED:
            value: float = snap.connected.get(check.region, 0) if check.region else snap.online
        else:
            present = snap.devices - snap.away
            value = round(100.0 * snap.online / present, 2) if present else 100.0
        ok = check.tolerance.holds(value)
        where = f" in {check.region}" if check.region else ""
        detail = f"{check.measure.value}{where} = {fmt_value(value)} (want {check.tolerance.describe()})"
        if snap.away:
            detail += f" ({snap.away} devices offline on purpose, not counted)"
        return CheckResult(
            check.title(), "delivery", check.tolerance.describe(), value, ok, detail, time.time(), timing=True
        )

    # ---- the platform ----------------------------------------------------------------------------
    async def status_data(self, root: str) -> dict[str, Any]:
        """The part of `pushctl status --json` under `root`, read with this measurer's one client.

        (`live_status` opens new HTTP clients on every call; building their TLS contexts blocks
        the event loop, and with it the probe, for a noticeable moment on a busy machine.)
        """
        api = self.api
        try:
            if root in ("policies", "regions"):
                policies = await api.policies()
                return {
                    "policies": [p.model_dump() for p in policies.policies],
                    "regions": {k: v.model_dump() for k, v in policies.regions.items()},
                }
            if root == "connections":
                conns = await api.all_connections()
                return {root: {r: (c.model_dump() if c else None) for r, c in conns.items()}}
            if root in ("routing", "throttle", "storage"):
                read = {"routing": api.routing, "throttle": api.throttle, "storage": api.storage}[root]
                return {root: (await read()).model_dump()}
            if root == "buffer_lag":
                return {root: await api.buffer_lag()}
            if root == "stack":
                return {root: self.inv.name}
            return await live_status(self.inv)  # faults, actions: rarely checked
        except PushctlError as exc:
            return {root: {"error": exc.message}}

    async def status(self, check: StatusCheck, *, data: dict[str, Any] | None = None) -> CheckResult:
        if data is None:
            data = await self.status_data(check.status.split(".")[0])
        value = status_value(data, check.status)
        error = ""
        unread = status_value(data, check.status.split(".")[0] + ".error")
        if unread is not None:  # live_status puts {"error": ...} where a component did not answer
            value, error = None, f": could not read it ({unread})"
        ok = value is not None and check.tolerance.holds(value)
        detail = f"status {check.status} = {fmt_value(value)} (want {check.tolerance.describe()}){error}"
        now = time.time()
        return CheckResult(
            check.title(), "status", check.tolerance.describe(), value, ok, detail, now, now - 1.0, now, check.timing
        )

    async def metric(self, check: MetricCheck) -> CheckResult:
        try:
            value = await self.api.metric_value(check.service, check.metric, check.labels)
            error = ""
        except PushctlError as exc:
            value, error = None, f": {exc.message}"
        what = check.metric + (
            "{" + ",".join(f"{k}={v}" for k, v in check.labels.items()) + "}" if check.labels else ""
        )
        if check.delta:
            base = self.baselines.get(_metric_key(check))
            if value is not None and base is None and _metric_key(check) in self.baselines:
                base = 0.0  # the series did not exist yet when the method began
            if value is not None and base is None:
                value, error = None, ": no reading from the start of the method"
            elif value is not None and base is not None:
                value = value - base
            what = f"increase of {what} during the method"
        elif value is None and not error:
            value = 0.0 if check.labels else None  # a labelled series not exported yet has counted nothing
        ok = value is not None and check.tolerance.holds(value)
        detail = f"{check.service} {what} = {fmt_value(value)} (want {check.tolerance.describe()}){error}"
        now = time.time()
        return CheckResult(
            check.title(), "metric", check.tolerance.describe(), value, ok, detail, now, now - 1.0, now, check.timing
        )

    async def promql(self, check: PromqlCheck) -> CheckResult:
        value, ok, detail = await evaluate_promql(check, self.inv, self.prometheus)
        now = time.time()
        return CheckResult(
            check.title(), "promql", check.tolerance.describe(), value, ok, detail, now, now - 1.0, now, check.timing
        )

    async def now(self, check: Any, *, since: float, until: float, cutoff: float) -> CheckResult:
        """Any check: a delivery check over [since, until), the others read right now."""
        if isinstance(check, DeliveryCheck):
            return self.delivery(check, since=since, until=until, cutoff=cutoff)
        if isinstance(check, StatusCheck):
            return await self.status(check)
        if isinstance(check, PromqlCheck):
            return await self.promql(check)
        return await self.metric(check)


async def evaluate_promql(check: PromqlCheck, inv: Inventory | None, url: str | None) -> tuple[Any, bool, str]:
    """(value, ok, detail) of a PromQL check: every series must hold; no data fails, saying so."""
    want = check.tolerance.describe()
    try:
        samples = await instant_query(prometheus_url(inv, url), check.promql)
    except PushctlError as exc:
        return None, False, f"promql {check.promql} = ? (want {want}): {exc.message}"
    values = numbers(samples)
    if not values:
        why = "NaN (no traffic in its window?)" if samples else "no data (no such series, or nothing scraped yet)"
        return None, False, f"promql {check.promql} = {why} (want {want})"
    bad = [s for s in values if not check.tolerance.holds(s.value)]
    shown = bad or values
    value: Any = shown[0].value if len(values) == 1 else {s.describe(): s.value for s in values}
    listed = ", ".join(s.describe() for s in shown[:4]) + (" ..." if len(shown) > 4 else "")
    verdict = f"{len(bad)} of {len(values)} series break it: " if bad and len(values) > 1 else ""
    return value, not bad, f"promql {check.promql} = {verdict}{listed} (want {want})"


def select_counts(summary: LedgerSummary, check: DeliveryCheck) -> Counts | None:
    """The counts a check reads: the whole summary, or one region, kind or population of it.

    `lost` of the whole run counts every class; a region or kind filter narrows to it.
    """
    if check.region is not None:
        return summary.by_region.get(check.region)
    if check.kind is not None:
        return summary.by_kind.get(check.kind, Counts())
    if check.population == "online":
        return summary.online
    if check.population == "offline":
        return summary.offline
    return summary


def _metric_key(check: MetricCheck) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    return (check.service, check.metric, tuple(sorted(check.labels.items())))
