"""A regional broker: devices' long WebSocket connections, push delivery with acks, drains.

Device side (`spec.port`, reached through the region's `device-<region>` link): `ws://HOST:PORT/ws`,
JSON text frames of `pushctl.contract.frames` (protocol in docs/protocol.md). Control side
(`spec.internal_port`, reached by logic gateways through `vpc-<region>`), bearer token:

    POST /v1/deliver     DeliverRequest -> DeliverResult (acked / offline / timeout)
    GET  /v1/connections -> Connections
    PUT  /v1/limit       ConnectionLimit -> Connections    (also env PUSHCTL_BROKER_LIMIT)
    POST /v1/policies    PolicySet (the scheduler pushes it; the broker also polls the scheduler)
    GET  /v1/policies    -> PolicySet

When the policy set drains this broker's region, every device gets a `reconnect` order with its
delay spread over the policy's `spread_s`, and is closed (4000) a grace period after that delay;
new connections are refused with `draining` until the policy is withdrawn.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import os
import random
from collections.abc import Coroutine, Sequence
from http import HTTPStatus
from typing import Any, ClassVar, Literal

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import generate_latest
from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from pushctl.contract import frames
from pushctl.contract.api import (
    ConnectionLimit,
    Connections,
    DeliverRequest,
    DeliverResult,
    Message,
    Policy,
    PolicySet,
)
from pushctl.contract.gcpolicy import defer_full_collections, full_collection_routine
from pushctl.contract.topology import Inventory

from .acks import AckBook, Delivery, Key, push_frame
from .policy_watch import PolicyFollower, drain_for
from .route_book import RouteBook, RouteSink
from .service import PushService

log = logging.getLogger("pushstack.broker")

LIMIT_ENV = "PUSHCTL_BROKER_LIMIT"
# below what one region's Toxiproxy can carry (20,000 descriptors, two per connection), so the
# broker's own over_limit refusal is what devices meet first
DEFAULT_LIMIT = 9000
FULL_GC_ENV = "PUSHCTL_BROKER_FULL_GC_S"  # seconds between full garbage collections (pushctl.contract.gcpolicy)
DEFAULT_FULL_GC_S = 600.0
BROKER_PING_S = 60.0
AUTH_TIMEOUT_S = 5.0
ROUTE_WAIT_S = 2.0  # auth_ok waits this long for the route write, then goes out anyway
# A drained device connects elsewhere before its old connection closes (make before break). Closing
# it sooner than a loaded device can move leaves it without a route: its messages go offline.
CLOSE_GRACE_S = 5.0
OVER_LIMIT_RETRY_MS = 2000
YIELD_EVERY = 500  # writes between yields to the event loop in big fan-outs
PONG = frames.Pong().model_dump_json()

ErrorCode = Literal["over_limit", "unauthorized", "bad_frame", "draining"]


def drain_plan(devices: Sequence[str], spread_s: float, rng: random.Random) -> list[tuple[str, int]]:
    """(device, after_ms) for a drain: shuffled, one device per equal slice of the spread.

    Jittered stratification: the reconnect rate is flat over the whole spread (no clumps a plain
    uniform draw would leave), yet no device can predict its slot.
    """
    order = list(devices)
    rng.shuffle(order)
    n = len(order)
    spread_ms = max(spread_s, 0.0) * 1000
    return [(device, int((i + rng.random()) * spread_ms / n)) for i, device in enumerate(order)]


class _Conn:
    """One authenticated device connection."""

    __slots__ = ("closer", "device", "early", "ws")

    def __init__(self, device: str, ws: ServerConnection) -> None:
        self.device = device
        self.ws = ws
        self.closer: asyncio.TimerHandle | None = None
        # Frames for the device before its auth_ok went out (None once it has). The connection is
        # deliverable as soon as its route is being written, and a gateway draining the device's
        # offline queue on its online event can be faster than our auth_ok: those frames wait here,
        # so auth_ok is always the first frame a device reads (docs/protocol.md section 1).
        self.early: list[str | bytes] | None = []


class Broker(PushService):
    """One region's broker."""

    kind: ClassVar[str] = "broker"

    def __init__(self, inventory: Inventory, name: str, *, route_sink: RouteSink | None = None) -> None:
        super().__init__(inventory, name)
        if self.spec.region is None or self.spec.internal_port is None:
            raise ValueError(f"{name}: a broker needs a region and an internal_port")
        self.region: str = self.spec.region
        self.internal_port: int = self.spec.internal_port
        self.limit = int(os.environ.get(LIMIT_ENV, DEFAULT_LIMIT))
        self.draining: Policy | None = None
        self._conns: dict[str, _Conn] = {}
        self._open = 0  # sockets past the handshake, authenticated or not
        self._bg: set[asyncio.Task[None]] = set()
        self._gc_thresholds: tuple[int, int, int] | None = None
        self._server: Server | None = None
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self.follower = PolicyFollower(self, self._on_policies)
        self.follower.routes()
        self._define_metrics()
        self._acks = AckBook(latency=self._m_ack_latency)
        self._store: aioredis.Redis | None = None
        if route_sink is None:
            self._store = self.redis_for("store")
            route_sink = RouteBook(
                self._store, name, self.region, writes=self._m_route_writes, errors=self._m_route_errors
            )
        self._routes: RouteSink = route_sink

    def routes(self) -> None:
        self.control("POST", "/v1/deliver", self._deliver)
        self.control("GET", "/v1/connections", self._connections)
        self.control("PUT", "/v1/limit", self._put_limit)

    def health_detail(self) -> tuple[bool, dict[str, str]]:
        store_ok = getattr(self._routes, "healthy", True)
        detail = {
            "connections": str(len(self._conns)),
            "limit": str(self.limit),
            "draining": "yes" if self.draining else "no",
            "store": "ok" if store_ok else "failing",
        }
        return bool(store_ok), detail

    @property
    def connections(self) -> Connections:
        return Connections(
            broker=self.name,
            region=self.region,
            count=len(self._conns),
            limit=self.limit,
            draining=self.draining is not None,
        )

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Control port first, then (with the policy set fetched) the device port."""
        await self._listen(self.internal_port)
        await self.on_start()

    async def on_start(self) -> None:
        # thousands of connections are long-lived objects: full collections on our schedule only
        self._gc_thresholds = defer_full_collections()
        every = float(os.environ.get(FULL_GC_ENV, DEFAULT_FULL_GC_S))
        self.spawn(lambda: full_collection_routine(every, log), "_full_gc_routine")
        self.spawn(self._routes.run, "_route_routine")
        await self.follower.start()
        # websockets logs every connection at INFO: thousands per drill, none of them news
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
        self._server = await serve(
            self._handle,
            self.spec.host,
            self.spec.port,
            compression=None,  # permessage-deflate costs ~34 KB per idle connection
            process_request=self._process_request,
            max_size=64 * 1024,
            close_timeout=2,
            # devices ping (they detect a dead link and fail over); the broker's own pings only
            # reap connections whose device vanished, which can wait: at 20 s (the library default)
            # 10,000 devices cost 500 ping round trips a second
            ping_interval=BROKER_PING_S,
            ping_timeout=BROKER_PING_S,
            backlog=4096,
            reuse_address=True,
        )

    async def on_stop(self) -> None:
        if self._server is not None:
            self._server.close()  # closes every connection with 1001 (going away)
            await self._server.wait_closed()
        await self._routes.flush()
        await self.follower.stop()
        if self._store is not None:
            await self._store.aclose()
        if self._gc_thresholds is not None:
            gc.set_threshold(*self._gc_thresholds)

    # ---- device side ------------------------------------------------------------------------
    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == frames.WS_PATH:
            return None
        if path == "/healthz":
            healthy, detail = self.health_detail()
            body = {"status": "ok" if healthy else "degraded", "service": self.name, "detail": detail}
            return _http(ws, HTTPStatus.OK, json.dumps(body), "application/json")
        if path == "/metrics":
            return _http(ws, HTTPStatus.OK, generate_latest(self.registry).decode(), "text/plain; version=0.0.4")
        return _http(ws, HTTPStatus.NOT_FOUND, "not found: devices connect to /ws\n", "text/plain")

    async def _handle(self, ws: ServerConnection) -> None:
        self._open += 1
        try:
            await self._session(ws)
        except ConnectionClosed:
            pass
        finally:
            self._open -= 1

    async def _session(self, ws: ServerConnection) -> None:
        # every refusal answers the auth frame, so a device that sends auth right after the
        # handshake always reads the reason before the close
        auth = await self._read_auth(ws)
        if auth is None:
            return
        if self.draining is not None:
            await self._refuse(ws, "draining", f"region {self.region} is draining", frames.CLOSE_OVER_LIMIT)
            return
        if self._open > self.limit:
            await self._refuse(ws, "over_limit", f"broker at its limit of {self.limit}", frames.CLOSE_OVER_LIMIT)
            return
        conn = _Conn(auth.device, ws)
        old = self._conns.get(auth.device)
        self._conns[auth.device] = conn
        if old is not None:
            self._m_replaced.inc()
            self._close_later(old, 0, frames.CLOSE_REPLACED, "replaced by a newer connection")
        try:
            async with asyncio.timeout(ROUTE_WAIT_S):
                await asyncio.shield(self._routes.claim(auth.device))
        except TimeoutError:
            log.debug("%s: route of %s not yet written", self.name, auth.device)
        self._m_connects.inc()
        try:
            await ws.send(frames.AuthOk(broker=self.name, region=self.region).model_dump_json())
            early, conn.early = conn.early or [], None
            for frame in early:
                await ws.send(frame, text=True)  # push frames are UTF-8 bytes: still text frames
            async for raw in ws:
                if self._on_frame(conn, raw):
                    await ws.send(PONG)
        finally:
            if conn.closer is not None:
                conn.closer.cancel()
            if self._conns.get(auth.device) is conn:
                del self._conns[auth.device]
                self._routes.release(auth.device)
                self._acks.device_gone(auth.device)
            self._m_disconnects.inc()

    async def _read_auth(self, ws: ServerConnection) -> frames.Auth | None:
        try:
            async with asyncio.timeout(AUTH_TIMEOUT_S):
                raw = await ws.recv()
        except TimeoutError:
            await self._refuse(ws, "bad_frame", "no auth frame in time", frames.CLOSE_UNAUTHORIZED, "auth_timeout")
            return None
        try:
            auth = frames.Auth.model_validate_json(raw)
        except ValidationError:
            await self._refuse(ws, "bad_frame", "the first frame must be auth", frames.CLOSE_UNAUTHORIZED)
            return None
        expected = frames.device_token(self.inv.token, auth.device)
        if not auth.device or not hmac.compare_digest(auth.token, expected):
            await self._refuse(ws, "unauthorized", "bad device id or token", frames.CLOSE_UNAUTHORIZED)
            return None
        return auth

    async def _refuse(
        self, ws: ServerConnection, code: ErrorCode, reason: str, close: int, metric: str | None = None
    ) -> None:
        self._m_refused.labels(metric or code).inc()
        retry = OVER_LIMIT_RETRY_MS if code in ("over_limit", "draining") else 0
        error = frames.Error(code=code, reason=reason, retry_after_ms=retry)
        try:
            await ws.send(error.model_dump_json())
        except ConnectionClosed:
            return
        await ws.close(close, reason[:120])

    def _on_frame(self, conn: _Conn, raw: str | bytes) -> bool:
        """Handle one device frame; True when it asks for a pong."""
        try:
            frame = json.loads(raw)
        except ValueError:
            return False
        if not isinstance(frame, dict):
            return False
        kind = frame.get("type")
        if kind == "ack":
            self._m_acks.inc()
            self._acks.ack((conn.device, str(frame.get("id"))))
            return False
        return kind == "ping"

    def _close_later(self, conn: _Conn, delay_s: float, code: int, reason: str) -> None:
        def close() -> None:
            conn.closer = None
            self._background(conn.ws.close(code, reason))

        if conn.closer is not None:
            conn.closer.cancel()
        conn.closer = asyncio.get_running_loop().call_later(delay_s, close)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    # ---- delivery ---------------------------------------------------------------------------
    async def deliver(self, messages: Sequence[Message], timeout_s: float) -> DeliverResult:
        """Write each message to its device's connection, then wait up to `timeout_s` for acks."""
        delivery = Delivery()
        offline: list[Key] = []
        # a group fan-out shares one frame, encoded once: written as text without a UTF-8 encode per device
        frames_by_id: dict[tuple[str, str | None], bytes] = {}
        written = 0
        for message in messages:
            conn = self._conns.get(message.device)
            if conn is None or conn.ws.state is not State.OPEN:
                offline.append((message.device, message.id))
                continue
            if not self._acks.expect(delivery, (message.device, message.id)):
                continue
            frame_key = (message.id, message.payload)
            frame = frames_by_id.get(frame_key)
            if frame is None:
                frame = frames_by_id[frame_key] = push_frame(message).encode()
            written += 1
            if written % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a big fan-out must not starve acks and health polls
            if conn.early is not None:
                conn.early.append(frame)  # its session sends it right after auth_ok
                continue
            if conn.ws.paused:
                # a slow device must not hold up the others: its write waits on its own
                self._background(self._send_quietly(conn.ws, frame))
                continue
            try:
                await conn.ws.send(frame, text=True)
            except ConnectionClosed:
                self._acks.device_gone(message.device)  # reported offline: the gateway retries at once
        self._m_pushes.inc(written)
        try:
            if delivery.waiting:
                async with asyncio.timeout(timeout_s):
                    await delivery.done.wait()
        except TimeoutError:
            pass
        finally:
            # also when the caller went away (cancelled): no waiter may outlive its call
            timed_out = list(delivery.waiting)
            self._acks.forget(delivery)
        offline += delivery.gone
        self._m_offline.inc(len(offline))
        self._m_timeouts.inc(len(timed_out))
        # ids with their devices in parallel lists: a group fan-out shares one id across devices
        return DeliverResult(
            acked=[k[1] for k in delivery.acked],
            offline=[k[1] for k in offline],
            timeout=[k[1] for k in timed_out],
            acked_devices=[k[0] for k in delivery.acked],
            offline_devices=[k[0] for k in offline],
            timeout_devices=[k[0] for k in timed_out],
        )

    @staticmethod
    async def _send_quietly(ws: ServerConnection, frame: str | bytes) -> None:
        """Write one text frame (bytes are UTF-8 already), ignoring a connection that closed meanwhile."""
        try:
            await ws.send(frame, text=True)
        except ConnectionClosed:
            pass

    async def _deliver(self, request: web.Request) -> web.Response:
        req = await self.body(request, DeliverRequest)
        self._m_deliver_requests.inc()
        return self.reply(await self.deliver(req.messages, req.timeout_ms / 1000))

    async def _connections(self, _: web.Request) -> web.Response:
        return self.reply(self.connections)

    async def _put_limit(self, request: web.Request) -> web.Response:
        self.limit = (await self.body(request, ConnectionLimit)).limit
        log.info("%s: connection limit %d", self.name, self.limit)
        return self.reply(self.connections)

    # ---- policies ---------------------------------------------------------------------------
    def _on_policies(self, policies: PolicySet) -> None:
        policy = drain_for(policies, self.region)
        if policy is not None and self.draining is None:
            self.draining = policy
            self._drain(policy)
        elif policy is None and self.draining is not None:
            log.warning("%s: drain of %s withdrawn; accepting devices again", self.name, self.region)
            self.draining = None
            for conn in self._conns.values():
                if conn.closer is not None:
                    conn.closer.cancel()
                    conn.closer = None
        elif policy is not None:
            self.draining = policy  # another drain policy took over; keep draining

    def _drain(self, policy: Policy) -> None:
        plan = drain_plan(list(self._conns), policy.spread_s, self._rng)
        log.warning(
            "%s: draining %s: %d devices over %.1fs (policy %s)",
            self.name,
            self.region,
            len(plan),
            policy.spread_s,
            policy.id,
        )
        self._background(self._order_reconnects(plan, policy))

    async def _order_reconnects(self, plan: list[tuple[str, int]], policy: Policy) -> None:
        reason = f"drain {self.region} ({policy.id})"
        for n, (device, after_ms) in enumerate(plan, 1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            conn = self._conns.get(device)
            if conn is None or self.draining is None:
                continue
            order = frames.Reconnect(after_ms=after_ms, avoid=[self.region], reason=reason)
            self._close_later(conn, after_ms / 1000 + CLOSE_GRACE_S, frames.CLOSE_RECONNECT, "reconnect")
            if conn.early is not None:
                conn.early.append(order.model_dump_json())
            elif conn.ws.paused:
                self._background(self._send_quietly(conn.ws, order.model_dump_json()))
            else:
                try:
                    await conn.ws.send(order.model_dump_json())
                except ConnectionClosed:
                    continue
            self._m_orders.inc()

    # ---- metrics ----------------------------------------------------------------------------
    def _define_metrics(self) -> None:
        conns = self.gauge("pushstack_broker_connections", "Authenticated device connections", ("region",))
        conns.labels(self.region).set_function(lambda: len(self._conns))
        self.gauge("pushstack_broker_open_sockets", "WebSockets open, authenticated or not").set_function(
            lambda: self._open
        )
        self.gauge("pushstack_broker_connection_limit", "Connection limit").set_function(lambda: self.limit)
        self.gauge("pushstack_broker_draining", "1 while the region is drained").set_function(
            lambda: 0 if self.draining is None else 1
        )
        self.gauge("pushstack_broker_pending_acks", "Pushes written and awaiting their ack").set_function(
            lambda: len(self._acks)
        )
        self._m_connects = self.counter("pushstack_broker_connects_total", "Devices authenticated")
        self._m_disconnects = self.counter("pushstack_broker_disconnects_total", "Authenticated connections closed")
        self._m_replaced = self.counter("pushstack_broker_replaced_total", "Connections replaced by a newer one")
        self._m_refused = self.counter("pushstack_broker_refused_total", "Connections refused", ("reason",))
        for reason in ("draining", "over_limit", "auth_timeout", "bad_frame", "unauthorized"):
            self._m_refused.labels(reason)  # exported at 0 from the start: dashboards read a number
        self._m_pushes = self.counter("pushstack_broker_pushes_total", "Push frames written")
        self._m_acks = self.counter("pushstack_broker_acks_total", "Ack frames received")
        self._m_offline = self.counter("pushstack_broker_deliver_offline_total", "Messages for absent devices")
        self._m_timeouts = self.counter("pushstack_broker_deliver_timeouts_total", "Pushes without ack in time")
        self._m_deliver_requests = self.counter("pushstack_broker_deliver_requests_total", "Deliver calls")
        self._m_orders = self.counter("pushstack_broker_reconnect_orders_total", "Reconnect orders sent")
        self._m_route_writes = self.counter("pushstack_broker_route_writes_total", "Route updates written")
        self._m_route_errors = self.counter("pushstack_broker_route_errors_total", "Failed route batch writes")
        self._m_ack_latency = self.histogram(
            "pushstack_broker_ack_seconds",
            "Time from a deliver call to each ack",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )


def _http(ws: ServerConnection, status: HTTPStatus, body: str, content_type: str) -> Response:
    response = ws.respond(status, body)
    del response.headers["Content-Type"]  # Headers is a multi-dict: assignment would add a second
    response.headers["Content-Type"] = content_type
    return response
