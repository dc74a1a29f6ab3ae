"""The continuous SLO watch: stop conditions every half second, and the per-second timeline.

`Watch` evaluates each stop condition (and the blast radius) every `INTERVAL_S` during the method
and sets `fired` once one has been broken for its `for`; the runner then cancels the method and
rolls back. `Timeline` records, for the whole life of the probe, each second's delivery (counts,
rate, latency percentiles) once the second is decided, and connections per region.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from pushctl.experiments.measure import CheckResult, Measurer
from pushctl.experiments.model import BlastRadius, DeliveryCheck
from pushctl.experiments.run_journal import RunJournal
from pushctl.probe.ledger import LedgerSummary

INTERVAL_S = 0.5
PLATFORM_EVERY_S = 1.0  # status and metric stop conditions read the platform at most this often


@dataclass
class StopState:
    """What one stop condition has seen so far."""

    name: str
    tolerance: str
    for_s: float
    evaluations: int = 0
    broken_since: float | None = None  # start of the current breach (first broken evaluation)
    first_breach_at: float | None = None
    fired_at: float | None = None
    last: CheckResult | None = None
    worst: Any = None

    @property
    def fired(self) -> bool:
        return self.fired_at is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tolerance": self.tolerance,
            "for_s": self.for_s,
            "evaluations": self.evaluations,
            "fired": self.fired,
            "breached_at": self.broken_since if self.fired else self.first_breach_at,
            "fired_at": self.fired_at,
            "value": None if self.last is None else self.last.value,
            "worst": self.worst,
            "detail": None if self.last is None else self.last.detail,
        }


@dataclass
class Watch:
    measurer: Measurer
    conditions: list[Any]
    blast: BlastRadius
    deadline: float
    states: list[StopState] = field(default_factory=list)
    fired: asyncio.Event = field(default_factory=asyncio.Event)
    fired_by: StopState | None = None
    _platform_at: float = 0.0

    def __post_init__(self) -> None:
        self.states = [StopState(c.title(), c.tolerance.describe(), c.for_) for c in self.conditions]
        if self.blast.devices < 100:
            self.states.append(
                StopState(
                    f"blast radius: at most {self.blast.devices:g}% of devices offline",
                    f"offline <= {self.blast.devices:g}%",
                    self.blast.for_,
                )
            )

    async def run(self) -> None:
        """Evaluate until cancelled (or until a condition fires)."""
        while not self.fired.is_set():
            await self.tick()
            await asyncio.sleep(INTERVAL_S)

    async def tick(self) -> None:
        now = time.time()
        platform = now - self._platform_at >= PLATFORM_EVERY_S
        if platform:
            self._platform_at = now
        cache: dict[tuple[float, float], LedgerSummary] = {}
        started = self.measurer.probe.started_at or now
        for cond, state in zip(self.conditions, self.states, strict=False):
            if isinstance(cond, DeliveryCheck):
                until = now - self.deadline
                since = max(started, until - cond.window)
                if until <= since:
                    continue
                key = (since, until)
                if key not in cache:
                    cache[key] = self.measurer.window_summary(since=since, until=until, cutoff=now)
                result = self.measurer.delivery(cond, since=since, until=until, cutoff=now, summary=cache[key])
                if result.value is None and "nothing was sent" in result.detail:
                    continue  # no evidence either way
            elif platform:
                result = await self.measurer.now(cond, since=now, until=now, cutoff=now)
            else:
                continue
            self._update(state, result, now)
        if self.blast.devices < 100:
            snap = self.measurer.probe.snapshot()
            present = max(1, snap.devices - snap.away)  # devices taken offline on purpose do not count
            offline = round(100.0 * (present - snap.online) / present, 2)
            ok = offline <= self.blast.devices
            detail = f"{present - snap.online} of {present} devices offline ({offline:g}%)"
            self._update(
                self.states[-1],
                CheckResult(self.states[-1].name, "delivery", self.states[-1].tolerance, offline, ok, detail, now),
                now,
            )

    def _update(self, state: StopState, result: CheckResult, now: float) -> None:
        state.evaluations += 1
        state.last = result
        if result.ok:
            state.broken_since = None
            return
        if isinstance(result.value, int | float) and (state.worst is None or _worse(result, state.worst)):
            state.worst = result.value
        if state.broken_since is None:
            state.broken_since = now
            state.first_breach_at = state.first_breach_at or now
        if now - state.broken_since >= state.for_s and not self.fired.is_set():
            state.fired_at = now
            self.fired_by = state
            self.fired.set()


def _worse(result: CheckResult, worst: Any) -> bool:
    # farther outside the tolerance: below a minimum or above a maximum
    return bool(result.tolerance.startswith(">=") and result.value < worst) or bool(
        result.tolerance.startswith("<=") and result.value > worst
    )


class Timeline:
    """Per-second delivery and connections, recorded into the run journal as the run goes."""

    def __init__(self, measurer: Measurer, journal: RunJournal, *, settle: float) -> None:
        self.measurer = measurer
        self.journal = journal
        self.settle = settle
        self.rows: dict[int, dict[str, Any]] = {}
        self.data = journal.data["timeline"]

    async def run(self) -> None:
        """Record until cancelled; also how late this loop wakes up (pushctl's own event-loop lag,
        which would make the probe, not the platform, look slow)."""
        last_conn = 0.0
        lag = 0.0
        self.data.setdefault("loop_lag_max_ms", 0.0)
        rig = self.data.setdefault("rig", [])
        while True:
            now = time.time()
            self.record_seconds(now)
            samples = self.measurer.probe.rig.samples
            rig.extend(s.to_json() for s in samples[len(rig) :])
            if now - last_conn >= 1.0:
                last_conn = now
                snap = self.measurer.probe.snapshot()
                self.data["connections"].append(
                    {
                        "at": round(now, 2),
                        "online": snap.online,
                        "connected": dict(snap.connected),
                        "loop_lag_ms": round(lag * 1000, 1),
                    }
                )
                lag = 0.0
            self.journal.maybe_flush()
            before = time.monotonic()
            await asyncio.sleep(INTERVAL_S)
            late = time.monotonic() - before - INTERVAL_S
            lag = max(lag, late)
            self.data["loop_lag_max_ms"] = max(self.data["loop_lag_max_ms"], round(late * 1000, 1))

    def record_seconds(self, now: float, *, upto: int | None = None) -> None:
        """Rows for every second decided by `now` (or up to second `upto`, read at `now`)."""
        probe = self.measurer.probe
        t0 = probe.ledger.t0
        if t0 is None:
            return
        self.data["t0"] = t0
        self.data["deadline_s"] = probe.options.deadline
        last = int(now - t0 - 1 - self.settle) if upto is None else upto
        for t in range(len(self.rows), max(0, last + 1)):
            s = self.measurer.window_summary(since=t0 + t, until=t0 + t + 1, cutoff=now)
            row = {
                "t": t,
                "sent": s.sent,
                "on_time": s.on_time,
                "late": s.late,
                "lost": s.lost,
                "delivery_rate": s.delivery_rate,
                "p50_ms": s.latency_ms.p50,
                "p99_ms": s.latency_ms.p99,
            }
            self.rows[t] = row
            self.data["per_second"].append(row)

    def finish(self, summary: LedgerSummary, cutoff: float) -> None:
        """After the probe stopped: the remaining seconds, and exact counts for every second."""
        self.record_seconds(cutoff, upto=len(summary.per_second) - 1)
        rig = self.data.setdefault("rig", [])
        samples = self.measurer.probe.rig.samples
        rig.extend(s.to_json() for s in samples[len(rig) :])
        for sec in summary.per_second:
            row = self.rows.get(sec.t)
            if row is not None:
                row.update(
                    sent=sec.sent, on_time=sec.on_time, late=sec.late, lost=sec.lost, delivery_rate=sec.delivery_rate
                )
        self.journal.flush()
