"""The gate catches a regression: a library experiment fails on a stack whose fallback is broken.

A second stack on other ports runs without the inline-payload fallback and without offline
storage (as in test_broken_stack.py); the Redis outage experiment, which passes on the healthy
stack, must fail here with exit 1, the numbers in its JUnit report, and its rollbacks done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.integration.conftest import Stack, derived_stack

pytestmark = pytest.mark.integration
PORT_SHIFT = int(os.environ.get("PUSHCTL_TEST_BROKEN_PORT_SHIFT", "6000"))  # 17xxx -> 23xxx, 18xxx -> 24xxx
LIBRARY = Path(__file__).resolve().parents[2] / "experiments"


@pytest.fixture(scope="module")
def broken_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {**stack.env, "PUSHCTL_INLINE_FALLBACK": "0", "PUSHCTL_OFFLINE_STORAGE": "0"}
    with derived_stack(
        Path(stack.inventory.source),
        "brokengate",
        shift=PORT_SHIFT,
        env=env,
        tmp=tmp_path_factory.mktemp("broken-gate"),
    ) as st:
        yield st


def test_the_redis_outage_experiment_fails_on_a_stack_without_the_fallback(broken_stack: Stack, tmp_path: Path) -> None:
    junit = tmp_path / "gate.xml"
    proc = broken_stack.pushctl(
        "experiment",
        "run",
        str(LIBRARY / "redis-outage.yaml"),
        "--confirm-target",
        "brokengate",
        "--junit",
        str(junit),
        "--html",
        str(tmp_path / "gate.html"),
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    (path,) = sorted((broken_stack.run_dir / "experiments").glob("*.json"))
    data = json.loads(path.read_text())
    assert data["status"] in ("failed", "aborted") and data["exit_code"] == 1
    assert data["deviated"] or data["status"] == "aborted"
    failures = [f.get("message", "") for f in ET.parse(junit).getroot().iter("failure")]  # noqa: S314
    assert failures and any("lost" in m or "delivery_rate" in m for m in failures), failures
    assert all(r["ok"] for r in data["rollbacks"])
    status = json.loads(broken_stack.pushctl("status", "--json", check=True).stdout)
    assert status["faults"] == [] and status["policies"] == []
