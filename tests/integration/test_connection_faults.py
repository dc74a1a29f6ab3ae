"""Long-connection faults against the real stack: storm, drop, half-open; each verified and rolled back.

Each verb runs through the CLI a user runs and must hold; then each verifier is shown failing on
purpose, in process, with a planted defect: probe devices that never reconnect (storm), a toxic that
fires on every connection instead of the share asked (drop), devices without a keepalive, which
never notice a silent connection (half-open).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from pushctl.actions.connections import ConnectionFault, Storm
from pushctl.actions.runner import ActionReport, RunOptions, execute
from pushctl.contract.topology import Inventory
from pushctl.faults.links import plan_fault
from pushctl.probe.probe import ProbeOptions
from tests.integration.conftest import Stack
from tests.integration.test_failover import run_json, wait_baseline

pytestmark = pytest.mark.integration
PROBE = ["--devices", "90", "--rate", "150"]


@pytest.fixture
def in_process(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """Run actions in this process against the session stack (its run directory: lock and journals)."""
    monkeypatch.setenv("PUSHCTL_RUN_DIR", stack.env["PUSHCTL_RUN_DIR"])
    yield stack
    wait_baseline(stack)


async def run(stack: Stack, action: Any, probe: ProbeOptions) -> ActionReport:
    async with asyncio.timeout(120):
        return await execute(stack.inventory, action, RunOptions(slo=90.0, probe=probe), log=lambda _: None)


def probe_options(**changes: Any) -> ProbeOptions:
    return ProbeOptions(**{"devices": 90, "rate": 150.0, "duration": None, "grace": 3.0, **changes})


def failed_checks(report: ActionReport) -> list[str]:
    return [c["check"] for c in report.checks if not c["ok"]]


def assert_connection_report(data: dict[str, Any]) -> dict[str, Any]:
    assert data["passed"], data["verdict"]
    assert all(step["ok"] for step in data["rollback"]), data["rollback"]
    assert all(c["ok"] for c in data["checks"]), data["checks"]
    m: dict[str, Any] = data["measurements"]
    assert m["affected"] >= 1 and m["not_back"] == 0 and m["all_back_s"] is not None
    assert m["cohorts"]["affected"]["devices"] == m["affected"]
    assert m["cohorts"]["affected"]["lost"] == 0 and m["cohorts"]["unaffected"]["lost"] == 0
    assert m["cohorts"]["unaffected"]["sent"] > 0
    assert m["broker_handshakes_peak_per_s"] is not None and m["dispatcher_requests_peak_per_s"] is not None
    assert set(m["refused"]) == {"over_limit", "draining"}
    return m


# ---- each verb holds on the reference platform ---------------------------------------------------
def test_storm_disconnects_every_device_of_the_region_and_all_come_back(stack: Stack) -> None:
    code, data = run_json(stack, "fault", "storm", "--region", "north", *PROBE)
    assert code == 0, data["verdict"]
    m = assert_connection_report(data)
    assert m["affected"] == m["devices_on_region"] == m["broker_connections_before"]
    assert m["broker_handshakes_peak_per_s"] > 0  # the storm's handshakes, seen in the brokers' counters
    wait_baseline(stack)


def test_drop_resets_about_the_share_asked_and_every_dropped_device_comes_back(stack: Stack) -> None:
    code, data = run_json(stack, "fault", "connections", "--region", "east", "--drop", "30%", *PROBE)
    assert code == 0, data["verdict"]
    m = assert_connection_report(data)
    assert 0 < m["affected"] < m["devices_on_region"]
    wait_baseline(stack)


def test_half_open_is_noticed_and_the_broker_keeps_no_ghost(stack: Stack) -> None:
    code, data = run_json(
        stack, "fault", "connections", "--region", "south", "--half-open", "0.3", "--duration", "6s", *PROBE
    )
    assert code == 0, data["verdict"]
    m = assert_connection_report(data)
    assert m["broker_ghost_connections"] == 0
    assert data["params"]["half-open"] == "30%"
    wait_baseline(stack)


def test_a_cohort_storm_hits_only_the_experiment_cohort_and_says_what_it_cost(stack: Stack) -> None:
    code, data = run_json(stack, "fault", "storm", "--region", "south", "--cohort", "50%", *PROBE)
    assert code == 0, data["verdict"]
    m = assert_connection_report(data)
    assert m["link"] == "device-south-x" and data["rollback"][0]["step"] == "bring link device-south-x up"
    # only the experiment cohort's devices on south lost their connection: the control half stayed on
    assert m["affected"] == m["devices_on_region"] and m["broker_connections_before"] > m["affected"]
    cmp = m["cohort_comparison"]
    assert cmp["control"]["devices"] + cmp["experiment"]["devices"] == 90 and cmp["control"]["sent"] > 0
    lo, hi = cmp["cost_ci"]
    assert lo <= cmp["cost_points"] <= hi and m["fault_cost"].startswith("the fault cost ")
    wait_baseline(stack)


def test_a_cohort_must_leave_a_control_cohort(stack: Stack) -> None:
    proc = stack.pushctl("fault", "storm", "--region", "south", "--cohort", "100%", *stack.confirm)
    assert proc.returncode == 2 and "less than 100%" in proc.stderr and "Traceback" not in proc.stderr


def test_storm_dry_run_changes_nothing(stack: Stack) -> None:
    code, data = run_json(stack, "fault", "storm", "--region", "north", "--dry-run")
    assert code == 0
    assert data["plan"][0]["component"] == "link device-north"
    wait_baseline(stack)


# ---- each verifier fails on a planted defect -----------------------------------------------------
async def test_storm_verifier_fails_when_devices_never_reconnect(in_process: Stack) -> None:
    action = Storm(in_process.inventory, "north", max_recovery_s=4)
    report = await run(in_process, action, probe_options(reconnect=False))  # planted: devices give up
    assert not report.passed
    failed = failed_checks(report)
    on = report.measurements["devices_on_region"]
    assert f"{on} of {on} devices that lost their connection never came back" in failed
    assert any(c.startswith("affected devices: ") and "undelivered" in c for c in failed), failed
    assert all(step["ok"] for step in report.rollback)


class DropEveryConnection(ConnectionFault):
    """Planted defect: the toxic loses its toxicity on the way (every connection reset, not the share)."""

    def __init__(self, inv: Inventory, region: str) -> None:
        super().__init__(inv, region, "drop", 0.3)
        self.spec = plan_fault(inv, self.link, "reset_peer", {"timeout": 0}, "up", 1.0, name="pushctl-drop")


async def test_drop_verifier_fails_when_the_toxic_hits_every_connection(in_process: Stack) -> None:
    action = DropEveryConnection(in_process.inventory, "east")
    report = await run(in_process, action, probe_options(keepalive=1.0))
    assert not report.passed
    on = report.measurements["devices_on_region"]
    [share] = [c for c in failed_checks(report) if c.startswith("dropped: ")]
    assert share.startswith(f"dropped: {on} of {on} connections (100%; asked 30% ± ")
    assert all(step["ok"] for step in report.rollback)


async def test_half_open_verifier_fails_when_devices_never_notice_the_silence(in_process: Stack) -> None:
    action = ConnectionFault(in_process.inventory, "south", "half-open", 0.3, duration_s=4)
    report = await run(in_process, action, probe_options(keepalive=300.0))  # planted: no keepalive to speak of
    assert not report.passed
    failed = failed_checks(report)
    assert any(c.startswith("silenced and noticed: 0 of ") for c in failed), failed
    assert "no probe device on south lost its connection" in failed
    assert all(step["ok"] for step in report.rollback)
