"""A probe device against a one-socket broker on loopback (the `websockets` server, an independent peer).

The device reads frames in picows callbacks: a push written right behind auth_ok is delivered in the
same callback that read auth_ok, before the device's session code runs. What the device reports must
keep that order, or the ledger judges a returning device's backlog from when it was sent.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve

from pushctl.contract import frames
from pushctl.probe.device import Device, DeviceConfig, Dispatcher, ReconnectEvent

pytestmark = pytest.mark.timeout(30)


class Recorder:
    """A DeviceObserver that keeps what it heard, in order."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, float]] = []
        self.pushed = asyncio.Event()

    def delivered(self, msg_id: str, device: str, at: float, app: bool) -> None:
        self.heard.append(("delivered", at))
        self.pushed.set()

    def connected(self, device: str, region: str, at: float | None = None) -> None:
        self.heard.append(("connected", time.time() if at is None else at))

    def disconnected(self, device: str, region: str) -> None:
        self.heard.append(("disconnected", 0.0))

    def reconnected(self, event: ReconnectEvent) -> None:
        pass


async def test_a_push_right_behind_auth_ok_is_delivered_after_the_device_is_connected() -> None:
    async def broker(ws: ServerConnection) -> None:
        auth = json.loads(await ws.recv())
        assert auth["type"] == "auth"
        # auth_ok and the first push of the device's offline queue in one write, as a broker that
        # drains the queue on the online event does
        ok = frames.AuthOk(broker="broker-north", region="north").model_dump_json()
        push = json.dumps({"type": "push", "id": "m-1", "payload": "hi"})
        await ws.send(ok)
        await ws.send(push)
        await ws.wait_closed()

    async with serve(broker, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        config = DeviceConfig(
            dispatcher_url="http://127.0.0.1:9",  # nothing listens: the device uses its fallback list
            secret="s3cret-token",  # noqa: S106 - a test secret
            fallback={"north": [("north", f"ws://127.0.0.1:{port}/ws")]},
            dispatcher_timeout=0.5,
        )
        recorder = Recorder()
        async with httpx.AsyncClient() as http:
            device = Device("d1", "north", config, Dispatcher(config, http), recorder)
            task = asyncio.create_task(device.run(cause="return"))
            try:
                await asyncio.wait_for(recorder.pushed.wait(), 10)
                await asyncio.sleep(0.05)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    connected = [at for what, at in recorder.heard if what == "connected"]
    delivered = [at for what, at in recorder.heard if what == "delivered"]
    assert connected and delivered
    assert connected[0] <= delivered[0], "the device reported its return after its first delivery"
