"""Coalescing many small requests into few large ones (no per-message calls between services).

Callers `await batcher.submit(items)` and get one result per item; the batcher concatenates what
arrived within `linger` seconds (or until `max_items`) and hands it to `flush` in one call, with
at most `concurrency` flushes in flight. A flush that raises fails every caller in its batch.

    batcher = MicroBatcher(send_to_logic, max_items=1000, linger=0.002)
    oks = await batcher.submit(messages)      # list[bool], aligned with messages
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def chunks(items: list[T], size: int) -> list[list[T]]:
    """`items` cut into lists of at most `size` (at least one element each)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_items: int = 1000,
        linger: float = 0.002,
        concurrency: int = 8,
    ) -> None:
        self._flush = flush
        self._max_items = max_items
        self._linger = linger
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        self._pending_items = 0
        self._timer: asyncio.TimerHandle | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def submit(self, items: list[T]) -> list[R]:
        if not items:
            return []
        fut: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._pending.append((items, fut))
        self._pending_items += len(items)
        if self._pending_items >= self._max_items:
            self._cut()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._cut)
        return await fut

    async def close(self) -> None:
        self._cut()
        for task in list(self._inflight):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _cut(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch, self._pending, self._pending_items = self._pending, [], 0
        task = asyncio.create_task(self._run(batch), name="_flush_routine")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _run(self, batch: list[tuple[list[T], asyncio.Future[list[R]]]]) -> None:
        items = [item for part, _ in batch for item in part]
        try:
            async with self._slots:
                results = await self._flush(items)
        except Exception as exc:  # noqa: BLE001 - handed to every caller, who decides
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except asyncio.CancelledError:
            for _, fut in batch:
                if not fut.done():
                    fut.cancel()
            raise
        offset = 0
        for part, fut in batch:
            if not fut.done():
                fut.set_result(results[offset : offset + len(part)])
            offset += len(part)
