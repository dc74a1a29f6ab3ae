"""Failover actions against the real stack: each applies, verifies, rolls back to the baseline.

Baseline = no policies, no faults, routing 50/50, throttle off, storage on Redis, no open journal.
Probe sizes are small on purpose: a clean 2-core CI machine must pass every time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, Stack

pytestmark = pytest.mark.integration
PROBE = ["--devices", "90", "--rate", "150"]


READS = ("status", "recover")  # commands that change nothing and so take no --confirm-target


def run_json(stack: Stack, *args: str, timeout: float = 180) -> tuple[int, dict[str, Any]]:
    confirm = [] if args[0] in READS else stack.confirm
    proc = stack.pushctl(*args, *confirm, "--json", timeout=timeout)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(
            f"pushctl {' '.join(args)} printed no JSON (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        ) from None
    return proc.returncode, data


def wait_baseline(stack: Stack, timeout: float = 25.0) -> dict[str, Any]:
    """The live status once it is back at the baseline (the scheduler may need a moment)."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _, status = run_json(stack, "status")
        if (
            status["policies"] == []
            and status["faults"] == []
            and status["routing"]["weights"] == {"idc1": 50.0, "idc2": 50.0}
            and status["throttle"]["mode"] == "off"
            and status["storage"]["mode"] == "redis"
            and [a for a in status["actions"] if a["status"] != "held"] == []
        ):
            return status
        time.sleep(0.5)
    raise AssertionError(f"the platform did not return to its baseline: {json.dumps(status, indent=1)[:3000]}")


def assert_held(data: dict[str, Any]) -> None:
    assert data["passed"], data["verdict"]
    assert data["during"]["lost"] == 0
    assert data["during"]["sent"] > 0
    assert all(step["ok"] for step in data["rollback"]), data["rollback"]


def test_dry_run_prints_the_plan_and_changes_nothing(stack: Stack) -> None:
    code, data = run_json(stack, "drain", "--region", "south", "--dry-run")
    assert code == 0
    assert data["plan"][0]["component"] == "scheduler"
    assert "withdraw" in data["plan"][0]["undo"]
    wait_baseline(stack)


def test_drain_moves_every_device_without_loss_and_rolls_back(stack: Stack) -> None:
    code, data = run_json(stack, "drain", "--region", "south", "--spread", "2s", *PROBE)
    assert code == 0, data["verdict"]
    assert_held(data)
    m = data["measurements"]
    assert m["drained"] is True and m["devices_left"] == 0
    assert m["devices_moved"] >= 1 and "south" not in m["moved_to"]
    wait_baseline(stack)


def test_switch_idc_and_back(stack: Stack) -> None:
    code, data = run_json(stack, "switch-idc", "--to", "idc2", "--duration", "3s", *PROBE)
    assert code == 0, data["verdict"]
    assert_held(data)
    seen = data["measurements"]["weights_by_gateway"]
    assert seen and all(w == {"idc1": 0.0, "idc2": 100.0} for w in seen.values()), seen
    shares = [c for c in data["checks"] if "delivered" in c["check"]]
    assert shares and all(c["ok"] for c in shares), data["checks"]
    wait_baseline(stack)


def test_idc_power_loss_loses_nothing(stack: Stack) -> None:
    code, data = run_json(stack, "fail", "idc", "--idc", "idc1", "--duration", "4s", *PROBE)
    assert code == 0, data["verdict"]
    assert_held(data)
    status = json.loads(stack.pushctl("stack", "status", "--json", check=True).stdout)
    assert all(c["healthy"] for c in status["components"] if c["name"] == "logic-idc1")
    wait_baseline(stack)


def test_redis_outage_switches_to_fallback_within_a_second(stack: Stack) -> None:
    code, data = run_json(stack, "fail", "redis", "--mode", "down", "--duration", "4s", *PROBE)
    assert code == 0, data["verdict"]
    assert_held(data)
    assert data["measurements"]["fallback_detected_s"] is not None
    assert data["measurements"]["fallback_detected_s"] <= 1.0
    assert data["measurements"]["storage_recovered_s"] is not None  # the report waits for Redis storage
    # and it stays there: no stale pooled connection fails a write a moment after recovery
    modes = []
    for _ in range(6):
        modes.append(run_json(stack, "status")[1]["storage"]["mode"])
        time.sleep(0.5)
    assert set(modes) == {"redis"}, modes
    wait_baseline(stack)


def test_throttle_diverts_to_the_buffer_and_rejects_nothing(stack: Stack) -> None:
    code, data = run_json(stack, "throttle", "access", "--limit", "50/s", "--duration", "4s", *PROBE)
    assert code == 0, data["verdict"]
    assert_held(data)
    assert data["measurements"]["rejected"] == 0 and data["measurements"]["buffered"] > 0
    wait_baseline(stack)


def test_region_vpc_failure_is_detected_and_healed(stack: Stack) -> None:
    code, data = run_json(
        stack, "fail", "region", "--region", "south", "--mode", "vpc-down", "--duration", "6s", *PROBE
    )
    assert code == 0, data["verdict"]
    assert_held(data)
    assert data["measurements"]["scheduler_detected_s"] is not None
    assert data["measurements"]["auto_drain_withdrawn_s"] is not None
    wait_baseline(stack)


def test_hold_keeps_the_drain_until_restore(stack: Stack) -> None:
    code, _ = run_json(stack, "drain", "--region", "east", "--spread", "0s", "--hold", "--no-probe")
    assert code == 0
    _, status = run_json(stack, "status")
    assert [(p["region"], p["origin"]) for p in status["policies"]] == [("east", "operator")]
    assert status["actions"][-1]["status"] == "held"
    code, _ = run_json(stack, "restore", "--region", "east", "--no-probe")
    assert code == 0
    _, status = run_json(stack, "status")
    assert status["policies"] == []


def test_bad_input_is_one_line_and_changes_nothing(stack: Stack) -> None:
    for args in (
        ["drain", "--region", "mars"],
        ["switch-idc", "--weights", "idc1=x"],
        ["throttle", "access"],
        ["fail", "region", "--region", "south", "--mode", "meteor"],
        ["drain", "--region", "south", "--spread", "soon"],
    ):
        proc = stack.pushctl(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]) == 1, proc.stderr
    wait_baseline(stack)


def _start_drain(stack: Stack) -> subprocess.Popen[str]:
    """A drain that takes long enough (20 s spread) to be interrupted mid-way."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pushctl.cli.main",
            "--inventory",
            stack.inventory.source,
            "drain",
            "--region",
            "north",
            "--spread",
            "20s",
            "--devices",
            "60",
            "--rate",
            "50",
        ],
        env=stack.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_applied(stack: Stack, proc: subprocess.Popen[str], timeout: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for path in sorted((stack.run_dir / "journal").glob("*-drain-*.json")):
            entry = json.loads(path.read_text())
            if entry["status"] == "applied" and entry["params"]["region"] == "north":
                return path
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the drain never reached 'applied'")


def test_ctrl_c_during_a_drain_rolls_back(stack: Stack) -> None:
    proc = _start_drain(stack)
    journal = _wait_applied(stack, proc)
    second = stack.pushctl("drain", "--region", "south", "--no-probe")
    assert second.returncode == 6, second.stderr  # one action at a time
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert json.loads(journal.read_text())["status"] == "rolled-back"
    wait_baseline(stack)


def test_sigterm_during_a_drain_rolls_back(stack: Stack) -> None:
    proc = _start_drain(stack)
    _wait_applied(stack, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    wait_baseline(stack)


def test_kill_9_during_a_drain_then_recover_restores_the_baseline(stack: Stack) -> None:
    proc = _start_drain(stack)
    journal = _wait_applied(stack, proc)
    proc.kill()
    proc.communicate(timeout=30)
    _, status = run_json(stack, "status")
    assert [p["region"] for p in status["policies"]] == ["north"]  # left behind by the dead pushctl
    refused = stack.pushctl("drain", "--region", "south", "--no-probe")
    assert refused.returncode == 6 and "recover" in refused.stderr
    code, data = run_json(stack, "recover")
    assert code == 0
    assert [r["action"] for r in data["recovered"]] == ["drain"]
    assert json.loads(journal.read_text())["status"] == "recovered"
    wait_baseline(stack)


def test_recover_after_kill_9_during_a_region_failure_waits_for_the_auto_drain_to_go(stack: Stack) -> None:
    """recover ends where an in-process rollback ends: the scheduler's own drain withdrawn too."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pushctl.cli.main", "--inventory", stack.inventory.source,
         "fail", "region", "--region", "east", "--mode", "link-down", "--duration", "60s", "--no-probe"],
        env=stack.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the scheduler drained east by itself
        _, status = run_json(stack, "status")
        if any(p["region"] == "east" and p["origin"] == "auto" for p in status["policies"]):
            break
        time.sleep(0.3)
    else:
        proc.kill()
        raise AssertionError("the scheduler never drained east")
    proc.kill()
    proc.communicate(timeout=30)
    code, data = run_json(stack, "recover")
    assert code == 0, data
    assert data["settled"]["auto_drain_withdrawn_s"] is not None
    _, status = run_json(stack, "status")
    assert status["policies"] == [] and status["faults"] == []  # at once, not 5-10 s later
    wait_baseline(stack)


@pytest.mark.parametrize(
    "args",
    [
        ["fail", "redis", "--mode", "crash"],
        ["fail", "idc", "--idc", "idc2"],
        ["fail", "region", "--region", "east", "--mode", "link-down"],
        ["switch-idc", "--weights", "idc1=10,idc2=90"],
        ["throttle", "access", "--limit", "20/s"],
    ],
    ids=["fail-redis-crash", "fail-idc", "fail-region", "switch-idc", "throttle"],
)
def test_ctrl_c_during_each_action_rolls_back(stack: Stack, args: list[str]) -> None:
    before = set((stack.run_dir / "journal").glob("*.json"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pushctl.cli.main",
            "--inventory",
            stack.inventory.source,
            *args,
            "--duration",
            "60s",
            "--no-probe",
        ],
        env=stack.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    journal: Path | None = None
    while journal is None and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for path in set((stack.run_dir / "journal").glob("*.json")) - before:
            if json.loads(path.read_text())["status"] == "applied":
                journal = path
        time.sleep(0.2)
    assert journal is not None, "the action never reached 'applied'"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert json.loads(journal.read_text())["status"] == "rolled-back"
    wait_baseline(stack, timeout=40)
    status = json.loads(stack.pushctl("stack", "status", "--json", check=True).stdout)
    assert status["healthy"], [c for c in status["components"] if not c["healthy"]]
