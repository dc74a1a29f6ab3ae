"""A logic gateway's inbox journal in the store Redis, so a gateway's crash loses nothing.

A gateway answers 202 only after the raw request is in `logic-inbox:<gateway>` (one HSET per
request, not per message); the entry goes when every message of it is finished (acked, stored
offline, or given up). Each gateway keeps `logic-alive:<gateway>` alive (PX 3 s). When a peer's
heartbeat has expired, a live gateway RENAMEs the peer's inbox to a key of its own (atomic, so
only one claims it) and processes it; a restarted gateway first replays its own leftovers.
Replays can deliver a message twice: delivery is at-least-once and devices de-duplicate by id.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Sequence
from typing import cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

INBOX_KEY = "logic-inbox:{name}"
ALIVE_KEY = "logic-alive:{name}"
log = logging.getLogger("pushstack.journal")


class Job:
    """One accepted request: where its journal entry is and how many messages are unfinished."""

    __slots__ = ("field", "key", "pending")

    def __init__(self, key: str | None, field: str, pending: int) -> None:
        self.key = key  # None: not journaled (the store was unreachable when it arrived)
        self.field = field
        self.pending = pending


class Entry:
    """A journal entry read back: its kind ("p" push batch, "g" group task) and raw JSON body."""

    __slots__ = ("body", "field", "key", "kind")

    def __init__(self, key: str, field: str, value: str) -> None:
        self.key, self.field, self.kind, self.body = key, field, value[:1], value[1:]


class Inbox:
    def __init__(self, store: aioredis.Redis, name: str, peers: Sequence[str], *, alive_ms: int = 3000) -> None:
        self._store = store
        self.name = name
        self.key = INBOX_KEY.format(name=name)
        self._peers = [p for p in peers if p != name]
        self._alive_ms = alive_ms
        self._ids = itertools.count()
        self._prefix = f"{os.getpid():x}{time.time_ns():x}"
        self._done: dict[str, list[str]] = {}
        self.recovered_own = False

    async def record(self, kind: str, raw: str, count: int) -> Job:
        """Journal a request (raises `RedisError` when the store is unreachable)."""
        field = f"{self._prefix}-{next(self._ids)}"
        await self._store.hset(self.key, field, kind + raw)
        return Job(self.key, field, count)

    def unjournaled(self, count: int) -> Job:
        return Job(None, f"{self._prefix}-{next(self._ids)}", count)

    def finish(self, job: Job) -> None:
        if job.key is not None:
            self._done.setdefault(job.key, []).append(job.field)

    async def flush(self) -> None:
        """Remove finished entries (kept for the next flush when the store does not answer)."""
        if not self._done:
            return
        done, self._done = self._done, {}
        try:
            pipe = self._store.pipeline(transaction=False)
            for key, fields in done.items():
                pipe.hdel(key, *fields)
            await pipe.execute()
        except RedisError:
            for key, fields in done.items():
                self._done.setdefault(key, []).extend(fields)
            raise

    async def heartbeat(self) -> None:
        await self._store.set(ALIVE_KEY.format(name=self.name), "1", px=self._alive_ms)

    async def leave(self) -> None:
        """On a graceful stop: let a peer take over what is unfinished now, not in 3 s."""
        await self._store.delete(ALIVE_KEY.format(name=self.name))

    async def recover_own(self) -> list[Entry]:
        """Our inbox and claimed inboxes from a previous life (call once, before serving)."""
        entries: list[Entry] = []
        keys = [self.key]
        async for key in self._store.scan_iter(match=f"{self.key}:claimed:*", count=200):
            keys.append(key)
        for key in keys:
            entries.extend(await self._read(key))
        self.recovered_own = True
        return entries

    async def claim_dead_peers(self) -> list[Entry]:
        entries: list[Entry] = []
        for peer in self._peers:
            if await self._store.exists(ALIVE_KEY.format(name=peer)):
                continue
            claimed = f"{self.key}:claimed:{uuid.uuid4().hex[:12]}"
            try:
                await self._store.rename(INBOX_KEY.format(name=peer), claimed)
            except ResponseError:  # no such key: the peer left nothing behind
                continue
            found = await self._read(claimed)
            log.warning("claimed %d journal entries of %s (its heartbeat expired)", len(found), peer)
            entries.extend(found)
        return entries

    async def _read(self, key: str) -> list[Entry]:
        raw = cast("dict[str, str]", await self._store.hgetall(key))
        return [Entry(key, f, v) for f, v in raw.items()]
