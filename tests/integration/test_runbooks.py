"""`pushctl runbook verify` against the real stack: every runbook passes, and verify is shown to fail.

- every shipped runbook verifies, and the stack is left at its baseline;
- a runbook with a misspelt flag fails with its line number, before touching the stack;
- a runbook whose expectation is false fails at that expectation, and the stack is put back;
- on a second stack whose inline fallback is switched off (PUSHCTL_INLINE_FALLBACK=0), the shipped
  redis-outage runbook fails: it expects delivery during the outage and pushes are lost. That stack
  is not the reference one, so verify also needs --confirm-target there.

The broken stack's ports are the test inventory's shifted by $PUSHCTL_TEST_PORT_SHIFT (2000: the
reference stack's 17xxx/18xxx become 19xxx/20xxx, as in test_broken_stack.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushctl.runbooks import baseline_problems, runbook_dir
from tests.integration.conftest import REPO, Stack, derived_stack

pytestmark = pytest.mark.integration
RUNBOOKS = runbook_dir()
PORT_SHIFT = int(os.environ.get("PUSHCTL_TEST_PORT_SHIFT", "2000"))


def verify(stack: Stack, *args: str, timeout: float = 900) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    confirm = [] if "--confirm-target" in args else stack.confirm
    proc = stack.pushctl("runbook", "verify", "--json", *confirm, *args, timeout=timeout)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"verify printed no JSON (exit {proc.returncode}):\n{proc.stderr[-4000:]}") from None
    return proc, data


def at_baseline(stack: Stack, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    problems: list[str] = ["never read"]
    while time.monotonic() < deadline:
        status = json.loads(stack.pushctl("status", "--json", check=True).stdout)
        problems = baseline_problems(status, {"idc1": 50.0, "idc2": 50.0})
        if not problems:
            return
        time.sleep(0.5)
    raise AssertionError(f"the stack is not at its baseline: {problems}")


def copy_runbook(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, int]:
    """runbooks/NAME.md with `old` replaced by `new`; the line of the change."""
    text = (RUNBOOKS / f"{name}.md").read_text()
    assert old in text, old
    path = tmp_path / f"{name}.md"
    path.write_text(text.replace(old, new, 1))
    line = next(i for i, ln in enumerate(path.read_text().splitlines(), start=1) if new.splitlines()[0] in ln)
    return path, line


def failed_steps(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in result["steps"] if s["status"] == "failed"]


@pytest.mark.timeout(1200)
def test_every_runbook_verifies_and_leaves_the_stack_at_its_baseline(stack: Stack) -> None:
    (REPO / "reports").mkdir(exist_ok=True)
    junit = REPO / "reports" / "runbooks.xml"  # beside the resilience gate's reports, for CI to keep
    started = time.monotonic()
    proc, data = verify(stack, "--junit", str(junit), timeout=1100)
    summary = {
        r["id"]: [f"line {s['line']}: {s['command']}: {s['message']}\n{s['output'][-1500:]}" for s in failed_steps(r)]
        + [f"{p['line']}: {p['message']}" for p in r["problems"] if p["severity"] == "error"]
        for r in data["runbooks"]
        if not r["passed"]
    }
    assert proc.returncode == 0, summary
    assert data["passed"] and summary == {}
    ids = {r["id"] for r in data["runbooks"]}
    assert ids == {p.stem for p in RUNBOOKS.glob("*.md") if p.name != "README.md"}
    for result in data["runbooks"]:
        assert result["baseline_restored"] is True, result["id"]
        ran = [s for s in result["steps"] if s["phase"] not in ("baseline", "restore")]
        assert ran and all(s["status"] == "passed" for s in ran), result["id"]
        assert any(s["phase"] == "Verify" and s["checks"] for s in ran), result["id"]
    suites = ET.parse(junit).getroot().findall("testsuite")  # noqa: S314 - our own report
    assert len(suites) == len(ids) and all(s.get("failures") == "0" for s in suites)
    at_baseline(stack)
    print(f"\nall {len(ids)} runbooks verified in {time.monotonic() - started:.0f}s")  # noqa: T201 - a command-line report: printing is its job


def test_a_misspelt_flag_fails_with_its_line_before_touching_the_stack(stack: Stack, tmp_path: Path) -> None:
    path, line = copy_runbook(tmp_path, "redis-outage", "pushctl heal redis", "pushctl heal redis --force")
    journal = stack.run_dir / "journal"
    before = sorted(journal.glob("*.json")) if journal.exists() else []
    proc, data = verify(stack, str(path))
    assert proc.returncode == 1, proc.stderr[-2000:]
    [result] = data["runbooks"]
    assert not result["passed"]
    assert [(p["line"], p["severity"]) for p in result["problems"]] == [(line, "error")]
    assert "No such option: --force" in result["problems"][0]["message"]
    assert f"{path}:{line}: error:" in proc.stderr
    assert result["steps"] == []  # lint failed: nothing ran, the failure was never injected
    assert (sorted(journal.glob("*.json")) if journal.exists() else []) == before
    at_baseline(stack)


def test_a_false_expectation_fails_at_its_line_and_the_stack_is_put_back(stack: Stack, tmp_path: Path) -> None:
    # during the outage storage is in fallback: a runbook claiming it stays on Redis is wrong
    path, line = copy_runbook(
        tmp_path,
        "redis-outage",
        '# expect: storage.mode == "fallback"\npushctl slo check',
        '# expect: storage.mode == "redis"\npushctl slo check',
    )
    proc, data = verify(stack, str(path))
    assert proc.returncode == 1, proc.stderr[-2000:]
    [result] = data["runbooks"]
    [step] = failed_steps(result)
    assert step["phase"] == "Diagnose" and step["command"] == "pushctl status"
    assert [(c["line"], c["found"]) for c in step["checks"] if not c["ok"]] == [(line, 'storage.mode = "fallback"')]
    assert '"fallback"' in step["output"]
    assert all(s["status"] == "skipped" for s in result["steps"] if s["phase"] in ("Mitigate", "Verify"))
    assert result["baseline_restored"] is True
    assert f'line {line}: expected storage.mode == "redis", found storage.mode = "fallback"' in proc.stderr
    at_baseline(stack)


@pytest.fixture(scope="module")
def no_fallback_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A second stack, not the reference one, whose access tier never sends payloads inline."""
    with derived_stack(
        Path(stack.inventory.source),
        "rb-nofallback",
        shift=PORT_SHIFT,
        env={**stack.env, "PUSHCTL_INLINE_FALLBACK": "0"},
        tmp=tmp_path_factory.mktemp("nofallback"),
    ) as st:
        yield st


@pytest.mark.timeout(600)
def test_the_redis_outage_runbook_fails_when_the_fallback_is_disabled(no_fallback_stack: Stack) -> None:
    refused = no_fallback_stack.pushctl("runbook", "verify", "redis-outage")
    assert refused.returncode == 2, refused.stderr
    assert "--confirm-target rb-nofallback" in refused.stderr.replace("\n", "")

    proc, data = verify(no_fallback_stack, "redis-outage", "--confirm-target", "rb-nofallback", timeout=500)
    assert proc.returncode == 1, proc.stderr[-3000:]
    [result] = data["runbooks"]
    [step] = failed_steps(result)
    # the first step that expects delivery during the outage catches the loss
    assert step["phase"] == "Diagnose" and step["command"].startswith("pushctl slo check")
    found = {c["expect"]: c["found"] for c in step["checks"] if not c["ok"]}
    assert found["passed == true"] == "passed = false"
    lost = int(found["summary.lost == 0"].split("= ")[1])
    assert lost > 0
    assert result["baseline_restored"] is True
    at_baseline(no_fallback_stack)
