"""The reference stack in containers: up, status, logs, drills, faults and down on a real engine.

The stack runs on its own copy of the test inventory (name `dockertest`, every port shifted by
$PUSHCTL_DOCKER_TEST_PORT_SHIFT, 4000 by default: 17xxx/18xxx -> 21xxx/22xxx), so it never meets
the process-runtime stack of the other integration tests. Without an engine the module tries
`stack/install/docker/engine.sh` (root only) and is skipped, with the reason, when none answers.
`PUSHCTL_DOCKER_NETWORK=bridge` runs the same tests in bridge mode.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker  # type: ignore[import-untyped, unused-ignore]
import httpx
import pytest

from pushctl.contract.derive import derived_inventory
from pushctl.contract.topology import Inventory, load_inventory
from pushctl.errors import TargetUnreachable
from pushctl.runtime import health
from pushctl.runtime.docker import DockerRuntime, connect, spec
from tests.integration.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.timeout(1200)]

ENGINE_SH = REPO / "stack" / "install" / "docker" / "engine.sh"
NAME = "dockertest"
CONFIRM = ("--confirm-target", NAME)  # every change to this non-reference stack names it
PROBE = ["--devices", "90", "--rate", "150"]


@dataclass(frozen=True)
class DockerStack:
    inventory: Inventory
    env: dict[str, str]
    client: docker.DockerClient

    def pushctl(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pushctl.cli.main", "--inventory", self.inventory.source, *args],
            capture_output=True, text=True, env=self.env, timeout=timeout, cwd=REPO, check=False,
        )  # fmt: skip

    def run_json(self, *args: str, timeout: float = 180) -> tuple[int, dict[str, Any]]:
        proc = self.pushctl(*args, "--json", timeout=timeout)
        try:
            return proc.returncode, json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(
                f"pushctl {' '.join(args)} printed no JSON (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
            ) from None

    def runtime(self) -> DockerRuntime:
        return DockerRuntime(self.inventory, log=lambda _msg: None, client=self.client)

    def container(self, component: str) -> Any:
        return self.client.containers.get(spec.container_name(NAME, component))

    def leftovers(self) -> dict[str, list[str]]:
        flt = spec.stack_filter(NAME)
        return {
            "containers": [c.name for c in self.client.containers.list(all=True, filters=flt)],
            "networks": [n.name for n in self.client.networks.list(filters=flt)],
            "volumes": [v.name for v in self.client.volumes.list(filters=flt)],
        }


def _engine() -> docker.DockerClient:
    try:
        return connect(timeout=15)
    except TargetUnreachable as exc:
        first = exc.message
    if os.geteuid() != 0:
        pytest.skip(f"no Docker engine answers ({first}) and starting one needs root: run {ENGINE_SH}")
    started = subprocess.run([str(ENGINE_SH)], capture_output=True, text=True, timeout=900, check=False)
    try:
        return connect(timeout=15)
    except TargetUnreachable:
        tail = "\n".join((started.stdout + started.stderr).strip().splitlines()[-15:])
        pytest.skip(f"no Docker engine answers; {ENGINE_SH} could not start one (exit {started.returncode}):\n{tail}")


@pytest.fixture(scope="module")
def dstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerStack]:
    client = _engine()
    base = load_inventory(os.environ.get("PUSHCTL_TEST_INVENTORY") or None)
    tmp = tmp_path_factory.mktemp("docker")
    shift = int(os.environ.get("PUSHCTL_DOCKER_TEST_PORT_SHIFT", "4000"))
    copy = tmp / "topology.toml"  # named dockertest, not the reference, every port moved by `shift`
    copy.write_text(derived_inventory(Path(base.source).read_text(), name=NAME, shift=shift))
    inv = load_inventory(copy)
    env = {**os.environ, "PUSHCTL_RUN_DIR": str(tmp / "run"), "PYTHONUNBUFFERED": "1"}
    env.pop("PUSHCTL_INVENTORY", None)
    st = DockerStack(inv, env, client)
    try:
        # a cold machine builds the images first (a few minutes; warm: nothing to build)
        up = st.pushctl("stack", "up", "--runtime", "docker", "--json", timeout=1100)
        if up.returncode != 0:
            status = _json_or_empty(up.stdout)
            unhealthy = [c for c in status.get("components", []) if not c["healthy"]]
            unhealthy += [lk for lk in status.get("links", []) if not (lk["present"] and lk["enabled"])]
            pytest.fail(
                f"stack up --runtime docker failed ({up.returncode}): unhealthy {unhealthy}\n{up.stderr[-4000:]}",
                pytrace=False,
            )
        yield st
    finally:
        st.pushctl("stack", "down", "--runtime", "docker", timeout=120)
        left = st.leftovers()
        for name in left["containers"]:
            client.containers.get(name).remove(force=True)
        for name in left["networks"]:
            client.networks.get(name).remove()
        for name in left["volumes"]:
            client.volumes.get(name).remove(force=True)
        client.close()
        assert left == {"containers": [], "networks": [], "volumes": []}, f"stack down left {left}"


def _json_or_empty(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def wait_baseline(st: DockerStack, timeout: float = 25.0) -> None:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _, status = st.run_json("status")
        if status["policies"] == [] and status["faults"] == [] and status["storage"]["mode"] == "redis":
            return
        time.sleep(0.5)
    raise AssertionError(f"the platform did not return to its baseline: {json.dumps(status)[:3000]}")


def assert_held(data: dict[str, Any]) -> None:
    assert data["passed"], data["verdict"]
    assert data["during"]["lost"] == 0 and data["during"]["sent"] > 0
    assert all(step["ok"] for step in data["rollback"]), data["rollback"]


# ---- the tests run in this order; the last takes the stack down ------------------------------------------
def test_every_component_runs_in_its_own_labelled_container_and_is_healthy(dstack: DockerStack) -> None:
    code, status = dstack.run_json("stack", "status", "--runtime", "docker")
    assert code == 0, status
    assert status["runtime"] == "docker" and status["healthy"]
    names = {c["name"] for c in status["components"]}
    for comp in status["components"]:
        assert comp["running"] and comp["healthy"] and comp["pid"], comp
        labels = dstack.container(comp["name"]).labels
        assert labels[spec.LABEL_STACK] == NAME and labels[spec.LABEL_COMPONENT] == comp["name"]
    assert len(dstack.leftovers()["containers"]) >= len(names)
    assert "prometheus" in names  # in a container of its own too, scraping every service and Toxiproxy
    prom = dstack.inventory.prometheus
    assert prom is not None
    deadline = time.monotonic() + 30
    while True:
        targets = httpx.get(f"{prom.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        down = [t["scrapeUrl"] for t in targets if t["health"] != "up"]
        if targets and not down:
            break
        assert time.monotonic() < deadline, f"Prometheus targets not up: {down or 'none'}"
        time.sleep(1)


def test_a_second_up_is_idempotent(dstack: DockerStack) -> None:
    before = {c.name: c.id for c in dstack.client.containers.list(filters=spec.stack_filter(NAME))}
    code, status = dstack.run_json("stack", "up", "--runtime", "docker", timeout=300)
    assert code == 0 and status["healthy"]
    after = {c.name: c.id for c in dstack.client.containers.list(filters=spec.stack_filter(NAME))}
    assert after == before


def test_logs_are_the_containers_output(dstack: DockerStack) -> None:
    proc = dstack.pushctl("stack", "logs", "access", "--runtime", "docker", "--lines", "0")
    assert proc.returncode == 0, proc.stderr
    assert "listening on 127.0.0.1" in proc.stdout


def test_drain_drill_holds_the_slo(dstack: DockerStack) -> None:
    code, data = dstack.run_json("drain", "--region", "south", "--spread", "2s", *PROBE, *CONFIRM)
    assert code == 0, data["verdict"]
    assert_held(data)
    assert data["measurements"]["drained"] is True and data["measurements"]["devices_left"] == 0
    wait_baseline(dstack)


def test_redis_crash_kills_the_container_and_the_drill_holds(dstack: DockerStack) -> None:
    started = dstack.container("redis-cache").attrs["State"]["StartedAt"]
    code, data = dstack.run_json(
        "fail", "redis", "--mode", "crash", "--duration", "8s", "--runtime", "docker", *PROBE, *CONFIRM
    )
    assert code == 0, data["verdict"]
    assert_held(data)
    assert data["measurements"]["fallback_detected_s"] is not None
    after = dstack.container("redis-cache").attrs["State"]
    assert after["Status"] == "running" and after["StartedAt"] != started  # killed, then started again
    wait_baseline(dstack)


def test_pause_freezes_a_container_and_resume_thaws_it(dstack: DockerStack) -> None:
    rt = dstack.runtime()
    comp = next(c for c in rt.components if c.name == "redis-store")

    async def scenario() -> tuple[bool, bool]:
        await rt.signal("redis-store", "pause")
        try:
            frozen, _ = await health.check(dstack.inventory, comp, timeout=0.5)
            assert dstack.container("redis-store").status == "paused"
        finally:
            await rt.signal("redis-store", "resume")
        thawed, _ = await health.check(dstack.inventory, comp, timeout=2.0)
        return frozen, thawed

    frozen, thawed = asyncio.run(scenario())
    assert not frozen and thawed


def test_cpu_limit_sets_a_quota_and_clear_lifts_it(dstack: DockerStack) -> None:
    code, _ = dstack.run_json("fault", "cpu", "bypass", "--cpus", "0.2", "--runtime", "docker", *CONFIRM)
    assert code == 0
    host = dstack.container("bypass").attrs["HostConfig"]
    assert (host["CpuQuota"], host["CpuPeriod"]) == (20_000, 100_000)
    code, _ = dstack.run_json("fault", "cpu", "bypass", "--clear", "--runtime", "docker")
    assert code == 0
    assert dstack.container("bypass").attrs["HostConfig"]["CpuQuota"] in (0, -1)


def test_zz_down_leaves_no_container_network_or_volume_with_the_label(dstack: DockerStack) -> None:
    code, data = dstack.run_json("stack", "down", "--runtime", "docker", timeout=120)
    assert code == 0
    assert "redis-cache" in data["stopped"]
    assert dstack.leftovers() == {"containers": [], "networks": [], "volumes": []}
    for comp in dstack.runtime().components:
        for port in comp.ports:
            assert not health.port_in_use(comp.host, port), f"{comp.name}'s port {port} is still open"
