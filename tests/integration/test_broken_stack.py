"""Each verifier is shown to fail: a stack with a failover path broken on purpose fails the drill.

A second stack on other ports runs with the inline-payload fallback off and without offline
storage (switches the services read from the environment); the same commands that pass on the
healthy stack must exit 1 with lost > 0 here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, Stack, derived_stack

pytestmark = pytest.mark.integration
PORT_SHIFT = 2000  # 17xxx -> 19xxx, 18xxx -> 20xxx


@pytest.fixture(scope="module")
def broken_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        **stack.env,
        "PUSHCTL_INLINE_FALLBACK": "0",
        "PUSHCTL_OFFLINE_STORAGE": "0",
        "PUSHCTL_SCHEDULER_AUTO": "0",
    }
    with derived_stack(
        Path(stack.inventory.source), "broken", shift=PORT_SHIFT, env=env, tmp=tmp_path_factory.mktemp("broken")
    ) as st:
        yield st


def _json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(proc.stdout[proc.stdout.index("{") :])
    return data


def _drill_loses(stack: Stack, *command: str) -> dict[str, Any]:
    """Run a 4 s drill (90 devices, 150 pushes/s) that must exit 1 having lost messages; its JSON report."""
    proc = stack.pushctl(
        *command, "--duration", "4s", "--devices", "90", "--rate", "150", *stack.confirm, "--json", timeout=180
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    data = _json(proc)
    assert data["during"]["lost"] > 0
    return data


def test_redis_outage_without_the_inline_fallback_fails_the_drill(broken_stack: Stack) -> None:
    data = _drill_loses(broken_stack, "fail", "redis", "--mode", "down")
    assert "SLO BREACHED" in data["verdict"]
    assert all(step["ok"] for step in data["rollback"])


def test_region_failure_without_offline_storage_fails_the_drill(broken_stack: Stack) -> None:
    _drill_loses(broken_stack, "fail", "region", "--region", "south", "--mode", "vpc-down")


def test_slo_check_fails_when_a_region_link_is_down_and_devices_cannot_reconnect(broken_stack: Stack) -> None:
    """The ledger catches loss: reconnection off, one region's device link down while sending."""
    script = f"""
import asyncio, json, sys
from pushctl.contract.topology import load_inventory
from pushctl.faults.links import link_down, link_up
from pushctl.probe.probe import Probe, ProbeOptions
async def main():
    inv = load_inventory({str(broken_stack.inventory.source)!r})
    probe = Probe(inv, ProbeOptions(devices=60, rate=100, duration=3.0, reconnect=False, grace=2.0))
    await probe.start()
    await link_down(inv, "device-south")
    try:
        await probe.wait_sent()
        summary = await probe.stop()
    finally:
        await link_up(inv, "device-south")
    print(json.dumps(summary.to_json()))
asyncio.run(main())
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=broken_stack.env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["lost"] > 0
    assert summary["by_region"]["south"]["lost"] > 0
    assert summary["delivery_rate"] < 99.9
    assert Path(broken_stack.run_dir).exists()
