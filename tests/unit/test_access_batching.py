"""MicroBatcher: concurrent submissions become one flush; results and errors reach each caller."""

from __future__ import annotations

import asyncio

import pytest
from pushstack.batching import MicroBatcher, chunks


def test_chunks_cut_to_size() -> None:
    assert chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert chunks([], 3) == []


async def test_submissions_within_the_linger_are_flushed_together() -> None:
    flushes: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        flushes.append(items)
        return [i * 10 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(flush, max_items=1000, linger=0.01)
    results = await asyncio.gather(batcher.submit([1, 2]), batcher.submit([3]), batcher.submit([4, 5, 6]))
    assert list(results) == [[10, 20], [30], [40, 50, 60]]
    assert flushes == [[1, 2, 3, 4, 5, 6]]


async def test_reaching_max_items_flushes_without_waiting() -> None:
    flushes: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        flushes.append(items)
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(flush, max_items=3, linger=10.0)
    async with asyncio.timeout(1):
        assert await batcher.submit([1, 2, 3]) == [1, 2, 3]
    assert flushes == [[1, 2, 3]]


async def test_a_failed_flush_fails_every_caller_in_it() -> None:
    async def flush(items: list[int]) -> list[int]:
        raise RuntimeError("downstream broke")

    batcher: MicroBatcher[int, int] = MicroBatcher(flush, linger=0.001)
    results = await asyncio.gather(batcher.submit([1]), batcher.submit([2]), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError):
        await batcher.submit([3])
