"""The broker's device sockets on picows: what websockets used to do for us, checked over real sockets.

A slow device is bounded, an auth frame that never comes is refused, a stopping broker says 1001,
other paths get plain HTTP, and a connection's life costs no log line at INFO. The peer is the
`websockets` client: an independent implementation, so these also prove interop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path

import aiohttp
import pushstack.broker as broker_module
import pytest
from pushstack.broker import Broker
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pushctl.contract import frames
from pushctl.contract.api import MAX_PAYLOAD, Message
from tests.helpers import free_inventory
from tests.unit.test_broker import FakeRoutes, device, eventually, url

pytestmark = pytest.mark.timeout(30)


def refused(b: Broker, reason: str) -> float:
    value = b.registry.get_sample_value("pushstack_broker_refused_total", {"reason": reason})
    return value or 0.0


async def test_a_device_that_stops_reading_is_cut_off_and_holds_up_no_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the write-buffer bound the stuck device is closed and reported offline; the others get theirs."""
    monkeypatch.setattr(broker_module, "WRITE_BUFFER_MAX", 128 * 1024)
    async with Broker(free_inventory(tmp_path), "broker-south", route_sink=FakeRoutes()) as b:
        fast, _ = await device(b, "fast")
        # the stuck device: a tiny receive buffer and a client that stops reading after 1 frame
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", b.spec.port))
        sock.setblocking(False)
        stuck = await connect(url(b), sock=sock, compression=None, max_queue=1)
        await stuck.send(frames.Auth(device="stuck", token=frames.device_token(b.inv.token, "stuck")).model_dump_json())
        assert json.loads(await stuck.recv())["type"] == "auth_ok"

        async def ack_all() -> None:
            async for raw in fast:
                await fast.send(frames.Ack(id=json.loads(raw)["id"]).model_dump_json())

        acker = asyncio.create_task(ack_all())
        payload = "x" * MAX_PAYLOAD
        max_buffered = 0
        for n in range(10):  # 10 x 1,000 x 4 KiB = 40 MiB offered: far past any loopback buffer
            conn = b._conns.get("stuck")
            if conn is None or not conn.is_open:
                break
            msgs = [Message(id=f"s{n}-{i}", device="stuck", sent_at=1.0, payload=payload) for i in range(1000)]
            msgs.append(Message(id=f"f{n}", device="fast", sent_at=1.0, payload="p"))
            result = await b.deliver(msgs, timeout_s=1.0)  # the fast ack comes long before, even on a busy machine
            assert f"f{n}" in result.acked  # the fast device is served every round, stuck neighbour or not
            max_buffered = max(max_buffered, conn.transport.underlying_transport.get_write_buffer_size())
        assert "stuck" not in b._conns, "the stuck device was never cut off"
        assert max_buffered <= 128 * 1024 + 2 * MAX_PAYLOAD  # the bound plus the frame that crossed it
        assert b.registry.get_sample_value("pushstack_broker_write_overflows_total") == 1
        result = await b.deliver([Message(id="late", device="stuck", sent_at=1.0, payload="p")], timeout_s=0.05)
        assert result.offline == ["late"]
        acker.cancel()
        await asyncio.gather(acker, return_exceptions=True)
        await fast.close()
        stuck.transport.abort()  # it never read the broker's abort (reading paused): drop our end too


async def test_no_auth_frame_in_time_is_refused_with_1008(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "AUTH_TIMEOUT_S", 0.2)
    async with Broker(free_inventory(tmp_path), "broker-south", route_sink=FakeRoutes()) as b:
        ws = await connect(url(b), compression=None)
        async with asyncio.timeout(3):  # the refusal comes at 0.2 s, or never
            reply = json.loads(await ws.recv())
        assert (reply["type"], reply["code"]) == ("error", "bad_frame")
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == frames.CLOSE_UNAUTHORIZED
        assert refused(b, "auth_timeout") == 1
        await eventually(lambda: b._open == 0)


async def test_a_stopping_broker_closes_every_device_with_1001(tmp_path: Path) -> None:
    b = Broker(free_inventory(tmp_path), "broker-south", route_sink=FakeRoutes())
    async with b:
        conns = [(await device(b, f"d{i}"))[0] for i in range(3)]
        unauthenticated = await connect(url(b), compression=None)
    for ws in [*conns, unauthenticated]:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert b._open == 0


async def test_other_paths_are_plain_http_404_and_healthz_is_json(tmp_path: Path) -> None:
    async with Broker(free_inventory(tmp_path), "broker-south", route_sink=FakeRoutes()) as b:
        base = f"http://127.0.0.1:{b.spec.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/nope") as resp:
                assert resp.status == 404 and "devices connect to /ws" in await resp.text()
            async with http.get(f"{base}/healthz?x=1") as resp:
                assert resp.headers["Content-Type"] == "application/json"
                assert (await resp.json())["detail"]["connections"] == "0"


async def test_a_connections_life_logs_nothing_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """picows logs every accept and close at INFO: thousands of lines per drill, none of them news."""
    caplog.set_level(logging.DEBUG)
    async with Broker(free_inventory(tmp_path), "broker-south", route_sink=FakeRoutes()) as b:
        for i in range(3):
            ws, _ = await device(b, f"d{i}")
            await ws.close()
        await eventually(lambda: b._open == 0)
        socket_lines = [r for r in caplog.records if r.name.startswith(("picows", "pushstack.broker"))]
        assert socket_lines, "the broker's socket log went nowhere"  # it exists, at DEBUG
        assert [r.getMessage() for r in socket_lines if r.levelno >= logging.INFO] == []


@pytest.mark.parametrize(("code", "echoed"), [(1000, 1000), (4321, 4321), (1005, 1000)])
async def test_a_device_close_is_answered_at_once_with_its_code(tmp_path: Path, code: int, echoed: int) -> None:
    """The broker echoes the device's close code (an empty close gets 1000) and ends the socket."""
    async with Broker(free_inventory(tmp_path), "broker-south", route_sink=FakeRoutes()) as b:
        ws, _ = await device(b, "d1")
        async with asyncio.timeout(3):  # websockets would wait 10 s for an answer that never comes
            if code == 1005:  # "no status": a close frame without a code, which close() does not send
                async with ws.send_context():
                    ws.protocol.send_close()
                await ws.wait_closed()
            else:
                await ws.close(code)
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == echoed
        await eventually(lambda: b._open == 0 and b.connections.count == 0)
