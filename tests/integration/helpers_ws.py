"""A device and an app server made of plain libraries, for end-to-end tests of the push pipeline.

`RawDevice` speaks docs/protocol.md with the `websockets` library directly (not pushctl.probe), so
the stack is checked against the written protocol rather than against our own client. The
app-server side POSTs to the access tier with httpx; the store and metrics are read as an operator
would.

    async with httpx.AsyncClient() as http:
        dev = RawDevice(inv, "it-d1", home="south")
        await dev.connect(http)                      # dispatcher -> device link -> auth -> auth_ok
        sent = await push_single(http, inv, "it-d1", "hello")
        await dev.wait_for([sent.id], within=10)
        await dev.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast

import httpx
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from pushstack.keys import KEY_OFFLINE, KEY_ROUTES
from websockets.asyncio.client import ClientConnection, connect

from pushctl.contract.api import AccessResult, GroupPush, SinglePush
from pushctl.contract.frames import device_token
from pushctl.contract.topology import Inventory, ServiceKind

STEP_TIMEOUT_S = 10.0
T = TypeVar("T")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class RawDevice:
    """One device connection: asks the dispatcher, connects to the first endpoint, acks every push.

    Every `push` frame is kept in arrival order (duplicates too), so tests can count ids.
    """

    def __init__(self, inv: Inventory, device: str, *, home: str | None = None) -> None:
        self.inv = inv
        self.device = device
        self.home = home
        self.endpoints: list[dict[str, str]] = []
        self.auth_ok: dict[str, Any] = {}
        self.pushes: list[dict[str, Any]] = []
        self.acked: list[str] = []
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def ask_dispatcher(self, http: httpx.AsyncClient) -> list[dict[str, str]]:
        params = {"device": self.device} | ({"region": self.home} if self.home else {})
        resp = await http.get(f"{self.inv.link_url('dispatcher')}/v1/endpoints", params=params, timeout=STEP_TIMEOUT_S)
        resp.raise_for_status()
        body = resp.json()
        assert body["device"] == self.device
        return cast("list[dict[str, str]]", body["endpoints"])

    async def connect(self, http: httpx.AsyncClient) -> dict[str, Any]:
        """Dispatcher, then a WebSocket to the first endpoint, `auth`, and the `auth_ok` answer."""
        self.endpoints = await self.ask_dispatcher(http)
        assert self.endpoints, "the dispatcher offered no endpoint"
        url = self.endpoints[0]["url"]
        async with asyncio.timeout(STEP_TIMEOUT_S):
            self._ws = await connect(url, compression=None, open_timeout=STEP_TIMEOUT_S)
            auth = {"type": "auth", "device": self.device, "token": device_token(self.inv.token, self.device)}
            if self.home:
                auth["region"] = self.home
            await self._ws.send(json.dumps(auth))
            reply: dict[str, Any] = json.loads(await self._ws.recv())
        assert reply.get("type") == "auth_ok", reply
        self.auth_ok = reply
        self._reader = asyncio.create_task(self._read_routine(), name=f"_read_routine-{self.device}")
        return reply

    async def _read_routine(self) -> None:
        assert self._ws is not None
        with contextlib.suppress(Exception):  # a closed connection ends the reader; tests see no pushes
            async for raw in self._ws:
                frame = json.loads(raw)
                if frame.get("type") == "push":
                    self.pushes.append(frame)
                    await self._ws.send(json.dumps({"type": "ack", "id": frame["id"]}))
                    self.acked.append(frame["id"])
                    self._arrived.set()

    @property
    def region(self) -> str:
        """The region of the broker that accepted us."""
        return str(self.auth_ok["region"])

    def counts(self) -> Counter[str]:
        return Counter(str(p["id"]) for p in self.pushes)

    def push(self, msg_id: str) -> dict[str, Any]:
        return next(p for p in self.pushes if p["id"] == msg_id)

    async def wait_for(self, ids: Iterable[str], *, within: float) -> None:
        """Until every id arrived at least once; AssertionError naming the missing ones after `within` s."""
        wanted = set(ids)
        try:
            async with asyncio.timeout(within):
                while not wanted <= set(self.counts()):
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            missing = sorted(wanted - set(self.counts()))
            raise AssertionError(f"{self.device}: {len(missing)} pushes never arrived: {missing}") from None

    async def close(self) -> None:
        """Close the connection (1000) and stop reading; idempotent."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


async def close_all(devices: Iterable[RawDevice]) -> None:
    await asyncio.gather(*(d.close() for d in devices))


# ---- the app server's side: the access tier --------------------------------------------------
def access_url(inv: Inventory) -> str:
    svc = next(iter(inv.services_of(ServiceKind.ACCESS).values()))
    return f"http://{svc.host}:{svc.port}"


def _bearer(inv: Inventory) -> dict[str, str]:
    return {"Authorization": f"Bearer {inv.token}"}


async def push_single(http: httpx.AsyncClient, inv: Inventory, device: str, payload: str) -> SinglePush:
    """POST one single push; returns it once the access tier accepted it."""
    body = SinglePush(id=new_id("it-single"), device=device, payload=payload, sent_at=time.time())
    resp = await http.post(
        f"{access_url(inv)}/v1/push/single",
        content=body.model_dump_json(),
        headers=_bearer(inv) | {"Content-Type": "application/json"},
        timeout=STEP_TIMEOUT_S,
    )
    assert resp.status_code == 200, resp.text
    result = AccessResult.model_validate_json(resp.content)
    assert (result.accepted, result.rejected) == (1, 0), result
    return body


async def push_group(
    http: httpx.AsyncClient,
    inv: Inventory,
    payload: str,
    *,
    devices: list[str] | None = None,
    region: str | None = None,
) -> tuple[str, AccessResult]:
    body = GroupPush(id=new_id("it-group"), payload=payload, sent_at=time.time(), devices=devices, region=region)
    resp = await http.post(
        f"{access_url(inv)}/v1/push/group",
        content=body.model_dump_json(exclude_none=True),
        headers=_bearer(inv) | {"Content-Type": "application/json"},
        timeout=STEP_TIMEOUT_S,
    )
    assert resp.status_code == 200, resp.text
    return body.id, AccessResult.model_validate_json(resp.content)


# ---- reading what the stack holds -------------------------------------------------------------
def store(inv: Inventory) -> aioredis.Redis:
    """The store Redis, through its link (routes, offline queues)."""
    host, port = inv.link_addr("store")
    return aioredis.Redis(host=host, port=port, decode_responses=True, socket_timeout=5)


async def route_of(db: aioredis.Redis, device: str) -> str | None:
    return cast("str | None", await db.hget(KEY_ROUTES, device))


async def offline_ids(db: aioredis.Redis, device: str) -> set[str]:
    return set(cast("list[str]", await db.hkeys(KEY_OFFLINE.format(device=device))))


async def eventually(what: str, fetch: Callable[[], Awaitable[T]], until: Callable[[T], bool], *, within: float) -> T:
    """Await `fetch()` every 100 ms until `until(value)`; AssertionError after `within` s."""
    last: T | None = None
    try:
        async with asyncio.timeout(within):
            while True:
                value = await fetch()
                if until(value):
                    return value
                last = value
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not within {within}s: {what} (last: {last!r})") from None


async def metric(http: httpx.AsyncClient, url: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` (with these labels) at `url`/metrics."""
    resp = await http.get(f"{url}/metrics", timeout=STEP_TIMEOUT_S)
    resp.raise_for_status()
    total = 0.0
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def logic_urls(inv: Inventory) -> list[str]:
    return [f"http://{s.host}:{s.port}" for s in inv.services_of(ServiceKind.LOGIC).values()]


async def logic_metric(http: httpx.AsyncClient, inv: Inventory, name: str, **labels: str) -> float:
    """A metric summed over every logic gateway."""
    values = await asyncio.gather(*(metric(http, url, name, **labels) for url in logic_urls(inv)))
    return sum(values)


def broker_url(inv: Inventory, region: str) -> str:
    """A broker's control side, through its VPC link (as the gateways and the scheduler reach it)."""
    return inv.link_url(inv.vpc_link(region).name)


async def broker_connections(http: httpx.AsyncClient, inv: Inventory, region: str) -> int:
    resp = await http.get(f"{broker_url(inv, region)}/v1/connections", headers=_bearer(inv), timeout=STEP_TIMEOUT_S)
    resp.raise_for_status()
    return int(resp.json()["count"])


async def scheduler_policies(http: httpx.AsyncClient, inv: Inventory) -> dict[str, Any]:
    resp = await http.get(f"{inv.link_url('scheduler')}/v1/policies", headers=_bearer(inv), timeout=STEP_TIMEOUT_S)
    resp.raise_for_status()
    return cast("dict[str, Any]", resp.json())
