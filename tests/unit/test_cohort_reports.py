"""Cohorts in the reports: JUnit properties and testcases, both cohort lines drawn by a real browser."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from pushctl.experiments import junit_xml, write_html
from pushctl.experiments.cohorts import cohort_checks, cohort_series, compare
from pushctl.experiments.model import CohortSettings
from tests.unit.test_cohorts import _FakeProbe
from tests.unit.test_experiment_reports import journal, open_in_chromium


def cohort_journal(late_control: int, late_experiment: int, settings: CohortSettings) -> dict[str, Any]:
    probe = _FakeProbe(late_control, late_experiment)
    cmp = compare(probe, since=0, until=1e12, confidence=0.95)
    results = cohort_checks(cmp, settings, at=time.time())
    run = journal()
    run["cohorts"] = {**cmp.to_json(), "series": cohort_series(probe)}
    run["steady_states"]["cohorts"] = {
        "title": "control vs experiment cohorts",
        "met": all(r.ok for r in results),
        "checks": [r.to_json() for r in results],
    }
    return run


def test_junit_carries_both_cohorts_the_difference_and_a_failed_tolerance() -> None:
    run = cohort_journal(0, 20, CohortSettings(max_cost=1.0))
    suite = ET.fromstring(junit_xml([run])).find("testsuite")  # noqa: S314 - our own XML
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["cohorts.control.delivery_rate"] == "100.0"
    assert props["cohorts.experiment.delivery_rate"] == "98.0"
    assert props["cohorts.cost_points"] is not None and float(props["cohorts.cost_points"]) == pytest.approx(2.0)
    assert "the fault cost 2.00 points ± " in (props["cohorts.verdict"] or "")
    cases = {c.get("name"): c for c in suite.iter("testcase") if (c.get("classname") or "").endswith(".cohorts")}
    failed = [n for n, c in cases.items() if c.find("failure") is not None]
    assert failed == ["cohorts: the fault cost at most 1 points of delivery (95% confidence)"]


@pytest.mark.timeout(120)
def test_the_html_report_draws_both_cohort_lines(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    write_html([cohort_journal(0, 20, CohortSettings(max_cost=1.0))], page)
    dom, console = open_in_chromium(page, tmp_path)
    assert console == []
    assert 'data-timeline="drawn"' in dom
    assert 'class="cohort-line cohort-control"' in dom and 'class="cohort-line cohort-experiment"' in dom
    assert dom.count('class="cohort-row"') == 2
    assert re.search(r"the fault cost 2\.00 points ± \d\.\d\d", dom)
