"""`pushctl abort` from a second process: whatever holds the target rolls back and stops, also when
it is stuck, and abort returns with the platform at its baseline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, Stack

pytestmark = pytest.mark.integration


def _start(stack: Stack, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pushctl.cli.main", "--inventory", stack.inventory.source, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=stack.env,
        cwd=REPO,
    )


def _finish(run: subprocess.Popen[str], timeout: float) -> int:
    """Its exit code, once it has ended (its pipes read and closed)."""
    run.communicate(timeout=timeout)
    return run.returncode


def _status(stack: Stack) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(stack.pushctl("status", "--json", check=True).stdout)
    return data


def _wait_for_fallback(stack: Stack, proc: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended early ({proc.returncode}): {proc.communicate()[1][-2000:]}"
        if (_status(stack).get("storage") or {}).get("mode") == "fallback":
            return
        time.sleep(0.5)
    raise AssertionError("Redis never went down")


def _abort(stack: Stack, *args: str) -> dict[str, Any]:
    proc = stack.pushctl("abort", "--json", *args, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _at_baseline(stack: Stack) -> None:
    """Storage on Redis, no fault on any link, no open journal entry, the lock free."""
    deadline = time.monotonic() + 30
    while True:
        status = _status(stack)
        storage = (status.get("storage") or {}).get("mode")
        faults = [f for f in status.get("faults") or [] if f.get("toxics") or f.get("enabled") is False]
        open_actions = [a for a in status.get("actions") or [] if a.get("status") not in ("held",)]
        if storage == "redis" and not faults and not open_actions:
            break
        assert time.monotonic() < deadline, f"not at baseline: storage {storage}, faults {faults}, {open_actions}"
        time.sleep(0.5)
    assert not list(Path(stack.env["PUSHCTL_RUN_DIR"]).glob(f"{stack.inventory.name}/action.lock"))


def test_abort_with_nothing_running_says_so(stack: Stack) -> None:
    proc = stack.pushctl("abort", timeout=120)
    assert proc.returncode == 0 and "nothing holds" in proc.stderr


def test_an_action_in_flight_rolls_back_and_exits(stack: Stack) -> None:
    run = _start(stack, "fail", "redis", "--mode", "down", "--duration", "60s", "--no-probe", *stack.confirm)
    try:
        _wait_for_fallback(stack, run)
        report = _abort(stack)
        assert _finish(run, 60) == 130
        assert [s["how"] for s in report["stopped"]] == ["rolled back and exited"]
        assert report["recovered"] == []  # it undid its own change
        _at_baseline(stack)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()


def test_a_stuck_run_is_killed_and_its_journal_replayed(stack: Stack) -> None:
    run = _start(stack, "fail", "redis", "--mode", "down", "--duration", "60s", "--no-probe", *stack.confirm)
    try:
        _wait_for_fallback(stack, run)
        os.kill(run.pid, signal.SIGSTOP)  # wedged (abort resumes it, but gives it no time: --timeout 10ms)
        report = _abort(stack, "--timeout", "10ms")
        assert _finish(run, 30) == -signal.SIGKILL
        assert [(s["pid"], s["how"]) for s in report["stopped"]] == [(run.pid, "killed")]
        assert [r["ok"] for r in report["recovered"]] == [True]  # its journal, replayed
        _at_baseline(stack)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()


def test_an_experiment_is_stopped_and_rolled_back(stack: Stack, tmp_path: Path) -> None:
    text = (REPO / "experiments" / "redis-outage.yaml").read_text()
    long = text.replace("    duration: 6s\n", "    duration: 60s\n").replace("  - wait: 3s\n", "  - wait: 50s\n")
    (tmp_path / "long-redis-outage.yaml").write_text(long)
    run = _start(stack, "experiment", "run", str(tmp_path / "long-redis-outage.yaml"), *stack.confirm)
    try:
        _wait_for_fallback(stack, run, timeout=120)
        report = _abort(stack)
        assert _finish(run, 120) == 130
        assert [s["how"] for s in report["stopped"]] == ["rolled back and exited"]
        _at_baseline(stack)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()


def test_a_runbook_verification_is_stopped_between_and_during_its_steps(stack: Stack) -> None:
    run = _start(stack, "runbook", "verify", "redis-outage", *stack.confirm)
    try:
        _wait_for_fallback(stack, run, timeout=120)
        report = _abort(stack)
        assert _finish(run, 180) == 130
        assert any(s["what"].startswith("runbook verify") for s in report["stopped"])
        _at_baseline(stack)
        assert not [a for a in _status(stack).get("actions") or [] if a.get("status") == "held"]
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
