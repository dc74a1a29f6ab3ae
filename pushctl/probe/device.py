"""A synthetic device: a WebSocket client that behaves like a phone on the push platform.

It asks the dispatcher for endpoints (nearest first), connects to the first, authenticates, acks
every push at once and de-duplicates by message id. It obeys `reconnect` orders (wait `after_ms`,
go to the first region of its IP set not in `avoid`: the dispatcher's last answer, so a drained
region's devices do not all ask the dispatcher at once). When a connection is lost or refused it
backs off (exponential, jittered) and tries the NEXT endpoint of its list: the three-region IP set
lets devices fail over on their own, even with the dispatcher down (the inventory's device links are
the fallback list). While connected it re-asks the dispatcher now and then, so devices drift back to
their home region once a drain is withdrawn (only while away from home).

    dispatcher = Dispatcher(config, httpx.AsyncClient())
    device = Device("probe-1", "north", config, dispatcher, observer)
    task = asyncio.create_task(device.run())   # cancel the task to take the device away
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx
import picows
from pydantic import ValidationError

from pushctl.contract import frames
from pushctl.contract.api import Endpoint, Endpoints
from pushctl.probe.cohorts import rewrite

Cause = Literal["initial", "order", "lost", "rebalance", "return"]


@dataclass(frozen=True)
class DeviceConfig:
    """How devices reach the platform and how they behave; plain data, so it crosses processes."""

    dispatcher_url: str  # http://host:port of the dispatcher (its public link)
    secret: str  # the platform secret device tokens derive from (also the dispatcher's bearer token)
    fallback: Mapping[str, Sequence[tuple[str, str]]]  # home region -> [(region, ws url)], nearest first
    reconnect: bool = True  # False: a lost connection stays lost (shows the ledger catching loss)
    open_timeout: float = 5.0
    auth_timeout: float = 5.0
    dispatcher_timeout: float = 2.0
    backoff_base: float = 0.1
    backoff_cap: float = 5.0
    recheck_s: float = 10.0  # mean interval between dispatcher re-asks while away from home; 0 disables
    ping_interval: float = 10.0
    ping_timeout: float = 10.0
    dedup_window: int = 4096  # ids a device remembers for de-duplication (a phone's memory is finite)
    # cohorts (pushctl.probe.cohorts): the experiment cohort's devices dial `cohort_via[host:port]`
    # in place of a control device link's host:port
    cohort_via: Mapping[str, str] = field(default_factory=dict)
    cohort_devices: tuple[str, ...] = ()  # the experiment cohort

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeviceConfig:
        fields = dict(data)
        fields["fallback"] = {r: [tuple(e) for e in eps] for r, eps in data["fallback"].items()}
        fields["cohort_devices"] = tuple(data.get("cohort_devices", ()))
        return cls(**fields)


@dataclass(frozen=True)
class ReconnectEvent:
    """One stretch without a connection: from its cause to the next auth_ok (None: never)."""

    device: str
    cause: Cause
    started_at: float
    connected_at: float | None
    from_region: str | None
    to_region: str | None
    attempts: int
    planned_at: float | None = None  # a reconnect order's slot: when the platform told the device to move

    @property
    def duration(self) -> float | None:
        return None if self.connected_at is None else self.connected_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReconnectEvent:
        return cls(**data)


@dataclass
class DeviceStats:
    device: str
    home: str
    region: str | None = None  # where it is connected now (None: offline)
    connects: int = 0  # successful authentications
    refusals: int = 0  # attempts that ended before auth_ok
    pushes: int = 0  # push frames received, duplicates included
    raw_duplicates: int = 0
    bad_frames: int = 0  # frames that break the contract (ignored)
    events: list[ReconnectEvent] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["events"] = [e.to_json() for e in self.events]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeviceStats:
        fields = dict(data)
        fields["events"] = [ReconnectEvent.from_json(e) for e in data.get("events", [])]
        return cls(**fields)


class DeviceObserver(Protocol):
    """Who hears what devices see: a fleet, which feeds the ledger and counts connections."""

    def delivered(self, msg_id: str, device: str, at: float, app: bool) -> None: ...

    def connected(self, device: str, region: str, at: float) -> None: ...

    def disconnected(self, device: str, region: str) -> None: ...

    def reconnected(self, event: ReconnectEvent) -> None: ...


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def ws_url(url: str) -> str:
    """An endpoint URL as dialled: the contract's path is added when the URL has none."""
    return url if urlsplit(url).path not in ("", "/") else url.rstrip("/") + frames.WS_PATH


def _resolve(future: asyncio.Future[str], value: str) -> None:
    if not future.done():
        future.set_result(value)


PONG = frames.Pong().model_dump_json()
MAX_FRAME_BYTES = 1 << 20  # a push frame is a few hundred bytes; a 1 MiB frame is a broken broker
CLOSE_TIMEOUT_S = 1.0  # how long a device waits for the broker's half of a close handshake
# what a failed connection attempt raises: refused or reset (OSError), no answer in time, a handshake or
# URL picows rejects (WSError), a first frame that is not JSON (ValueError)
OPEN_ERRORS = (OSError, TimeoutError, picows.WSError, ValueError)


class _Link(picows.WSListener):
    """One connection to a broker, read by callbacks: every frame is handled in the step that reads it.

    Until auth_ok arrives the first frame resolves `first`; from then on pushes are delivered and acked
    at once, so a push the broker writes right behind auth_ok (a moved device's first messages) is read
    in the same step, not after the device has finished leaving its old connection. A reconnect order
    waits on the link it came on (`order`, `wake`); `closed` resolves when the connection is gone.
    """

    def __init__(self, device: Device, ep: Endpoint) -> None:
        super().__init__()
        loop = asyncio.get_running_loop()
        self.device = device
        self.ep = ep
        self.transport: picows.WSTransport | None = None
        self.ok: frames.AuthOk | None = None
        # when auth_ok was read: the device is connected from then on. A push the broker wrote right
        # behind it is handled in the same callback, before `_live` runs: stamped later, the return of
        # a device that was away would come after its first deliveries and make them look late
        self.authed_at = 0.0
        self.order: tuple[float, frames.Reconnect] | None = None
        self.first: asyncio.Future[str] = loop.create_future()
        self.wake: asyncio.Future[str] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    # ---- picows callbacks ----------------------------------------------------------------------
    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        _resolve(self.first, "")  # a connection closed before its first frame: refused
        if not self.closed.done():
            self.closed.set_result(None)

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind is picows.WSMsgType.CLOSE:
            # the broker closes (a refusal, a reconnect order, replaced): answer and hang up
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if kind is not picows.WSMsgType.TEXT and kind is not picows.WSMsgType.BINARY:
            return  # PING is answered by picows, PONG ends its own ping timer
        raw = frame.get_payload_as_bytes()
        if self.ok is None and not self.first.done():
            self.authed_at = time.time()
            self.first.set_result(raw.decode(errors="replace"))
            return
        self.device._frame(self, raw, transport)

    # ---- the device's side -----------------------------------------------------------------------
    def send(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_close_frame_sent:
            self.transport.send(picows.WSMsgType.TEXT, text.encode())

    @property
    def close_code(self) -> int | None:
        """The close code the broker sent (else the one the device sent); None before any close."""
        handshake = None if self.transport is None else self.transport.close_handshake
        if handshake is None:
            return None
        info = handshake.recv or handshake.sent
        return None if info is None else int(info.code.value)

    def abort(self) -> None:
        """Drop the connection without a close frame (a reset, as when a phone loses its radio)."""
        if self.transport is not None:
            self.transport.underlying_transport.abort()

    async def close(self) -> None:
        """Close handshake, at most CLOSE_TIMEOUT_S; then hang up whatever the broker did."""
        t = self.transport
        if t is None or self.closed.done():
            return
        if not t.is_close_frame_sent:
            t.send_close(picows.WSCloseCode.OK)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.shield(self.closed)
        except TimeoutError:
            t.disconnect(graceful=False)


@dataclass(frozen=True)
class _End:
    kind: Literal["refused", "lost", "order", "rebalance"]
    order: frames.Reconnect | None = None
    order_at: float = 0.0
    endpoints: tuple[Endpoint, ...] = ()
    # make-before-break: the next connection, already authenticated, when the device moved gracefully
    handover: _Link | None = None


class Dispatcher:
    """The dispatcher as devices ask it: `GET /v1/endpoints?device=ID&region=HOME`, nearest first.

    Requests are gated to `concurrency` at a time: a reconnect storm of thousands of devices queues
    here (cheaply, in order) instead of in the HTTP pool. An empty answer means "ask failed".
    Every answer is kept in `answers` (when, which regions in order): a drain is only as good as the
    dispatcher leaving the drained region out of what it hands joining devices.
    """

    def __init__(self, config: DeviceConfig, http: httpx.AsyncClient, *, concurrency: int = 32) -> None:
        self._url = f"{config.dispatcher_url.rstrip('/')}/v1/endpoints"
        self._headers = {"Authorization": f"Bearer {config.secret}"}
        self._timeout = config.dispatcher_timeout
        self._http = http
        self._gate = asyncio.Semaphore(concurrency)
        self.requests = 0
        self.failures = 0
        self.answers: list[tuple[float, tuple[str, ...]]] = []

    async def endpoints(self, device: str, home: str) -> tuple[Endpoint, ...]:
        async with self._gate:
            self.requests += 1
            try:
                resp = await self._http.get(
                    self._url, params={"device": device, "region": home}, headers=self._headers,
                    timeout=self._timeout,
                )  # fmt: skip
                resp.raise_for_status()
                found = tuple(Endpoints.model_validate_json(resp.content).endpoints)
            except (httpx.HTTPError, ValidationError):
                self.failures += 1
                return ()
            self.answers.append((time.time(), tuple(e.region for e in found)))
            return found


class Device:
    """One phone. `run()` lives until cancelled; `stats` is readable at any time."""

    def __init__(
        self,
        device_id: str,
        home: str,
        config: DeviceConfig,
        dispatcher: Dispatcher,
        observer: DeviceObserver,
        *,
        rng: random.Random | None = None,
        via: Mapping[str, str] | None = None,
    ) -> None:
        self.id = device_id
        self._via = via or {}  # an experiment-cohort device's own device links (pushctl.probe.cohorts)
        self.home = home
        self.config = config
        self.stats = DeviceStats(device_id, home)
        self._dispatcher = dispatcher
        self._observer = observer
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._token = frames.device_token(config.secret, device_id)
        self._seen: dict[str, None] = {}
        self._episode: tuple[Cause, float, str | None, int] | None = None  # cause, since, from, attempts
        self._planned_at: float | None = None  # the slot of the reconnect order being followed
        self._last_region: str | None = None
        self._known: tuple[Endpoint, ...] = ()  # the IP set: the dispatcher's last answer
        self._closing: set[asyncio.Task[None]] = set()
        self._current: _Link | None = None  # the connection being served

    @property
    def region(self) -> str | None:
        return self.stats.region

    def drop(self) -> None:
        """Lose the connection abruptly, as a phone entering a tunnel does (no close frame).

        The caller then cancels `run()` to keep the device away; a new `run(cause="return")` brings
        it back through the dispatcher, like a device that joins.
        """
        for link in (self._current,):
            if link is not None:
                link.abort()

    # ---- the life of a device ------------------------------------------------------------------
    async def run(self, cause: Cause = "initial") -> None:
        cfg = self.config
        self._episode = (cause, time.time(), self._last_region if cause != "initial" else None, 0)
        endpoints = await self._endpoints()
        idx, attempt = 0, 0
        handover: _Link | None = None
        while True:
            if handover is not None:
                end, handover = await self._live(handover), None
            else:
                end = await self._session(endpoints[idx % len(endpoints)])
            if end.kind == "refused":
                self.stats.refusals += 1
                attempt += 1
                idx += 1
                if idx % len(endpoints) == 0:  # the whole list refused: the dispatcher may know better
                    endpoints, idx = await self._endpoints(), 0
                await asyncio.sleep(backoff_delay(attempt, cfg.backoff_base, cfg.backoff_cap, self._rng))
                continue
            attempt = 0
            if not cfg.reconnect:
                self._episode = ("lost", time.time(), self._last_region, 0)  # open for good
                return  # a lost connection stays lost
            if end.kind == "lost":
                self._episode = ("lost", time.time(), self._last_region, 0)
                idx += 1
                await asyncio.sleep(backoff_delay(1, cfg.backoff_base, cfg.backoff_cap, self._rng))
            elif end.kind == "order":
                assert end.order is not None  # noqa: S101 - an order end always carries its frame
                self._episode = ("order", end.order_at, self._last_region, 0)
                self._planned_at = end.order_at + max(0, end.order.after_ms) / 1000.0
                if end.handover is not None:
                    handover = end.handover
                    continue
                endpoints, idx = self._avoiding(end.order.avoid), 0
            else:
                self._episode = ("rebalance", time.time(), self._last_region, 0)
                endpoints, idx = end.endpoints, 0
                if end.handover is not None:
                    handover = end.handover

    async def _session(self, ep: Endpoint) -> _End:
        if self._episode is not None:
            cause, since, origin, attempts = self._episode
            self._episode = (cause, since, origin, attempts + 1)
        try:
            link = await self._open(ep)
        except OPEN_ERRORS:
            return _End("refused")
        if link is None:
            return _End("refused")  # an `error` frame (over_limit, draining, ...) or junk
        return await self._live(link)

    async def _open(self, ep: Endpoint) -> _Link | None:
        """Connect and authenticate; None when the broker refused (the connection is closed then)."""
        cfg = self.config
        link = _Link(self, ep)
        async with asyncio.timeout(cfg.open_timeout):
            await picows.ws_connect(
                lambda: link,
                rewrite(ws_url(ep.url), self._via),
                websocket_handshake_timeout=cfg.open_timeout,
                # a dead link (no data, no pong) is found by pinging, then the device fails over
                enable_auto_ping=cfg.ping_interval > 0,
                auto_ping_idle_timeout=cfg.ping_interval or 10.0,
                auto_ping_reply_timeout=cfg.ping_timeout,
                max_frame_size=MAX_FRAME_BYTES,
                logger_name="probe.device",
            )
        try:
            link.send(frames.Auth(device=self.id, token=self._token, region=self.home).model_dump_json())
            async with asyncio.timeout(cfg.auth_timeout):
                raw = await link.first
            reply = json.loads(raw) if raw else None
            if not isinstance(reply, dict) or reply.get("type") != "auth_ok":
                await link.close()
                return None
            link.ok = frames.AuthOk.model_validate(reply)
        except BaseException:
            await link.close()
            raise
        return link

    async def _live(self, link: _Link) -> _End:
        """Serve an authenticated connection until it ends; close it (aside when it was handed over)."""
        assert link.ok is not None  # noqa: S101 - only an authenticated link is served
        self._connected(link.ok.region or link.ep.region, link.authed_at or time.time())
        self._current = link
        end = _End("lost")
        try:
            end = await self._serve(link)
        except (OSError, TimeoutError, ValueError):
            pass  # ValueError covers undecodable JSON and pydantic's ValidationError
        finally:
            if self._current is link:
                self._current = None
            self._disconnected()
            if end.handover is None:
                await self._retire(link)
            else:
                # the new connection is already being read; the old one is read until its close
                # handshake ends, so a push its broker wrote before it saw the close still arrives
                closing = asyncio.create_task(self._retire(link))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        return end

    @staticmethod
    async def _retire(link: _Link) -> None:
        await link.close()

    async def _handover(self, candidates: Sequence[Endpoint]) -> _Link | None:
        """Make-before-break: authenticate on the first candidate that accepts, old connection still open.

        A device that moves on purpose (a reconnect order, going home after a drain) keeps reading
        its old connection until the new one is routable, so nothing in flight waits for a retry.
        """
        for ep in candidates:
            try:
                link = await self._open(ep)
            except OPEN_ERRORS:
                continue
            if link is not None:
                return link
        return None

    async def _serve(self, link: _Link) -> _End:
        cfg = self.config
        loop = asyncio.get_running_loop()
        wake, reader = link.wake, link.closed
        # only a device away from its home region asks again (to go home after a restore); one at
        # home has nowhere better to be, and a drain of home reaches it as a reconnect order
        away = self.stats.region != self.home
        check_every = cfg.recheck_s if cfg.reconnect and cfg.recheck_s > 0 and away else None
        next_check = loop.time() + self._jittered(check_every) if check_every else None
        while True:
            timeout = None if next_check is None else max(0.0, next_check - loop.time())
            waiting: set[asyncio.Future[Any]] = {reader, wake}
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if wake.done() and link.order is not None:
                at, order = link.order
                allowed = self._avoiding(order.avoid)
                return _End("order", order, at, handover=await self._handover(allowed[:2]))
            if reader.done():
                if link.close_code == frames.CLOSE_RECONNECT and cfg.reconnect:
                    ordered_at, closed_by = link.order or (
                        time.time(),
                        frames.Reconnect(after_ms=0, avoid=[self.stats.region or ""], reason="closed"),
                    )
                    return _End("order", closed_by, ordered_at)
                return _End("lost")
            if next_check is not None and loop.time() >= next_check:
                if link.order is None:  # an order in progress moves the device anyway
                    fresh = await self._ask_dispatcher()
                    if fresh and fresh[0].region != self.stats.region and not reader.done():
                        return _End("rebalance", endpoints=fresh, handover=await self._handover(fresh[:1]))
                next_check = loop.time() + self._jittered(check_every)

    def _frame(self, link: _Link, raw: bytes, transport: picows.WSTransport) -> None:
        """One frame after auth_ok, handled in the step that reads it (a picows callback)."""
        at = time.time()
        try:
            frame = json.loads(raw)
            kind = frame.get("type") if isinstance(frame, dict) else None
            if kind == "push" and isinstance(frame.get("id"), str):
                # the app has it once it is read; on a connection closing behind a handover the ack
                # cannot go out, and the broker re-sends it to the new one (de-duplicated)
                self._push(frame["id"], at)
                if not transport.is_close_frame_sent:
                    transport.send(picows.WSMsgType.TEXT, frames.ack_frame(frame["id"]).encode())
            elif kind == "reconnect":
                self._ordered(link, frames.Reconnect.model_validate(frame), at)
            elif kind == "ping":
                link.send(PONG)
            elif kind not in ("pong", "error"):
                self.stats.bad_frames += 1
        except ValueError:  # not JSON, or a reconnect order that does not parse
            self.stats.bad_frames += 1

    # ---- what a device does with frames ----------------------------------------------------
    def _push(self, msg_id: str, at: float) -> None:
        self.stats.pushes += 1
        if msg_id in self._seen:
            self.stats.raw_duplicates += 1
            self._observer.delivered(msg_id, self.id, at, False)
            return
        self._seen[msg_id] = None
        if len(self._seen) > self.config.dedup_window:
            del self._seen[next(iter(self._seen))]
        self._observer.delivered(msg_id, self.id, at, True)

    def _ordered(self, link: _Link, order: frames.Reconnect, at: float) -> None:
        if not self.config.reconnect or link.order is not None:
            return  # without reconnection the device stays until the broker closes it
        link.order = (at, order)
        asyncio.get_running_loop().call_later(max(0, order.after_ms) / 1000.0, _resolve, link.wake, "order")

    def _connected(self, region: str, now: float) -> None:
        self.stats.connects += 1
        self.stats.region = region
        self._last_region = region
        if self._episode is not None:
            cause, since, origin, attempts = self._episode
            event = ReconnectEvent(self.id, cause, since, now, origin, region, attempts, self._planned_at)
            self.stats.events.append(event)
            self._observer.reconnected(event)
            self._episode = None
            self._planned_at = None
        self._observer.connected(self.id, region, now)

    def _disconnected(self) -> None:
        region, self.stats.region = self.stats.region, None
        if region is not None:
            self._observer.disconnected(self.id, region)

    def pending_event(self) -> ReconnectEvent | None:
        """The stretch without a connection in progress, if any (connected_at is None)."""
        if self._episode is None:
            return None
        cause, since, origin, attempts = self._episode
        return ReconnectEvent(self.id, cause, since, None, origin, None, attempts)

    # ---- the dispatcher ------------------------------------------------------------------------
    async def _endpoints(self) -> tuple[Endpoint, ...]:
        return await self._ask_dispatcher() or self._static()

    async def _ask_dispatcher(self) -> tuple[Endpoint, ...]:
        found = await self._dispatcher.endpoints(self.id, self.home)
        if found:
            self._known = found
        return found

    def _static(self) -> tuple[Endpoint, ...]:
        static = self.config.fallback.get(self.home) or next(iter(self.config.fallback.values()))
        return tuple(Endpoint(region=r, url=u) for r, u in static)

    def _avoiding(self, avoid: Sequence[str]) -> tuple[Endpoint, ...]:
        """Where an ordered device goes: its IP set without the regions the order names."""
        known = self._known or self._static()
        return tuple(e for e in known if e.region not in avoid) or known

    def _jittered(self, mean: float | None) -> float:
        return (mean or 0.0) * self._rng.uniform(0.5, 1.5)
