"""Reports from run journals: JUnit counts and messages; the HTML report drawn by a real browser."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from pushctl.experiments import junit_xml, report_html, write_html

T0 = 1_800_000_000.0


def check(title: str, ok: bool, value: float) -> dict[str, Any]:
    return {
        "title": title,
        "kind": "delivery",
        "tolerance": ">= 99.9",
        "value": value,
        "ok": ok,
        "detail": f"delivery_rate = {value} (want >= 99.9) over 450 messages",
        "at": T0,
    }


def journal(**changes: Any) -> dict[str, Any]:
    """A run journal as the runner writes it (the fields the reports read)."""
    rows = [
        {
            "t": t,
            "sent": 150,
            "on_time": 150 if t not in (9, 10) else 120,
            "late": 0 if t not in (9, 10) else 30,
            "lost": 0,
            "delivery_rate": 100.0 if t not in (9, 10) else 80.0,
            "p50_ms": 12.0,
            "p99_ms": 40.0 + t,
        }
        for t in range(20)
    ]
    data: dict[str, Any] = {
        "title": "Redis outage",
        "file": "experiments/redis-outage.yaml",
        "journal_path": "run/j.json",
        "run_id": "r1",
        "inventory": "reference",
        "started_at": T0,
        "duration_s": 21.5,
        "status": "completed",
        "deviated": False,
        "exit_code": 0,
        "error": None,
        "experiment": {"steady_state": {"probes": [{}], "during": [{}]}, "stop_conditions": [{}]},
        "steady_states": {
            "before": {"met": True, "checks": [check("delivery_rate >= 99.9", True, 100.0)]},
            "during": {"met": True, "checks": [check("lost <= 0", True, 0)]},
            "after": {"met": True, "checks": [check("delivery_rate >= 99.9", True, 100.0)]},
            "run": {"met": True, "checks": [check("nothing lost over the whole run", True, 0)]},
        },
        "method": [
            {
                "index": 0,
                "label": "fail-redis down for 6s",
                "kind": "action",
                "background": False,
                "started_at": T0 + 7,
                "ended_at": T0 + 13,
                "status": "ok",
                "output": {"mode": "down"},
            }
        ],
        "stop_conditions": [
            {
                "name": "delivery collapsed",
                "tolerance": ">= 90",
                "for_s": 1.0,
                "evaluations": 12,
                "fired": False,
                "breached_at": None,
                "fired_at": None,
                "value": 100.0,
                "worst": None,
                "detail": "delivery_rate = 100",
            }
        ],
        "rollbacks": [{"step": "revert link cache", "of": "fail-redis", "ok": True, "detail": "reverted"}],
        "windows": [{"label": "fail-redis down for 6s", "step": 0, "start": T0 + 7, "end": T0 + 13}],
        "timeline": {"t0": T0, "deadline_s": 1.0, "per_second": rows, "connections": []},
        "summary": {"sent": 3000, "on_time": 2940, "late": 60, "lost": 0, "delivery_rate": 98.0},
    }
    data.update(changes)
    return data


def suites(xml: str) -> list[ET.Element]:
    return ET.fromstring(xml).findall("testsuite")  # noqa: S314 - our own output


def test_junit_has_a_testcase_per_check_and_stop_condition() -> None:
    (suite,) = suites(junit_xml([journal()]))
    names = [c.get("name") for c in suite.findall("testcase")]
    assert names == [
        "steady state before: delivery_rate >= 99.9",
        "steady state during the method: lost <= 0",
        "steady state after: delivery_rate >= 99.9",
        "the whole run's ledger: nothing lost over the whole run",
        "stop condition: delivery collapsed",
        "method",
        "rollback",
    ]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "7",
        "0",
        "0",
        "0",
    )


def test_junit_has_a_testcase_per_verified_claim_of_an_action() -> None:
    run = journal(status="failed", exit_code=1, deviated=True)
    run["method"][0]["checks"] = [
        {"ok": True, "check": "the access tier switched to fallback storage (0.2s after the fault)"},
        {"ok": False, "check": "storage still on the fallback 20s after rollback"},
    ]
    run["method"][0]["status"] = "deviated"
    (suite,) = suites(junit_xml([run]))
    claims = [c for c in suite.findall("testcase") if "verify" in (c.get("name") or "")]
    assert len(claims) == 2
    (failed,) = [c for c in claims if c.find("failure") is not None]
    assert "still on the fallback" in (failed.find("failure").get("message") or "")  # type: ignore[union-attr]


def test_an_inconclusive_run_skips_its_missed_timing_checks_with_the_rigs_reasons() -> None:
    """Inconclusive is not failed (no failure element), and not passed either (skipped, with why)."""
    run = journal(status="completed", exit_code=8, verdict="inconclusive",
                  inconclusive=["the probe's event loop lagged 640 ms (limit 250 ms)"])  # fmt: skip
    run["steady_states"]["during"]["checks"][0] = check("delivery_rate >= 99.9", False, 97.5)
    (suite,) = suites(junit_xml([run]))
    assert suite.find(".//failure") is None
    (skipped,) = suite.findall(".//skipped")
    assert "inconclusive" in (skipped.get("message") or "") and "640 ms" in (skipped.get("message") or "")
    assert "97.5" in (skipped.get("message") or "")


def test_junit_failures_carry_the_numbers() -> None:
    run = journal(status="aborted", exit_code=1, error="stop condition fired")
    run["stop_conditions"][0].update(fired=True, worst=12.5, detail="delivery_rate = 12.5 (want >= 90) over 100")
    run["steady_states"]["after"] = None
    run["steady_states"]["before"]["checks"][0] = check("delivery_rate >= 99.9", False, 97.25)
    suite, _ = suites(junit_xml([run, journal(title="second")]))
    failures = {f.get("type"): f.get("message") for f in suite.iter("failure")}
    assert "97.25" in str(failures["HypothesisDeviated"])
    assert "12.5" in str(failures["StopConditionFired"]) and ">= 90" in str(failures["StopConditionFired"])
    assert suite.get("failures") == "2" and suite.get("skipped") == "1"  # `after` was never evaluated
    root = ET.fromstring(junit_xml([run, journal(title="second")]))  # noqa: S314 - parses the XML this test suite just wrote
    assert root.get("tests") == str(int(suite.get("tests", "0")) + 7)


def test_junit_reports_a_failed_rollback_and_an_interrupted_run() -> None:
    run = journal(status="interrupted", exit_code=7, error="interrupted by SIGINT")
    run["rollbacks"][0].update(ok=False, detail="toxiproxy unreachable")
    (suite,) = suites(junit_xml([run]))
    assert suite.find(".//failure[@type='RollbackFailed']") is not None
    assert suite.find(".//error[@type='Interrupted']") is not None


def test_html_is_self_contained_and_escapes_what_it_shows() -> None:
    page = report_html([journal(title="<script>alert(1)</script>", error="a </script> b")])
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from anywhere
    assert page.count("<script") == 2  # the data and the drawing code


# ---- in a real browser ---------------------------------------------------------------------------
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (./dev setup installs it: apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and every console message (we log none)."""
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    return proc.stdout, console


@pytest.mark.timeout(120)
def test_the_report_renders_in_chromium_without_errors_and_draws_the_timeline(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    write_html([journal(), journal(title="aborted one", status="aborted", exit_code=1)], page)
    dom, console = open_in_chromium(page, tmp_path)
    assert console == []
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None and 'data-timeline="drawn"' in body.group(0) and 'data-charts="2"' in body.group(0)
    assert "data-error" not in body.group(0)
    assert dom.count('class="rate-line"') == 2 and dom.count('class="fault-window"') == 2
    path = re.search(r'class="rate-line"[^>]*d="([^"]+)"|d="([^"]+)"[^>]*class="rate-line"', dom)
    assert path is not None and (path.group(1) or path.group(2)).count("L") == 19  # one point per second


@pytest.mark.timeout(120)
def test_the_browser_check_catches_a_broken_report(tmp_path: Path) -> None:
    broken = copy.deepcopy(journal())
    page = tmp_path / "broken.html"
    page.write_text(report_html([broken]).replace('JSON.parse(document.getElementById("runs")', "JSON.parse((null)"))
    dom, console = open_in_chromium(page, tmp_path)
    assert console, "a script error must show up on the console"
    assert 'data-timeline="drawn"' not in dom


def test_the_terminal_result_shows_checks_stop_conditions_and_the_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from pushctl import render

    out = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=out, width=160, color_system=None))
    run = journal(status="aborted", exit_code=1, error="stop condition 'delivery collapsed' fired")
    run["stop_conditions"][0]["fired"] = True
    render.experiment_result(run)
    render.experiment_totals([run, journal()])
    text = out.getvalue()
    assert "delivery_rate = 100.0 (want >= 99.9)" in text and "FIRED" in text
    assert "ABORTED (exit 1)" in text and "PASSED" in text and "1 of 2 passed" in text
    assert "▁" in render.sparkline([90.0, 99.95, None]) and "·" in render.sparkline([None])
