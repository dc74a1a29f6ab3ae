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
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)
from prometheus_client import generate_latest
from pydantic import ValidationError

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
CLOSE_TIMEOUT_S = 2.0  # a close the device does not answer in this time is cut (websockets' close_timeout)
MAX_FRAME = 64 * 1024
READ_BUFFER_INIT = 2048  # picows's minimum
# Unsent bytes a device that stopped reading may hold (its socket paused at the transport's 64 KiB
# high-water mark): ~1,500 push frames. Past it the device is cut off and its pushes report offline.
WRITE_BUFFER_MAX = 256 * 1024
PONG = frames.Pong().model_dump_json().encode()
WS_PATH = frames.WS_PATH.encode()
TEXT = WSMsgType.TEXT

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


class _QuietLog(logging.LoggerAdapter[logging.Logger]):
    """picows's log lines, one level down: a connection's life is DEBUG, an odd connection INFO.

    picows logs every accepted and closed connection at INFO (thousands per drill, none of them
    news) and a peer's protocol error at ERROR; an exception raised by our own callbacks keeps its
    level and traceback (that one is a bug of ours).
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not kwargs.get("exc_info"):
            level = logging.DEBUG if level <= logging.INFO else logging.INFO
        super().log(level, msg, *args, **kwargs)


class _Device(WSListener):
    """One device's WebSocket, authenticated or not: picows calls it back per frame, no task per socket."""

    __slots__ = ("auth_timer", "broker", "closer", "closing", "device", "early", "paused", "reaper", "transport")

    transport: WSTransport

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.device: str | None = None  # set once its auth frame passed
        self.auth_timer: asyncio.TimerHandle | None = None
        self.closer: asyncio.TimerHandle | None = None  # a close ordered for later (drain, replaced)
        self.reaper: asyncio.TimerHandle | None = None  # aborts a close the peer does not answer
        self.closing = False  # our close frame is out or the socket was aborted
        self.paused = False  # the socket's write buffer is above its high-water mark
        # Frames for the device before its auth_ok went out (None once it has). The connection is
        # deliverable as soon as its route is being written, and a gateway draining the device's
        # offline queue on its online event can be faster than our auth_ok: those frames wait here,
        # so auth_ok is always the first frame a device reads (docs/protocol.md section 1).
        self.early: list[bytes] | None = []

    # ---- picows callbacks -------------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.broker._sockets.add(self)
        self.auth_timer = asyncio.get_running_loop().call_later(AUTH_TIMEOUT_S, self._auth_timeout)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.CLOSE:
            self._peer_closed(frame)
        elif (kind is WSMsgType.TEXT or kind is WSMsgType.BINARY) and not self.closing:
            raw = frame.get_payload_as_bytes()
            if self.device is None:
                self.broker._on_auth(self, raw)
            elif self.broker._on_frame(self, raw):
                self.send(PONG)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closing = True
        for timer in (self.auth_timer, self.closer, self.reaper):
            if timer is not None:
                timer.cancel()
        self.broker._gone(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    # ---- writes and closes ------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """Deliverable: neither side has started closing (a closing device counts as offline)."""
        return not self.closing and self.transport.close_handshake is None

    def send(self, frame: bytes) -> None:
        """Write one text frame now (UTF-8 bytes), or queue it behind auth_ok while that is pending."""
        if self.early is not None:
            self.early.append(frame)
        elif self.has_room():
            self.transport.send(WSMsgType.TEXT, frame)

    def has_room(self) -> bool:
        """False (and the socket aborted) once a paused device's unsent bytes pass WRITE_BUFFER_MAX.

        A device that stops reading must not grow our memory without bound: past the bound it is
        cut off, its unacked pushes report offline at once (AckBook.device_gone) and the device,
        if alive, reconnects. Below it, frames queue in the socket's buffer and go out late.
        """
        if not self.paused:
            return True
        if self.transport.underlying_transport.get_write_buffer_size() <= WRITE_BUFFER_MAX:
            return True
        if not self.closing:
            self.closing = True
            self.broker._m_overflows.inc()
            name, device = self.broker.name, self.device
            log.info("%s: %s stopped reading; cut off past %d buffered bytes", name, device, WRITE_BUFFER_MAX)
            self.transport.disconnect(graceful=False)
        return False

    def close(self, code: int, reason: str) -> None:
        """Start the close handshake; abort the socket when the device does not answer in time."""
        if self.closing:
            return
        self.closing = True
        self.transport.send_close(WSCloseCode(code), reason.encode()[:120])
        self.reaper = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self.transport.disconnect, False)

    def _peer_closed(self, frame: WSFrame) -> None:
        """The device's close frame: answer it (the same code, as websockets does) and end the socket."""
        if not self.transport.is_close_frame_sent:
            code = frame.get_close_code()
            self.transport.send_close(WSCloseCode.OK if code is WSCloseCode.NO_INFO else code)
        self.closing = True
        self.transport.disconnect()  # graceful: what is still buffered goes out first, so...
        if self.reaper is None:  # ...a device that closes yet stops reading is cut off in time
            self.reaper = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self.transport.disconnect, False)

    def _auth_timeout(self) -> None:
        self.auth_timer = None
        if self.device is None and not self.closing:
            self.broker._refuse(self, "bad_frame", "no auth frame in time", frames.CLOSE_UNAUTHORIZED, "auth_timeout")


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
        self._conns: dict[str, _Device] = {}
        self._sockets: set[_Device] = set()  # past the handshake, authenticated or not
        self._bg: set[asyncio.Task[None]] = set()
        self._gc_thresholds: tuple[int, int, int] | None = None
        self._server: asyncio.Server | None = None
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
        # picows: no compression (permessage-deflate costs ~34 KB per idle connection and picows
        # has none), a callback per frame instead of a task per connection and a future per read
        self._server = await ws_create_server(
            self._listener_for,
            self.spec.host,
            self.spec.port,
            logger_name=_QuietLog(logging.getLogger("pushstack.broker.ws"), {}),
            max_frame_size=MAX_FRAME,
            # a device's frames are tens of bytes: the default 16 KiB read buffer per socket doubled
            # the broker's RSS per idle connection (picows grows it when a bigger frame comes)
            read_buffer_init_size=READ_BUFFER_INIT,
            # devices ping (they detect a dead link and fail over); the broker's own pings only
            # reap connections whose device vanished, which can wait: pinging only sockets idle
            # for a minute costs nothing for devices that talk
            enable_auto_ping=True,
            auto_ping_idle_timeout=BROKER_PING_S,
            auto_ping_reply_timeout=BROKER_PING_S,
            backlog=4096,
            reuse_address=True,
        )

    async def on_stop(self) -> None:
        if self._server is not None:
            self._server.close()  # no new sockets; the open ones get 1001 (going away), as before
            socks = list(self._sockets)
            for sock in socks:
                sock.close(1001, "going away")
            if socks:
                await asyncio.wait([asyncio.ensure_future(s.transport.wait_disconnected()) for s in socks])
            await self._server.wait_closed()
        await self._routes.flush()
        await self.follower.stop()
        if self._store is not None:
            await self._store.aclose()
        if self._gc_thresholds is not None:
            gc.set_threshold(*self._gc_thresholds)

    # ---- device side ------------------------------------------------------------------------
    def _listener_for(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
        """picows's router: `/ws` upgrades to a device socket, the rest is answered as plain HTTP."""
        path = request.path.partition(b"?")[0]
        if path == WS_PATH:
            return _Device(self)
        if path == b"/healthz":
            healthy, detail = self.health_detail()
            body = {"status": "ok" if healthy else "degraded", "service": self.name, "detail": detail}
            return _http(HTTPStatus.OK, json.dumps(body).encode(), "application/json")
        if path == b"/metrics":
            return _http(HTTPStatus.OK, generate_latest(self.registry), "text/plain; version=0.0.4")
        return _http(HTTPStatus.NOT_FOUND, b"not found: devices connect to /ws\n", "text/plain")

    @property
    def _open(self) -> int:
        """Sockets past the handshake, authenticated or not."""
        return len(self._sockets)

    def _on_auth(self, sock: _Device, raw: bytes) -> None:
        """The socket's first frame: refuse it (every refusal answers the auth frame) or take the device."""
        if sock.auth_timer is not None:
            sock.auth_timer.cancel()
            sock.auth_timer = None
        try:
            auth = frames.Auth.model_validate_json(raw)
        except ValidationError:
            self._refuse(sock, "bad_frame", "the first frame must be auth", frames.CLOSE_UNAUTHORIZED)
            return
        expected = frames.device_token(self.inv.token, auth.device)
        if not auth.device or not hmac.compare_digest(auth.token, expected):
            self._refuse(sock, "unauthorized", "bad device id or token", frames.CLOSE_UNAUTHORIZED)
            return
        if self.draining is not None:
            self._refuse(sock, "draining", f"region {self.region} is draining", frames.CLOSE_OVER_LIMIT)
            return
        if self._open > self.limit:
            self._refuse(sock, "over_limit", f"broker at its limit of {self.limit}", frames.CLOSE_OVER_LIMIT)
            return
        sock.device = auth.device
        old = self._conns.get(auth.device)
        self._conns[auth.device] = sock
        if old is not None:
            self._m_replaced.inc()
            self._close_later(old, 0, frames.CLOSE_REPLACED, "replaced by a newer connection")
        self._m_connects.inc()
        # auth_ok waits for the route write (up to ROUTE_WAIT_S, then goes out anyway): callbacks
        # on the claim's future and a timer, no task per connection
        claim = self._routes.claim(auth.device)
        if claim.done():
            self._welcome(sock)
            return
        timer = asyncio.get_running_loop().call_later(ROUTE_WAIT_S, self._welcome, sock, True)

        def claimed(_: asyncio.Future[None]) -> None:
            timer.cancel()
            self._welcome(sock)

        claim.add_done_callback(claimed)

    def _welcome(self, sock: _Device, late: bool = False) -> None:
        """Send auth_ok, then the frames that came for the device meanwhile (once per socket)."""
        early, sock.early = sock.early, None
        if early is None or sock.closing:
            return
        if late:
            log.debug("%s: route of %s not yet written", self.name, sock.device)
        sock.send(frames.AuthOk(broker=self.name, region=self.region).model_dump_json().encode())
        for frame in early:
            sock.send(frame)

    def _gone(self, sock: _Device) -> None:
        """A socket ended: forget it; its device's unacked pushes fail now (AckBook.device_gone)."""
        self._sockets.discard(sock)
        device = sock.device
        if device is None:
            return
        if self._conns.get(device) is sock:
            del self._conns[device]
            self._routes.release(device)
            self._acks.device_gone(device)
        self._m_disconnects.inc()

    def _refuse(self, sock: _Device, code: ErrorCode, reason: str, close: int, metric: str | None = None) -> None:
        self._m_refused.labels(metric or code).inc()
        retry = OVER_LIMIT_RETRY_MS if code in ("over_limit", "draining") else 0
        error = frames.Error(code=code, reason=reason, retry_after_ms=retry)
        sock.early = None  # a refused socket never gets auth_ok: the error frame goes out at once
        sock.send(error.model_dump_json().encode())
        sock.close(close, reason)

    def _on_frame(self, conn: _Device, raw: str | bytes) -> bool:
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
            self._acks.ack((conn.device or "", str(frame.get("id"))))
            return False
        return kind == "ping"

    def _close_later(self, conn: _Device, delay_s: float, code: int, reason: str) -> None:
        def close() -> None:
            conn.closer = None
            conn.close(code, reason)

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
            if conn is None or not conn.is_open:
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
                conn.early.append(frame)  # _welcome sends it right after auth_ok
            elif conn.has_room():  # a slow device holds up no one: it buffers, or is cut off past a bound
                conn.transport.send(TEXT, frame)  # written now: no await, no task per frame
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
            if conn is None or self.draining is None or not conn.is_open:
                continue
            order = frames.Reconnect(after_ms=after_ms, avoid=[self.region], reason=reason)
            self._close_later(conn, after_ms / 1000 + CLOSE_GRACE_S, frames.CLOSE_RECONNECT, "reconnect")
            conn.send(order.model_dump_json().encode())
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
        self._m_overflows = self.counter(
            "pushstack_broker_write_overflows_total", "Devices cut off: stopped reading past the write-buffer bound"
        )
        self._m_orders = self.counter("pushstack_broker_reconnect_orders_total", "Reconnect orders sent")
        self._m_route_writes = self.counter("pushstack_broker_route_writes_total", "Route updates written")
        self._m_route_errors = self.counter("pushstack_broker_route_errors_total", "Failed route batch writes")
        self._m_ack_latency = self.histogram(
            "pushstack_broker_ack_seconds",
            "Time from a deliver call to each ack",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )


def _http(status: HTTPStatus, body: bytes, content_type: str) -> WSUpgradeResponseWithListener:
    """A plain HTTP answer on the device port (picows sends it with Connection: close)."""
    headers = {"Content-Type": content_type}
    if status is HTTPStatus.OK:
        response = WSUpgradeResponse.create_ok_response(body, headers)
    else:
        response = WSUpgradeResponse.create_error_response(status, body, headers)
    return WSUpgradeResponseWithListener(response, None)
