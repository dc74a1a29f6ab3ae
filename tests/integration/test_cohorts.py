"""Cohorts on the real stack: a fault on the experiment cohort's device links reaches that cohort only,
and the same fault on the control cohort's links (the wrong proxies) fails the checks meant to catch it."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, Stack

pytestmark = pytest.mark.integration
LIBRARY_FILE = REPO / "experiments" / "cohort-slow-carrier.yaml"


def _run(stack: Stack, path: Path, *extra: str) -> tuple[int, str, dict[str, Any]]:
    proc = stack.pushctl("experiment", "run", str(path), *stack.confirm, "--no-live", *extra, timeout=180)
    runs = sorted((stack.run_dir / "experiments").glob("*.json"), key=lambda p: p.stat().st_mtime)
    return proc.returncode, proc.stdout + proc.stderr, json.loads(runs[-1].read_text())


def _checks(journal: dict[str, Any]) -> dict[str, bool]:
    return {c["title"]: c["ok"] for c in journal["steady_states"]["cohorts"]["checks"]}


@pytest.mark.timeout(240)
def test_a_slow_carrier_costs_the_experiment_cohort_only(stack: Stack, tmp_path: Path) -> None:
    junit = tmp_path / "cohorts.xml"
    code, out, journal = _run(stack, LIBRARY_FILE, "--junit", str(junit), "--html", str(tmp_path / "c.html"))
    assert code in (0, 8), out[-4000:]  # 8: inconclusive, the machine was too busy to judge lateness
    cohorts = journal["cohorts"]
    assert cohorts["control"]["devices"] == cohorts["experiment"]["devices"] == 45
    assert cohorts["cost_ci"][0] >= 10, cohorts["verdict"]  # the fault reached the experiment cohort
    assert cohorts["control"]["lost"] == cohorts["experiment"]["lost"] == 0
    assert "the fault cost " in out and " points ± " in out
    checks = _checks(journal)
    assert all(ok for title, ok in checks.items() if not title.startswith("the control cohort")), checks
    props = {p.get("name") for p in ET.parse(junit).getroot().iter("property")}  # noqa: S314 - our own report
    assert {"cohorts.cost_points", "cohorts.cost_ci", "cohorts.control.delivery_rate"} <= props


@pytest.mark.timeout(240)
def test_the_fault_on_the_control_cohorts_links_fails_the_control_check(stack: Stack, tmp_path: Path) -> None:
    """The planted defect: the same experiment with the fault on the wrong proxies (device-south, the
    control cohort's link, not device-south-x)."""
    wrong = tmp_path / "wrong-proxies.yaml"
    text = LIBRARY_FILE.read_text()
    assert "    cohort: experiment\n" in text
    wrong.write_text(text.replace("    cohort: experiment\n", ""))
    code, out, journal = _run(stack, wrong)
    assert code == 1, out[-4000:]
    checks = _checks(journal)
    control = next(ok for title, ok in checks.items() if title.startswith("the control cohort was unaffected"))
    reached = next(ok for title, ok in checks.items() if title.startswith("the fault reached"))
    assert not control and not reached, checks
    assert journal["cohorts"]["cost_points"] < 0  # the control cohort paid instead
