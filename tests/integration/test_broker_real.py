"""Scheduler, dispatcher and the three brokers as real processes, behind real Toxiproxy links.

Self-contained: the module starts its own store (`redis-server`), its own Toxiproxy servers and the
five services on a free block of ports, and tears all of them down. A device here is a plain
`websockets` client speaking the documented frames (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from pushctl.contract import frames
from pushctl.contract.topology import Inventory, load_inventory
from pushctl.runtime.install import toxiproxy_path
from pushctl.runtime.paths import cache_dir
from tests.helpers import free_topology

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("scheduler", "dispatcher", "broker-north", "broker-east", "broker-south")
LINKS = {"device-north", "device-east", "device-south", "vpc-north", "vpc-east", "vpc-south"}
LINKS |= {"scheduler", "dispatcher", "store", "regions-store"}


@dataclass
class MiniStack:
    inv: Inventory
    path: Path
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.inv.token}"}

    def url(self, link: str) -> str:
        return self.inv.link_url(link)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            self.procs[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO
            )

    def start_service(self, name: str) -> None:
        self.start(name, [sys.executable, "-m", "pushstack.run", name, "--inventory", str(self.path)])

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def wait_healthy(self, name: str, timeout: float = 20) -> None:
        svc = self.inv.service(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{svc.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.procs[name].poll() is not None:
                break
            time.sleep(0.2)
        log = (self.logs / f"{name}.log").read_text()[-3000:]
        pytest.fail(f"{name} did not become healthy; its log:\n{log}", pytrace=False)

    def toxiproxy(self, link: str) -> str:
        return self.inv.toxiproxy[self.inv.link(link).toxiproxy].url


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiniStack]:
    toxiproxy = toxiproxy_path(cache_dir())
    if toxiproxy is None or shutil.which("redis-server") is None:
        pytest.skip("needs redis-server and toxiproxy-server (./dev setup installs them)")
    tmp = tmp_path_factory.mktemp("mini")
    path = free_topology(tmp, name="itest", reference=False, offsets=range(5000, 13000, 100))
    inv = load_inventory(path)
    st = MiniStack(inv, path, tmp)
    try:
        store = inv.service("redis-store")
        st.start(
            "redis-store",
            ["redis-server", "--port", str(store.port), "--bind", "127.0.0.1", "--save", ""],
        )
        for name, tp in inv.toxiproxy.items():
            st.start(name, [str(toxiproxy), "-host", "127.0.0.1", "-port", str(tp.port)], {"LOG_LEVEL": "warn"})
        for name, tp in inv.toxiproxy.items():
            proxies = [
                {"name": lk.name, "listen": f"127.0.0.1:{lk.listen}", "upstream": lk.upstream_addr}
                for lk in inv.links_on(name)
                if lk.name in LINKS
            ]
            _populate(tp.url, proxies)
        for name in SERVICES:
            st.start_service(name)
        for name in SERVICES:
            st.wait_healthy(name)
        yield st
    finally:
        for name in list(st.procs):
            st.stop(name)


def _populate(url: str, proxies: list[dict[str, str]]) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.post(f"{url}/populate", json=proxies, timeout=5).raise_for_status()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        else:
            return


# ---- helpers ------------------------------------------------------------------------------------
async def auth(url: str, device: str, token: str) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(url, compression=None)
    await ws.send(frames.Auth(device=device, token=token).model_dump_json())
    return ws, json.loads(await ws.recv())


async def endpoints(st: MiniStack, device: str, region: str, avoid: tuple[str, ...] = ()) -> list[str]:
    """The dispatcher's URLs for a device, less the regions a reconnect order says to avoid."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{st.url('dispatcher')}/v1/endpoints", params={"device": device, "region": region}) as r,
    ):
        return [e["url"] for e in (await r.json())["endpoints"] if e["region"] not in avoid]


async def eventually(check: Callable[[], Any], within: float, every: float = 0.25) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = await check()
        if got or time.monotonic() > deadline:
            return got
        await asyncio.sleep(every)


def store(st: MiniStack) -> redis.Redis:
    return redis.Redis(port=st.inv.service("redis-store").port, decode_responses=True)


# ---- tests --------------------------------------------------------------------------------------
async def test_device_connects_through_its_link_and_gets_pushes_with_acks(mini: MiniStack) -> None:
    token = frames.device_token(mini.inv.token, "itest-1")
    urls = await endpoints(mini, "itest-1", "south")
    assert urls[0] == mini.inv.link_url("device-south", "ws") + "/ws"
    ws, ok = await auth(urls[0], "itest-1", token)
    assert ok == {"type": "auth_ok", "broker": "broker-south", "region": "south"}
    db = store(mini)
    assert db.hget("routes", "itest-1") == "broker-south"
    assert db.sismember("region-devices:south", "itest-1")
    assert "itest-1" in db.lrange("online-events", 0, -1)

    async def acker() -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "push":
                await ws.send(frames.Ack(id=frame["id"]).model_dump_json())

    task = asyncio.create_task(acker())
    msgs = [
        {"id": "m1", "device": "itest-1", "sent_at": time.time(), "payload": "hi"},
        {"id": "m2", "device": "absent", "sent_at": time.time(), "payload": "hi"},
    ]
    async with (
        aiohttp.ClientSession(headers=mini.auth) as http,
        http.post(f"{mini.url('vpc-south')}/v1/deliver", json={"messages": msgs, "timeout_ms": 2000}) as r,
    ):
        result = await r.json()
        assert (result["acked"], result["acked_devices"]) == (["m1"], ["itest-1"])
        assert (result["offline"], result["offline_devices"]) == (["m2"], ["absent"])
        assert result["timeout"] == []
    await ws.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    gone = await eventually(lambda: asyncio.to_thread(lambda: db.hget("routes", "itest-1") is None), 3)
    assert gone, "the route of a device that left must be deleted"


async def test_bad_token_is_refused(mini: MiniStack) -> None:
    ws, reply = await auth(mini.inv.link_url("device-north", "ws") + "/ws", "itest-bad", "f" * 32)
    assert reply["code"] == "unauthorized"
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == frames.CLOSE_UNAUTHORIZED


async def test_drain_moves_devices_to_the_next_region_and_withdrawal_restores(mini: MiniStack) -> None:
    n = 40
    devices = [f"itest-drain-{i}" for i in range(n)]
    south = mini.inv.link_url("device-south", "ws") + "/ws"
    conns = {d: (await auth(south, d, frames.device_token(mini.inv.token, d)))[0] for d in devices}
    moved: dict[str, ClientConnection] = {}
    codes: list[int | None] = []

    async def follow(device: str, ws: ClientConnection) -> None:
        order = json.loads(await ws.recv())
        assert order["type"] == "reconnect" and order["avoid"] == ["south"]
        await asyncio.sleep(order["after_ms"] / 1000)
        urls = await endpoints(mini, device, "south", avoid=tuple(order["avoid"]))
        new, ok = await auth(urls[0], device, frames.device_token(mini.inv.token, device))
        assert ok["type"] == "auth_ok", ok
        moved[device] = new
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            codes.append(exc.rcvd.code if exc.rcvd else None)

    async with aiohttp.ClientSession(headers=mini.auth) as http:
        followers = [asyncio.create_task(follow(d, ws)) for d, ws in conns.items()]
        async with http.post(f"{mini.url('scheduler')}/v1/policies", json={"region": "south", "spread_s": 1}) as r:
            assert r.status == 201
            policy = await r.json()
        await asyncio.wait_for(asyncio.gather(*followers), 15)
        assert codes == [frames.CLOSE_RECONNECT] * n
        assert (await endpoints(mini, "x", "south"))[0].endswith(f":{mini.inv.link('device-east').listen}/ws")
        db = store(mini)
        assert set(db.hmget("routes", devices)) == {"broker-east"}  # the old broker did not delete them
        _, refused = await auth(south, "itest-late", frames.device_token(mini.inv.token, "itest-late"))
        assert refused["code"] == "draining"
        async with http.delete(f"{mini.url('scheduler')}/v1/policies/{policy['id']}") as r:
            assert r.status == 204

        async def south_back() -> bool:
            return (await endpoints(mini, "x", "south"))[0] == south

        assert await eventually(south_back, 3)
        ws, ok = await auth(south, "itest-late", frames.device_token(mini.inv.token, "itest-late"))
        assert ok["type"] == "auth_ok"
        await ws.close()
    for ws in moved.values():
        await ws.close()


async def test_draining_every_region_is_refused(mini: MiniStack) -> None:
    async with aiohttp.ClientSession(headers=mini.auth) as http:
        sched = f"{mini.url('scheduler')}/v1/policies"
        for region in ("north", "east"):
            async with http.post(sched, json={"region": region, "spread_s": 0}) as r:
                assert r.status == 201
        async with http.post(sched, json={"region": "south"}) as r:
            assert r.status == 409
            assert "last healthy region" in (await r.json())["error"]
        async with http.delete(sched) as r:
            assert r.status == 204
        async with http.get(sched) as r:
            assert (await r.json())["policies"] == []


async def test_connection_limit_refuses_with_over_limit(mini: MiniStack) -> None:
    north = mini.inv.link_url("device-north", "ws") + "/ws"
    async with aiohttp.ClientSession(headers=mini.auth) as http:
        async with http.put(f"{mini.url('scheduler')}/v1/auto", json={"enabled": False}) as r:
            assert r.status == 200
        async with http.put(f"{mini.url('vpc-north')}/v1/limit", json={"limit": 1}) as r:
            assert (await r.json())["limit"] == 1
        try:
            first, ok = await auth(north, "itest-l1", frames.device_token(mini.inv.token, "itest-l1"))
            assert ok["type"] == "auth_ok"
            second, refused = await auth(north, "itest-l2", frames.device_token(mini.inv.token, "itest-l2"))
            assert refused["code"] == "over_limit" and refused["retry_after_ms"] > 0
            with pytest.raises(ConnectionClosed) as info:
                await second.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == frames.CLOSE_OVER_LIMIT
            await first.close()
        finally:
            async with http.put(f"{mini.url('vpc-north')}/v1/limit", json={"limit": 9000}) as r:
                assert r.status == 200
            async with http.put(f"{mini.url('scheduler')}/v1/auto", json={"enabled": True}) as r:
                assert r.status == 200


async def test_unreachable_broker_is_drained_automatically_and_restored(mini: MiniStack) -> None:
    east = mini.inv.link_url("device-east", "ws") + "/ws"
    ws, ok = await auth(east, "itest-auto", frames.device_token(mini.inv.token, "itest-auto"))
    assert ok["type"] == "auth_ok"
    proxy = f"{mini.toxiproxy('vpc-east')}/proxies/vpc-east"
    async with aiohttp.ClientSession(headers=mini.auth) as http:

        async def policies() -> list[dict[str, Any]]:
            async with http.get(f"{mini.url('scheduler')}/v1/policies") as r:
                return list((await r.json())["policies"])

        async with http.patch(proxy, json={"enabled": False}) as r:
            assert r.status == 200
        try:
            # the broker hears of the drain through the scheduler link, not the broken VPC link
            order = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert order["type"] == "reconnect" and order["avoid"] == ["east"]
            (policy,) = await policies()
            assert (policy["region"], policy["origin"]) == ("east", "auto")
        finally:
            async with http.patch(proxy, json={"enabled": True}) as r:
                assert r.status == 200

        async def withdrawn() -> bool:
            return not await policies()

        assert await eventually(withdrawn, 10)
    await ws.close()


async def test_scheduler_restart_keeps_its_policies(mini: MiniStack) -> None:
    async with aiohttp.ClientSession(headers=mini.auth) as http:
        sched = f"{mini.url('scheduler')}/v1/policies"
        async with http.post(sched, json={"region": "north", "spread_s": 0}) as r:
            policy = await r.json()
        await asyncio.to_thread(mini.stop, "scheduler")
        mini.start_service("scheduler")
        await asyncio.to_thread(mini.wait_healthy, "scheduler")
        async with http.get(sched) as r:
            assert [p["id"] for p in (await r.json())["policies"]] == [policy["id"]]
        async with http.delete(sched) as r:
            assert r.status == 204


async def test_every_service_exports_its_documented_metrics(mini: MiniStack) -> None:
    doc = (REPO / "docs" / "protocol.md").read_text()
    async with aiohttp.ClientSession() as http:
        for name in SERVICES:
            async with http.get(f"http://127.0.0.1:{mini.inv.service(name).port}/metrics") as r:
                text = await r.text()
            types = re.findall(r"^# TYPE (pushstack_\w+) ", text, re.M)
            exported = {m for m in types if not m.endswith("_created")}  # client-added timestamps
            assert exported, name
            for metric in exported:
                assert metric in doc, f"{name} exports {metric}, which docs/protocol.md does not list"


async def test_a_stopping_broker_says_1001_through_its_link_and_logs_no_connection_at_info(mini: MiniStack) -> None:
    """SIGTERM: every device (authenticated or not) reads 1001 going away, the process exits 0 at once."""
    url = mini.inv.link_url("device-north", "ws") + "/ws"
    devices = [
        (await auth(url, f"itest-stop-{i}", frames.device_token(mini.inv.token, f"itest-stop-{i}")))[0]
        for i in range(3)
    ]
    silent = await connect(url, compression=None)  # connected, auth not sent yet
    proc = mini.procs["broker-north"]
    started = time.monotonic()
    await asyncio.to_thread(mini.stop, "broker-north")
    try:
        assert proc.returncode == 0 and time.monotonic() - started < 5
        for ws in [*devices, silent]:
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        log = (mini.logs / "broker-north.log").read_text()
        assert "New connection accepted" not in log and "Disconnected" not in log  # picows's per-socket INFO
    finally:
        mini.start_service("broker-north")
        await asyncio.to_thread(mini.wait_healthy, "broker-north")
