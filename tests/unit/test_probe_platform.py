"""Devices, probe, sharding and the probe CLI against a tiny fake push platform.

`FakePlatform` implements only the device-facing contract (dispatcher, brokers, access tier) on
127.0.0.1 ports outside the ephemeral range. It lives here, in the tests, and never in the probe:
the shipped probe talks to the real stack. It can drop messages, duplicate them, drain a region,
break a region's connections and refuse connections, so every probe behaviour has a test where
something goes wrong on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import typer
from aiohttp import web
from typer.testing import CliRunner
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from pushctl.cli import probe as probe_cli
from pushctl.cli import slo as slo_cli
from pushctl.contract import frames
from pushctl.contract.api import AccessResult, Endpoint, Endpoints, GroupPush, SingleBatch
from pushctl.contract.topology import Inventory, load_inventory
from pushctl.errors import SloBreached, TargetUnreachable
from pushctl.probe import Ledger, Probe, ProbeOptions
from pushctl.probe.fleet import Fleet
from pushctl.probe.probe import device_config
from pushctl.runtime.pids import pid_alive

TOKEN = "fake-platform-token"  # noqa: S105 - the fake platform's test secret
NEAREST = {
    "north": ["north", "east", "south"],
    "east": ["east", "north", "south"],
    "south": ["south", "east", "north"],
}
pytestmark = pytest.mark.timeout(90)


def free_ports(n: int, lo: int = 26000, hi: int = 27000) -> list[int]:
    """n free 127.0.0.1 ports in [lo, hi): outside the kernel's ephemeral range."""
    found: list[int] = []
    candidates = list(range(lo, hi))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == n:
            return found
    raise RuntimeError("no free ports")


class FakePlatform:
    """Dispatcher + three brokers + access tier, just enough of the contract to drive devices."""

    def __init__(self) -> None:
        ports = free_ports(5)
        self.broker_ports = dict(zip(NEAREST, ports[:3], strict=True))
        self.dispatcher_port, self.access_port = ports[3], ports[4]
        self.conns: dict[str, dict[str, ServerConnection]] = {r: {} for r in NEAREST}
        self.routes: dict[str, ServerConnection] = {}
        self.seen: dict[str, set[str]] = {r: set() for r in NEAREST}
        self.offline: dict[str, list[frames.Push]] = {}
        self.unacked: dict[ServerConnection, dict[str, tuple[str, frames.Push]]] = {}
        self.acked: set[str] = set()
        self.drained: set[str] = set()
        self.limits: dict[str, int] = {}
        self.drop: Callable[[str], bool] = lambda msg_id: False
        self.duplicate = False
        self.redeliver = True  # False: what a closed connection left unacked is gone (at most once)
        self.dispatcher_up = True
        self.dispatcher_calls = 0
        # called right after a broker's auth_ok went out (device, region): what a broker does next
        self.after_auth: Callable[[str, str], Coroutine[Any, Any, None]] | None = None
        self._servers: list[Server] = []
        self._runners: list[web.AppRunner] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        for region, port in self.broker_ports.items():
            server = await serve(functools.partial(self._region_broker, region), "127.0.0.1", port, compression=None)
            self._servers.append(server)
        for port, routes in (
            (self.dispatcher_port, [web.get("/v1/endpoints", self._endpoints)]),
            (
                self.access_port,
                [web.post("/v1/push/batch", self._batch), web.post("/v1/push/group", self._group)],
            ),
        ):
            app = web.Application()
            app.add_routes(routes)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self._runners.append(runner)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()
        for runner in self._runners:
            await runner.cleanup()
        for task in list(self._tasks):
            task.cancel()

    def url(self, region: str) -> str:
        return f"ws://127.0.0.1:{self.broker_ports[region]}/ws"

    # ---- brokers -------------------------------------------------------------------------------
    async def _region_broker(self, region: str, ws: ServerConnection) -> None:
        await self._broker(ws, region)

    async def _broker(self, ws: ServerConnection, region: str) -> None:
        try:
            auth = frames.Auth.model_validate_json(await asyncio.wait_for(ws.recv(), 5))
        except (TimeoutError, ConnectionClosed, ValueError):
            return
        device = auth.device
        if auth.token != frames.device_token(TOKEN, device):
            await ws.send(frames.Error(code="unauthorized", reason="bad token").model_dump_json())
            await ws.close(frames.CLOSE_UNAUTHORIZED)
            return
        if region in self.drained or len(self.conns[region]) >= self.limits.get(region, 1 << 30):
            code: Literal["draining", "over_limit"] = "draining" if region in self.drained else "over_limit"
            await ws.send(frames.Error(code=code, reason=code, retry_after_ms=100).model_dump_json())
            await ws.close(frames.CLOSE_OVER_LIMIT)
            return
        self.conns[region][device] = ws
        self.routes[device] = ws
        self.seen[region].add(device)
        self.unacked[ws] = {}
        try:
            await ws.send(frames.AuthOk(broker=f"broker-{region}", region=region).model_dump_json())
            if self.after_auth is not None:
                await self.after_auth(device, region)
            for push in self.offline.pop(device, []):
                await self._push(ws, device, push)
            async for raw in ws:
                frame = json.loads(raw)
                if frame["type"] == "ack":
                    self.acked.add(frame["id"])
                    self.unacked[ws].pop(frame["id"], None)
                elif frame["type"] == "ping":
                    await ws.send(frames.Pong().model_dump_json())
        except ConnectionClosed:
            pass
        finally:
            if self.conns[region].get(device) is ws:
                del self.conns[region][device]
            if self.routes.get(device) is ws:
                del self.routes[device]
            for dev, push in self.unacked.pop(ws, {}).values():  # at least once: redeliver unacked
                if self.redeliver:
                    await self.deliver(dev, push)

    async def _push(self, ws: ServerConnection, device: str, push: frames.Push) -> None:
        self.unacked.setdefault(ws, {})[push.id] = (device, push)
        await ws.send(push.model_dump_json())
        if self.duplicate:
            await ws.send(push.model_dump_json())

    async def deliver(self, device: str, push: frames.Push) -> None:
        ws = self.routes.get(device)
        if ws is not None and ws in self.unacked:
            try:
                await self._push(ws, device, push)
            except ConnectionClosed:
                pass  # the handler's finally redelivers it
            else:
                return
        self.offline.setdefault(device, []).append(push)

    def drain(self, region: str, after_ms: int = 300, grace_s: float = 1.0) -> None:
        self.drained.add(region)
        for ws in list(self.conns[region].values()):
            order = frames.Reconnect(after_ms=random.randint(0, after_ms), avoid=[region], reason="drain")
            self._spawn(self._order(ws, order, grace_s))

    async def _order(self, ws: ServerConnection, order: frames.Reconnect, grace_s: float) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(order.model_dump_json())
            await asyncio.sleep(grace_s)
            await ws.close(frames.CLOSE_RECONNECT, "drained")

    def withdraw(self, region: str) -> None:
        self.drained.discard(region)

    def break_region(self, region: str) -> None:
        """A region's public network drops every connection at once (no close handshake)."""
        for ws in list(self.conns[region].values()):
            ws.transport.abort()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- dispatcher and access -----------------------------------------------------------------
    async def _endpoints(self, request: web.Request) -> web.Response:
        self.dispatcher_calls += 1
        if not self.dispatcher_up:
            return web.Response(status=503)
        home = request.query.get("region", "north")
        eps = [Endpoint(region=r, url=self.url(r)) for r in NEAREST[home] if r not in self.drained]
        body = Endpoints(device=request.query["device"], endpoints=eps)
        return web.Response(text=body.model_dump_json(), content_type="application/json")

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {TOKEN}"

    async def _batch(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        batch = SingleBatch.model_validate_json(await request.read())
        for m in batch.messages:
            if not self.drop(m.id):
                await self.deliver(m.device, frames.Push(id=m.id, payload=m.payload, sent_at=m.sent_at))
        n = len(batch.messages)
        return web.Response(text=AccessResult(accepted=n, direct=n, buffered=0, rejected=0).model_dump_json())

    async def _group(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        group = GroupPush.model_validate_json(await request.read())
        targets = group.devices if group.devices is not None else sorted(self.seen[group.region or ""])
        if not self.drop(group.id):
            for device in targets:
                await self.deliver(device, frames.Push(id=group.id, payload=group.payload, sent_at=group.sent_at))
        return web.Response(text=AccessResult(accepted=1, direct=1, buffered=0, rejected=0).model_dump_json())

    # ---- an inventory pointing at it -----------------------------------------------------------
    def inventory_text(self) -> str:
        dummy = iter(free_ports(12, 27000, 28000))
        lines = ['name = "fake"', f'token = "{TOKEN}"']
        for region, nearest in NEAREST.items():
            lines += [f"[regions.{region}]", f'toxiproxy = "tp-{region}"', f"nearest = {json.dumps(nearest)}"]
        for tp in [*NEAREST, "internal"]:
            lines += [f"[toxiproxy.tp-{tp}]", f"port = {next(dummy)}"]
        lines += ["[idcs.idc1]", "[services.dispatcher]", 'kind = "dispatcher"', f"port = {next(dummy)}"]
        lines += ["[services.access]", 'kind = "access"', f"port = {self.access_port}"]
        for region in NEAREST:
            lines += [f"[services.broker-{region}]", 'kind = "broker"', f'region = "{region}"']
            lines += [f"port = {next(dummy)}", f"internal_port = {next(dummy)}"]
        for region, port in self.broker_ports.items():
            lines += ["[[links]]", f'name = "device-{region}"', 'kind = "device"', f'region = "{region}"']
            lines += [f'toxiproxy = "tp-{region}"', f"listen = {port}", f'upstream = "broker-{region}"']
        lines += ["[[links]]", 'name = "dispatcher"', 'kind = "public"', 'toxiproxy = "tp-internal"']
        lines += [f"listen = {self.dispatcher_port}", 'upstream = "dispatcher"']
        return "\n".join(lines) + "\n"

    def inventory(self, tmp_path: Path) -> Inventory:
        path = tmp_path / "fake-topology.toml"
        path.write_text(self.inventory_text())
        return load_inventory(path)


@pytest.fixture
async def platform() -> AsyncIterator[FakePlatform]:
    fake = FakePlatform()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def opts(**kw: object) -> ProbeOptions:
    base: dict[str, object] = {
        "devices": 30, "rate": 60.0, "duration": 1.5, "grace": 1.5, "workers": 0,
        "connect_rate": 300.0, "seed": 7, "recheck_s": 30.0,
    }  # fmt: skip
    base.update(kw)
    return ProbeOptions(**base)  # type: ignore[arg-type]


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


alive = pid_alive


# ---- one device, up close ------------------------------------------------------------------------
async def test_device_acks_every_push_and_counts_raw_duplicates(platform: FakePlatform, tmp_path: Path) -> None:
    platform.duplicate = True
    config = device_config(platform.inventory(tmp_path))
    ledger = Ledger(deadline=1.0)
    fleet = Fleet(config, [("dev-1", "north"), ("dev-2", "east")], ledger)
    await fleet.start()
    try:
        assert await fleet.wait_connected(within=5)
        assert dict(fleet.connected_by_region) == {"north": 1, "east": 1}
        now = time.time()
        for i in range(5):
            ledger.sent(f"m{i}", now, ["dev-1"])
            await platform.deliver("dev-1", frames.Push(id=f"m{i}", payload="x", sent_at=now))
        await until(lambda: len(platform.acked) == 5)
    finally:
        await fleet.stop()
    summary = ledger.summary()
    assert (summary.sent, summary.on_time, summary.lost) == (5, 5, 0)
    assert summary.raw_duplicates == 5
    assert summary.duplicates == 0
    stats = {s.device: s for s in fleet.stats()}
    assert stats["dev-1"].pushes == 10 and stats["dev-1"].raw_duplicates == 5
    assert stats["dev-1"].events[0].cause == "initial"


async def drain_north_of(
    fleet: Fleet,
    platform: FakePlatform,
    after_auth: Callable[[str, str], Coroutine[Any, Any, None]],
    *,
    grace_s: float,
    lands_in: str,
) -> None:
    """Connect `fleet` (devices at home in north), drain north with `after_auth` hooked into the
    brokers, and wait until every device is in `lands_in`; the fleet is stopped if that fails."""
    await fleet.start()
    try:
        assert await fleet.wait_connected(within=5)
        platform.after_auth = after_auth
        platform.drain("north", after_ms=0, grace_s=grace_s)
        await until(lambda: +fleet.connected_by_region == Counter({lands_in: len(fleet.stats())}))
    except BaseException:
        await fleet.stop()
        raise


async def test_a_push_the_old_broker_writes_after_a_handover_reaches_the_app_once(
    platform: FakePlatform, tmp_path: Path
) -> None:
    """Make before break: the old connection is read until its close handshake ends.

    The fake broker does not redeliver here, so the push only arrives if the device reads it on
    the connection it is leaving.
    """
    platform.redeliver = False
    ledger = Ledger(deadline=1.0)
    fleet = Fleet(device_config(platform.inventory(tmp_path)), [("dev-1", "north")], ledger)
    in_flight = frames.Push(id="in-flight", payload="x", sent_at=time.time())

    async def old_broker_still_writes(device: str, region: str) -> None:
        old = platform.conns["north"].get(device)
        if region == "east" and old is not None:  # authenticated in east, north not yet closed
            ledger.sent(in_flight.id, in_flight.sent_at, [device])
            await platform._push(old, device, in_flight)

    await drain_north_of(fleet, platform, old_broker_still_writes, grace_s=2.0, lands_in="east")
    try:
        await until(lambda: ledger.summary().on_time == 1)
    finally:
        await fleet.stop()
    summary = ledger.summary()
    assert (summary.sent, summary.on_time, summary.lost, summary.duplicates) == (1, 1, 0, 0)


async def test_an_order_right_behind_auth_ok_moves_the_device_on(platform: FakePlatform, tmp_path: Path) -> None:
    """A device handed over to a region that is itself drained leaves it too (the order is not dropped)."""
    fleet = Fleet(device_config(platform.inventory(tmp_path)), [("dev-1", "north")], Ledger(deadline=1.0))

    async def east_drains_too(device: str, region: str) -> None:
        if region == "east":
            order = frames.Reconnect(after_ms=0, avoid=["north", "east"], reason="drain east")
            await platform.conns["east"][device].send(order.model_dump_json())

    await drain_north_of(fleet, platform, east_drains_too, grace_s=5.0, lands_in="south")
    await fleet.stop()
    (stats,) = fleet.stats()
    assert [e.to_region for e in stats.events] == ["north", "east", "south"]


async def test_refused_device_fails_over_to_the_next_endpoint(platform: FakePlatform, tmp_path: Path) -> None:
    platform.limits["north"] = 0
    config = device_config(platform.inventory(tmp_path))
    fleet = Fleet(config, [("dev-1", "north")], Ledger())
    await fleet.start()
    try:
        assert await fleet.wait_connected(within=5)
        assert dict(fleet.connected_by_region) == {"east": 1}  # north's list: north, east, south
    finally:
        await fleet.stop()
    (stats,) = fleet.stats()
    assert stats.refusals >= 1
    assert stats.events[0].to_region == "east" and stats.events[0].attempts >= 2


async def test_dispatcher_down_devices_use_the_static_ip_set(platform: FakePlatform, tmp_path: Path) -> None:
    platform.dispatcher_up = False
    config = device_config(platform.inventory(tmp_path))
    fleet = Fleet(config, [("dev-1", "south"), ("dev-2", "north")], Ledger())
    await fleet.start()
    try:
        assert await fleet.wait_connected(within=5)
        assert dict(fleet.connected_by_region) == {"south": 1, "north": 1}
        assert platform.dispatcher_calls >= 2
    finally:
        await fleet.stop()


async def test_unreachable_platform_is_reported_not_measured(tmp_path: Path) -> None:
    fake = FakePlatform()  # never started: nothing listens
    probe = Probe(fake.inventory(tmp_path), opts(devices=3, connect_timeout=1.0))
    with pytest.raises(TargetUnreachable, match="no probe device could connect"):
        await probe.start()


# ---- the probe ------------------------------------------------------------------------------------
async def test_probe_run_delivers_everything_on_time(platform: FakePlatform, tmp_path: Path) -> None:
    probe = Probe(platform.inventory(tmp_path), opts())
    summary = await probe.run()
    assert summary.sent == 90  # 60/s for 1.5 s
    assert (summary.on_time, summary.late, summary.lost, summary.duplicates) == (90, 0, 0, 0)
    assert summary.delivery_rate == 100.0
    assert set(summary.by_region) == {"north", "east", "south"}
    assert sum(c.sent for c in summary.by_region.values()) == 90
    assert summary.latency_ms.p99 is not None and summary.latency_ms.p99 < 1000
    assert [s.t for s in summary.per_second] == [0, 1]
    assert sum(s.sent for s in summary.per_second) == 90


async def test_a_large_connected_fleet_leaves_the_gc_and_returns_on_stop(
    platform: FakePlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full collections over thousands of devices made late deliveries; stop() gives the GC back."""
    monkeypatch.setattr("pushctl.probe.fleet.FREEZE_FROM_DEVICES", 10)
    before = gc.get_threshold()
    probe = Probe(platform.inventory(tmp_path), opts(duration=None))
    await probe.start()
    try:
        await until(lambda: gc.get_freeze_count() > 0)
        assert gc.get_threshold()[:2] == before[:2] and gc.get_threshold()[2] > 10**8
        await probe.stop()
    finally:
        await probe.close()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


async def test_probe_reports_what_the_platform_dropped(platform: FakePlatform, tmp_path: Path) -> None:
    """The checker shown to fail: the platform drops every message whose id ends in 7."""
    platform.drop = lambda msg_id: msg_id.endswith("7")
    probe = Probe(platform.inventory(tmp_path), opts(grace=0.5))
    summary = await probe.run()
    dropped = sum(1 for i in range(1, 91) if str(i).endswith("7"))
    assert summary.lost == dropped
    assert summary.on_time == 90 - dropped
    assert summary.delivery_rate is not None and summary.delivery_rate < 100
    assert summary.worst_seconds


async def test_group_pushes_count_one_delivery_per_device(platform: FakePlatform, tmp_path: Path) -> None:
    probe = Probe(platform.inventory(tmp_path), opts(rate=20.0, group_rate=4.0, group_size=5))
    summary = await probe.run()
    assert summary.sent == 30 + 6 * 5
    assert (summary.lost, summary.late) == (0, 0)


async def test_region_group_pushes_reach_every_device_seen_there(platform: FakePlatform, tmp_path: Path) -> None:
    probe = Probe(platform.inventory(tmp_path), opts(rate=0.0, group_rate=4.0, group_target="region"))
    summary = await probe.run()
    assert summary.sent == 6 * 10  # 10 devices per region
    assert summary.lost == 0 and summary.unexpected == 0


async def test_drain_moves_devices_away_and_home_again(platform: FakePlatform, tmp_path: Path) -> None:
    probe = Probe(platform.inventory(tmp_path), opts(duration=None, recheck_s=0.4, grace=3.0))
    await probe.start()
    try:
        asked = platform.dispatcher_calls
        await asyncio.sleep(1.5)
        assert platform.dispatcher_calls == asked  # at home: nothing better to ask for
        drained_at = time.time()
        platform.drain("north", after_ms=300, grace_s=1.0)
        await until(lambda: probe.snapshot().connected.get("north", 0) == 0)
        await until(lambda: probe.snapshot().online == 30)
        stats = probe.drain_stats(since=drained_at)
        assert stats.by_cause.get("order", 0) == 10
        assert "north" not in stats.to_region
        assert stats.max_s is not None and stats.max_s < 5
        platform.withdraw("north")
        await until(lambda: probe.snapshot().connected.get("north", 0) == 10)  # rebalanced home
        assert probe.drain_stats(since=drained_at).by_cause.get("rebalance", 0) >= 10
        summary = await probe.stop()
    finally:
        await probe.close()
    assert summary.lost == 0
    assert summary.sent > 0 and summary.duplicates == 0
    per_device = probe.device_stats()
    assert len(per_device) == 30
    north = [d for d in per_device if d.home == "north"]
    assert all(d.connects >= 3 for d in north)  # home, away, home again


async def test_lost_connections_fail_over_and_nothing_is_lost(platform: FakePlatform, tmp_path: Path) -> None:
    probe = Probe(platform.inventory(tmp_path), opts(duration=None, grace=3.0))
    await probe.start()
    try:
        await asyncio.sleep(0.3)
        broken_at = time.time()
        platform.break_region("south")
        await until(lambda: probe.snapshot().online == 30)
        await asyncio.sleep(0.5)
        summary = await probe.stop()
    finally:
        await probe.close()
    stats = probe.drain_stats(since=broken_at)
    assert stats.by_cause == {"lost": 10}
    assert "east" in stats.to_region  # south's next endpoint
    assert summary.lost == 0


async def test_without_reconnection_a_lost_connection_loses_messages(platform: FakePlatform, tmp_path: Path) -> None:
    """The checker shown to fail: devices that stay offline leave their messages undelivered."""
    probe = Probe(platform.inventory(tmp_path), opts(duration=None, grace=0.5, reconnect=False))
    await probe.start()
    try:
        await asyncio.sleep(0.3)
        platform.break_region("south")
        await until(lambda: probe.snapshot().online == 20)
        await until(lambda: probe.snapshot().progress.overdue > 0, within=5)  # live view sees it too
        summary = await probe.stop()
    finally:
        await probe.close()
    assert summary.lost > 0
    assert summary.by_region["south"].lost == summary.lost
    assert summary.by_region["north"].lost == 0


async def test_devices_taken_offline_get_their_pushes_after_they_return(platform: FakePlatform, tmp_path: Path) -> None:
    probe = Probe(platform.inventory(tmp_path), opts(duration=None, grace=2.0))
    await probe.start()
    try:
        await asyncio.sleep(0.3)
        taken = probe.take_offline(9, duration=1.0, mode="drop", rng=random.Random(3))
        assert len(taken) == 9 and probe.away == 9
        await until(lambda: probe.snapshot().online == 21)
        await until(lambda: probe.away == 0 and probe.snapshot().online == 30, within=5)
        await asyncio.sleep(0.3)
        summary = await probe.stop()
    finally:
        await probe.close()
    assert summary.offline.sent > 0 and summary.offline.lost == 0
    assert summary.lost == 0 and summary.duplicates == 0
    assert probe.dispatcher_answers()  # they asked the dispatcher on their way back
    returns = [e for e in probe.reconnects() if e.cause == "return"]
    assert {e.device for e in returns} == set(taken)


async def test_pushes_an_offline_queue_drops_are_lost_not_late(platform: FakePlatform, tmp_path: Path) -> None:
    """The checker shown to fail: the platform forgets what it queued for an absent device."""
    probe = Probe(platform.inventory(tmp_path), opts(duration=None, grace=1.0))
    await probe.start()
    try:
        await asyncio.sleep(0.3)
        probe.take_offline(9, duration=1.0, mode="close", rng=random.Random(3))
        await asyncio.sleep(0.6)
        platform.offline.clear()  # the queue is gone
        await until(lambda: probe.away == 0, within=5)
        await asyncio.sleep(0.3)
        summary = await probe.stop()
    finally:
        await probe.close()
    assert summary.offline.lost > 0 and summary.lost == summary.offline.lost


async def test_stopping_brings_away_devices_back_before_the_final_count(platform: FakePlatform, tmp_path: Path) -> None:
    """An offline step cut short (an aborted run) does not turn what the devices were owed into losses."""
    probe = Probe(platform.inventory(tmp_path), opts(duration=None, grace=2.0))
    await probe.start()
    try:
        await asyncio.sleep(0.3)
        probe.take_offline(9, duration=60.0, mode="drop", rng=random.Random(3))
        await asyncio.sleep(0.8)
        started = time.monotonic()
        summary = await probe.stop()
    finally:
        await probe.close()
    assert time.monotonic() - started < 10  # not the minute the devices were meant to stay away
    assert summary.offline.sent > 0 and summary.lost == 0 and summary.pending == 0


async def test_live_snapshot_while_sending(platform: FakePlatform, tmp_path: Path) -> None:
    probe = Probe(platform.inventory(tmp_path), opts(duration=None))
    await probe.start()
    try:
        await asyncio.sleep(1.2)
        snap = probe.snapshot()
        assert snap.phase == "sending"
        assert snap.online == 30 and sum(snap.connected.values()) == 30
        assert snap.progress.sent > 0 and snap.progress.delivered > 0
        assert snap.delivery_rate == 100.0
        assert snap.sender.failed_requests == 0
    finally:
        await probe.close()
    assert probe.phase == "done"


# ---- sharding -------------------------------------------------------------------------------------
async def test_sharded_probe_merges_workers_and_terminates_them(platform: FakePlatform, tmp_path: Path) -> None:
    probe = Probe(platform.inventory(tmp_path), opts(workers=2, devices=20, rate=40.0))
    summary = await probe.run()
    assert summary.sent == 60
    assert (summary.on_time, summary.lost) == (60, 0)
    assert len(probe.device_stats()) == 20
    assert probe.worker_pids and not any(alive(pid) for pid in probe.worker_pids)


async def test_sharded_probe_catches_loss_too(platform: FakePlatform, tmp_path: Path) -> None:
    platform.drop = lambda msg_id: msg_id.endswith("3")
    probe = Probe(platform.inventory(tmp_path), opts(workers=2, devices=20, rate=40.0, grace=0.5))
    summary = await probe.run()
    assert summary.lost == sum(1 for i in range(1, 61) if str(i).endswith("3"))


async def test_closing_a_sharded_probe_midway_kills_its_workers(platform: FakePlatform, tmp_path: Path) -> None:
    probe = Probe(platform.inventory(tmp_path), opts(workers=2, devices=10, duration=None))
    task = asyncio.create_task(probe.start())
    await until(lambda: len(probe.worker_pids) == 2)
    await asyncio.sleep(0.3)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await probe.close()
    assert not any(alive(pid) for pid in probe.worker_pids)


# ---- the CLI --------------------------------------------------------------------------------------
@pytest.fixture
def threaded_platform() -> Iterator[FakePlatform]:
    """The fake in its own thread and loop, so a CLI command can asyncio.run() beside it."""
    fake = FakePlatform()
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve_forever() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(fake.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(fake.stop())
        loop.close()

    thread = threading.Thread(target=serve_forever, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield fake
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def cli() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """pushctl, reduced to the commands under test."""

    root.add_typer(probe_cli.app, name="probe")
    root.add_typer(slo_cli.app, name="slo")
    return root


def invoke(fake: FakePlatform, tmp_path: Path, *args: str) -> tuple[int, str, BaseException | None]:
    path = tmp_path / "fake-topology.toml"
    path.write_text(fake.inventory_text())
    result = CliRunner().invoke(cli(), list(args), env={"PUSHCTL_INVENTORY": str(path)})
    return result.exit_code, result.stdout, result.exception


FAST = ["--devices", "12", "--rate", "40", "--duration", "1s", "--grace", "1s", "--seed", "3"]


def test_cli_probe_run_json(threaded_platform: FakePlatform, tmp_path: Path) -> None:
    code, out, exc = invoke(threaded_platform, tmp_path, "probe", "run", *FAST, "--json")
    assert code == 0, exc
    doc = json.loads(out)
    assert list(doc) == [
        "sent", "on_time", "late", "lost", "duplicates", "raw_duplicates", "delivery_rate",
        "latency_ms", "unexpected", "rejected", "dead_lettered", "pending", "online", "offline", "by_kind", "by_region",
        "per_second", "worst_seconds",
    ]  # fmt: skip
    assert (doc["sent"], doc["lost"], doc["delivery_rate"]) == (40, 0, 100.0)


def test_cli_probe_run_table(threaded_platform: FakePlatform, tmp_path: Path) -> None:
    code, out, exc = invoke(threaded_platform, tmp_path, "probe", "run", *FAST, "--regions", "north=1,east=1")
    assert code == 0, exc
    assert "total" in out and "north" in out and "south" not in out


def test_cli_slo_check_holds(threaded_platform: FakePlatform, tmp_path: Path) -> None:
    code, out, exc = invoke(threaded_platform, tmp_path, "slo", "check", "--target", "99.9", *FAST)
    assert code == 0, exc
    assert "SLO held" in out


def test_cli_slo_check_breached_exits_1_with_the_numbers(threaded_platform: FakePlatform, tmp_path: Path) -> None:
    threaded_platform.drop = lambda msg_id: msg_id.endswith("5")
    _, out, exc = invoke(threaded_platform, tmp_path, "slo", "check", "--target", "99.9", *FAST, "--json")
    assert isinstance(exc, SloBreached) and exc.exit_code == 1
    assert "4 lost" in exc.message and "worst seconds" in exc.message
    doc = json.loads(out)
    assert doc["passed"] is False and doc["summary"]["lost"] == 4


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--duration", "ten"], "invalid --duration"),
        (["--regions", "west=1"], "unknown region 'west'"),
        (["--rate", "0"], "nothing to send"),
    ],
)
def test_cli_bad_probe_options_are_usage_errors(
    threaded_platform: FakePlatform, tmp_path: Path, args: list[str], match: str
) -> None:
    _, _, exc = invoke(threaded_platform, tmp_path, "probe", "run", *args)
    assert exc is not None and getattr(exc, "exit_code", None) == 2
    assert match in str(exc)
