"""The gate catches a regression: library experiments fail on a stack whose failover paths are broken.

A second stack on other ports runs without the inline-payload fallback, without offline storage
(as in test_broken_stack.py) and with a bypass consumer held to 5 messages/s; the Redis outage and
breaking-news experiments, which pass on the healthy stack, must fail here with exit 1, the numbers
in their JUnit reports, and their rollbacks done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from tests.integration.conftest import Stack, derived_stack

pytestmark = pytest.mark.integration
PORT_SHIFT = int(os.environ.get("PUSHCTL_TEST_BROKEN_PORT_SHIFT", "6000"))  # 17xxx -> 23xxx, 18xxx -> 24xxx
LIBRARY = Path(__file__).resolve().parents[2] / "experiments"


@pytest.fixture(scope="module")
def broken_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        **stack.env,
        "PUSHCTL_INLINE_FALLBACK": "0",
        "PUSHCTL_OFFLINE_STORAGE": "0",
        "PUSHCTL_BYPASS_MAX_RATE": "5",  # the Kafka buffer fills but never drains in time
    }
    with derived_stack(
        Path(stack.inventory.source),
        "brokengate",
        shift=PORT_SHIFT,
        env=env,
        tmp=tmp_path_factory.mktemp("broken-gate"),
    ) as st:
        yield st


def run_failing(broken_stack: Stack, experiment: str, tmp_path: Path) -> tuple[dict[str, Any], list[str]]:
    """Run one library experiment on the broken stack: it must exit 1 with its rollbacks done.

    Returns the run's journal and its JUnit failure messages.
    """
    junit = tmp_path / "gate.xml"
    proc = broken_stack.pushctl(
        "experiment", "run", str(LIBRARY / experiment), "--confirm-target", "brokengate",
        "--junit", str(junit), "--html", str(tmp_path / "gate.html"), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    path = max((broken_stack.run_dir / "experiments").glob("*.json"), key=lambda p: p.stat().st_mtime)
    data = json.loads(path.read_text())
    assert data["status"] in ("failed", "aborted") and data["exit_code"] == 1
    assert all(r["ok"] for r in data["rollbacks"])
    status = json.loads(broken_stack.pushctl("status", "--json", check=True).stdout)
    assert status["faults"] == [] and status["policies"] == []
    assert status["throttle"]["mode"] == "off"
    failures = [f.get("message", "") for f in ET.parse(junit).getroot().iter("failure")]  # noqa: S314
    return data, failures


def test_the_redis_outage_experiment_fails_on_a_stack_without_the_fallback(broken_stack: Stack, tmp_path: Path) -> None:
    data, failures = run_failing(broken_stack, "redis-outage.yaml", tmp_path)
    assert data["deviated"] or data["status"] == "aborted"
    assert failures and any("lost" in m or "delivery_rate" in m for m in failures), failures


def test_the_spike_experiment_fails_when_the_buffer_does_not_drain(broken_stack: Stack, tmp_path: Path) -> None:
    _, failures = run_failing(broken_stack, "breaking-news-spike.yaml", tmp_path)
    assert any("bypass_lag" in m or "lost" in m or "delivery_rate" in m for m in failures), failures
