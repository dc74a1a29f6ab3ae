"""The verdict of a run, one action's or one experiment's: passed, failed or inconclusive, never two-valued.

Every check that did not hold is a `Finding`. A finding about timing (lateness, latency, pace, how
fast devices moved) may be the rig's fault rather than the platform's: when every finding of a run
is a timing finding and the rig could not keep up in each one's window (`pushctl.probe.rig`), the
run is *inconclusive*, with the reasons. Anything else that did not hold - a message lost or
duplicated, a push nobody sent, the dispatcher handing out a drained region, a limit exceeded, a
platform state or counter - fails the run whatever the rig did.

    findings = [Finding("delivery_rate >= 99.9", "97.1 % ...", timing=True, since=t0, until=t1)]
    judge(findings, rig.trouble)   # -> Judgement("inconclusive", ["... lagged 640 ms ..."])

An action's verified claims (`Outcome`s: its plan's "verify" column and `delivery_outcomes`) become
findings over the window they were verified in (`failed_claims`), and are judged the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pushctl.actions.base import Outcome
from pushctl.probe.ledger import LedgerSummary

Verdict = Literal["passed", "failed", "inconclusive"]
Trouble = Callable[[float, float], list[str]]  # why the rig could not keep up in [since, until] (`pushctl.probe.rig`)
EXIT_INCONCLUSIVE = 8


@dataclass(frozen=True)
class Finding:
    """A check that did not hold, where and when."""

    title: str
    detail: str
    timing: bool
    since: float | None
    until: float | None
    where: str = ""  # before, during, after, method step N, stop condition, whole run

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Judgement:
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)  # why the rig could not keep up (inconclusive only)
    excused: list[Finding] = field(default_factory=list)  # timing findings the rig's trouble explains


def judge(findings: list[Finding], trouble: Trouble) -> Judgement:
    """Decide a run from its findings; `trouble(since, until)` says why the rig could not keep up then."""
    if not findings:
        return Judgement("passed")
    if any(not f.timing for f in findings):
        return Judgement("failed")
    reasons: list[str] = []
    for f in findings:
        found = trouble(f.since, f.until) if f.since is not None and f.until is not None else []
        if not found:
            return Judgement("failed")
        for reason in found:
            if reason not in reasons:
                reasons.append(reason)
    return Judgement("inconclusive", reasons, list(findings))


def failed_claims(outcomes: Sequence[Outcome], since: float, until: float, where: str = "") -> list[Finding]:
    """The claims that did not hold, as findings over the window [since, until] they were verified in."""
    return [Finding(o.text, o.text, o.timing, since, until, where) for o in outcomes if not o.ok]


def delivery_outcomes(summary: LedgerSummary | None, slo: float) -> list[Outcome]:
    """The SLO (a timing claim) and the ledger (never a timing claim) of the messages sent meanwhile."""
    if summary is None:
        return []
    if summary.sent == 0:
        return [Outcome(False, "the probe sent nothing during the action", timing=True)]
    rate = summary.delivery_rate
    rate_txt = f"{rate:.3f}%" if rate is not None else "n/a"
    return [
        Outcome(
            rate is not None and rate >= slo,
            f"delivery {rate_txt} (SLO {slo}%), late {summary.late} of {summary.sent}",
            timing=True,
        ),
        Outcome(summary.lost == 0, f"lost {summary.lost}"),
        Outcome(
            summary.duplicates == 0,
            f"{summary.duplicates} duplicates reached the app",
        ),
        Outcome(summary.unexpected == 0, f"{summary.unexpected} deliveries of pushes nobody sent"),
    ]
