"""An action's verified claims are judged by the same rule as an experiment's findings: a timing
claim missed while the rig could not keep up is inconclusive, a loss never is."""

from __future__ import annotations

from pushctl.actions.base import Outcome
from pushctl.actions.verdict import failed_claims, judge

APPLIED, ENDED = 100.0, 130.0


def slow_rig(since: float, until: float) -> list[str]:
    assert (since, until) == (APPLIED, ENDED)  # asked about the window the action was verified in
    return ["the probe's event loop lagged 640 ms"]


def quiet_rig(since: float, until: float) -> list[str]:
    return []


LATE = Outcome(False, "delivery 97.000% (SLO 99.9%), late 30 of 1000", timing=True)
LOST = Outcome(False, "lost 3")
HELD = Outcome(True, "lost 0")


def test_claims_that_held_are_no_findings() -> None:
    assert failed_claims([HELD], APPLIED, ENDED) == []
    assert judge(failed_claims([HELD], APPLIED, ENDED), slow_rig).verdict == "passed"


def test_a_timing_claim_missed_on_a_slow_rig_is_inconclusive_with_the_reason() -> None:
    judgement = judge(failed_claims([LATE, HELD], APPLIED, ENDED), slow_rig)
    assert (judgement.verdict, judgement.reasons) == ("inconclusive", ["the probe's event loop lagged 640 ms"])


def test_a_timing_claim_missed_on_a_quiet_rig_fails() -> None:
    assert judge(failed_claims([LATE], APPLIED, ENDED), quiet_rig).verdict == "failed"


def test_a_loss_fails_whatever_the_rig_did() -> None:
    assert judge(failed_claims([LATE, LOST], APPLIED, ENDED), slow_rig).verdict == "failed"
