"""The score and every margin across past run journals; a margin that erodes is flagged while it still passes.

    runs = load_journals(Path("~/.local/state/pushctl/reference/experiments"))
    t = trend(runs)      # t.points: the score per library run; t.series: each check's margins
    t.eroding            # the series whose margin falls

Library runs: journals that carry the same `batch` (one `pushctl experiment run` of a directory)
are one point; older journals without it are grouped by time (a new point when a file repeats or
after a 10-minute gap).

Erosion, over the last `LAST_RUNS` margins of a series (at least `MIN_RUNS`): a Mann-Kendall test
for a downward trend (one-sided, p < 0.05; S counts rising minus falling pairs) and a Theil-Sen
slope (the median of every pairwise slope, robust to one bad run) below zero. Flat noise has no
trend in either; a margin losing a little every run does, long before it crosses zero. `runs_left`
projects the Theil-Sen slope to the limit: about how many more runs until the gate goes red.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pushctl.errors import UsageError
from pushctl.experiments.run_journal import read_journal
from pushctl.experiments.score import Score, margins_of, score_of

LAST_RUNS = 10
MIN_RUNS = 5
Z_95 = 1.6449  # one-sided 5%
GAP_S = 600.0


# ---- reading --------------------------------------------------------------------------------------
def load_journals(directory: Path) -> list[dict[str, Any]]:
    """Every run journal under `directory` (recursively), oldest first; other JSON files are skipped.

    A missing directory or one without a journal is a usage error (exit 2).
    """
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory of run journals")
    runs = []
    for path in sorted(directory.rglob("*.json")):
        try:
            data = read_journal(path)
        except (OSError, ValueError, TypeError, AttributeError):  # not JSON, or not a journal's shape
            continue
        if isinstance(data, dict) and "run_id" in data and "steady_states" in data:
            runs.append(data)
    if not runs:
        raise UsageError(
            f"{directory}: no run journals in it",
            hint="`pushctl experiment run` writes them under the stack's run directory, experiments/",
        )
    return sorted(runs, key=lambda r: float(r.get("started_at") or 0))


def batches(runs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Journals (oldest first) grouped into library runs: by `batch`, else by time (see the docstring)."""
    groups: list[list[dict[str, Any]]] = []
    by_batch: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        batch = run.get("batch")
        if batch:
            if batch not in by_batch:
                by_batch[batch] = []
                groups.append(by_batch[batch])
            by_batch[batch].append(run)
            continue
        last = groups[-1] if groups else None
        if last is not None and not last[0].get("batch") and _continues(last, run):
            last.append(run)
        else:
            groups.append([run])
    return groups


def _continues(group: list[dict[str, Any]], run: dict[str, Any]) -> bool:
    if any(r.get("file") == run.get("file") for r in group):
        return False
    prev = group[-1]
    ended = float(prev.get("ended_at") or prev.get("started_at") or 0)
    return float(run.get("started_at") or 0) - ended <= GAP_S


# ---- erosion --------------------------------------------------------------------------------------
def theil_sen(values: Sequence[float]) -> float:
    """The median of the slopes between every pair of points (per run)."""
    slopes = [(values[j] - values[i]) / (j - i) for i in range(len(values)) for j in range(i + 1, len(values))]
    return statistics.median(slopes) if slopes else 0.0


def mann_kendall_z(values: Sequence[float]) -> float:
    """The Mann-Kendall statistic as a normal z score (negative: falling), continuity-corrected."""
    n = len(values)
    s = sum((values[j] > values[i]) - (values[j] < values[i]) for i in range(n) for j in range(i + 1, n))
    var = n * (n - 1) * (2 * n + 5) / 18.0
    if s == 0 or var <= 0:
        return 0.0
    return (s - 1) / math.sqrt(var) if s > 0 else (s + 1) / math.sqrt(var)


@dataclass(frozen=True)
class Erosion:
    eroding: bool
    slope: float | None  # margin units per run (Theil-Sen)
    z: float | None
    runs_left: int | None  # at this slope, runs until the margin reaches zero
    judged: int  # how many runs the test looked at
    why: str


def erosion(values: Sequence[float | None], *, last: int = LAST_RUNS, min_runs: int = MIN_RUNS) -> Erosion:
    """Whether the last `last` margins (oldest first; None skipped) fall (see the module docstring)."""
    ys = [float(v) for v in values if v is not None][-last:]
    if len(ys) < min_runs:
        return Erosion(False, None, None, None, len(ys), f"{len(ys)} runs, {min_runs} needed")
    slope = theil_sen(ys)
    z = mann_kendall_z(ys)
    eroding = slope < 0 and z <= -Z_95
    runs_left = math.ceil(ys[-1] / -slope) if eroding and ys[-1] > 0 else (0 if eroding else None)
    if eroding:
        why = f"falling {-slope:.4g} per run over {len(ys)} runs (Mann-Kendall z {z:.2f})"
    else:
        why = f"no downward trend over {len(ys)} runs (z {z:.2f}, slope {slope:+.4g}/run)"
    return Erosion(eroding, slope, z, runs_left, len(ys), why)


# ---- the trend ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    started_at: float
    score: Score
    runs: int


@dataclass
class Series:
    experiment: str
    key: str  # "<phase>: <check title>"
    tolerance: str
    margins: list[float | None] = field(default_factory=list)  # one per library run (None: not run then)
    values: list[Any] = field(default_factory=list)
    fractions: list[float | None] = field(default_factory=list)
    erosion: Erosion | None = None

    @property
    def last(self) -> float | None:
        return next((m for m in reversed(self.margins) if m is not None), None)

    def to_json(self) -> dict[str, Any]:
        e = self.erosion
        return {
            "experiment": self.experiment,
            "check": self.key,
            "tolerance": self.tolerance,
            "margins": self.margins,
            "fractions": self.fractions,
            "values": self.values,
            "eroding": bool(e and e.eroding),
            "slope_per_run": e.slope if e else None,
            "mann_kendall_z": e.z if e else None,
            "runs_left": e.runs_left if e else None,
            "why": e.why if e else None,
        }


@dataclass(frozen=True)
class Trend:
    points: list[Point]
    series: list[Series]
    score_erosion: Erosion

    @property
    def eroding(self) -> list[Series]:
        return [s for s in self.series if s.erosion is not None and s.erosion.eroding]

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": [{"started_at": p.started_at, "experiments": p.runs, **p.score.to_json()} for p in self.points],
            "score_trend": self.score_erosion.__dict__,
            "margins": [s.to_json() for s in self.series],
            "eroding": [s.to_json() for s in self.eroding],
            "method": f"Mann-Kendall (one-sided p < 0.05) and Theil-Sen slope < 0 over the last {LAST_RUNS} runs",
        }


def trend(runs: list[dict[str, Any]], *, last: int = LAST_RUNS) -> Trend:
    """The score per library run and every numeric check's margin across them, erosion judged."""
    groups = batches(runs)
    points = [Point(float(g[0].get("started_at") or 0), score_of(g), len(g)) for g in groups]
    table: dict[tuple[str, str], Series] = {}
    for i, group in enumerate(groups):
        for run in group:
            experiment = str(run.get("title") or run.get("file") or "experiment")
            for m in margins_of(run):
                if m["margin"] is None:
                    continue
                s = table.get((experiment, m["key"]))
                if s is None:
                    s = table[(experiment, m["key"])] = Series(experiment, m["key"], str(m["tolerance"]))
                while len(s.margins) < i:
                    s.margins.append(None)
                    s.values.append(None)
                    s.fractions.append(None)
                if len(s.margins) == i:
                    s.margins.append(m["margin"])
                    s.values.append(m["value"])
                    s.fractions.append(m["fraction"])
    for s in table.values():
        pad = len(groups) - len(s.margins)
        s.margins += [None] * pad
        s.values += [None] * pad
        s.fractions += [None] * pad
        s.erosion = erosion(s.margins, last=last)
    scores = [p.score.value for p in points]
    return Trend(points, sorted(table.values(), key=lambda s: (s.experiment, s.key)), erosion(scores, last=last))


def read_trend_dir(directory: Path) -> Trend:
    """`trend(load_journals(directory))`."""
    return trend(load_journals(directory))


def dumps(t: Trend) -> str:
    return json.dumps(t.to_json(), indent=1, default=str)
