"""The foundation, end to end: stack up -> healthy, every link a real proxy, faults act, down cleans."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from toxiproxy.api import APIConsumer
from toxiproxy.server import Toxiproxy

from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def test_stack_up_reports_every_component_and_link_healthy(stack: Stack) -> None:
    status = stack.pushctl("stack", "status", "--json", check=True)
    data = json.loads(status.stdout)
    assert data["healthy"] is True
    names = {c["name"] for c in data["components"]}
    assert {"tp-north", "tp-east", "tp-south", "tp-internal", "redis-cache", "redis-store", "kafka"} <= names
    assert all(c["healthy"] and c["pid"] for c in data["components"])
    assert {lk["name"] for lk in data["links"]} == set(stack.inventory.link_names)


def test_every_link_exists_on_its_own_toxiproxy_server_read_back_independently(stack: Stack) -> None:
    """toxiproxy-python, not our adapter, reads back what `stack up` created."""
    for server_name, server in stack.inventory.toxiproxy.items():
        APIConsumer.host, APIConsumer.port = server.host, server.port
        proxies = Toxiproxy().proxies()
        expected = {lk.name: lk for lk in stack.inventory.links_on(server_name)}
        assert set(proxies) == set(expected), server_name
        for name, proxy in proxies.items():
            assert proxy.listen == f"127.0.0.1:{expected[name].listen}"
            assert proxy.upstream == expected[name].upstream_addr
            assert proxy.enabled


def test_stack_up_twice_is_idempotent(stack: Stack) -> None:
    # pids as they are now: earlier drills may have restarted components they crashed on purpose
    status = json.loads(stack.pushctl("stack", "status", "--json", check=True).stdout)
    before = {c["name"]: c["pid"] for c in status["components"]}
    started = time.monotonic()
    again = stack.pushctl("stack", "up", "--json", check=True)
    assert time.monotonic() - started < 30
    after = {c["name"]: c["pid"] for c in json.loads(again.stdout)["components"]}
    assert after == before


async def _ping_ms(port: int) -> float:
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=5)
    try:
        await client.ping()  # connect first: the toxic under test acts on the PING round trip
        started = time.perf_counter()
        await client.ping()
        return (time.perf_counter() - started) * 1000
    finally:
        await client.aclose()


def test_latency_fault_on_redis_link_delays_ping_and_clear_removes_it(stack: Stack) -> None:
    port = stack.inventory.link("cache").listen
    baseline = asyncio.run(_ping_ms(port))
    assert baseline < 100
    try:
        added = stack.pushctl(
            "fault", "add", "cache", "latency", "--latency", "300", *stack.confirm, "--json", check=True
        )
        assert "latency" in added.stdout
        delayed = asyncio.run(_ping_ms(port))
        assert 280 <= delayed < 2000, delayed
    finally:
        stack.pushctl("fault", "clear", "cache", check=True)
    assert asyncio.run(_ping_ms(port)) < 100
    listed = json.loads(stack.pushctl("fault", "list", "--json", check=True).stdout)
    assert all(not entry["toxics"] for entry in listed["links"]), listed


def test_kafka_round_trip_through_its_link(stack: Stack) -> None:
    host, port = stack.inventory.link_addr("kafka")
    topic = f"it-{uuid.uuid4().hex[:8]}"

    async def round_trip() -> bytes:
        producer = AIOKafkaProducer(bootstrap_servers=f"{host}:{port}")
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=f"{host}:{port}", group_id=f"g-{topic}", auto_offset_reset="earliest"
        )
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello through toxiproxy")
        finally:
            await producer.stop()
        await consumer.start()
        try:
            async with asyncio.timeout(60):
                msg = await consumer.getone()
            await consumer.commit()
            value: bytes = msg.value
            assert value is not None
            return value
        finally:
            await consumer.stop()

    assert asyncio.run(round_trip()) == b"hello through toxiproxy"


def test_unknown_link_is_one_line_error_listing_valid_links(stack: Stack) -> None:
    proc = stack.pushctl("fault", "add", "no-such-link", "latency", "--latency", "10")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "device-south" in proc.stderr
