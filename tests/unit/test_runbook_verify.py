"""`runbook verify` against a scripted runner: step order, expectations, stop on failure, restore always.

The integration tests run the same Verifier against the real stack; here each command's result is
scripted, and the live status the baseline check reads is a fake.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pushctl.contract.topology import Inventory, load_inventory
from pushctl.runbooks import Finished, Verifier, baseline_problems, load_runbook
from pushctl.runbooks import verify as verify_mod
from pushctl.runbooks.junit import write_junit
from pushctl.runbooks.model import Problem
from pushctl.runbooks.runner import CommandRunner
from tests.helpers import run_main

BASELINE: dict[str, Any] = {
    "policies": [],
    "faults": [],
    "actions": [],
    "throttle": {"mode": "off"},
    "storage": {"mode": "redis"},
    "routing": {"weights": {"idc1": 50.0, "idc2": 50.0}},
    "regions": {"north": {"healthy": True, "drained": False}},
    "connections": {"north": {"count": 0}},
}

RUNBOOK = """---
id: case
title: case
severity: SEV3
experiment: redis-outage
owner: me
failure:
  - pushctl fail redis --mode down --hold --no-probe --duration 1s
---
## Symptoms
`pushstack_access_storage_fallback`
## Impact
## Diagnose
```pushctl
pushctl status
# expect: storage.mode == "fallback"
```
## Mitigate
```pushctl
pushctl slo check --duration 3s
# expect: exit 1
```
## Verify
```pushctl
pushctl probe run --duration 3s --json
# expect: lost == 0
```
## Roll back
```pushctl
pushctl heal redis
```
## Escalate
"""


class FakeRunner(CommandRunner):
    """Answers each command from `script` (first matching prefix); records what ran."""

    timeout = 60.0

    def __init__(self, script: dict[str, Callable[[], Finished] | Finished]) -> None:
        self.script = script
        self.ran: list[str] = []

    def run(self, words: Sequence[str]) -> Finished:
        line = " ".join(words)
        self.ran.append(line)
        for prefix, answer in self.script.items():
            if line.startswith(prefix):
                return answer() if callable(answer) else answer
        return Finished(0, "{}", "")


def ok_json(data: dict[str, Any], code: int = 0) -> Finished:
    return Finished(code, json.dumps(data), "")


@pytest.fixture
def inv(monkeypatch: pytest.MonkeyPatch) -> Inventory:
    monkeypatch.delenv("PUSHCTL_INVENTORY", raising=False)
    return load_inventory()


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The status the baseline check sees; tests change it to model leftovers."""
    state: dict[str, Any] = {"status": json.loads(json.dumps(BASELINE))}

    async def live_status(inv: Inventory) -> dict[str, Any]:
        status: dict[str, Any] = state["status"]
        return status

    async def check_platform(inv: Inventory) -> None:
        return None

    monkeypatch.setattr(verify_mod, "live_status", live_status)
    monkeypatch.setattr(verify_mod, "check_platform", check_platform)
    monkeypatch.setattr("pushctl.runbooks.verify.time.sleep", lambda s: None)
    return state


def runbook(tmp_path: Path, text: str = RUNBOOK) -> Any:
    path = tmp_path / "case.md"
    path.write_text(text)
    return load_runbook(path)


def passing_script() -> dict[str, Callable[[], Finished] | Finished]:
    return {
        "status": ok_json({"storage": {"mode": "fallback"}}),
        "slo check": Finished(1, "", "error: SLO breached"),
        "probe run": ok_json({"lost": 0}),
    }


def test_steps_run_in_order_and_the_baseline_is_restored(tmp_path: Path, inv: Inventory, live: Any) -> None:
    runner = FakeRunner(passing_script())
    report = Verifier(inv, runner, baseline_timeout=0).verify_all([(runbook(tmp_path), [])])
    result = report.results[0]
    assert report.passed, [s.to_json() for s in result.steps]
    assert runner.ran == [
        "fail redis --mode down --hold --no-probe --duration 1s",
        "status --json",  # --json added: the expectation reads a JSON path
        "slo check --duration 3s",  # `exit 1` needs no JSON
        "probe run --duration 3s --json",  # already there: not added twice
        "heal redis",
        "recover --all --json",  # always last; no fault left, so no `fault clear`
    ]
    assert [s.phase for s in result.steps] == [
        "baseline", "failure", "Diagnose", "Mitigate", "Verify", "Roll back", "restore", "restore",
    ]  # fmt: skip
    assert result.baseline_restored is True


def test_a_false_expectation_fails_at_its_line_and_still_restores(tmp_path: Path, inv: Inventory, live: Any) -> None:
    script = passing_script()
    script["status"] = ok_json({"storage": {"mode": "redis"}})  # the fallback never engaged
    runner = FakeRunner(script)
    rb = runbook(tmp_path)
    report = Verifier(inv, runner, baseline_timeout=0).verify_all([(rb, [])])
    result = report.results[0]
    assert not report.passed
    failed = result.failed_step
    assert failed is not None and failed.phase == "Diagnose"
    expect_line = RUNBOOK.splitlines().index('# expect: storage.mode == "fallback"') + 1
    assert [(c.line, c.ok, c.found) for c in failed.checks if not c.ok] == [
        (expect_line, False, 'storage.mode = "redis"')
    ]
    assert '"mode": "redis"' in failed.output
    assert [s.status for s in result.steps if s.phase in ("Mitigate", "Verify", "Roll back")] == ["skipped"] * 3
    assert runner.ran[-1] == "recover --all --json" and "heal redis" not in runner.ran
    assert result.baseline_restored is True


def test_a_nonzero_exit_fails_when_no_exit_is_expected(tmp_path: Path, inv: Inventory, live: Any) -> None:
    script = passing_script()
    script["probe run"] = Finished(4, "", "error: target unreachable")
    report = Verifier(inv, FakeRunner(script), baseline_timeout=0).verify_all([(runbook(tmp_path), [])])
    failed = report.results[0].failed_step
    assert failed is not None and failed.exit_code == 4
    assert "error: target unreachable" in failed.output


def test_lint_errors_never_touch_the_stack(tmp_path: Path, inv: Inventory, live: Any) -> None:
    runner = FakeRunner(passing_script())
    report = Verifier(inv, runner).verify_all([(runbook(tmp_path), [Problem(12, "bad")])])
    assert runner.ran == [] and not report.passed


def test_leftovers_fail_the_runbook_and_skip_the_next(tmp_path: Path, inv: Inventory, live: Any) -> None:
    def leave_a_policy() -> Finished:
        live["status"] = {**BASELINE, "policies": [{"region": "south", "origin": "operator"}]}
        return Finished(0, "{}", "")

    script = passing_script()
    script["heal redis"] = leave_a_policy
    runner = FakeRunner(script)
    rb = runbook(tmp_path)
    report = Verifier(inv, runner, baseline_timeout=0).verify_all([(rb, []), (rb, [])])
    first, second = report.results
    assert first.baseline_restored is False and not first.passed
    assert "policies" in first.steps[-1].message
    assert report.baseline_lost
    assert second.steps[0].message.startswith("skipped")
    assert runner.ran.count("heal redis") == 1


def test_faults_left_are_cleared(tmp_path: Path, inv: Inventory, live: Any) -> None:
    def add_fault() -> Finished:
        live["status"] = {**BASELINE, "faults": [{"link": "device-east"}]}
        return Finished(0, "{}", "")

    def clear() -> Finished:
        live["status"] = BASELINE
        return Finished(0, "{}", "")

    script = passing_script()
    script["fail redis"] = add_fault
    script["fault clear"] = clear
    runner = FakeRunner(script)
    report = Verifier(inv, runner, baseline_timeout=0).verify_all([(runbook(tmp_path), [])])
    assert runner.ran[-2:] == ["recover --all --json", "fault clear --json"]
    assert report.passed


def test_within_reruns_a_read_only_command_until_it_holds(tmp_path: Path, inv: Inventory, live: Any) -> None:
    answers = iter(["redis", "redis", "fallback"])
    script = passing_script()
    script["status"] = lambda: ok_json({"storage": {"mode": next(answers)}})
    text = RUNBOOK.replace('# expect: storage.mode == "fallback"', '# expect: storage.mode == "fallback" within 10s')
    runner = FakeRunner(script)
    report = Verifier(inv, runner, baseline_timeout=0).verify_all([(runbook(tmp_path, text), [])])
    assert report.passed
    assert runner.ran.count("status --json") == 3


def test_ctrl_c_in_a_step_still_restores(tmp_path: Path, inv: Inventory, live: Any) -> None:
    def interrupt() -> Finished:
        raise KeyboardInterrupt

    script = passing_script()
    script["slo check"] = interrupt
    runner = FakeRunner(script)
    report = Verifier(inv, runner, baseline_timeout=0).verify_all([(runbook(tmp_path), [])])
    assert report.interrupted and not report.passed
    assert runner.ran[-1] == "recover --all --json"
    assert report.results[0].baseline_restored is True


def test_junit_has_a_case_per_step_and_the_failure_text(tmp_path: Path, inv: Inventory, live: Any) -> None:
    script = passing_script()
    script["probe run"] = ok_json({"lost": 3})
    report = Verifier(inv, FakeRunner(script), baseline_timeout=0).verify_all([(runbook(tmp_path), [])])
    out = tmp_path / "reports" / "runbooks.xml"
    write_junit(report, out)
    suite = ET.parse(out).getroot().find("testsuite")  # noqa: S314 - our own file
    assert suite is not None and suite.get("failures") == "1"
    failures = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert len(failures) == 1
    text = failures[0].find("failure").text or ""  # type: ignore[union-attr]
    assert re.search(r"line \d+: lost == 0: FAILED \(lost = 3\)", text), text


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"policies": [{"region": "south"}]}, "policies"),
        ({"faults": [{"link": "cache"}]}, "faults"),
        ({"actions": [{"action": "drain", "status": "held"}]}, "actions"),
        ({"throttle": {"mode": "fixed"}}, "throttle: fixed"),
        ({"storage": {"mode": "fallback"}}, "storage: fallback"),
        ({"routing": {"weights": {"idc1": 0.0, "idc2": 100.0}}}, "routing"),
        ({"regions": {"south": {"healthy": False, "drained": True}}}, "region south"),
        ({"connections": {"south": None}}, "brokers unreachable: south"),
    ],
)
def test_baseline_problems_name_each_leftover(change: dict[str, Any], needle: str) -> None:
    assert baseline_problems(BASELINE, None) == []
    problems = baseline_problems({**BASELINE, **change}, {"idc1": 50.0, "idc2": 50.0})
    assert any(needle in p for p in problems), problems


def test_verify_refuses_a_non_reference_inventory_without_confirmation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Path(load_inventory().source).read_text()
    other = tmp_path / "prod.toml"
    other.write_text(
        source.replace('name = "reference"', 'name = "prod"').replace("reference = true", "reference = false")
    )
    code, _, err = run_main(monkeypatch, "--inventory", str(other), "runbook", "verify", "redis-outage")
    assert code == 2
    assert "not the reference stack" in err and "--confirm-target prod" in err.replace("\n", "")


def test_verify_of_an_unknown_runbook_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_main(monkeypatch, "runbook", "verify", "redis-outgae")
    assert code == 2
    assert "did you mean redis-outage?" in err
