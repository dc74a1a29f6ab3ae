"""The offline queue and route table in the store Redis, batched (one round trip per batch).

    offline:<device>   hash  message id -> message JSON (payload resolved), EXPIRE ttl on every store
    routes             hash  device -> broker name (written by the brokers)

Every method raises `redis.exceptions.RedisError` when the store does not answer; the caller
keeps the messages and tries again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

import redis.asyncio as aioredis
from pydantic import ValidationError

from pushctl.contract.api import Message
from pushstack.keys import KEY_OFFLINE, KEY_ROUTES

_OFFLINE_PREFIX = KEY_OFFLINE.format(device="")


class OfflineStore:
    def __init__(self, store: aioredis.Redis, *, ttl_s: int) -> None:
        self._store = store
        self.ttl_s = ttl_s

    async def routes(self, devices: Iterable[str]) -> dict[str, str | None]:
        """The broker each device is connected to, as far as the store knows (None: no route)."""
        unique = list(dict.fromkeys(devices))
        if not unique:
            return {}
        found = cast("list[str | None]", await self._store.hmget(KEY_ROUTES, unique))
        return dict(zip(unique, found, strict=True))

    async def put(self, messages: Sequence[Message]) -> None:
        by_device: dict[str, dict[str, str]] = {}
        for msg in messages:
            by_device.setdefault(msg.device, {})[msg.id] = msg.model_dump_json()
        pipe = self._store.pipeline(transaction=False)
        for device, entries in by_device.items():
            key = KEY_OFFLINE.format(device=device)
            pipe.hset(key, items=[x for pair in entries.items() for x in pair])
            pipe.expire(key, self.ttl_s)
        await pipe.execute()

    async def fetch(self, devices: Sequence[str]) -> list[Message]:
        """Every message waiting for these devices (malformed entries are skipped)."""
        if not devices:
            return []
        pipe = self._store.pipeline(transaction=False)
        for device in devices:
            pipe.hgetall(KEY_OFFLINE.format(device=device))
        hashes: list[dict[str, str]] = await pipe.execute()
        out: list[Message] = []
        for entries in hashes:
            for raw in entries.values():
                try:
                    out.append(Message.model_validate_json(raw))
                except ValidationError:
                    continue
        return out

    async def remove(self, messages: Sequence[Message]) -> None:
        by_device: dict[str, list[str]] = {}
        for msg in messages:
            by_device.setdefault(msg.device, []).append(msg.id)
        if not by_device:
            return
        pipe = self._store.pipeline(transaction=False)
        for device, ids in by_device.items():
            pipe.hdel(KEY_OFFLINE.format(device=device), *ids)
        await pipe.execute()

    async def waiting_devices(self, limit: int) -> list[str]:
        """Up to `limit` devices that have offline messages (for the periodic sweep)."""
        devices: list[str] = []
        async for key in self._store.scan_iter(match=_OFFLINE_PREFIX + "*", count=1000):
            devices.append(key[len(_OFFLINE_PREFIX) :])
            if len(devices) >= limit:
                break
        return devices
