"""The delivery ledger: exact accounting of every (message id, device) the sender expects delivered.

Pure: no clock, no I/O. The sender records what it sent (`sent`) and what the platform visibly
refused (`rejected`), devices record what arrived (`delivered`), the probe records when a device
went away on purpose and came back (`away`, `returned`), and `summary(cutoff=...)` classifies
every expected delivery:

- on_time: first delivered within `deadline` seconds of its send time;
- late: first delivered after the deadline, but by `cutoff` (end of sending + grace);
- lost: not delivered by `cutoff`;
- raw_duplicates: frames beyond the first for the same (id, device), before the device de-duplicates;
- duplicates: deliveries the device's de-duplication let through twice (an application-visible bug).

The SLO counts messages to online devices. A message sent to a device that was away on purpose
(the probe took it offline) is in the `offline` class: its clock starts when the device is back,
so it is on time when it arrives within `deadline` of the return (the platform's offline queue at
work), and lost when it never does. Messages the platform refused with an answer are `rejected`
(visible, so not lost), and so are those it accepted but then put in its dead-letter topic
(`dead_lettered`, counted in `rejected` too); deliveries of ids nobody sent to that device are
`unexpected`.

A group push to N devices counts as N expected deliveries; `by_kind` splits single pushes, group
pushes to a device list and group pushes to a region. Ledgers merge exactly (`merge`): a sharded
prober keeps one partial ledger per worker and the sum of the parts is the ledger of the whole.

    ledger = Ledger(deadline=1.0)
    ledger.register("d1", "north")
    ledger.sent("m1", 100.0, ["d1"])
    ledger.delivered("m1", "d1", 100.2)
    ledger.summary(cutoff=106.0).delivery_rate   # 100.0
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

UNKNOWN_REGION = "unknown"
WORST_SECONDS = 5
_LIVE_LATENCIES = 20_000
KINDS = ("single", "group", "region-group")
Kind = Literal["single", "group", "region-group"]


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values) - 1e-9))  # 99.9 % of 1000 is 999, not 1000
    return sorted_values[min(rank, len(sorted_values)) - 1]


def rate(on_time: int, sent: int) -> float | None:
    """Delivery rate in percent; None when nothing was sent (no rate to speak of)."""
    return on_time * 100.0 / sent if sent else None


# ---- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Latency:
    """Latency percentiles in milliseconds over first deliveries (on time and late)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    p999: float | None = None

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        values = sorted(seconds)

        def ms(p: float) -> float | None:
            v = percentile(values, p)
            return None if v is None else round(v * 1000.0, 3)

        return cls(p50=ms(50), p95=ms(95), p99=ms(99), p999=ms(99.9))

    def to_json(self) -> dict[str, float | None]:
        return {"p50": self.p50, "p95": self.p95, "p99": self.p99, "p999": self.p999}


@dataclass(frozen=True)
class Counts:
    """Counters over a set of expected deliveries (the whole run, or one region, kind or class)."""

    sent: int = 0
    on_time: int = 0
    late: int = 0
    lost: int = 0
    duplicates: int = 0
    raw_duplicates: int = 0
    latency_ms: Latency = field(default_factory=Latency)

    @property
    def delivery_rate(self) -> float | None:
        return rate(self.on_time, self.sent)

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "on_time": self.on_time,
            "late": self.late,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "raw_duplicates": self.raw_duplicates,
            "delivery_rate": self.delivery_rate,
            "latency_ms": self.latency_ms.to_json(),
        }


@dataclass(frozen=True)
class Second:
    """Outcome of the messages sent during second `t` of the run (t = 0 is when sending began)."""

    t: int
    sent: int = 0
    on_time: int = 0
    late: int = 0
    lost: int = 0

    @property
    def delivery_rate(self) -> float | None:
        return rate(self.on_time, self.sent)

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, "sent": self.sent, "on_time": self.on_time, "late": self.late, "lost": self.lost}


@dataclass(frozen=True)
class LedgerSummary(Counts):
    """The classified run. `to_json()` is the documented machine output of `probe run --json`.

    The top-level counts are every expected delivery (online and offline class); `online` is the
    SLO's population (devices online when the message was sent), `offline` the rest.
    """

    online: Counts = field(default_factory=Counts)
    offline: Counts = field(default_factory=Counts)
    by_region: dict[str, Counts] = field(default_factory=dict)
    by_kind: dict[str, Counts] = field(default_factory=dict)
    per_second: tuple[Second, ...] = ()
    unexpected: int = 0  # frames of ids nobody sent to that device (or that the platform had refused)
    rejected: int = 0  # expected deliveries of pushes the platform refused with an answer (not lost)
    dead_lettered: int = 0  # of which accepted, then kept in the platform's dead-letter topic
    pending: int = 0  # offline-class deliveries not due yet at the cutoff (the device came back just now)
    deadline_s: float = 1.0

    @property
    def worst_seconds(self) -> tuple[Second, ...]:
        """Up to five seconds that missed the most, worst delivery rate first."""
        missed = [s for s in self.per_second if s.sent and s.on_time < s.sent]
        missed.sort(key=lambda s: (s.on_time / s.sent, s.t))
        return tuple(missed[:WORST_SECONDS])

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["unexpected"] = self.unexpected
        out["rejected"] = self.rejected
        out["dead_lettered"] = self.dead_lettered
        out["pending"] = self.pending
        out["online"] = self.online.to_json()
        out["offline"] = self.offline.to_json()
        out["by_kind"] = {name: c.to_json() for name, c in self.by_kind.items()}
        out["by_region"] = {name: c.to_json() for name, c in sorted(self.by_region.items())}
        out["per_second"] = [s.to_json() for s in self.per_second]
        out["worst_seconds"] = [{**s.to_json(), "delivery_rate": s.delivery_rate} for s in self.worst_seconds]
        return out


@dataclass(frozen=True)
class LiveSecond:
    t: int
    sent: int
    on_time: int
    late: int
    waiting: int  # not delivered yet: pending if within the deadline, overdue after it
    overdue: bool  # the deadline of every message of this second has passed


@dataclass(frozen=True)
class Progress:
    """A cheap, running view of the ledger while messages are still in flight."""

    sent: int
    delivered: int
    on_time: int
    late: int
    overdue: int  # not delivered, deadline passed: will end late or lost
    pending: int  # not delivered, deadline not passed yet
    duplicates: int
    raw_duplicates: int
    latency_p99_ms: float | None  # over the most recent deliveries
    per_second: tuple[LiveSecond, ...]

    @property
    def delivery_rate(self) -> float | None:
        """On time over every message already decided (delivered, or past its deadline)."""
        return rate(self.on_time, self.on_time + self.late + self.overdue)


# ---- the ledger -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sent:
    at: float
    devices: frozenset[str]
    open: bool = False  # a region group push: whichever probe device receives it was a target too
    kind: str = "single"


@dataclass(slots=True)
class Delivery:
    first_at: float
    raw: int = 1  # frames received for this (id, device)
    app: int = 1  # of which the device's de-duplication passed on to the application


@dataclass(slots=True)
class Away:
    """A device taken offline on purpose: from `start` until it is connected again (`back_at`)."""

    start: float
    planned_end: float
    back_at: float | None = None

    @property
    def end(self) -> float:
        """When the device's clock restarts: its return, else when it should have returned."""
        return self.back_at if self.back_at is not None else self.planned_end


class Ledger:
    """Sent messages and deliveries; exact summary on demand, cheap live progress always."""

    def __init__(self, *, deadline: float = 1.0, t0: float | None = None) -> None:
        if deadline <= 0:
            raise ValueError("deadline must be > 0")
        self.deadline = deadline
        self.t0 = t0
        self.homes: dict[str, str] = {}
        self._sent: dict[str, Sent] = {}
        self._deliveries: dict[tuple[str, str], Delivery] = {}
        self._away: dict[str, list[Away]] = {}
        self._rejected: set[str] = set()
        self._dead_lettered: set[str] = set()
        # live counters, kept incrementally (the summary recomputes everything from the records)
        self._live: dict[int, list[int]] = {}  # second -> [sent, on_time, late]
        self._expected = self._delivered = self._on_time = self._late = 0
        self._raw_dups = self._app_dups = 0
        self._latencies: deque[float] = deque(maxlen=_LIVE_LATENCIES)

    # ---- recording ---------------------------------------------------------------------------
    def register(self, device: str, home: str) -> None:
        """Declare a probe device and its home region (the region its counters are filed under)."""
        self.homes[device] = home

    def sent(self, msg_id: str, at: float, devices: Iterable[str], *, open: bool = False, kind: str = "single") -> None:
        """The sender sent `msg_id` at `at` (epoch seconds) to each of `devices`."""
        targets = frozenset(devices)
        old = self._sent.get(msg_id)
        if old is not None:
            targets = targets - old.devices
            record = Sent(min(old.at, at), old.devices | targets, old.open or open, old.kind)
        else:
            record = Sent(at, targets, open, kind)
        self._sent[msg_id] = record
        if self.t0 is None:
            self.t0 = at
        for device in targets:
            self._live_expect(record)
            found = self._deliveries.get((msg_id, device))
            if found is not None:
                self._live_first(record, found.first_at, +1)

    def rejected(self, msg_id: str) -> None:
        """The platform answered that it did not take `msg_id` (visibly refused: not a loss)."""
        self._rejected.add(msg_id)

    def dead_lettered(self, msg_id: str) -> None:
        """The platform accepted `msg_id`, then put it in its dead-letter topic: visibly rejected."""
        self._rejected.add(msg_id)
        self._dead_lettered.add(msg_id)

    def delivered(self, msg_id: str, device: str, at: float, *, app: bool = True) -> None:
        """A push frame for `msg_id` reached `device` at `at`; `app` if de-duplication passed it on."""
        self._add(msg_id, device, at, 1, 1 if app else 0)

    def away(self, device: str, start: float, planned_end: float) -> None:
        """The probe took `device` offline on purpose at `start`, to come back at `planned_end`."""
        self._away.setdefault(device, []).append(Away(start, planned_end))

    def returned(self, device: str, at: float) -> None:
        """`device` is connected again after being away on purpose (no-op when it was not away)."""
        spans = self._away.get(device)
        if spans and spans[-1].back_at is None and at >= spans[-1].start:
            spans[-1].back_at = at

    def is_away(self, device: str) -> bool:
        spans = self._away.get(device)
        return bool(spans) and spans[-1].back_at is None  # type: ignore[index]

    def merge(self, other: Ledger) -> None:
        """Add another (partial) ledger into this one; merging shards is exact and order-free."""
        self.homes.update(other.homes)
        if other.t0 is not None and (self.t0 is None or other.t0 < self.t0):
            self.t0 = other.t0
        for msg_id, rec in other._sent.items():
            self.sent(msg_id, rec.at, rec.devices, open=rec.open, kind=rec.kind)
        self._rejected |= other._rejected
        self._dead_lettered |= other._dead_lettered
        for device, spans in other._away.items():
            mine = self._away.setdefault(device, [])
            known = {(s.start, s.planned_end) for s in mine}
            for span in spans:
                if (span.start, span.planned_end) not in known:
                    mine.append(Away(span.start, span.planned_end, span.back_at))
                else:
                    for s in mine:
                        if (s.start, s.planned_end) == (span.start, span.planned_end) and s.back_at is None:
                            s.back_at = span.back_at
            mine.sort(key=lambda s: s.start)
        for (msg_id, device), d in other._deliveries.items():
            self._add(msg_id, device, d.first_at, d.raw, d.app)

    @property
    def outstanding(self) -> int:
        """Expected deliveries not delivered yet (live; for stopping early once everything arrived)."""
        return self._expected - self._delivered

    def __len__(self) -> int:
        return len(self._sent)

    def __contains__(self, msg_id: object) -> bool:
        """Whether `msg_id` was sent (by this ledger's sender)."""
        return msg_id in self._sent

    # ---- wire form (how a worker ships its partial ledger to the parent) ---------------------
    def to_wire(self) -> dict[str, Any]:
        return {
            "deadline": self.deadline,
            "t0": self.t0,
            "homes": self.homes,
            "sent": [[i, s.at, sorted(s.devices), s.open, s.kind] for i, s in self._sent.items()],
            "deliveries": [[i, dev, d.first_at, d.raw, d.app] for (i, dev), d in self._deliveries.items()],
            "rejected": sorted(self._rejected),
            "dead_lettered": sorted(self._dead_lettered),
            "away": [[dev, s.start, s.planned_end, s.back_at] for dev, spans in self._away.items() for s in spans],
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Ledger:
        ledger = cls(deadline=float(data["deadline"]), t0=data.get("t0"))
        ledger.homes.update(data.get("homes", {}))
        for row in data.get("sent", []):
            msg_id, at, devices, is_open = row[:4]
            kind = str(row[4]) if len(row) > 4 else "single"
            ledger.sent(str(msg_id), float(at), devices, open=bool(is_open), kind=kind)
        for msg_id, device, first_at, raw, app in data.get("deliveries", []):
            ledger._add(str(msg_id), str(device), float(first_at), int(raw), int(app))
        ledger._rejected.update(str(i) for i in data.get("rejected", []))
        for msg_id in data.get("dead_lettered", []):
            ledger.dead_lettered(str(msg_id))
        for device, start, planned_end, back_at in data.get("away", []):
            ledger._away.setdefault(str(device), []).append(
                Away(float(start), float(planned_end), None if back_at is None else float(back_at))
            )
        return ledger

    # ---- exact classification ----------------------------------------------------------------
    def summary(
        self,
        *,
        cutoff: float = math.inf,
        since: float | None = None,
        until: float | None = None,
        final: bool = False,
        devices: Collection[str] | None = None,
    ) -> LedgerSummary:
        """Classify every expected delivery of messages sent in [since, until) (to `devices` only, if given:
        a cohort, e.g. the devices a fault reached).

        `cutoff` is the end of the run plus the grace period: anything not delivered by then is lost.
        An offline-class delivery whose device came back less than a deadline before `cutoff` is
        `pending` (not counted yet), unless `final`: the run is over, and what did not arrive is lost.
        """
        t0 = self.t0 if self.t0 is not None else 0.0
        cohort = None if devices is None else frozenset(devices)
        receivers = self._open_receivers()
        total, online, offline = _Acc(), _Acc(), _Acc()
        regions: dict[str, _Acc] = {}
        kinds: dict[str, _Acc] = {}
        seconds: dict[int, list[int]] = {}
        rejected = dead_lettered = pending = 0
        for msg_id, rec in self._sent.items():
            if (since is not None and rec.at < since) or (until is not None and rec.at >= until):
                continue
            targets = rec.devices | receivers.get(msg_id, frozenset())
            if cohort is not None:
                targets &= cohort
                if not targets:
                    continue
            if msg_id in self._rejected:
                refused = len(rec.devices if cohort is None else rec.devices & cohort)
                rejected += refused
                dead_lettered += refused if msg_id in self._dead_lettered else 0
                continue
            second = seconds.setdefault(max(0, math.floor(rec.at - t0)), [0, 0, 0, 0])
            kind = kinds.setdefault(rec.kind, _Acc())
            for device in targets:
                start = self._clock_start(device, rec.at)
                d = self._deliveries.get((msg_id, device))
                if d is None or d.first_at > cutoff:
                    if start > rec.at and start + self.deadline > cutoff and not final:
                        pending += 1
                        continue
                    outcome, latency, dups, raw_dups = 3, None, 0, 0
                else:
                    latency = max(0.0, d.first_at - (start if d.first_at >= start else rec.at))
                    outcome = 1 if latency <= self.deadline else 2
                    dups, raw_dups = max(0, d.app - 1), max(0, d.raw - 1)
                region = regions.setdefault(self.homes.get(device, UNKNOWN_REGION), _Acc())
                cls = offline if start > rec.at else online
                for acc in (total, cls, region, kind):
                    acc.add(outcome, latency, dups, raw_dups)
                second[0] += 1
                second[outcome] += 1
        per_second = tuple(Second(t, *seconds.get(t, (0, 0, 0, 0))) for t in range(max(seconds, default=-1) + 1))
        base = total.counts()
        return LedgerSummary(
            sent=base.sent,
            on_time=base.on_time,
            late=base.late,
            lost=base.lost,
            duplicates=base.duplicates,
            raw_duplicates=base.raw_duplicates,
            latency_ms=base.latency_ms,
            online=online.counts(),
            offline=offline.counts(),
            by_region={name: acc.counts() for name, acc in regions.items()},
            by_kind={name: kinds[name].counts() for name in sorted(kinds, key=_kind_order)},
            per_second=per_second,
            unexpected=self._unexpected(receivers, since, until),
            rejected=rejected,
            dead_lettered=dead_lettered,
            pending=pending,
            deadline_s=self.deadline,
        )

    def latencies(
        self,
        *,
        cutoff: float = math.inf,
        since: float | None = None,
        until: float | None = None,
        devices: Collection[str] | None = None,
    ) -> list[float]:
        """Seconds to first delivery of every expected delivery that arrived by `cutoff`, of messages
        sent in [since, until) to `devices` (all when None): what a percentile's interval resamples."""
        cohort = None if devices is None else frozenset(devices)
        out: list[float] = []
        for msg_id, rec in self._sent.items():
            if (since is not None and rec.at < since) or (until is not None and rec.at >= until):
                continue
            if msg_id in self._rejected:
                continue
            targets = rec.devices if cohort is None else rec.devices & cohort
            for device in targets:
                d = self._deliveries.get((msg_id, device))
                if d is not None and d.first_at <= cutoff:
                    start = self._clock_start(device, rec.at)
                    out.append(max(0.0, d.first_at - (start if d.first_at >= start else rec.at)))
        return out

    def _clock_start(self, device: str, at: float) -> float:
        """When a message sent at `at` to `device` could first be delivered: `at`, or the device's
        return when it was away on purpose (or leaving: a message sent less than a deadline before
        the device went away could not be acked on time either)."""
        for span in self._away.get(device, ()):
            if span.start - self.deadline <= at < span.end:
                return max(at, span.end)
        return at

    def _open_receivers(self) -> dict[str, frozenset[str]]:
        found: dict[str, set[str]] = {}
        for msg_id, device in self._deliveries:
            rec = self._sent.get(msg_id)
            if rec is not None and rec.open and device not in rec.devices:
                found.setdefault(msg_id, set()).add(device)
        return {k: frozenset(v) for k, v in found.items()}

    def _unexpected(self, receivers: Mapping[str, frozenset[str]], since: float | None, until: float | None) -> int:
        count = 0
        for (msg_id, device), d in self._deliveries.items():
            rec = self._sent.get(msg_id)
            if rec is not None and ((since is not None and rec.at < since) or (until is not None and rec.at >= until)):
                continue
            if rec is None and (since is not None or until is not None):
                if (since is not None and d.first_at < since) or (until is not None and d.first_at >= until):
                    continue
            if (
                rec is None
                or msg_id in self._rejected
                or (device not in rec.devices and device not in receivers.get(msg_id, ()))
            ):
                count += d.raw
        return count

    # ---- live progress -------------------------------------------------------------------------
    def progress(self, now: float) -> Progress:
        """Where the run stands at `now` (epoch seconds); approximate only for out-of-order merges."""
        t0 = self.t0 if self.t0 is not None else now
        per_second: list[LiveSecond] = []
        overdue = pending = 0
        for t in sorted(self._live):
            sent, on_time, late = self._live[t]
            waiting = sent - on_time - late
            past = t0 + t + 1 + self.deadline <= now
            per_second.append(LiveSecond(t, sent, on_time, late, waiting, past))
            if past:
                overdue += waiting
            else:
                pending += waiting
        return Progress(
            sent=self._expected,
            delivered=self._delivered,
            on_time=self._on_time,
            late=self._late,
            overdue=overdue,
            pending=pending,
            duplicates=self._app_dups,
            raw_duplicates=self._raw_dups,
            latency_p99_ms=_ms(percentile(sorted(self._latencies), 99)),
            per_second=tuple(per_second),
        )

    # ---- internals -----------------------------------------------------------------------------
    def _add(self, msg_id: str, device: str, first_at: float, raw: int, app: int) -> None:
        key = (msg_id, device)
        old = self._deliveries.get(key)
        if old is None:
            self._deliveries[key] = Delivery(first_at, raw, app)
            self._raw_dups += max(0, raw - 1)
            self._app_dups += max(0, app - 1)
            rec = self._sent.get(msg_id)
            if rec is not None:
                if device not in rec.devices and rec.open:
                    self._live_expect(rec)
                if device in rec.devices or rec.open:
                    self._live_first(rec, first_at, +1)
            return
        self._raw_dups += max(0, old.raw + raw - 1) - max(0, old.raw - 1)
        self._app_dups += max(0, old.app + app - 1) - max(0, old.app - 1)
        old.raw += raw
        old.app += app
        if first_at < old.first_at:
            rec = self._sent.get(msg_id)
            if rec is not None and (device in rec.devices or rec.open):
                self._live_first(rec, old.first_at, -1)
                self._live_first(rec, first_at, +1)
            old.first_at = first_at

    def _second(self, rec: Sent) -> list[int]:
        t0 = self.t0 if self.t0 is not None else rec.at
        return self._live.setdefault(max(0, math.floor(rec.at - t0)), [0, 0, 0])

    def _live_expect(self, rec: Sent) -> None:
        self._expected += 1
        self._second(rec)[0] += 1

    def _live_first(self, rec: Sent, first_at: float, sign: int) -> None:
        latency = max(0.0, first_at - rec.at)
        bucket = self._second(rec)
        self._delivered += sign
        if latency <= self.deadline:
            self._on_time += sign
            bucket[1] += sign
        else:
            self._late += sign
            bucket[2] += sign
        if sign > 0:
            self._latencies.append(latency)


def _kind_order(kind: str) -> int:
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


class _Acc:
    __slots__ = ("counts_", "dups", "latencies", "raw_dups")

    def __init__(self) -> None:
        self.counts_ = [0, 0, 0, 0]  # sent, on_time, late, lost
        self.dups = self.raw_dups = 0
        self.latencies: list[float] = []

    def add(self, outcome: int, latency: float | None, dups: int, raw_dups: int) -> None:
        self.counts_[0] += 1
        self.counts_[outcome] += 1
        self.dups += dups
        self.raw_dups += raw_dups
        if latency is not None:
            self.latencies.append(latency)

    def counts(self) -> Counts:
        sent, on_time, late, lost = self.counts_
        return Counts(sent, on_time, late, lost, self.dups, self.raw_dups, Latency.of(self.latencies))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)
