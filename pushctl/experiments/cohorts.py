"""Control vs experiment cohorts: each cohort's delivery, lateness and p99 over the method, their
difference with a confidence interval, and the experiment's tolerances on it.

    comparison = compare(probe, since=t0, until=t1, confidence=0.95)
    comparison.verdict()   # "the fault cost 0.40 points ± 0.21 of on-time delivery (95 % confidence)"
    results = cohort_checks(comparison, exp.cohorts, at=time.time())

Differences are experiment - control, in percentage points for delivery rate and late share
(Newcombe's hybrid score interval, `pushctl.probe.intervals`) and in ms for p99 (percentile
bootstrap). The "cost" is control - experiment delivery: positive when the fault hurt. Its ± is the
larger distance from the estimate to an end of the (asymmetric) interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pushctl.experiments.measure import CheckResult, fmt_value
from pushctl.experiments.model import CohortSettings
from pushctl.probe.intervals import bootstrap_p99_diff, newcombe_diff, wilson
from pushctl.probe.ledger import Ledger, LedgerSummary


class _CohortProbe(Protocol):
    cohorts: dict[str, frozenset[str]]
    ledger: Ledger

    def summary(
        self, *, since: float | None = None, until: float | None = None, devices: Any = None
    ) -> LedgerSummary: ...


@dataclass(frozen=True)
class CohortLine:
    """One cohort's numbers over the compared span."""

    name: str
    devices: int
    sent: int
    on_time: int
    late: int
    lost: int
    p99_ms: float | None
    delivery_ci: tuple[float, float]  # percent, Wilson

    @property
    def delivery_rate(self) -> float | None:
        return self.on_time * 100.0 / self.sent if self.sent else None

    @property
    def late_share(self) -> float | None:
        return self.late * 100.0 / self.sent if self.sent else None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "devices": self.devices,
            "sent": self.sent,
            "on_time": self.on_time,
            "late": self.late,
            "lost": self.lost,
            "delivery_rate": self.delivery_rate,
            "delivery_ci": list(self.delivery_ci),
            "late_share": self.late_share,
            "p99_ms": self.p99_ms,
        }


@dataclass(frozen=True)
class CohortComparison:
    """Both cohorts and the differences (experiment - control) with their intervals."""

    control: CohortLine
    experiment: CohortLine
    confidence: float  # 0..1
    delivery_diff: float  # points
    delivery_ci: tuple[float, float]
    late_diff: float  # points
    late_ci: tuple[float, float]
    p99_diff_ms: float | None
    p99_ci_ms: tuple[float, float] | None
    since: float
    until: float

    @property
    def cost(self) -> float:
        """Points of on-time delivery the experiment cohort lost against the control cohort."""
        return -self.delivery_diff

    @property
    def cost_ci(self) -> tuple[float, float]:
        return -self.delivery_ci[1], -self.delivery_ci[0]

    @property
    def plus_minus(self) -> float:
        lo, hi = self.cost_ci
        return max(self.cost - lo, hi - self.cost)

    def verdict(self) -> str:
        """The sentence an SRE quotes: what the fault cost, with its uncertainty."""
        lo, hi = (round(v, 2) + 0.0 for v in self.cost_ci)  # + 0.0: no "-0.00"
        return (
            f"the fault cost {round(self.cost, 2) + 0.0:.2f} points ± {self.plus_minus:.2f} of on-time delivery "
            f"({self.confidence:.0%} confidence: {lo:.2f} to {hi:.2f}; control "
            f"{fmt_value(self.control.delivery_rate)}%, experiment {fmt_value(self.experiment.delivery_rate)}%)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "confidence": self.confidence,
            "since": self.since,
            "until": self.until,
            "control": self.control.to_json(),
            "experiment": self.experiment.to_json(),
            "difference": {
                "delivery_points": self.delivery_diff,
                "delivery_ci": list(self.delivery_ci),
                "late_points": self.late_diff,
                "late_ci": list(self.late_ci),
                "p99_ms": self.p99_diff_ms,
                "p99_ci_ms": None if self.p99_ci_ms is None else list(self.p99_ci_ms),
                "method": "Newcombe hybrid score (proportions), percentile bootstrap (p99)",
            },
            "cost_points": self.cost,
            "cost_ci": list(self.cost_ci),
            "verdict": self.verdict(),
        }


def _line(name: str, devices: int, s: LedgerSummary, confidence: float) -> CohortLine:
    lo, hi = wilson(s.on_time, s.sent, confidence)
    return CohortLine(name, devices, s.sent, s.on_time, s.late, s.lost, s.latency_ms.p99, (lo * 100, hi * 100))


def compare(
    probe: _CohortProbe, *, since: float, until: float, confidence: float, cutoff: float | None = None
) -> CohortComparison:
    """Compare the probe's cohorts over messages sent in [since, until) (read after the run)."""
    c_dev, e_dev = probe.cohorts["control"], probe.cohorts["experiment"]
    c = probe.summary(since=since, until=until, devices=c_dev)
    e = probe.summary(since=since, until=until, devices=e_dev)
    lo, hi = newcombe_diff(c.on_time, c.sent, e.on_time, e.sent, confidence)
    llo, lhi = newcombe_diff(c.late, c.sent, e.late, e.sent, confidence)
    rate_c = c.on_time / c.sent if c.sent else 0.0
    rate_e = e.on_time / e.sent if e.sent else 0.0
    late_c = c.late / c.sent if c.sent else 0.0
    late_e = e.late / e.sent if e.sent else 0.0
    limit = {} if cutoff is None else {"cutoff": cutoff}
    lat_c = probe.ledger.latencies(since=since, until=until, devices=c_dev, **limit)
    lat_e = probe.ledger.latencies(since=since, until=until, devices=e_dev, **limit)
    boot = bootstrap_p99_diff([v * 1000 for v in lat_c], [v * 1000 for v in lat_e], confidence)
    p99_diff = None if c.latency_ms.p99 is None or e.latency_ms.p99 is None else e.latency_ms.p99 - c.latency_ms.p99
    return CohortComparison(
        control=_line("control", len(c_dev), c, confidence),
        experiment=_line("experiment", len(e_dev), e, confidence),
        confidence=confidence,
        delivery_diff=(rate_e - rate_c) * 100,
        delivery_ci=(lo * 100, hi * 100),
        late_diff=(late_e - late_c) * 100,
        late_ci=(llo * 100, lhi * 100),
        p99_diff_ms=p99_diff,
        p99_ci_ms=boot,
        since=since,
        until=until,
    )


def cohort_checks(cmp: CohortComparison, settings: CohortSettings, *, at: float) -> list[CheckResult]:
    """The experiment's tolerances on the comparison.

    The control cohort's own delivery rate is a timing check (a slow rig makes it late, as any
    delivery rate). The differences are not: both cohorts share the rig and their messages
    interleave in time, so a rig that stalls delays both alike, and the interval already covers
    chance; a difference beyond its tolerance is the platform's (or a fault that missed its cohort).
    """
    conf = f"{cmp.confidence:.0%} confidence"
    out: list[CheckResult] = []

    def add(title: str, tolerance: str, value: Any, ok: bool, detail: str, timing: bool = False) -> None:
        out.append(CheckResult(title, "cohorts", tolerance, value, ok, detail, at, cmp.since, cmp.until, timing))

    ctl = cmp.control
    add(
        f"the control cohort was unaffected: delivery {settings.control.describe()}",
        settings.control.describe(),
        ctl.delivery_rate,
        ctl.sent > 0 and settings.control.holds(ctl.delivery_rate) and ctl.lost == 0,
        f"control cohort: delivery {fmt_value(ctl.delivery_rate)}% ({ctl.on_time} of {ctl.sent} on time, "
        f"{ctl.late} late, {ctl.lost} lost, p99 {fmt_value(ctl.p99_ms)} ms)",
        timing=True,
    )
    lo, hi = cmp.cost_ci
    if settings.max_cost is not None:
        add(
            f"the fault cost at most {settings.max_cost:g} points of delivery ({conf})",
            f"cost upper bound <= {settings.max_cost:g}",
            round(hi, 4),
            cmp.experiment.sent > 0 and hi <= settings.max_cost,
            f"cost at most {hi:.2f} points (want <= {settings.max_cost:g}): {cmp.verdict()}",
        )
    if settings.min_cost is not None:
        add(
            f"the fault reached the experiment cohort: cost at least {settings.min_cost:g} points ({conf})",
            f"cost lower bound >= {settings.min_cost:g}",
            round(lo, 4),
            cmp.experiment.sent > 0 and lo >= settings.min_cost,
            f"cost at least {lo:.2f} points (want >= {settings.min_cost:g}): {cmp.verdict()}",
        )
    if settings.max_p99_increase_ms is not None:
        p_hi = None if cmp.p99_ci_ms is None else cmp.p99_ci_ms[1]
        ci = "n/a" if cmp.p99_ci_ms is None else f"{cmp.p99_ci_ms[0]:.1f} to {cmp.p99_ci_ms[1]:.1f} ms"
        add(
            f"p99 latency at most {settings.max_p99_increase_ms:g} ms above control ({conf})",
            f"p99 increase upper bound <= {settings.max_p99_increase_ms:g} ms",
            p_hi,
            p_hi is not None and p_hi <= settings.max_p99_increase_ms,
            f"p99 experiment - control {fmt_value(cmp.p99_diff_ms)} ms ({ci})",
        )
    return out


def cohort_series(probe: _CohortProbe) -> dict[str, list[dict[str, Any]]]:
    """Each cohort's delivery rate per second (the HTML report's two lines); t counts from the
    ledger's t0, as the run's timeline does."""
    return {
        name: [{"t": sec.t, "delivery_rate": sec.delivery_rate} for sec in probe.summary(devices=devices).per_second]
        for name, devices in probe.cohorts.items()
    }


def render_cohorts(cmp: CohortComparison, *, over: str = "the method") -> str:
    """The terminal's lines: one per cohort, the difference, the verdict sentence."""
    rows = [f"cohorts over {over} ({cmp.confidence:.0%} confidence intervals):"]
    for line in (cmp.control, cmp.experiment):
        lo, hi = line.delivery_ci
        rows.append(
            f"  {line.name:<10} {line.devices:>5} devices  sent {line.sent:>6}  delivery "
            f"{fmt_value(line.delivery_rate)}% [{lo:.2f}, {hi:.2f}]  late {fmt_value(line.late_share)}%  "
            f"lost {line.lost}  p99 {fmt_value(line.p99_ms)} ms"
        )
    p99 = (
        "n/a"
        if cmp.p99_diff_ms is None
        else f"{cmp.p99_diff_ms:+.1f} ms"
        + ("" if cmp.p99_ci_ms is None else f" [{cmp.p99_ci_ms[0]:+.1f}, {cmp.p99_ci_ms[1]:+.1f}]")
    )
    rows.append(
        f"  difference (experiment - control): delivery {cmp.delivery_diff:+.2f} points "
        f"[{cmp.delivery_ci[0]:+.2f}, {cmp.delivery_ci[1]:+.2f}]  late {cmp.late_diff:+.2f} points "
        f"[{cmp.late_ci[0]:+.2f}, {cmp.late_ci[1]:+.2f}]  p99 {p99}"
    )
    rows.append(f"  {cmp.verdict()}")
    return "\n".join(rows)
