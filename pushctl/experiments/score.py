"""The resilience score of a library run, and each check's margin: how far it stayed from its limit.

Score (0-100, one decimal)::

    score = 100 * sum(weight of passed runs) / sum(weight of passed + failed runs)

A run counts as *passed* when it exited 0 and as *failed* when the platform let it down (a check
missed, a stop condition fired, a step or a rollback failed: exit 1, 5, 7). There is no partial
credit: an experiment that lost one message scores like one that lost all of them (the margins
show the difference). Runs without a verdict on the platform are left out of both sums and listed
apart: *inconclusive* (exit 8, the rig could not keep up) and *not judged* (2 invalid input, 3 a
pushctl bug, 4 the target unreachable, 6 locked by someone else, 130 interrupted, or still running).
With nothing counted the score is None ("n/a"), never 100.

Margin of a numeric check, signed, positive inside the tolerance::

    >= min: value - min        <= max: max - value        in [a, b]: min(value - a, b - value)
    fraction = margin / |limit| (one-sided, limit != 0), margin / ((b - a) / 2) (a range), else None

`== x` tolerances and non-numeric values have no margin.

    s = score_of(journals); s.value, s.entries
    add_margins(journal)     # every check of the journal gains "margin"; the journal gains "margins"
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

DEFAULT_WEIGHT = 1.0
Outcome = Literal["passed", "failed", "inconclusive", "not judged"]
NOT_JUDGED = {2: "invalid input", 3: "a pushctl bug", 4: "target unreachable", 6: "target locked", 130: "interrupted"}
FORMULA = "100 x weight passed / weight passed or failed (inconclusive and not-judged runs left out)"

_NUM = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf)"
_MIN = re.compile(rf"^>=\s*{_NUM}$")
_MAX = re.compile(rf"^<=\s*{_NUM}$")
_RANGE = re.compile(rf"^in \[\s*{_NUM}\s*,\s*{_NUM}\s*\]$")


# ---- margins --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Margin:
    """How far a measured value stayed inside its tolerance (negative: outside by that much)."""

    units: float
    fraction: float | None
    limit: str  # min | max | range

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def limits(tolerance: str) -> tuple[float | None, float | None] | None:
    """(min, max) of a tolerance as `Tolerance.describe()` writes it; None for `== x` or unknown text."""
    text = tolerance.strip()
    if m := _MIN.match(text):
        return float(m.group(1)), None
    if m := _MAX.match(text):
        return None, float(m.group(1))
    if m := _RANGE.match(text):
        return float(m.group(1)), float(m.group(2))
    return None


def margin(tolerance: str, value: Any) -> Margin | None:
    """The signed margin of `value` against `tolerance` (see the module docstring); None when none applies."""
    bounds = limits(tolerance)
    if bounds is None or not isinstance(value, int | float) or isinstance(value, bool):
        return None
    low, high = bounds
    if low is not None and high is not None:
        units = min(value - low, high - value)
        half = (high - low) / 2
        return Margin(_round(units), _round(units / half) if half > 0 else None, "range")
    if low is not None:
        units = value - low
        return Margin(_round(units), _round(units / abs(low)) if low else None, "min")
    assert high is not None  # noqa: S101 - limits() returns at least one bound
    units = high - value
    return Margin(_round(units), _round(units / abs(high)) if high else None, "max")


def _round(x: float) -> float:
    """Nine significant digits: `100.0 - 99.9` is 0.1 in the journal, not 0.09999999999999432."""
    return float(f"{x:.9g}")


PHASES = ("before", "during", "after", "run")


def margins_of(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Every margin of a journal: steady-state checks by phase, method probes, stop conditions (worst value).

    Computed from the journal's checks, so journals written before margins were recorded have them too.
    """
    out: list[dict[str, Any]] = []

    def add(phase: str, title: str, tolerance: Any, value: Any, ok: Any) -> None:
        m = margin(str(tolerance or ""), value)
        out.append(
            {
                "key": f"{phase}: {title}",
                "phase": phase,
                "title": title,
                "tolerance": tolerance,
                "value": value,
                "ok": ok,
                "margin": None if m is None else m.units,
                "fraction": None if m is None else m.fraction,
            }
        )

    states = run.get("steady_states") or {}
    for phase in PHASES:
        for check in (states.get(phase) or {}).get("checks") or []:
            add(phase, str(check.get("title")), check.get("tolerance"), check.get("value"), check.get("ok"))
    for step in run.get("method") or []:
        out_ = step.get("output")
        if step.get("kind") == "probe" and isinstance(out_, dict) and "tolerance" in out_:
            add("method", str(out_.get("title")), out_.get("tolerance"), out_.get("value"), out_.get("ok"))
    for stop in run.get("stop_conditions") or []:
        worst = stop.get("worst") if stop.get("worst") is not None else stop.get("value")
        add("stop", str(stop.get("name")), stop.get("tolerance"), worst, not stop.get("fired"))
    return out


def add_margins(run: dict[str, Any]) -> None:
    """Record margins in a journal: `margin` on each steady-state check, and the flat `margins` list."""
    states = run.get("steady_states") or {}
    for phase in PHASES:
        for check in (states.get(phase) or {}).get("checks") or []:
            m = margin(str(check.get("tolerance") or ""), check.get("value"))
            check["margin"] = None if m is None else m.to_json()
    run["margins"] = margins_of(run)


# ---- the score ------------------------------------------------------------------------------------
def exit_code_of(run: dict[str, Any]) -> int:
    """A journal's exit code; a killed run never wrote one: it counts as interrupted."""
    if run.get("exit_code") is not None:
        return int(run["exit_code"])
    return {"completed": 0, "interrupted": 130}.get(str(run.get("status")), 1)


def weight_of(run: dict[str, Any]) -> float:
    """The experiment's declared weight (journals from before weights existed: the default)."""
    value = (run.get("experiment") or {}).get("weight")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return DEFAULT_WEIGHT


def outcome_of(run: dict[str, Any]) -> tuple[Outcome, str]:
    """What a run counts as in the score, and why."""
    if run.get("status") == "running":  # read while it runs (a dead one reads as interrupted)
        return "not judged", "still running"
    code = exit_code_of(run)
    if code == 0:
        return "passed", "exit 0"
    if run.get("verdict") == "inconclusive" or code == 8:
        return "inconclusive", "; ".join(run.get("inconclusive") or []) or "the rig could not keep up"
    if code in NOT_JUDGED:
        return "not judged", f"exit {code}: {NOT_JUDGED[code]}"
    return "failed", f"exit {code}"


@dataclass(frozen=True)
class Entry:
    title: str
    file: str
    weight: float
    outcome: Outcome
    reason: str


@dataclass(frozen=True)
class Score:
    value: float | None  # 0-100, None when no run counted
    passed_weight: float
    counted_weight: float
    entries: tuple[Entry, ...]

    @property
    def apart(self) -> list[Entry]:
        """The runs left out of the score (inconclusive, not judged)."""
        return [e for e in self.entries if e.outcome in ("inconclusive", "not judged")]

    def text(self) -> str:
        if self.value is None:
            return "n/a (no run passed or failed)"
        return f"{self.value:.1f}/100"

    def to_json(self) -> dict[str, Any]:
        return {
            "score": self.value,
            "formula": FORMULA,
            "passed_weight": self.passed_weight,
            "counted_weight": self.counted_weight,
            "runs": [asdict(e) for e in self.entries],
            "apart": [asdict(e) for e in self.apart],
        }


def score_of(runs: list[dict[str, Any]]) -> Score:
    """The resilience score of these runs (see the module docstring for the formula)."""
    entries = []
    for run in runs:
        outcome, reason = outcome_of(run)
        title = str(run.get("title") or run.get("file") or "experiment")
        entries.append(Entry(title, str(run.get("file") or ""), weight_of(run), outcome, reason))
    passed = sum(e.weight for e in entries if e.outcome == "passed")
    counted = sum(e.weight for e in entries if e.outcome in ("passed", "failed"))
    value = round(100.0 * passed / counted, 1) if counted > 0 else None
    return Score(value, passed, counted, tuple(entries))
