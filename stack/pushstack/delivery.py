"""The logic gateway's two fetches and one send: payloads (cache, then disk KV) and broker delivery.

`PayloadResolver` fills `Message.payload` for messages that carry only a `payload_ref`: one MGET on
the cache for the whole batch; group payloads it cannot find there come from the disk KV (and are
remembered, since one group payload serves thousands of devices). `BrokerClient` sends one
`DeliverRequest` per broker and chunk over a pooled HTTP session and sorts the answer into acked,
offline and retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from typing import cast

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pushctl.contract.api import DeliverRequest, DeliverResult, Message
from pushctl.contract.topology import Inventory
from pushstack.batching import chunks
from pushstack.journal import Job
from pushstack.kvclient import DiskKVClient, DiskKVError

log = logging.getLogger("pushstack.delivery")


class Item:
    """A message on its way through a gateway."""

    __slots__ = ("attempts", "job", "msg", "waiting_since")

    def __init__(self, msg: Message, job: Job | None) -> None:
        self.msg = msg
        self.job = job
        self.attempts = 0
        self.waiting_since: float | None = None  # first time its payload could not be fetched


class Resolved:
    """How a batch's payload lookup ended."""

    __slots__ = ("later", "lost", "ready")

    def __init__(self) -> None:
        self.ready: list[Item] = []
        self.later: list[Item] = []  # the payload may still come: the cache is down, the writer lags
        self.lost: list[Item] = []  # a healthy cache does not have a single push's payload


class PayloadResolver:
    def __init__(self, cache: aioredis.Redis, kv: DiskKVClient, *, remember: int = 512) -> None:
        self._cache = cache
        self._kv = kv
        self._groups: OrderedDict[str, str] = OrderedDict()
        self._remember = remember
        self.cache_ok = True
        self.kv_reads = 0
        self._skip_until = 0.0  # after a cache error, do not wait on it again for a moment
        self.pause_after_error = 1.0
        self.slow_s = float(os.environ.get("PUSHCTL_CACHE_SLOW_MS", "100")) / 1000  # as the access tier

    async def resolve(self, items: Sequence[Item]) -> Resolved:
        out = Resolved()
        wanted: dict[str, str | None] = {}
        for it in items:
            ref = it.msg.payload_ref
            if it.msg.payload is None and ref is not None and ref not in wanted:
                wanted[ref] = self._groups.get(ref)
        missing = [ref for ref, value in wanted.items() if value is None]
        if missing:
            values = await self._mget(missing)
            for ref, value in zip(missing, values or [None] * len(missing), strict=True):
                wanted[ref] = value
        group_missing = {
            it.msg.payload_ref
            for it in items
            if it.msg.payload is None and it.msg.group is not None and wanted.get(it.msg.payload_ref or "") is None
        }
        if group_missing:
            found = await asyncio.gather(*(self._from_kv(ref) for ref in group_missing if ref))
            for ref, value in zip([r for r in group_missing if r], found, strict=True):
                wanted[ref] = value
        for ref, value in wanted.items():
            if value is not None and ref.startswith("group-payload:"):
                self._remember_group(ref, value)
        for it in items:
            if it.msg.payload is not None:
                out.ready.append(it)
                continue
            value = wanted.get(it.msg.payload_ref or "")
            if value is not None:
                it.msg.payload = value
                out.ready.append(it)
            elif it.msg.payload_ref is None or (it.msg.group is None and self.cache_ok):
                out.lost.append(it)
            else:
                out.later.append(it)
        return out

    async def fill_singles(self, msgs: Sequence[Message]) -> list[str]:
        """Fetch the payload of every single push that came by reference (one MGET).

        Returns the ids whose payload the cache does not have or could not give: the gateway does
        not accept those, so the access tier re-sends them inline while it still holds them.
        Doing this before accepting closes the window where a cache that dies (and comes back
        empty) between the access tier's write and our read would lose the message.
        """
        todo = [m for m in msgs if m.payload is None and m.group is None]
        if not todo:
            return []
        refs = [m.payload_ref for m in todo if m.payload_ref is not None]
        values = await self._mget(refs) if refs else []
        if values is None:
            return [m.id for m in todo]
        found = dict(zip(refs, values, strict=True))
        missing: list[str] = []
        for m in todo:
            value = found.get(m.payload_ref or "")
            if value is None:
                missing.append(m.id)
            else:
                m.payload = value
        return missing

    async def _mget(self, refs: list[str]) -> list[str | None] | None:
        """Values for refs; None when the cache failed (now, or less than a moment ago)."""
        if time.monotonic() < self._skip_until:
            return None
        started = time.monotonic()
        try:
            values = cast("list[str | None]", await self._cache.mget(refs))
        except RedisError as exc:
            if self.cache_ok:
                log.warning("cache unreachable: %r", exc)
            self.cache_ok = False
            self._skip_until = time.monotonic() + self.pause_after_error
            # whatever broke this connection (a link down, a restart) broke the idle ones too: drop
            # them now, or each would fail one read after the cache is back
            with contextlib.suppress(RedisError, OSError):
                await self._cache.connection_pool.disconnect(inuse_connections=False)
            return None
        if time.monotonic() - started > self.slow_s:
            # a slow cache: use these values, but let the next batches read the disk KV for a moment
            self._skip_until = time.monotonic() + self.pause_after_error
        self.cache_ok = True
        return values

    async def _from_kv(self, ref: str) -> str | None:
        self.kv_reads += 1
        try:
            return await self._kv.get(ref)
        except DiskKVError as exc:
            log.warning("disk KV read of %s failed: %r", ref, exc)
            return None

    def _remember_group(self, ref: str, value: str) -> None:
        self._groups[ref] = value
        self._groups.move_to_end(ref)
        while len(self._groups) > self._remember:
            self._groups.popitem(last=False)


class Outcome:
    """A delivery's result, by item."""

    __slots__ = ("acked", "offline", "retry")

    def __init__(self) -> None:
        self.acked: list[Item] = []
        self.offline: list[Item] = []
        self.retry: list[Item] = []

    def merge(self, other: Outcome) -> None:
        self.acked += other.acked
        self.offline += other.offline
        self.retry += other.retry


def sort_result(items: Sequence[Item], result: DeliverResult) -> Outcome:
    """Map a broker's answer back onto items; whatever it did not account for is retried."""
    answers = (
        (result.acked, result.acked_devices, "acked"),
        (result.offline, result.offline_devices, "offline"),
        (result.timeout, result.timeout_devices, "retry"),
    )
    out = Outcome()
    if any(devices for _, devices, _ in answers) and all(len(i) == len(d) for i, d, _ in answers):
        by_key: dict[tuple[str, str], list[Item]] = {}
        for it in items:
            by_key.setdefault((it.msg.device, it.msg.id), []).append(it)
        for ids, devices, bucket in answers:
            for mid, device in zip(ids, devices, strict=True):
                getattr(out, bucket).extend(by_key.pop((device, mid), ()))
        for rest in by_key.values():
            out.retry.extend(rest)
        return out
    return _sort_by_id(items, answers)


def _sort_by_id(items: Sequence[Item], answers: tuple[tuple[list[str], list[str], str], ...]) -> Outcome:
    """Ids only: exact for single pushes; a group id sent to several devices here is counted as
    acked (or offline) only when every one of them was, and re-sent otherwise (never guessed)."""
    by_id: dict[str, list[Item]] = {}
    for it in items:
        by_id.setdefault(it.msg.id, []).append(it)
    counts = [Counter(ids) for ids, _, _ in answers]
    out = Outcome()
    for mid, its in by_id.items():
        for count, (_, _, bucket) in zip(counts, answers, strict=True):
            if count[mid] >= len(its):
                getattr(out, bucket).extend(its)
                break
        else:
            out.retry.extend(its)
    return out


class BrokerClient:
    """POSTs `/v1/deliver` to a broker through its region's VPC link."""

    def __init__(
        self,
        inv: Inventory,
        session: aiohttp.ClientSession,
        *,
        timeout_ms: int = 2000,
        max_per_request: int = 2000,
        max_inflight: int = 32,
        observe: Callable[[float], None] = lambda _s: None,
    ) -> None:
        self._inv = inv
        self._session = session
        self._headers = {"Authorization": f"Bearer {inv.token}", "Content-Type": "application/json"}
        self.timeout_ms = timeout_ms
        self._http_timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000 + 3.0, sock_connect=1.0)
        self._max = max_per_request
        self._slots = asyncio.Semaphore(max_inflight)
        self._urls: dict[str, str | None] = {}
        self.inflight = 0
        self._observe = observe  # request durations, for the histogram

    def url_for(self, broker: str) -> str | None:
        """The deliver URL of a broker (None when the inventory does not know it)."""
        if broker not in self._urls:
            svc = self._inv.services.get(broker)
            url = None
            if svc is not None and svc.region is not None:
                url = self._inv.link_url(self._inv.vpc_link(svc.region).name) + "/v1/deliver"
            self._urls[broker] = url
        return self._urls[broker]

    async def deliver(self, broker: str, items: Sequence[Item]) -> Outcome:
        url = self.url_for(broker)
        out = Outcome()
        if url is None:
            out.offline.extend(items)
            return out
        parts = await asyncio.gather(*(self._send(url, part) for part in chunks(list(items), self._max)))
        for part in parts:
            out.merge(part)
        return out

    async def _send(self, url: str, items: list[Item]) -> Outcome:
        body = DeliverRequest(messages=[it.msg for it in items], timeout_ms=self.timeout_ms).model_dump_json()
        async with self._slots:
            self.inflight += len(items)
            started = time.perf_counter()
            try:
                async with self._session.post(
                    url, data=body, headers=self._headers, timeout=self._http_timeout
                ) as resp:
                    raw = await resp.read()
                    if resp.status != 200:
                        raise aiohttp.ClientResponseError(
                            resp.request_info,
                            (),
                            status=resp.status,
                            message=raw[:200].decode(errors="replace"),
                        )
                result = DeliverResult.model_validate_json(raw)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("deliver to %s failed (%d messages): %r", url, len(items), exc)
                out = Outcome()
                out.retry.extend(items)
                return out
            finally:
                self.inflight -= len(items)
                self._observe(time.perf_counter() - started)
        return sort_result(items, result)
