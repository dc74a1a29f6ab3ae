"""The resilience score, margins and their trend: formula, weights, erosion, and `experiment report --trend`."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import yaml

from pushctl.contract.topology import load_inventory
from pushctl.experiments import check_file, junit_xml, report_html
from pushctl.experiments.model import Tolerance
from pushctl.experiments.run_journal import RunJournal
from pushctl.experiments.score import add_margins, margin, margins_of, score_of
from pushctl.experiments.trend import batches, erosion, theil_sen, trend
from tests.helpers import run_main

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "experiments"
T0 = 1_800_000_000.0


def check(title: str, tolerance: str, value: Any) -> dict[str, Any]:
    ok = Tolerance.model_validate(_tol(tolerance)).holds(value)
    return {"title": title, "kind": "delivery", "tolerance": tolerance, "value": value, "ok": ok, "detail": title}


def _tol(text: str) -> dict[str, Any]:
    op, num = text.split(" ", 1)
    if op == "==":
        return {"equals": num}
    return {">=": {"min": float(num)}, "<=": {"max": float(num)}}[op]


def run(
    title: str, code: int, *, weight: float | None = None, verdict: str | None = None, **extra: Any
) -> dict[str, Any]:
    exp: dict[str, Any] = {} if weight is None else {"weight": weight}
    return {
        "title": title,
        "file": f"experiments/{title}.yaml",
        "run_id": title,
        "status": "completed" if code in (0, 8) else "failed",
        "exit_code": code,
        "verdict": verdict or ("passed" if code == 0 else "failed"),
        "experiment": exp,
        "steady_states": {},
        **extra,
    }


# ---- margins --------------------------------------------------------------------------------------
def test_margin_is_signed_distance_from_the_limit_in_units_and_as_a_fraction() -> None:
    m = margin(">= 99.9", 100.0)
    assert m is not None and m.units == pytest.approx(0.1) and m.fraction == pytest.approx(0.1 / 99.9)
    m = margin("<= 500", 120)
    assert m is not None and m.units == 380 and m.fraction == pytest.approx(0.76) and m.limit == "max"
    m = margin("<= 500", 650)  # outside: negative
    assert m is not None and m.units == -150
    m = margin("in [10, 20]", 12)
    assert m is not None and m.units == 2 and m.fraction == pytest.approx(0.4)
    m = margin("<= 0", 0)  # nothing lost: exactly at the limit, no fraction of zero
    assert m is not None and m.units == 0 and m.fraction is None
    assert margin("== redis", "redis") is None and margin(">= 1", None) is None and margin(">= 1", True) is None


def test_every_tolerance_of_the_library_has_its_margin_read_back_from_its_description() -> None:
    """`margin` reads `Tolerance.describe()`'s text: every numeric tolerance in the library must parse."""
    seen = 0
    for path in sorted(LIBRARY.glob("*.yaml")):
        for tol in _tolerances(yaml.safe_load(path.read_text())):
            t = Tolerance.model_validate(tol)
            if t.equals is not None:
                continue
            inside = t.min if t.min is not None else t.max
            assert margin(t.describe(), inside) is not None, (path.name, t.describe())
            seen += 1
    assert seen > 30


def _tolerances(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node["tolerance"]] if isinstance(node.get("tolerance"), dict) else []
        return found + [t for v in node.values() for t in _tolerances(v)]
    if isinstance(node, list):
        return [t for v in node for t in _tolerances(v)]
    return []


def test_margins_cover_every_phase_method_probes_and_stop_conditions_worst_value() -> None:
    data = run(
        "x",
        0,
        steady_states={
            "before": {"checks": [check("delivery_rate >= 99.9", ">= 99.9", 100.0)]},
            "run": {"checks": [check("nothing lost", "<= 0", 0)]},
        },
        method=[{"kind": "probe", "output": check("p99 <= 500", "<= 500", 200.0)}],
        stop_conditions=[{"name": "collapse", "tolerance": ">= 50", "value": 100.0, "worst": 70.0, "fired": False}],
    )
    add_margins(data)
    by_key = {m["key"]: m for m in data["margins"]}
    assert by_key["before: delivery_rate >= 99.9"]["margin"] == pytest.approx(0.1)
    assert by_key["run: nothing lost"]["margin"] == 0
    assert by_key["method: p99 <= 500"]["margin"] == 300
    assert by_key["stop: collapse"]["margin"] == 20  # the worst value, not the last
    assert data["steady_states"]["before"]["checks"][0]["margin"]["units"] == pytest.approx(0.1)


# ---- the score ------------------------------------------------------------------------------------
def test_the_score_is_the_weighted_share_of_passed_runs() -> None:
    """A defect that ignores weights gives 50 here, not 75."""
    s = score_of([run("a", 0, weight=3), run("b", 1, weight=1)])
    assert s.value == 75.0 and s.passed_weight == 3 and s.counted_weight == 4
    assert score_of([run("a", 0), run("b", 1), run("c", 1), run("d", 0)]).value == 50.0  # default weight 1
    assert score_of([run("a", 7, weight=2), run("b", 0)]).value == pytest.approx(33.3)  # a failed rollback fails


def test_inconclusive_and_unjudged_runs_are_left_out_and_listed_apart() -> None:
    runs = [
        run("a", 0, weight=2),
        run("b", 8, weight=5, verdict="inconclusive", inconclusive=["the rig lagged 2.1 s"]),
        run("c", 130, weight=5),
        run("d", 4, weight=5),
        {**run("e", 0, weight=5), "status": "running", "exit_code": None},  # a journal read mid-run
    ]
    s = score_of(runs)
    assert s.value == 100.0 and s.counted_weight == 2
    assert [(e.title, e.outcome) for e in s.apart] == [
        ("b", "inconclusive"),
        ("c", "not judged"),
        ("d", "not judged"),
        ("e", "not judged"),
    ]
    assert "the rig lagged" in s.apart[0].reason
    none = score_of([run("b", 8, verdict="inconclusive")])
    assert none.value is None and "n/a" in none.text()  # nothing judged is not 100


def test_junit_suites_carry_weight_outcome_and_the_score() -> None:
    xml = junit_xml([run("a", 0, weight=3), run("b", 1), run("c", 8, verdict="inconclusive")])
    suites = ET.fromstring(xml).findall("testsuite")  # noqa: S314 - our own output
    props = [{p.get("name"): p.get("value") for p in s.iter("property")} for s in suites]
    assert [p["weight"] for p in props] == ["3", "1", "1"]
    assert [p["score_outcome"] for p in props] == ["passed", "failed", "inconclusive"]
    assert {p["resilience_score"] for p in props} == {"75.0"}


def test_the_html_report_shows_the_score_the_runs_left_out_and_each_margin() -> None:
    a = run("a", 0, weight=3, steady_states={"after": {"checks": [check("p99 <= 500", "<= 500", 120.0)]}})
    page = report_html([a, run("b", 1), run("c", 8, verdict="inconclusive", inconclusive=["rig slow"])])
    assert 'data-score="75.0"' in page and "Resilience score: 75.0/100" in page
    assert "Left out of the score" in page and "rig slow" in page
    assert re.search(r"<td>p99 &lt;= 500</td><td>&lt;= 500</td><td>120.0</td><td class=ok>\+380</td>", page)


def test_weight_is_validated_with_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = re.sub(r"(?m)^weight: .*\n", "", (LIBRARY / "redis-outage.yaml").read_text())
    for bad, message in (("0", "greater than 0"), ("101", "less than or equal to 100"), ("heavy", "valid number")):
        path = tmp_path / "w.yaml"
        path.write_text(re.sub(r"(?m)^(title: .*)$", rf"\1\nweight: {bad}", base, count=1))
        problems, _ = check_file(path)
        assert [(p.line, p.path) for p in problems] == [(3, "weight")] and message in problems[0].message
        code, _out, err = run_main(monkeypatch, "experiment", "validate", str(path))
        assert code == 2 and "Traceback" not in err and "w.yaml:3: weight:" in err
    path.write_text(re.sub(r"(?m)^(title: .*)$", r"\1\nweight: 2.5", base, count=1))
    problems, loaded = check_file(path)
    assert not problems and loaded is not None and loaded.experiment.weight == 2.5


# ---- erosion --------------------------------------------------------------------------------------
ERODING = [0.40, 0.38, 0.39, 0.35, 0.33, 0.34, 0.30, 0.28, 0.27, 0.25]  # still passing, losing ~0.017 a run
FLAT_NOISY = [0.31, 0.27, 0.33, 0.29, 0.30, 0.26, 0.32, 0.30, 0.28, 0.31]


def test_a_slowly_eroding_margin_is_flagged_while_still_passing() -> None:
    e = erosion(ERODING)
    assert e.eroding and e.slope is not None and e.slope < 0 and e.runs_left is not None and 10 <= e.runs_left <= 20
    assert all(m > 0 for m in ERODING)


def test_a_flat_noisy_margin_and_a_rising_one_are_not_flagged() -> None:
    """A defect that judges the series reversed (newest first) flags the rising one."""
    assert not erosion(FLAT_NOISY).eroding
    assert not erosion(list(reversed(ERODING))).eroding
    assert not erosion([0.0] * 10).eroding  # `lost <= 0`, always at its limit


def test_too_few_runs_are_not_judged_and_one_bad_run_does_not_make_a_trend() -> None:
    assert not erosion(ERODING[:4]).eroding and "needed" in erosion(ERODING[:4]).why
    spike = [0.3, 0.31, 0.29, 0.3, 0.02, 0.3, 0.31, 0.29, 0.3, 0.3]
    assert not erosion(spike).eroding
    assert theil_sen([1.0, 2.0, 3.0, 4.0, 100.0, 6.0, 7.0]) == pytest.approx(1.0)  # robust to the outlier


def test_erosion_false_alarms_are_rare_and_real_erosion_under_noise_is_caught() -> None:
    rng = random.Random(17)
    flat = sum(erosion([0.3 + rng.gauss(0, 0.03) for _ in range(10)]).eroding for _ in range(400))
    falling = sum(erosion([0.3 - 0.02 * i + rng.gauss(0, 0.02) for i in range(10)]).eroding for _ in range(400))
    assert flat <= 0.08 * 400, flat  # a 5% test, with slack
    assert falling >= 0.9 * 400, falling


# ---- the trend across journals --------------------------------------------------------------------
def test_journals_group_into_library_runs_by_batch_else_by_time() -> None:
    def j(file: str, at: float, batch: str | None = None) -> dict[str, Any]:
        return {"file": file, "started_at": at, "ended_at": at + 30, "batch": batch}

    grouped = batches([j("a", 0, "b1"), j("b", 40, "b1"), j("a", 100), j("b", 140), j("a", 180), j("b", 5000)])
    assert [[r["file"] for r in g] for g in grouped] == [["a", "b"], ["a", "b"], ["a"], ["b"]]


def write_journals(directory: Path, runs: int) -> None:
    """Library runs of two experiments through the real journal writer: p99 creeps up, delivery stays flat."""
    inv = load_inventory(REPO / "stack" / "topology.toml")
    rng = random.Random(3)
    for i in range(runs):
        batch = f"batch-{i}"
        for title, weight, p99 in (("Redis outage", 3.0, 150.0 + 30 * i), ("IDC switch", 1.0, 180 + rng.gauss(0, 10))):
            path = directory / f"{i:02d}-{title.replace(' ', '-')}.json"
            j = RunJournal.create(inv, f"experiments/{title}.yaml", {"title": title, "weight": weight}, path=path)
            j.data["batch"] = batch
            j.data["started_at"] = T0 + 3600 * i
            ok = not (title == "IDC switch" and i == runs - 1)  # the last run of the IDC switch fails
            rate = 100.0 if ok else 97.0
            j.data["steady_states"]["after"] = {
                "checks": [check("delivery_rate >= 99.9", ">= 99.9", rate), check("p99 <= 500", "<= 500", p99)]
            }
            j.data["verdict"] = "passed" if ok else "failed"
            add_margins(j.data)
            j.finish("completed" if ok else "failed", deviated=not ok, exit_code=0 if ok else 1)
    (directory / "notes.json").write_text('{"not": "a journal"}')


def test_report_trend_draws_the_score_and_flags_the_eroding_margin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_journals(tmp_path / "j", 8)
    page = tmp_path / "trend.html"
    code, out, err = run_main(monkeypatch, "experiment", "report", "--trend", str(tmp_path / "j"), "--html", str(page))
    assert code == 0, err
    text = " ".join(out.split())
    assert "100.0/100" in text and "75.0/100" in text  # the last run: weight 3 passed of 4
    assert "eroding margins" in out and "Redis outage" in out and "after: p99 <= 500" in out
    eroding_table, outside_table = out.split("eroding margins")[1].split("outside their tolerance in the last run", 1)
    assert "IDC switch" not in eroding_table  # its one bad run is no trend ...
    assert "IDC switch" in outside_table and "after: delivery_rate >= 99.9" in outside_table  # ... but shows
    assert "1 eroding, 1 outside their tolerance in the last run, 2 steady" in text
    html = page.read_text()
    assert 'data-eroding="1"' in html and 'data-runs="8"' in html and html.count('class="margin eroding"') == 1
    assert "<script" not in html and "http" not in html.replace("http://www.w3.org/2000/svg", "")

    code, out, _ = run_main(monkeypatch, "experiment", "report", "--trend", str(tmp_path / "j"), "--json")
    data = json.loads(out)
    assert code == 0 and [r["score"] for r in data["runs"]] == [100.0] * 7 + [75.0]
    assert [(e["experiment"], e["check"]) for e in data["eroding"]] == [("Redis outage", "after: p99 <= 500")]
    assert data["eroding"][0]["margins"][0] == 350 and data["eroding"][0]["runs_left"] >= 1


def test_the_trend_reads_journals_written_before_margins_were_recorded(tmp_path: Path) -> None:
    write_journals(tmp_path, 6)
    runs = []
    for path in sorted(tmp_path.glob("0*.json")):
        data = json.loads(path.read_text())
        for key in ("margins", "batch"):
            data.pop(key, None)
        for c in data["steady_states"]["after"]["checks"]:
            c.pop("margin", None)
        data["ended_at"] = data["started_at"] + 60
        runs.append(data)
    t = trend(sorted(runs, key=lambda r: r["started_at"]))
    assert len(t.points) == 6 and [s.key for s in t.eroding] == ["after: p99 <= 500"]


@pytest.mark.parametrize("setup", ["missing", "empty", "not-journals", "a-file"])
def test_report_trend_on_a_bad_dir_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str
) -> None:
    target = tmp_path / "d"
    if setup != "missing":
        target.mkdir()
    if setup == "not-journals":
        (target / "x.json").write_text("[1, 2]")
        (target / "y.json").write_text("{broken")
    if setup == "a-file":
        target = tmp_path / "d" / "f.json"
        target.write_text("{}")
    code, out, err = run_main(monkeypatch, "experiment", "report", "--trend", str(target))
    assert code == 2 and "Traceback" not in err and out == ""
    assert re.search(r"error: .*(not a directory of run journals|no run journals in it)", err), err


def test_report_without_journals_or_trend_is_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_main(monkeypatch, "experiment", "report")
    assert code == 2 and "JOURNAL" in err and "Traceback" not in err


def test_margins_of_a_journal_without_numeric_checks_is_empty_of_margins() -> None:
    data = run("x", 0, steady_states={"after": {"checks": [check("mode", "== redis", "redis")]}})
    assert [m["margin"] for m in margins_of(data)] == [None]


def test_the_html_report_shows_a_connection_faults_affected_and_unaffected_ledgers() -> None:
    ledgers = {
        "affected": {"devices": 27, "sent": 400, "on_time": 396, "late": 1, "lost": 3, "duplicates": 0},
        "unaffected": {"devices": 63, "sent": 900, "on_time": 900, "late": 0, "lost": 0, "duplicates": 0},
    }
    step = {"index": 0, "label": "connections north", "kind": "action", "status": "deviated",
            "output": {"region": "north", "affected": 27, "cohorts": ledgers}}  # fmt: skip
    page = report_html([run("drop", 1, method=[step])])
    rows = re.findall(r"<tr class=ledger data-cohort=(\w+)>(.*?)</tr>", page)
    cells = {name: re.findall(r"<td[^>]*>(.*?)</td>", row)[1:] for name, row in rows}
    assert cells["affected"] == ["affected", "27", "400", "396", "1", "3", "0", "99.000%"]
    assert cells["unaffected"] == ["unaffected", "63", "900", "900", "0", "0", "0", "100.000%"]
    assert "<tr class=ledger" not in report_html([run("plain", 0)])  # no connection fault, no table


def test_every_library_experiment_declares_its_weight() -> None:
    weights = {p.name: yaml.safe_load(p.read_text()).get("weight") for p in sorted(LIBRARY.glob("*.yaml"))}
    assert len(weights) >= 17 and all(isinstance(w, int | float) and 0 < w <= 100 for w in weights.values()), weights
    assert weights["redis-outage.yaml"] == 3 and weights["idc-switch.yaml"] == 1  # failure domains weigh more
