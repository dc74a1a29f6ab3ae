"""RouteBook batching against a recording fake of the store's pipeline."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from pushstack.route_book import RouteBook
from redis.exceptions import ConnectionError as RedisConnectionError

pytestmark = pytest.mark.timeout(10)


class FakePipeline:
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.commands: list[tuple[Any, ...]] = []

    def eval(self, *args: Any) -> None:
        self.commands.append(("eval", *args[2:]))

    def hset(self, key: str, mapping: dict[str, str]) -> None:
        self.commands.append(("hset", key, mapping))

    def sadd(self, key: str, *members: str) -> None:
        self.commands.append(("sadd", key, *members))

    def rpush(self, key: str, *values: str) -> None:
        self.commands.append(("rpush", key, *values))

    async def execute(self) -> list[Any]:
        if self.store.failures:
            self.store.failures -= 1
            raise RedisConnectionError("store down")
        self.store.executed.append(self.commands)
        return []


class FakeStore:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.executed: list[list[tuple[Any, ...]]] = []

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        assert transaction is False
        return FakePipeline(self)


def route_book(store: FakeStore) -> RouteBook:
    reg = CollectorRegistry()
    return RouteBook(
        store,  # type: ignore[arg-type]
        "broker-south",
        "south",
        writes=Counter("w", "w", registry=reg),
        errors=Counter("e", "e", registry=reg),
    )


async def test_one_pipeline_for_a_burst_with_last_operation_winning() -> None:
    store = FakeStore()
    book = route_book(store)
    claims = [book.claim(f"d{i}") for i in range(3)]
    book.release("d1")  # connected and left before the write
    book.release("gone")
    await book.flush()
    assert len(store.executed) == 1
    (cas, hset, sadd, rpush) = store.executed[0]
    assert cas == ("eval", "routes", "broker-south", "d1", "gone")
    assert hset == ("hset", "routes", {"d0": "broker-south", "d2": "broker-south"})
    assert sadd == ("sadd", "region-devices:south", "d0", "d2")
    assert rpush == ("rpush", "online-events", "d0", "d2")
    assert all(c.done() for c in claims)


async def test_failed_write_is_retried_and_newer_operations_win() -> None:
    store = FakeStore(failures=1)
    book = route_book(store)
    claim = book.claim("d0")
    runner = asyncio.create_task(book.run())
    await asyncio.sleep(0.05)  # first write failed
    assert not book.healthy and not claim.done()
    book.release("d0")  # the device left meanwhile: only the delete must be written
    await asyncio.wait_for(claim, 2)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    assert book.healthy
    assert store.executed == [[("eval", "routes", "broker-south", "d0")]]
