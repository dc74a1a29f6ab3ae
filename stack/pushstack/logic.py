"""The logic gateway (one per IDC, active-active): takes push tasks and gets them to the devices.

`POST /v1/push` (PushBatch) and `POST /v1/group` (GroupTask) answer 202 as soon as the request is
journaled (`pushstack.journal`); workers then take the queue in batches: fetch payloads
(`pushstack.delivery.PayloadResolver`: cache MGET, disk KV for group payloads), look up routes
(one HMGET), send one DeliverRequest per broker through its region's VPC link, concurrently.
Acked messages are done; a device that is offline or has no route gets the message in its
offline queue (`pushstack.offline`); a timeout is retried after a fresh route lookup, a bounded
number of times, then queued offline. Offline queues drain when the device comes back
(`online-events`, BLPOP by both gateways), right after storing when the route shows the device
is already back, and on a periodic sweep. Delivery is at-least-once; devices de-duplicate by id.

`GET/PUT /v1/routing` hold the IDC split in the store (`routing:weights`) so both IDCs agree;
`GET /v1/load` reports the rate and backlog the access tier's auto throttle reads.
Environment: see `LogicConfig`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from aiohttp import web
from redis.exceptions import RedisError

from pushctl.contract.api import Accepted, GroupTask, LogicLoad, Message, PushBatch, RoutingWeights
from pushctl.contract.topology import Inventory, ServiceKind
from pushstack.delivery import BrokerClient, Item, Outcome, PayloadResolver
from pushstack.journal import Entry, Inbox, Job
from pushstack.keys import KEY_ONLINE_EVENTS, KEY_ROUTING
from pushstack.kvclient import DiskKVClient
from pushstack.offline import OfflineStore
from pushstack.pools import client_session
from pushstack.service import PushService
from pushstack.throttle import RateMeter

log = logging.getLogger("pushstack.logic")
_EXPAND_CHUNK = 5000
SWEEP_LOCK = "logic-sweep-lock"


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    return int(raw) if raw else default


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    return float(raw) if raw else default


@dataclass(frozen=True)
class LogicConfig:
    offline_ttl_s: int = 3600  # PUSHCTL_OFFLINE_TTL_S
    offline_storage: bool = True  # PUSHCTL_OFFLINE_STORAGE=0 drops instead (tests: the ledger sees it)
    retries: int = 2  # PUSHCTL_DELIVER_RETRIES: after a timeout, before queueing offline
    deliver_timeout_ms: int = 2000  # PUSHCTL_DELIVER_TIMEOUT_MS: the broker's wait for acks
    payload_wait_s: float = 30.0  # PUSHCTL_PAYLOAD_WAIT_S: how long a missing payload may still come
    sweep_s: float = 10.0  # PUSHCTL_OFFLINE_SWEEP_S: retry offline queues of devices with a route
    batch: int = 1000  # PUSHCTL_LOGIC_BATCH: messages one worker takes at once
    workers: int = 4  # PUSHCTL_LOGIC_WORKERS
    max_queue: int = 200_000  # PUSHCTL_LOGIC_MAX_QUEUE: above it, 503 (the access tier fails over)
    max_inflight: int = 32  # PUSHCTL_LOGIC_MAX_INFLIGHT: concurrent deliver requests

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> LogicConfig:
        return cls(
            offline_ttl_s=_env_int(env, "PUSHCTL_OFFLINE_TTL_S", cls.offline_ttl_s),
            offline_storage=env.get("PUSHCTL_OFFLINE_STORAGE", "1") not in ("0", "false", "no", "off"),
            retries=_env_int(env, "PUSHCTL_DELIVER_RETRIES", cls.retries),
            deliver_timeout_ms=_env_int(env, "PUSHCTL_DELIVER_TIMEOUT_MS", cls.deliver_timeout_ms),
            payload_wait_s=_env_float(env, "PUSHCTL_PAYLOAD_WAIT_S", cls.payload_wait_s),
            sweep_s=_env_float(env, "PUSHCTL_OFFLINE_SWEEP_S", cls.sweep_s),
            batch=_env_int(env, "PUSHCTL_LOGIC_BATCH", cls.batch),
            workers=_env_int(env, "PUSHCTL_LOGIC_WORKERS", cls.workers),
            max_queue=_env_int(env, "PUSHCTL_LOGIC_MAX_QUEUE", cls.max_queue),
            max_inflight=_env_int(env, "PUSHCTL_LOGIC_MAX_INFLIGHT", cls.max_inflight),
        )


def default_weights(idcs: Iterable[str]) -> dict[str, float]:
    return dict.fromkeys(sorted(idcs), 50.0)


def check_weights(new: Mapping[str, float], idcs: Iterable[str]) -> dict[str, float]:
    """Weights for every IDC with a gateway (missing ones are 0); raises ValueError when invalid."""
    known = set(idcs)
    unknown = set(new) - known
    if unknown:
        raise ValueError(f"unknown idc(s) {sorted(unknown)}; valid: {sorted(known)}")
    if any(w < 0 for w in new.values()):
        raise ValueError("weights must not be negative")
    if sum(new.values()) <= 0:
        raise ValueError("at least one weight must be positive")
    return {idc: float(new.get(idc, 0.0)) for idc in sorted(known)}


def group_messages(task: GroupTask) -> list[Message]:
    """One message per device, each with the group's id: what the device acks and the ledger counts."""
    return [
        Message(id=task.id, device=d, sent_at=task.sent_at, payload_ref=task.payload_ref, group=task.id)
        for d in task.devices
    ]


class LogicGateway(PushService):
    kind = "logic"

    def __init__(self, inventory: Inventory, name: str) -> None:
        super().__init__(inventory, name)
        self.cfg = LogicConfig.from_env()
        self.idc = self.spec.idc or ""
        self.idcs = sorted(s.idc for s in inventory.services_of(ServiceKind.LOGIC).values() if s.idc)
        self._queue: deque[Item] = deque()
        self._wake = asyncio.Event()
        self._delayed = 0
        self._drain_pending: set[str] = set()
        self._drain_wake = asyncio.Event()
        self._unlink: list[str] = []
        self._weights = default_weights(self.idcs)
        self._helpers: set[asyncio.Task[None]] = set()
        self._store_ok = True
        self.finished = RateMeter()
        self.m_messages = self.counter(
            "pushstack_logic_messages_total", "Messages by outcome (retry counts attempts).", ("result",)
        )
        self.m_delivery = self.histogram(
            "pushstack_logic_delivery_seconds",
            "Duration of one deliver request to a broker.",
            (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.m_offline = self.counter("pushstack_logic_offline_stored_total", "Messages put in offline queues.")
        self.m_offline_out = self.counter(
            "pushstack_logic_offline_delivered_total", "Offline-queued messages delivered (acked) later."
        )
        self.m_accepted = self.counter("pushstack_logic_accepted_total", "Messages accepted.", ("kind",))
        self.m_busy = self.counter("pushstack_logic_rejected_total", "Messages refused with 503 (queue full).")
        self.m_journal_err = self.counter(
            "pushstack_logic_journal_errors_total", "Requests accepted without a journal entry."
        )
        self.m_replayed = self.counter(
            "pushstack_logic_journal_replayed_total", "Journal entries replayed (own restart or a dead peer)."
        )
        self.m_store_err = self.counter("pushstack_logic_store_errors_total", "Failed store round trips.")
        self.m_kv_reads = self.counter(
            "pushstack_logic_payload_diskkv_total", "Payload reads that went to the disk KV."
        )
        self.m_missing = self.counter(
            "pushstack_logic_payload_missing_total",
            "Single pushes refused at accept time: payload not in the cache (re-sent inline by access).",
        )
        self.m_events = self.counter("pushstack_logic_online_events_total", "online-events popped.")
        self.gauge("pushstack_logic_inflight", "Messages in deliver requests now.").set_function(
            lambda: self.brokers.inflight if hasattr(self, "brokers") else 0
        )
        self.gauge("pushstack_logic_queued", "Messages accepted, not yet in delivery.").set_function(
            lambda: len(self._queue) + self._delayed
        )
        self.gauge("pushstack_logic_cache_ok", "1 while the cache Redis answers.").set_function(
            lambda: 1 if not hasattr(self, "resolver") or self.resolver.cache_ok else 0
        )

    def routes(self) -> None:
        self.control("POST", "/v1/push", self._push)
        self.control("POST", "/v1/group", self._group)
        self.control("GET", "/v1/routing", self._get_routing)
        self.control("PUT", "/v1/routing", self._put_routing)
        self.control("GET", "/v1/load", self._load)

    # ---- lifecycle --------------------------------------------------------------------------
    async def on_start(self) -> None:
        self.store = self.redis_for("store")
        self.store_block = self.redis_for("store", timeout=3.0)  # BLPOP waits up to 1 s
        self.cache = self.redis_for("cache", timeout=0.5)
        self.session = client_session(limit=256, limit_per_host=64)
        kv = DiskKVClient(self.session, self.link_url("diskkv"), self.inv.token)
        self.resolver = PayloadResolver(self.cache, kv)
        self.brokers = BrokerClient(
            self.inv,
            self.session,
            timeout_ms=self.cfg.deliver_timeout_ms,
            max_inflight=self.cfg.max_inflight,
            observe=self.m_delivery.observe,
        )
        self.offline = OfflineStore(self.store, ttl_s=self.cfg.offline_ttl_s)
        self.inbox = Inbox(self.store, self.name, list(self.inv.services_of(ServiceKind.LOGIC)))
        with contextlib.suppress(RedisError):  # the journal routine retries
            await self.inbox.heartbeat()
            self._replay(await self.inbox.recover_own())
        for n in range(self.cfg.workers):
            self.spawn(self._worker_routine, f"_worker_routine-{n}")
        self.spawn(self._journal_routine, "_journal_routine")
        self.spawn(self._online_routine, "_online_routine")
        self.spawn(self._drain_routine, "_drain_routine")
        self.spawn(self._sweep_routine, "_sweep_routine")

    async def on_stop(self) -> None:
        for task in list(self._helpers):
            task.cancel()
        with contextlib.suppress(RedisError):
            await self.inbox.flush()
            await self.inbox.leave()
        await self.session.close()
        for client in (self.store, self.store_block, self.cache):
            await client.aclose()

    def health_detail(self) -> tuple[bool, dict[str, str]]:
        return self._store_ok, {
            "store": "ok" if self._store_ok else "unreachable",
            "cache": "ok" if self.resolver.cache_ok else "unreachable",
            "queued": str(len(self._queue) + self._delayed),
        }

    # ---- handlers ---------------------------------------------------------------------------
    async def _push(self, request: web.Request) -> web.Response:
        batch = await self.body(request, PushBatch)
        if not batch.messages:
            return self.reply(Accepted(accepted=0), status=202)
        self._check_capacity(len(batch.messages))
        missing = await self.resolver.fill_singles(batch.messages)
        if missing:
            self.m_missing.inc(len(missing))
            gone = set(missing)
            batch = PushBatch(messages=[m for m in batch.messages if m.id not in gone])
        n = len(batch.messages)
        if n:
            # journaled with the payloads: a replay does not depend on the cache
            job = await self._journal("p", batch.model_dump_json(), n)
            self._enqueue([Item(m, job) for m in batch.messages])
            self.m_accepted.labels("push").inc(n)
        return self.reply(Accepted(accepted=n, missing=missing), status=202)

    async def _group(self, request: web.Request) -> web.Response:
        raw = await request.read()
        task = await self.body(request, GroupTask)
        n = len(task.devices)
        if n:
            self._check_capacity(n)
            job = await self._journal("g", raw.decode(), n)
            self._expand(task, job)
            self.m_accepted.labels("group").inc(n)
        return self.reply(Accepted(accepted=n), status=202)

    async def _get_routing(self, _: web.Request) -> web.Response:
        try:
            stored = cast("dict[str, str]", await self.store.hgetall(KEY_ROUTING))
            if stored:
                self._weights = check_weights({k: float(v) for k, v in stored.items() if k in self.idcs}, self.idcs)
            else:
                self._weights = default_weights(self.idcs)
        except (RedisError, ValueError) as exc:
            log.warning("routing weights unreadable, answering the last known: %r", exc)
        return self.reply(RoutingWeights(weights=self._weights))

    async def _put_routing(self, request: web.Request) -> web.Response:
        body = await self.body(request, RoutingWeights)
        try:
            weights = check_weights(body.weights, self.idcs)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f'{{"error": "{exc}"}}', content_type="application/json") from None
        try:
            pipe = self.store.pipeline(transaction=True)
            pipe.delete(KEY_ROUTING)
            pipe.hset(KEY_ROUTING, mapping={k: str(v) for k, v in weights.items()})
            await pipe.execute()
        except RedisError as exc:
            raise web.HTTPServiceUnavailable(
                text='{"error": "store unreachable: weights not changed"}', content_type="application/json"
            ) from exc
        self._weights = weights
        log.info("routing weights set to %s", weights)
        return self.reply(RoutingWeights(weights=weights))

    async def _load(self, _: web.Request) -> web.Response:
        return self.reply(
            LogicLoad(
                service=self.name,
                idc=self.idc,
                messages_per_s=round(self.finished.rate, 1),
                queued=len(self._queue) + self._delayed,
                inflight=self.brokers.inflight,
            )
        )

    def _check_capacity(self, n: int) -> None:
        if len(self._queue) + self._delayed + n > self.cfg.max_queue:
            self.m_busy.inc(n)
            raise web.HTTPServiceUnavailable(text='{"error": "queue full"}', content_type="application/json")

    async def _journal(self, kind: str, body: str, n: int) -> Job:
        try:
            return await self.inbox.record(kind, body, n)
        except RedisError as exc:
            self.m_journal_err.inc()
            log.warning("journal write failed, accepting unjournaled: %r", exc)
            return self.inbox.unjournaled(n)

    # ---- queue ------------------------------------------------------------------------------
    def _enqueue(self, items: Iterable[Item]) -> None:
        self._queue.extend(items)
        self._wake.set()

    def _later(self, items: Sequence[Item], delay: float) -> None:
        if not items:
            return
        self._delayed += len(items)

        def due() -> None:
            self._delayed -= len(items)
            self._enqueue(items)

        asyncio.get_running_loop().call_later(delay, due)

    def _expand(self, task: GroupTask, job: Job) -> None:
        if len(task.devices) <= _EXPAND_CHUNK:
            self._enqueue(Item(m, job) for m in group_messages(task))
            return

        async def expand() -> None:
            for start in range(0, len(task.devices), _EXPAND_CHUNK):
                part = task.model_copy(update={"devices": task.devices[start : start + _EXPAND_CHUNK]})
                self._enqueue(Item(m, job) for m in group_messages(part))
                await asyncio.sleep(0)

        helper = asyncio.create_task(expand(), name="_expand_routine")
        self._helpers.add(helper)
        helper.add_done_callback(self._helpers.discard)

    def _replay(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            try:
                self._replay_one(entry)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                log.error("dropping unreadable journal entry %s/%s: %r", entry.key, entry.field, exc)  # noqa: TRY400 - the traceback says nothing more
                self.inbox.finish(Job(entry.key, entry.field, 0))
                continue
            self.m_replayed.inc()
        if entries:
            log.warning("replaying %d journal entries", len(entries))

    def _replay_one(self, entry: Entry) -> None:
        if entry.kind == "p":
            msgs = PushBatch.model_validate_json(entry.body).messages
            job = Job(entry.key, entry.field, len(msgs))
            self._enqueue(Item(m, job) for m in msgs)
        elif entry.kind == "g":
            task = GroupTask.model_validate_json(entry.body)
            self._expand(task, Job(entry.key, entry.field, len(task.devices)))
        else:
            raise ValueError(f"unknown journal entry kind {entry.kind!r}")

    def _finish(self, items: Sequence[Item], result: str) -> None:
        if not items:
            return
        self.m_messages.labels(result).inc(len(items))
        self.finished.add(len(items))
        for it in items:
            ref = it.msg.payload_ref
            if ref is not None and it.msg.group is None:
                self._unlink.append(ref)
            job = it.job
            if job is not None:
                job.pending -= 1
                if job.pending == 0:
                    self.inbox.finish(job)

    # ---- the delivery pipeline --------------------------------------------------------------
    async def _worker_routine(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.cfg.batch))]
            try:
                await self._process(batch)
            except Exception:
                # a bug must not lose messages: keep them, back off, try again
                log.exception("processing a batch of %d failed; retrying it", len(batch))
                self._later(batch, 1.0)

    async def _process(self, batch: list[Item]) -> None:
        resolved = await self.resolver.resolve(batch)
        self.m_kv_reads.inc(self.resolver.kv_reads)
        self.resolver.kv_reads = 0
        self._finish(resolved.lost, "dropped")
        if resolved.lost:
            log.error("dropped %d messages: payload missing from a healthy cache", len(resolved.lost))
        self._park(resolved.later)
        ready = resolved.ready
        try:
            routes = await self.offline.routes(it.msg.device for it in ready)
        except RedisError as exc:
            self._store_failed(exc)
            self._later(ready, 0.5)
            return
        self._store_ok = True
        by_broker: dict[str, list[Item]] = {}
        outcome = Outcome()
        no_route: list[Item] = []
        for it in ready:
            broker = routes.get(it.msg.device)
            if broker is None:
                no_route.append(it)
            else:
                by_broker.setdefault(broker, []).append(it)
        for part in await asyncio.gather(*(self.brokers.deliver(b, its) for b, its in by_broker.items())):
            outcome.merge(part)
        self._finish(outcome.acked, "acked")
        # "offline" from a broker usually means the route is stale: the device is moving (drain,
        # failover) and is about to claim a new route. Look again shortly before queueing it.
        moved, outcome.offline = outcome.offline, no_route
        outcome.retry.extend(moved)
        again: list[Item] = []
        for it in outcome.retry:
            it.attempts += 1
            (again if it.attempts <= self.cfg.retries else outcome.offline).append(it)
        if again:
            self.m_messages.labels("retry").inc(len(again))
            self._later(again, 0.05)  # goes through a fresh route lookup: the device may have moved
        if outcome.offline:
            await self._store_offline(outcome.offline)

    def _park(self, items: Sequence[Item]) -> None:
        now = asyncio.get_running_loop().time()
        expired: list[Item] = []
        waiting: list[Item] = []
        for it in items:
            if it.waiting_since is None:
                it.waiting_since = now
            (expired if now - it.waiting_since > self.cfg.payload_wait_s else waiting).append(it)
        if expired:
            log.error("dropped %d messages: payload unavailable for %.0fs", len(expired), self.cfg.payload_wait_s)
            self._finish(expired, "dropped")
        self._later(waiting, 0.25)

    async def _store_offline(self, items: list[Item]) -> None:
        if not self.cfg.offline_storage:
            self._finish(items, "dropped")
            return
        try:
            await self.offline.put([it.msg for it in items])
        except RedisError as exc:
            self._store_failed(exc)
            self._later(items, 0.5)
            return
        self.m_offline.inc(len(items))
        self._finish(items, "offline")
        # the device may have come back while we tried: its online event is then already gone
        try:
            routes = await self.offline.routes(it.msg.device for it in items)
        except RedisError as exc:
            self._store_failed(exc)
            return
        self._request_drain(d for d, broker in routes.items() if broker is not None)

    def _store_failed(self, exc: Exception) -> None:
        self.m_store_err.inc()
        if self._store_ok:
            log.warning("store unreachable, messages wait: %r", exc)
        self._store_ok = False

    # ---- offline queues ---------------------------------------------------------------------
    def _request_drain(self, devices: Iterable[str]) -> None:
        before = len(self._drain_pending)
        self._drain_pending.update(devices)
        if len(self._drain_pending) > before:
            self._drain_wake.set()

    async def _online_routine(self) -> None:
        while True:
            try:
                popped = await self.store_block.blpop([KEY_ONLINE_EVENTS], timeout=1)
                if popped is None:
                    continue
                more = await self.store.lpop(KEY_ONLINE_EVENTS, 999) or []
            except RedisError as exc:
                self._store_failed(exc)
                await asyncio.sleep(0.5)
                continue
            devices = [popped[1], *more]
            self.m_events.inc(len(devices))
            self._request_drain(devices)

    async def _drain_routine(self) -> None:
        while True:
            if not self._drain_pending:
                self._drain_wake.clear()
                await self._drain_wake.wait()
                continue
            devices = [self._drain_pending.pop() for _ in range(min(500, len(self._drain_pending)))]
            try:
                await self._drain(devices)
            except RedisError as exc:
                self._store_failed(exc)
                self._drain_pending.update(devices)
                await asyncio.sleep(0.5)

    async def _drain(self, devices: Sequence[str]) -> None:
        msgs = await self.offline.fetch(devices)
        if not msgs:
            return
        routes = await self.offline.routes(m.device for m in msgs)
        by_broker: dict[str, list[Item]] = {}
        for msg in msgs:
            broker = routes.get(msg.device)
            if broker is not None:
                by_broker.setdefault(broker, []).append(Item(msg, None))
        outcome = Outcome()
        for part in await asyncio.gather(*(self.brokers.deliver(b, its) for b, its in by_broker.items())):
            outcome.merge(part)
        if outcome.acked:
            await self.offline.remove([it.msg for it in outcome.acked])
            self.m_offline_out.inc(len(outcome.acked))
            self.m_messages.labels("acked").inc(len(outcome.acked))

    async def _sweep_routine(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.sweep_s)
            try:
                # one gateway sweeps per period: two would deliver the same queues twice
                if not await self.store.set(SWEEP_LOCK, self.name, nx=True, px=int(self.cfg.sweep_s * 900)):
                    continue
                waiting = await self.offline.waiting_devices(limit=5000)
                routes = await self.offline.routes(waiting)
            except RedisError as exc:
                self._store_failed(exc)
                continue
            self._request_drain(d for d, broker in routes.items() if broker is not None)

    # ---- journal upkeep ---------------------------------------------------------------------
    async def _journal_routine(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = 0.0
        while True:
            await asyncio.sleep(0.1)
            try:
                await self.inbox.flush()
                if self._unlink:
                    refs, self._unlink = self._unlink, []
                    with contextlib.suppress(RedisError):  # the TTL removes them anyway
                        await self.cache.unlink(*refs)
                if loop.time() >= next_beat:
                    next_beat = loop.time() + 1.0
                    await self.inbox.heartbeat()
                    if not self.inbox.recovered_own:
                        self._replay(await self.inbox.recover_own())
                    self._replay(await self.inbox.claim_dead_peers())
                    self._store_ok = True
            except RedisError as exc:
                self._store_failed(exc)
