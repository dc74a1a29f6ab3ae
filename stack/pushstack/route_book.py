"""A broker's device -> broker routes in the store, written in batches.

Thousands of devices connect within a second during a drill; one round trip per device would cap
the broker at the store's unpipelined rate. `RouteBook` coalesces what happened since its last
write (last operation per device wins) and writes it as one pipeline of at most four commands:

    compare-and-delete (Lua)   routes[device] only where it still names this broker
    HSET routes                device -> broker
    SADD region-devices:<r>    devices seen in the region
    RPUSH online-events        devices that came online (a logic gateway delivers their backlog)

A failed write is retried (newer operations for the same device win); `claim` returns a future
that resolves once the device's route is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

from pushstack.keys import KEY_ONLINE_EVENTS, KEY_REGION_DEVICES, KEY_ROUTES

log = logging.getLogger("pushstack.routes")

MAX_BATCH = 2000
RETRY_AFTER_S = 0.5
FLUSH_TIMEOUT_S = 2.0

# KEYS[1] = routes hash, ARGV[1] = broker name, ARGV[2..] = devices
CAS_DELETE = """
local n = 0
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
"""


class RouteSink(Protocol):
    """What the broker needs from a route store (a fake one in unit tests)."""

    def claim(self, device: str) -> asyncio.Future[None]: ...

    def release(self, device: str) -> None: ...

    async def run(self) -> None: ...

    async def flush(self) -> None: ...


class RouteBook:
    """Batched route writes of one broker."""

    def __init__(self, redis: aioredis.Redis, broker: str, region: str, *, writes: Counter, errors: Counter) -> None:
        self._redis = redis
        self._broker = broker
        self._region_key = KEY_REGION_DEVICES.format(region=region)
        self._ops: dict[str, bool] = {}  # device -> True: route here, False: drop our route
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._wake = asyncio.Event()
        self._writes = writes
        self._errors = errors
        self._last_error_log = 0.0
        self.healthy = True

    def claim(self, device: str) -> asyncio.Future[None]:
        """Route `device` here; the future resolves when the store has it."""
        self._ops[device] = True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(device, []).append(fut)
        self._wake.set()
        return fut

    def release(self, device: str) -> None:
        """`device` left: drop its route if it still points here."""
        self._ops[device] = False
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._ops:
                if not await self._write_batch():
                    await asyncio.sleep(RETRY_AFTER_S)

    async def flush(self) -> None:
        """Write what is pending (on shutdown); gives up after FLUSH_TIMEOUT_S."""
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT_S):
                while self._ops and await self._write_batch():
                    pass
        except TimeoutError:
            log.warning("%s: %d route updates not written at shutdown", self._broker, len(self._ops))

    async def _write_batch(self) -> bool:
        batch: list[tuple[str, bool]] = []
        for device in self._ops:
            batch.append((device, self._ops[device]))
            if len(batch) >= MAX_BATCH:
                break
        for device, _ in batch:
            del self._ops[device]
        here = [d for d, route in batch if route]
        gone = [d for d, route in batch if not route]
        pipe = self._redis.pipeline(transaction=False)
        if gone:
            pipe.eval(CAS_DELETE, 1, KEY_ROUTES, self._broker, *gone)
        if here:
            pipe.hset(KEY_ROUTES, mapping=dict.fromkeys(here, self._broker))
            pipe.sadd(self._region_key, *here)
            pipe.rpush(KEY_ONLINE_EVENTS, *here)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            for device, route in batch:
                self._ops.setdefault(device, route)  # a newer operation for the device wins
            self._errors.inc()
            self.healthy = False
            now = time.monotonic()
            if now - self._last_error_log > 5:
                self._last_error_log = now
                log.warning("%s: route write failed, %d pending: %r", self._broker, len(self._ops), exc)
            return False
        self.healthy = True
        self._writes.inc(len(batch))
        for device, _ in batch:
            for fut in self._waiters.pop(device, ()):
                if not fut.done():
                    fut.set_result(None)
        return True
