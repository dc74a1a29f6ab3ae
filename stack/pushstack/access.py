"""The access tier: the HTTP API app servers call to push (idc1).

- `POST /v1/push/single` (SinglePush), `POST /v1/push/batch` (SingleBatch): the payload goes to
  the cache Redis (`payload:<id>`, with a TTL, pipelined), the message to a logic gateway with
  `payload_ref`. Pushes from concurrent requests are coalesced (`pushstack.batching`), so a flush
  is one Redis pipeline and one request per gateway.
- `POST /v1/push/group` (GroupPush, devices or a region): the payload is published to Kafka
  `group-payloads` (the kvwriter persists it to the disk KV) and cached at `group-payload:<id>`;
  the fan-out goes to the gateways as GroupTasks split by routing weight.
- Gateway choice: the routing weights (read from the gateways every second) with failover and
  health marks (`pushstack.routing`).
- Storage fallback: when the cache fails (PING every 200 ms, or a failed write) single pushes carry
  their payload inline; group payloads still reach the disk KV through Kafka. `GET /v1/storage`.
- Buffer path: `GET/PUT /v1/throttle`; pushes the limiter does not admit go to Kafka `buffer`
  (the bypass consumer drains it). A push is rejected only when neither path takes it.

Environment: PUSHCTL_PAYLOAD_TTL_S (300), PUSHCTL_INLINE_FALLBACK (1; 0 sends references even
when the cache is down, so the loss shows in the ledger).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import cast

from aiohttp import web
from redis.exceptions import RedisError

from pushctl.contract.api import (
    TOPIC_BUFFER,
    TOPIC_GROUP_PAYLOADS,
    AccessResult,
    GroupPush,
    GroupTask,
    Message,
    PushBatch,
    SingleBatch,
    SinglePush,
    Throttle,
)
from pushctl.contract.topology import Inventory
from pushstack.batching import MicroBatcher, chunks
from pushstack.fallback import StorageHealth, carry_inline
from pushstack.kafkaio import KafkaProducerLink
from pushstack.keys import KEY_GROUP_PAYLOAD, KEY_PAYLOAD, KEY_REGION_DEVICES
from pushstack.routing import LogicRouter
from pushstack.service import PushService
from pushstack.throttle import DirectLimiter

log = logging.getLogger("pushstack.access")
LOGIC_CHUNK = 2000  # messages per request to a gateway
BUFFER_RECORD = 500  # messages per Kafka record on the buffer topic


# SET every KEYS[i] to ARGV[i+1] with the TTL ARGV[1], in one round trip and one command
SET_MANY_LUA = """
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
    redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ttl)
end
return #KEYS
"""


class AccessTier(PushService):
    kind = "access"

    def __init__(self, inventory: Inventory, name: str) -> None:
        super().__init__(inventory, name)
        self.payload_ttl_s = int(os.environ.get("PUSHCTL_PAYLOAD_TTL_S") or 300)
        self.inline_fallback = os.environ.get("PUSHCTL_INLINE_FALLBACK", "1") not in (
            "0",
            "false",
            "no",
            "off",
        )
        self.storage = StorageHealth(now=time.time())
        self.limiter = DirectLimiter()
        self.m_requests = self.counter("pushstack_access_requests_total", "API requests.", ("endpoint",))
        self.m_pushes = self.counter("pushstack_access_pushes_total", "Pushes accepted, by path.", ("path",))
        self.m_rejected = self.counter("pushstack_access_rejected_total", "Pushes no path would take.")
        self.m_inline = self.counter("pushstack_access_inline_total", "Single pushes sent with inline payload.")
        self.m_missing = self.counter(
            "pushstack_access_payload_missing_total", "Single pushes a gateway could not fetch by reference."
        )
        self.m_group_devices = self.counter("pushstack_access_group_devices_total", "Devices in group pushes.")
        self.m_group_store = self.counter(
            "pushstack_access_group_payload_writes_total", "Group payload writes.", ("target", "result")
        )
        self.m_kafka_err = self.counter("pushstack_access_kafka_errors_total", "Kafka sends that failed.", ("topic",))
        self.m_failovers = self.counter(
            "pushstack_access_failovers_total", "Requests re-sent to another gateway.", ("to",)
        )
        self.m_switches = self.counter("pushstack_access_storage_switches_total", "Storage mode changes.", ("to",))
        # every label value known up front is exported at 0 from the start: a rate() over it, a
        # dashboard panel or an alert reads a number on a healthy platform instead of "no data"
        for idc in self.inv.idcs:
            self.m_failovers.labels(idc)
        for mode_ in ("redis", "fallback"):
            self.m_switches.labels(mode_)
        for topic in (TOPIC_BUFFER, TOPIC_GROUP_PAYLOADS):
            self.m_kafka_err.labels(topic)
        self.m_seconds = self.histogram(
            "pushstack_access_request_seconds",
            "Time to answer a push request.",
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        mode = self.gauge("pushstack_access_storage_mode", "1 for the current storage mode.", ("mode",))
        for name_ in ("redis", "fallback"):
            mode.labels(name_).set_function(lambda m=name_: 1 if self.storage.mode == m else 0)  # type: ignore[misc]
        self.gauge("pushstack_access_storage_fallback", "1 while payloads travel inline.").set_function(
            lambda: 1 if self.storage.mode == "fallback" else 0
        )
        self.gauge("pushstack_access_throttle_engaged", "1 while the direct path is limited.").set_function(
            lambda: 1 if self.limiter.engaged else 0
        )
        self.gauge("pushstack_access_offered_per_s", "Single pushes offered per second.").set_function(
            lambda: self.limiter.offered.rate
        )
        self.m_downstream = self.gauge("pushstack_access_downstream_load", "Logic gateways' reported messages/s.")
        self.m_logic_up = self.gauge("pushstack_access_logic_healthy", "1 while a gateway is marked healthy.", ("idc",))
        self.gauge("pushstack_access_kafka_ready", "1 once the Kafka producer is connected.").set_function(
            lambda: 1 if self.kafka.ready else 0
        )
        self.kafka = KafkaProducerLink("{}:{}".format(*inventory.link_addr(self.spec.connect["kafka"])), client_id=name)

    def routes(self) -> None:
        self.control("POST", "/v1/push/single", self._single)
        self.control("POST", "/v1/push/batch", self._batch)
        self.control("POST", "/v1/push/group", self._group)
        self.control("GET", "/v1/storage", self._get_storage)
        self.control("GET", "/v1/throttle", self._get_throttle)
        self.control("PUT", "/v1/throttle", self._put_throttle)

    async def on_start(self) -> None:
        self.cache = self.redis_for("cache", timeout=0.3)
        self._set_many = self.cache.register_script(SET_MANY_LUA)
        self.store = self.redis_for("store") if "store" in self.spec.connect else None
        self.router = LogicRouter(self.inv, self.inv.token)
        self.router.on_failover = lambda idc: self.m_failovers.labels(idc).inc()
        await self.router.start()
        self.direct = MicroBatcher(self._flush_direct, max_items=LOGIC_CHUNK, linger=0.005)
        self.spawn(self.kafka.connect_routine, "_kafka_routine")
        self.spawn(self._storage_routine, "_storage_routine")
        self.spawn(self._load_routine, "_load_routine")

    async def on_stop(self) -> None:
        await self.direct.close()
        await self.router.close()
        await self.kafka.close()
        await self.cache.aclose()
        if self.store is not None:
            await self.store.aclose()

    def health_detail(self) -> tuple[bool, dict[str, str]]:
        detail = {"storage": self.storage.mode, "kafka": "ready" if self.kafka.ready else "connecting"}
        detail.update({f"logic-{idc}": "ok" if ok else "down" for idc, ok in self.router.healthy.items()})
        return any(self.router.healthy.values()), detail

    # ---- single pushes ----------------------------------------------------------------------
    async def _single(self, request: web.Request) -> web.Response:
        self.m_requests.labels("single").inc()
        return await self._answer(await self._accept([await self.body(request, SinglePush)]))

    async def _batch(self, request: web.Request) -> web.Response:
        self.m_requests.labels("batch").inc()
        return await self._answer(await self._accept((await self.body(request, SingleBatch)).messages))

    async def _accept(self, pushes: list[SinglePush]) -> AccessResult:
        started = time.perf_counter()
        n_direct = self.limiter.admit(len(pushes))
        direct, throttled = pushes[:n_direct], pushes[n_direct:]
        ok_direct = await self.direct.submit(direct) if direct else []
        failed = [p for p, ok in zip(direct, ok_direct, strict=True) if not ok]
        # nothing is rejected while the buffer accepts: failed direct pushes go there too
        to_buffer = throttled + failed
        ok_buffer = await self._to_buffer(to_buffer)
        # throttled pushes the buffer refused still get the direct path rather than a rejection
        last_try = [
            p for i, (p, ok) in enumerate(zip(to_buffer, ok_buffer, strict=True)) if not ok and i < len(throttled)
        ]
        ok_last = await self.direct.submit(last_try) if last_try else []
        n_dir = sum(ok_direct) + sum(ok_last)
        n_buf = sum(ok_buffer)
        taken = {p.id for p, ok in zip(direct, ok_direct, strict=True) if ok}
        taken |= {p.id for p, ok in zip(to_buffer, ok_buffer, strict=True) if ok}
        taken |= {p.id for p, ok in zip(last_try, ok_last, strict=True) if ok}
        result = AccessResult(
            accepted=n_dir + n_buf,
            direct=n_dir,
            buffered=n_buf,
            rejected=len(pushes) - n_dir - n_buf,
            rejected_ids=[p.id for p in pushes if p.id not in taken],
        )
        self.m_seconds.observe(time.perf_counter() - started)
        return result

    async def _flush_direct(self, pushes: list[SinglePush]) -> list[bool]:
        write_failed = False
        if self.storage.mode == "redis" or not self.inline_fallback:
            write_failed = not await self._cache_payloads(pushes)
        if carry_inline(self.storage.mode, write_failed, self.inline_fallback):
            self.m_inline.inc(len(pushes))
            msgs = [Message(id=p.id, device=p.device, sent_at=p.sent_at, payload=p.payload) for p in pushes]
        else:
            msgs = [
                Message(id=p.id, device=p.device, sent_at=p.sent_at, payload_ref=KEY_PAYLOAD.format(id=p.id))
                for p in pushes
            ]
        oks, missing = await self._to_logic(msgs)
        if missing:
            self.m_missing.inc(len(missing))
            if self.inline_fallback:
                again = [
                    Message(id=p.id, device=p.device, sent_at=p.sent_at, payload=p.payload)
                    for p in pushes
                    if p.id in missing
                ]
                self.m_inline.inc(len(again))
                oks_again, _ = await self._to_logic(again)
                taken = {m.id for m, ok in zip(again, oks_again, strict=True) if ok}
                oks = [ok and (p.id not in missing or p.id in taken) for p, ok in zip(pushes, oks, strict=True)]
            # PUSHCTL_INLINE_FALLBACK=0: they count as accepted and are never delivered (the ledger's loss)
        return oks

    async def _to_logic(self, msgs: list[Message]) -> tuple[list[bool], set[str]]:
        replies = await asyncio.gather(*(self.router.push(part) for part in chunks(msgs, LOGIC_CHUNK)))
        return [ok for r in replies for ok in r.ok], {mid for r in replies for mid in r.missing}

    async def _cache_payloads(self, pushes: list[SinglePush]) -> bool:
        keys = [KEY_PAYLOAD.format(id=p.id) for p in pushes]
        try:
            # one command for the whole batch: redis-py spends more CPU building a pipeline of N SETs
            # than Redis spends running them (the profile of the access tier at its ceiling)
            await self._set_many(keys=keys, args=[self.payload_ttl_s, *(p.payload for p in pushes)])
        except RedisError as exc:
            self._storage_observed(False, exc)
            return False
        return True

    async def _to_buffer(self, pushes: list[SinglePush]) -> list[bool]:
        if not pushes:
            return []
        if not self.kafka.ready:
            return [False] * len(pushes)
        parts = chunks(pushes, BUFFER_RECORD)
        records = [
            (
                None,
                PushBatch(
                    messages=[Message(id=p.id, device=p.device, sent_at=p.sent_at, payload=p.payload) for p in part]
                )
                .model_dump_json()
                .encode(),
            )
            for part in parts
        ]
        oks = await self.kafka.send_many(TOPIC_BUFFER, records)
        if not all(oks):
            self.m_kafka_err.labels(TOPIC_BUFFER).inc(oks.count(False))
        return [ok for part, ok in zip(parts, oks, strict=True) for _ in part]

    async def _answer(self, result: AccessResult) -> web.Response:
        self.m_pushes.labels("direct").inc(result.direct)
        self.m_pushes.labels("buffer").inc(result.buffered)
        self.m_rejected.inc(result.rejected)
        status = 503 if result.rejected and not result.accepted else 200
        return self.reply(result, status=status)

    # ---- group pushes -----------------------------------------------------------------------
    async def _group(self, request: web.Request) -> web.Response:
        self.m_requests.labels("group").inc()
        push = await self.body(request, GroupPush)
        devices = await self._group_devices(push)
        if not devices:
            return self.reply(AccessResult(accepted=0, direct=0, buffered=0, rejected=0))
        self.m_group_devices.inc(len(devices))
        ref = KEY_GROUP_PAYLOAD.format(id=push.id)
        in_kafka, in_cache = await asyncio.gather(self._publish_group(push), self._cache_group(ref, push.payload))
        if not (in_kafka or in_cache):
            return await self._answer(AccessResult(accepted=0, direct=0, buffered=0, rejected=len(devices)))
        task = GroupTask(id=push.id, devices=devices, sent_at=push.sent_at, payload_ref=ref)
        accepted = await self.router.group(task)
        return await self._answer(
            AccessResult(accepted=accepted, direct=accepted, buffered=0, rejected=len(devices) - accepted)
        )

    async def _group_devices(self, push: GroupPush) -> list[str]:
        if push.devices is not None:
            return list(dict.fromkeys(push.devices))
        if push.region is None:
            raise web.HTTPBadRequest(text='{"error": "give devices or region"}', content_type="application/json")
        if push.region not in self.inv.regions:
            raise web.HTTPBadRequest(
                text=f'{{"error": "unknown region {push.region!r}"}}', content_type="application/json"
            )
        if self.store is None:
            raise web.HTTPServiceUnavailable(
                text='{"error": "this access tier has no store link for region groups"}',
                content_type="application/json",
            )
        try:
            key = KEY_REGION_DEVICES.format(region=push.region)
            members = cast("set[str]", await self.store.smembers(key))
        except RedisError as exc:
            raise web.HTTPServiceUnavailable(
                text='{"error": "store unreachable: region members unknown"}', content_type="application/json"
            ) from exc
        return sorted(members)

    async def _publish_group(self, push: GroupPush) -> bool:
        [ok] = await self.kafka.send_many(TOPIC_GROUP_PAYLOADS, [(push.id.encode(), push.payload.encode())])
        self.m_group_store.labels("kafka", "ok" if ok else "error").inc()
        if not ok:
            self.m_kafka_err.labels(TOPIC_GROUP_PAYLOADS).inc()
        return ok

    async def _cache_group(self, ref: str, payload: str) -> bool:
        ok = False
        if self.storage.mode == "redis":
            try:
                await self.cache.set(ref, payload, ex=self.payload_ttl_s)
                ok = True
            except RedisError as exc:
                self._storage_observed(False, exc)
        self.m_group_store.labels("cache", "ok" if ok else "error").inc()
        return ok

    # ---- storage fallback, throttle ---------------------------------------------------------
    async def _get_storage(self, _: web.Request) -> web.Response:
        return self.reply(self.storage.state())

    def _storage_observed(self, ok: bool, exc: Exception | None = None) -> None:
        if self.storage.observe(ok, time.time()):
            self.m_switches.labels(self.storage.mode).inc()
            if self.storage.mode == "fallback":
                log.warning("cache Redis failed (%r): payloads travel inline", exc)
            else:
                log.warning("cache Redis answers again: payloads go to the cache")

    async def _storage_routine(self) -> None:
        """PING the cache every 200 ms; a failed PING, or one slower than PUSHCTL_CACHE_SLOW_MS, means
        fallback: a slow cache costs every push its round trip twice (write here, read in logic) and
        builds a backlog, so it is treated like a failed one (the "Redis slow" runbook)."""
        slow_s = float(os.environ.get("PUSHCTL_CACHE_SLOW_MS", "100")) / 1000
        while True:
            await asyncio.sleep(0.2)
            started = time.perf_counter()
            try:
                await self.cache.ping()
            except RedisError as exc:
                self._storage_observed(False, exc)
                continue
            elapsed = time.perf_counter() - started
            if elapsed > slow_s:
                self._storage_observed(False, TimeoutError(f"PING took {elapsed * 1000:.0f} ms"))
                continue
            if self.storage.mode == "fallback":
                # Connections idle in the pool since the outage began are dead (the link closed
                # them) but look alive until used: the first write on one would fail and flip the
                # mode back to fallback a second after recovery. Drop them before going back.
                try:
                    await self.cache.connection_pool.disconnect(inuse_connections=False)
                except (RedisError, OSError) as exc:  # not back after all: stay on the fallback
                    self._storage_observed(False, exc)
                    continue
            self._storage_observed(True)

    async def _get_throttle(self, _: web.Request) -> web.Response:
        return self.reply(self.limiter.setting)

    async def _put_throttle(self, request: web.Request) -> web.Response:
        setting = await self.body(request, Throttle)
        if setting.mode == "fixed" and (setting.limit_per_s is None or setting.limit_per_s < 0):
            raise web.HTTPBadRequest(
                text='{"error": "mode fixed needs limit_per_s >= 0"}', content_type="application/json"
            )
        self.limiter.configure(setting)
        log.info("throttle set to %s", setting.model_dump())
        return self.reply(setting)

    async def _load_routine(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            load = self.router.total_load
            self.m_downstream.set(load)
            self.limiter.observe(load)
            for idc, ok in self.router.healthy.items():
                self.m_logic_up.labels(idc).set(1 if ok else 0)
