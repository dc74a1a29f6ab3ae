"""The broker in-process: a real WebSocket server and client, a fake route store."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pushstack.broker as broker_module
import pytest
from pushstack.acks import push_frame
from pushstack.broker import Broker, drain_plan
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from pushctl.contract import frames
from pushctl.contract.api import Message, Policy, PolicySet
from tests.helpers import free_inventory

pytestmark = pytest.mark.timeout(30)


class FakeRoutes:
    """Records route claims and releases; resolves claims at once."""

    healthy = True

    def __init__(self) -> None:
        self.claimed: list[str] = []
        self.released: list[str] = []

    def claim(self, device: str) -> asyncio.Future[None]:
        self.claimed.append(device)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def release(self, device: str) -> None:
        self.released.append(device)

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def flush(self) -> None:
        return None


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    inv = free_inventory(tmp_path)
    svc = Broker(inv, "broker-south", route_sink=FakeRoutes())
    async with svc:
        yield svc


def url(b: Broker) -> str:
    return f"ws://127.0.0.1:{b.spec.port}/ws"


async def device(b: Broker, dev: str, token: str | None = None) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(url(b), compression=None)
    token = token or frames.device_token(b.inv.token, dev)
    await ws.send(frames.Auth(device=dev, token=token).model_dump_json())
    return ws, json.loads(await ws.recv())


async def eventually(condition: Callable[[], bool], within: float = 2.0) -> None:
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    assert condition()


def drain_set(region: str, spread_s: float, version: int = 1) -> PolicySet:
    policy = Policy(region=region, spread_s=spread_s, id=f"drain-{region}-x", created_at=0.0)
    return PolicySet(version=version, policies=[policy])


# ---- pure parts ---------------------------------------------------------------------------------
def test_drain_plan_spreads_every_device_once_over_the_window() -> None:
    devices = [f"d{i}" for i in range(1000)]
    plan = drain_plan(devices, 10.0, random.Random(7))
    assert sorted(d for d, _ in plan) == sorted(devices)
    delays = sorted(ms for _, ms in plan)
    assert 0 <= delays[0] and delays[-1] < 10_000
    # flat: every second of the window gets a tenth of the devices
    per_second = [sum(1 for ms in delays if s * 1000 <= ms < (s + 1) * 1000) for s in range(10)]
    assert per_second == [100] * 10


def test_drain_plan_is_not_predictable_from_device_order() -> None:
    devices = [f"d{i}" for i in range(100)]
    plan = drain_plan(devices, 5.0, random.Random(1))
    assert [d for d, _ in plan] != devices


def test_drain_plan_without_spread_orders_all_at_once() -> None:
    assert {ms for _, ms in drain_plan(["a", "b"], 0.0, random.Random(0))} == {0}
    assert drain_plan([], 5.0, random.Random(0)) == []


def test_push_frame_is_the_contract_frame() -> None:
    msg = Message(id="m1", device="d1", sent_at=12.5, payload='hé "x"')
    frame = frames.Push.model_validate_json(push_frame(msg))
    assert (frame.id, frame.payload, frame.sent_at) == ("m1", 'hé "x"', 12.5)


# ---- the broker over a real socket --------------------------------------------------------------
async def test_auth_ok_records_the_route_and_disconnect_releases_it(broker: Broker) -> None:
    ws, reply = await device(broker, "dev-1")
    assert reply == {"type": "auth_ok", "broker": "broker-south", "region": "south"}
    assert broker.connections.count == 1
    routes = broker._routes
    assert isinstance(routes, FakeRoutes) and routes.claimed == ["dev-1"]
    await ws.close()
    await eventually(lambda: routes.released == ["dev-1"])
    assert broker.connections.count == 0


async def test_bad_token_is_refused_with_1008(broker: Broker) -> None:
    ws, reply = await device(broker, "dev-1", token="0" * 32)
    assert reply["type"] == "error" and reply["code"] == "unauthorized"
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == frames.CLOSE_UNAUTHORIZED


async def test_first_frame_must_be_auth(broker: Broker) -> None:
    ws = await connect(url(broker))
    await ws.send(json.dumps({"type": "ack", "id": "x"}))
    reply = json.loads(await ws.recv())
    assert reply["code"] == "bad_frame"
    with pytest.raises(ConnectionClosed):
        await ws.recv()


async def test_over_limit_is_refused_with_retry_hint_and_1013(broker: Broker) -> None:
    broker.limit = 1
    ws1, ok = await device(broker, "dev-1")
    assert ok["type"] == "auth_ok"
    ws2, reply = await device(broker, "dev-2")
    assert reply["code"] == "over_limit" and reply["retry_after_ms"] > 0
    with pytest.raises(ConnectionClosed) as info:
        await ws2.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == frames.CLOSE_OVER_LIMIT
    await ws1.close()


async def test_newer_connection_of_a_device_replaces_the_older(broker: Broker) -> None:
    old, _ = await device(broker, "dev-1")
    new, ok = await device(broker, "dev-1")
    assert ok["type"] == "auth_ok"
    with pytest.raises(ConnectionClosed) as info:
        await old.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == frames.CLOSE_REPLACED
    await eventually(lambda: broker.connections.count == 1)
    routes = broker._routes
    assert isinstance(routes, FakeRoutes) and routes.released == []  # the route still points here
    await new.close()


async def test_ping_gets_pong(broker: Broker) -> None:
    ws, _ = await device(broker, "dev-1")
    await ws.send(frames.Ping().model_dump_json())
    assert json.loads(await ws.recv()) == {"type": "pong"}
    await ws.close()


async def test_deliver_reports_acked_offline_and_timeout(broker: Broker) -> None:
    acking, _ = await device(broker, "acker")
    silent, _ = await device(broker, "silent")

    async def ack_all() -> None:
        async for raw in acking:
            frame = json.loads(raw)
            await acking.send(frames.Ack(id=frame["id"]).model_dump_json())

    acker = asyncio.create_task(ack_all())
    msgs = [
        Message(id="m1", device="acker", sent_at=1.0, payload="p1"),
        Message(id="m2", device="acker", sent_at=1.0, payload="p2"),
        Message(id="m3", device="silent", sent_at=1.0, payload="p3"),
        Message(id="m4", device="nobody", sent_at=1.0, payload="p4"),
    ]
    result = await broker.deliver(msgs, timeout_s=0.5)
    assert sorted(result.acked) == ["m1", "m2"] and result.acked_devices == ["acker", "acker"]
    assert (result.offline, result.offline_devices) == (["m4"], ["nobody"])
    assert (result.timeout, result.timeout_devices) == (["m3"], ["silent"])
    assert json.loads(await silent.recv())["id"] == "m3"  # written, just never acked
    assert len(broker._acks) == 0
    acker.cancel()
    await acking.close()
    await silent.close()


async def test_group_fan_out_reports_each_device_of_a_shared_id(broker: Broker) -> None:
    acking, _ = await device(broker, "g-acker")
    silent, _ = await device(broker, "g-silent")

    async def ack_all() -> None:
        async for raw in acking:
            await acking.send(frames.Ack(id=json.loads(raw)["id"]).model_dump_json())

    acker = asyncio.create_task(ack_all())
    msgs = [Message(id="g1", device=d, sent_at=1.0, payload="p", group="g") for d in ("g-acker", "g-silent", "g-gone")]
    result = await broker.deliver(msgs, timeout_s=0.3)
    assert (result.acked, result.acked_devices) == (["g1"], ["g-acker"])
    assert (result.timeout, result.timeout_devices) == (["g1"], ["g-silent"])
    assert (result.offline, result.offline_devices) == (["g1"], ["g-gone"])
    # the frame encoded once for the whole group still reaches each device as a TEXT frame (str)
    raw = await silent.recv()
    assert isinstance(raw, str) and frames.Push.model_validate_json(raw).id == "g1"
    acker.cancel()
    await asyncio.gather(acker, return_exceptions=True)
    await acking.close()
    await silent.close()


async def test_deliver_over_http_needs_the_token(broker: Broker) -> None:
    import aiohttp

    base = f"http://127.0.0.1:{broker.internal_port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/deliver", json={"messages": []}) as resp:
            assert resp.status == 401
        headers = {"Authorization": f"Bearer {broker.inv.token}"}
        async with http.post(f"{base}/v1/deliver", json={"messages": []}, headers=headers) as resp:
            assert resp.status == 200
            assert await resp.json() == {
                "acked": [],
                "offline": [],
                "timeout": [],
                "acked_devices": [],
                "offline_devices": [],
                "timeout_devices": [],
            }
        async with http.put(f"{base}/v1/limit", json={"limit": 7}, headers=headers) as resp:
            assert (await resp.json())["limit"] == 7
        async with http.get(f"{base}/v1/connections", headers=headers) as resp:
            body = await resp.json()
            assert (body["count"], body["limit"], body["draining"]) == (0, 7, False)
        async with http.get(f"http://127.0.0.1:{broker.spec.port}/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["service"] == "broker-south"
        async with http.get(f"http://127.0.0.1:{broker.spec.port}/metrics") as resp:
            assert "pushstack_broker_connection_limit 7.0" in await resp.text()


async def test_drain_orders_reconnects_closes_with_4000_and_refuses_new_devices(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_module, "CLOSE_GRACE_S", 0.5)  # devices here ignore their orders
    conns = [(await device(broker, f"dev-{i}"))[0] for i in range(5)]
    broker.follower.offer(drain_set("south", spread_s=0.5))
    orders = [json.loads(await ws.recv()) for ws in conns]
    assert all(o["type"] == "reconnect" and o["avoid"] == ["south"] for o in orders)
    assert all(0 <= o["after_ms"] < 500 for o in orders)
    _, refused = await device(broker, "newcomer")
    assert refused["code"] == "draining"
    for ws in conns:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == frames.CLOSE_RECONNECT
    await eventually(lambda: broker.connections.count == 0)
    assert broker.connections.draining


async def test_withdrawn_drain_accepts_again_and_cancels_pending_closes(broker: Broker) -> None:
    ws, _ = await device(broker, "dev-1")
    broker.follower.offer(drain_set("south", spread_s=30.0, version=1))
    assert json.loads(await ws.recv())["type"] == "reconnect"
    broker.follower.offer(PolicySet(version=2, policies=[]))
    assert not broker.connections.draining
    _, ok = await device(broker, "dev-2")
    assert ok["type"] == "auth_ok"
    await eventually(lambda: broker.connections.count == 2)


async def test_other_regions_drain_and_older_sets_are_ignored(broker: Broker) -> None:
    broker.follower.offer(drain_set("north", spread_s=1.0, version=5))
    assert broker.draining is None
    assert not broker.follower.offer(drain_set("south", spread_s=1.0, version=4))
    assert broker.draining is None and broker.follower.current.version == 5


class HeldRoutes(FakeRoutes):
    """Claims resolve only when the test says so: the store write is still in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[asyncio.Future[None]] = []

    def claim(self, device: str) -> asyncio.Future[None]:
        self.claimed.append(device)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        return fut


async def test_auth_ok_is_the_first_frame_even_when_a_push_comes_during_the_route_write(tmp_path: Path) -> None:
    routes = HeldRoutes()
    async with Broker(free_inventory(tmp_path), "broker-south", route_sink=routes) as b:
        ws = await connect(url(b), compression=None)
        await ws.send(frames.Auth(device="d1", token=frames.device_token(b.inv.token, "d1")).model_dump_json())
        while not routes.pending:  # noqa: ASYNC110 - polling the fake is the simplest wait here
            await asyncio.sleep(0.01)
        # the route is in the store (a gateway saw the online event) but auth_ok is not out yet
        msg = Message(id="m1", device="d1", sent_at=time.time(), payload="early")
        delivering = asyncio.create_task(b.deliver([msg], 5.0))
        await asyncio.sleep(0.1)
        routes.pending[0].set_result(None)
        first = json.loads(await ws.recv())
        assert first["type"] == "auth_ok", first
        second = json.loads(await ws.recv())
        assert second["type"] == "push" and second["id"] == "m1"
        await ws.send(frames.Ack(id="m1").model_dump_json())
        result = await delivering
        assert result.acked == ["m1"]
        await ws.close()
