"""Experiments against the real stack: a library experiment passes with its reports; a stop
condition aborts fast and rolls back; Ctrl-C and kill -9 leave a journal and a recoverable target;
one experiment at a time; bad files change nothing.

Sizes are small on purpose (90 devices, 100-150 pushes/s): a clean 2-core CI machine must pass
every time. The whole library runs as CI's resilience gate (see README), not here.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.integration.conftest import REPO, Stack
from tests.integration.test_failover import run_json, wait_baseline

pytestmark = pytest.mark.integration
LIBRARY = REPO / "experiments"


def run_experiment(stack: Stack, target: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return stack.pushctl("experiment", "run", str(target), *stack.confirm, *extra, timeout=timeout)


def journals(stack: Stack) -> list[Path]:
    return sorted((stack.run_dir / "experiments").glob("*.json"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def start(stack: Stack, target: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pushctl.cli.main",
            "--inventory",
            stack.inventory.source,
            "experiment",
            "run",
            str(target),
            *stack.confirm,
        ],
        env=stack.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_journal(
    stack: Stack, proc: subprocess.Popen[str], before: set[Path], *, applied: int, timeout: float = 90
) -> Path:
    """The new run journal, once `applied` method steps have started and been applied."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early ({proc.returncode}): {proc.communicate()}")
        for path in set(journals(stack)) - before:
            try:
                data = json.loads(path.read_text())
            except ValueError:
                continue  # being replaced right now
            steps = [s for s in data["method"] if s.get("journal")]
            if len(steps) >= applied and all(
                json.loads(Path(s["journal"]).read_text())["status"] == "applied" for s in steps[:applied]
            ):
                return path
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("the experiment never reached its applied steps")


# Long enough to be interrupted: a throttle, a drain and a fault, all still applied while it waits.
LONG_RUN = """\
title: long run to interrupt
probe: {devices: 60, rate: 80, grace: 2s}
ledger: {duplicates: 0}
steady_state:
  probes:
    - {measure: delivery_rate, window: 2s, tolerance: {min: 99}}
method:
  - {action: throttle, limit: 1000, duration: 120s, background: true}
  - {action: fault, link: logic-idc2, toxic: latency, attributes: {latency: 20}, duration: 120s, background: true}
  - {action: drain, region: east, spread: 0s}
  - wait: 120s
"""


def test_library_experiment_passes_and_writes_its_reports(stack: Stack, tmp_path: Path) -> None:
    junit, html = tmp_path / "out" / "experiments.xml", tmp_path / "out" / "experiments.html"
    proc = run_experiment(stack, LIBRARY / "redis-outage.yaml", "--junit", str(junit), "--html", str(html))
    assert proc.returncode == 0, proc.stderr[-4000:] + proc.stdout[-4000:]
    suite = ET.parse(junit).getroot().find("testsuite")  # noqa: S314 - our own report
    assert suite is not None and suite.get("name") == "Redis outage with the disk-KV fallback"
    assert suite.get("failures") == "0" and suite.get("errors") == "0" and int(suite.get("tests", "0")) >= 10
    (path,) = journals(stack)[-1:]
    data = json.loads(path.read_text())
    assert data["status"] == "completed" and data["deviated"] is False and data["exit_code"] == 0
    assert data["steady_states"]["before"]["met"] and data["steady_states"]["after"]["met"]
    assert data["steady_states"]["during"]["met"]
    assert {s["status"] for s in data["method"]} == {"ok"} and len(data["method"]) == 5
    assert data["verdict"] == "passed" and data["steady_states"]["run"]["met"]
    assert data["timeline"]["per_second"] and all("p99_ms" in r for r in data["timeline"]["per_second"])
    assert data["windows"][0]["end"] > data["windows"][0]["start"]
    assert {r["ok"] for r in data["rollbacks"]} == {True}
    # the resilience score and the margins (issue 17 item 3): recorded, and in every report
    assert data["batch"] and "resilience score 100.0/100" in " ".join(proc.stdout.split())
    margins = {m["key"]: m for m in data["margins"] if m["margin"] is not None}
    assert margins and all(m["margin"] >= 0 for m in margins.values()), margins
    assert margins["run: nothing lost over the whole run"]["margin"] == 0
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["resilience_score"] == "100.0" and props["weight"] == "3" and props["score_outcome"] == "passed"
    assert 'data-score="100.0"' in html.read_text()
    if shutil.which("chromium"):
        from tests.unit.test_experiment_reports import open_in_chromium

        body, errors = open_in_chromium(html, tmp_path)
        assert 'data-timeline="drawn"' in body and 'data-charts="1"' in body
        assert errors == []
    wait_baseline(stack)


def test_after_a_drain_and_restore_experiment_status_shows_nothing_in_force(stack: Stack, tmp_path: Path) -> None:
    """The restore step ends `completed`, like the single-action runner's: status must not list it
    as a held action until `recover --all` (issue: hardening, item 8)."""
    proc = run_experiment(stack, LIBRARY / "drain-south-and-restore.yaml")
    assert proc.returncode in (0, 8), proc.stderr[-4000:] + proc.stdout[-4000:]
    status = wait_baseline(stack)
    assert status["actions"] == [], status["actions"]


def test_a_stop_condition_aborts_within_two_seconds_and_the_rollbacks_run(stack: Stack, tmp_path: Path) -> None:
    exp = write(
        tmp_path / "slow-logic.yaml",
        """\
title: every push late
probe: {devices: 60, rate: 100, grace: 2s}
ledger: {duplicates: 0}
steady_state:
  probes:
    - {measure: delivery_rate, window: 2s, tolerance: {min: 99}}
method:
  - {action: fault, link: logic-idc1, toxic: latency, attributes: {latency: 1500}, duration: 60s, background: true}
  - {action: fault, link: logic-idc2, toxic: latency, attributes: {latency: 1500}, duration: 60s, background: true}
  - wait: 60s
stop_conditions:
  - {name: delivery collapsed, measure: delivery_rate, window: 1s, tolerance: {min: 90}, for: 0s}
rollbacks:
  - {action: clear-faults, link: logic-idc1}
""",
    )
    started = time.monotonic()
    proc = run_experiment(stack, exp, "--junit", str(tmp_path / "j.xml"))
    # 1; or 8 (inconclusive) when this machine was too busy to tell a slow platform from a slow rig
    assert proc.returncode in (1, 8), proc.stderr[-3000:]
    assert time.monotonic() - started < 50  # not the 60 s of the method
    data = json.loads(journals(stack)[-1].read_text())
    assert data["status"] == "aborted" and "delivery collapsed" in data["error"]
    (stop,) = data["stop_conditions"]
    assert stop["fired"] and stop["worst"] < 90
    undo = [r for r in data["rollbacks"] if r["of"] != "rollbacks"]
    assert len(undo) == 2 and all(r["ok"] for r in undo)
    assert undo[0]["at"] - stop["breached_at"] <= 2.0, (undo[0]["at"], stop)
    assert [r["step"] for r in data["rollbacks"] if r["of"] == "rollbacks"] == ["clear-faults logic-idc1"]
    assert [s["status"] for s in data["method"]] == ["cancelled", "cancelled", "cancelled"]
    report = ET.parse(tmp_path / "j.xml").getroot()  # noqa: S314 - parses the XML this test suite just wrote
    case = report.find(".//testcase[@name='stop condition: delivery collapsed']")
    assert case is not None
    reported = case.find("failure") if proc.returncode == 1 else case.find("skipped")
    assert reported is not None and "delivery_rate" in reported.get("message", "")
    wait_baseline(stack)


def test_ctrl_c_rolls_back_and_the_journal_says_interrupted(stack: Stack, tmp_path: Path) -> None:
    exp = write(tmp_path / "long.yaml", LONG_RUN)
    before = set(journals(stack))
    proc = start(stack, exp)
    path = wait_journal(stack, proc, before, applied=3)
    second = run_experiment(stack, LIBRARY / "redis-outage.yaml")
    assert second.returncode == 6, second.stderr  # one experiment at a time per target
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    data = json.loads(path.read_text())
    assert data["status"] == "interrupted" and data["exit_code"] == 130
    assert len(data["rollbacks"]) == 3 and all(r["ok"] for r in data["rollbacks"])
    for step in data["method"][:3]:
        assert json.loads(Path(step["journal"]).read_text())["status"] == "rolled-back"
    wait_baseline(stack)


def test_sigterm_rolls_back_too(stack: Stack, tmp_path: Path) -> None:
    exp = write(tmp_path / "long.yaml", LONG_RUN)
    before = set(journals(stack))
    proc = start(stack, exp)
    path = wait_journal(stack, proc, before, applied=1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert json.loads(path.read_text())["status"] == "interrupted"
    wait_baseline(stack)


def test_kill_9_then_recover_leaves_no_toxic_policy_or_throttle(stack: Stack, tmp_path: Path) -> None:
    exp = write(tmp_path / "long.yaml", LONG_RUN)
    before = set(journals(stack))
    proc = start(stack, exp)
    path = wait_journal(stack, proc, before, applied=3)
    proc.kill()
    proc.communicate(timeout=30)
    _, status = run_json(stack, "status")
    assert [p["region"] for p in status["policies"]] == ["east"]
    assert status["throttle"]["mode"] == "fixed"
    assert [f["link"] for f in status["faults"]] == ["logic-idc2"]
    report = stack.pushctl("experiment", "report", str(path), "--junit", str(tmp_path / "k.xml"))
    assert report.returncode == 130, report.stderr  # the journal of a killed run reads as interrupted
    code, data = run_json(stack, "recover")
    assert code == 0
    assert sorted(r["action"] for r in data["recovered"]) == ["drain", "fault", "throttle"]
    status = wait_baseline(stack)
    assert status["policies"] == [] and status["faults"] == [] and status["throttle"]["mode"] == "off"


def test_bad_files_exit_2_and_change_nothing(stack: Stack, tmp_path: Path) -> None:
    cases: dict[str, tuple[str, str]] = {
        "bad-yaml": ("title: x\nmethod: [\n", "invalid YAML"),
        "unknown-action": (LONG_RUN.replace("action: drain", "action: meteor"), "method[2].action"),
        "wrong-type": (LONG_RUN.replace("devices: 60", "devices: many"), "probe.devices"),
        "missing-tolerance": (LONG_RUN.replace(", tolerance: {min: 99}", ""), "steady_state.probes[0].tolerance"),
    }
    before = set(journals(stack))
    for name, (text, where) in cases.items():
        proc = run_experiment(stack, write(tmp_path / f"{name}.yaml", text))
        assert proc.returncode == 2, (name, proc.stderr)
        assert where in proc.stderr.replace("\n", "") and "Traceback" not in proc.stderr, proc.stderr
    assert set(journals(stack)) == before  # nothing ran
    wait_baseline(stack)


def test_an_inventory_that_is_not_the_reference_needs_confirmation(stack: Stack, tmp_path: Path) -> None:
    """A copy of the session's inventory marked as not the reference: refused before anything runs."""
    text = Path(stack.inventory.source).read_text().replace("reference = true", "reference = false")
    other = tmp_path / "theirs.toml"
    other.write_text(text)
    before = set(journals(stack))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pushctl.cli.main",
            "--inventory",
            str(other),
            "experiment",
            "run",
            str(LIBRARY / "redis-outage.yaml"),
        ],
        capture_output=True,
        text=True,
        env=stack.env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "--confirm-target" in proc.stderr, proc.stderr
    assert set(journals(stack)) == before
