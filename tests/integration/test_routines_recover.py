"""Every background routine outlives its dependencies: cut Redis, the disk KV and Kafka at once, bring
them back, and every service is healthy again (no routine left dead or degraded), storage is back on
Redis and the Kafka consumers consume: a push accepted afterwards through each path is delivered.

Before the supervisor, the access tier's storage routine died on a Redis timeout raised outside its
`try` and storage stayed on the fallback for good while /healthz said ok (issue: hardening)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from pushctl.contract.topology import ServiceKind
from tests.integration.conftest import Stack
from tests.integration.test_failover import PROBE, run_json, wait_baseline

pytestmark = pytest.mark.integration

DEPENDENCIES = ("cache", "store", "regions-store", "cross-idc-store", "cross-idc-cache", "diskkv",
                "cross-idc-diskkv", "kafka")  # fmt: skip
OUTAGE_S = 8.0


def _health(stack: Stack) -> dict[str, dict[str, Any]]:
    """/healthz of every push service (stores and Kafka itself have none)."""
    out: dict[str, dict[str, Any]] = {}
    for name, svc in stack.inventory.services.items():
        if svc.kind in (ServiceKind.REDIS, ServiceKind.KAFKA):
            continue
        try:
            out[name] = httpx.get(f"http://127.0.0.1:{svc.port}/healthz", timeout=2).json()
        except (httpx.HTTPError, ValueError) as exc:
            out[name] = {"status": f"unreachable ({type(exc).__name__})"}
    return out


def _wait_healthy(stack: Stack, timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    health = _health(stack)
    while time.monotonic() < deadline:
        health = _health(stack)
        bypass = [h for n, h in health.items() if stack.inventory.services[n].kind == ServiceKind.BYPASS]
        if all(h.get("status") == "ok" for h in health.values()) and all(
            h.get("detail", {}).get("kafka") == "consuming" for h in bypass
        ):
            return health
        time.sleep(0.5)
    sick = {n: h for n, h in health.items() if h.get("status") != "ok"}
    raise AssertionError(f"services still not healthy {timeout:.0f}s after their dependencies came back: {sick}")


def test_every_routine_comes_back_after_its_dependencies_went_away(stack: Stack) -> None:
    assert _health(stack), "no push service found in the inventory"
    try:
        for link in DEPENDENCIES:
            stack.pushctl("fault", "down", link, *stack.confirm, check=True)
        time.sleep(OUTAGE_S)  # long enough for every client's timeout to fire inside its routine
    finally:
        for link in DEPENDENCIES:
            stack.pushctl("fault", "up", link, *stack.confirm)
    _wait_healthy(stack, timeout=60)
    wait_baseline(stack, timeout=60)  # storage back on redis, no drain left behind
    # the paths those routines serve work again: direct (storage on Redis) and through the Kafka buffer
    proc = stack.pushctl("probe", "run", "--devices", "60", "--rate", "100", "--duration", "4s", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["lost"] == 0
    code, data = run_json(stack, "throttle", "access", "--limit", "50/s", "--duration", "4s", *PROBE)
    assert code == 0, data["verdict"]
    assert data["during"]["lost"] == 0 and data["measurements"]["buffered"] > 0, data["measurements"]
    wait_baseline(stack)
