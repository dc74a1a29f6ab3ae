"""Nothing accepted is dropped silently (issue 14), on a real stack (real Kafka, real gateways).

(a) A record in the Kafka `buffer` that is not a PushBatch goes to `push-deadletter`, with a log line
and a counter; `pushctl status` shows it; a probe ledger counts its push id as rejected, not lost.
(b) Valid records buffered while both logic gateways are unreachable are forwarded once they are back,
and none is dead-lettered: an outage delays, it does not reject. The end-to-end form of (b), with
a probe, a throttle and a bypass crash, is `experiments/buffer-backlog-logic-failure.yaml`: its
ledger allows no rejection, and dead-lettered pushes count as rejected.

A stack of its own, on other ports (derived from the reference topology, shifted by -6000).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator

import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped, unused-ignore]

from pushctl.contract.api import TOPIC_BUFFER, Message, PushBatch
from pushctl.contract.topology import Inventory, ServiceKind
from pushctl.control import PlatformClient
from pushctl.probe.deadletters import kafka_bootstrap, scan_dead_letters
from pushctl.probe.ledger import Ledger
from tests.integration.conftest import REPO, Stack, derived_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # the stack starts in the first test
PORT_SHIFT = -6000  # 17xxx -> 11xxx, 18xxx -> 12xxx


@pytest.fixture(scope="module")
def dl_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PUSHCTL_SCHEDULER_AUTO": "0"}
    tmp = tmp_path_factory.mktemp("deadletter")
    started: Stack | None = None
    try:
        with derived_stack(REPO / "stack" / "topology.toml", "deadletter", shift=PORT_SHIFT, env=env, tmp=tmp) as st:
            started = st
            yield st
    finally:
        if started is not None:
            if (started.run_dir / "logs").is_dir():  # kept for a post-mortem: the purge removes the run dir
                shutil.copytree(started.run_dir / "logs", tmp / "logs", dirs_exist_ok=True)
            started.pushctl("stack", "down", "--purge", timeout=60)


def produce(inv: Inventory, *values: bytes) -> None:
    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap(inv), acks="all")
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(TOPIC_BUFFER, value)
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(go(), 30))


def bypass_metric(inv: Inventory, metric: str, labels: dict[str, str] | None = None) -> float:
    async def go() -> float | None:
        async with PlatformClient(inv, timeout=3.0) as api:
            return await api.metric_value(next(iter(inv.services_of(ServiceKind.BYPASS))), metric, labels)

    return asyncio.run(go()) or 0.0


def logic_accepted(inv: Inventory) -> float:
    async def go() -> float:
        async with PlatformClient(inv, timeout=3.0) as api:
            values = [
                await api.metric_value(name, "pushstack_logic_accepted_total", {"kind": "push"})
                for name in inv.services_of(ServiceKind.LOGIC)
            ]
        return sum(v or 0.0 for v in values)

    return asyncio.run(go())


def dead_lettered_ids(inv: Inventory, since: float) -> set[str]:
    scan = asyncio.run(scan_dead_letters(inv, since=since, timeout=10.0))
    assert scan is not None
    return scan.ids()


def wait_for(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {within:.0f}s: {what}")


def test_an_unparseable_buffer_record_is_dead_lettered_counted_logged_and_shown(dl_stack: Stack) -> None:
    inv, since = dl_stack.inventory, time.time() - 1
    marker = f"dl-{secrets.token_hex(4)}"
    raw = json.dumps({"messages": [{"id": marker, "device": "d1", "sent_at": "not a time"}]}).encode()
    produce(inv, raw)

    wait_for(lambda: marker in dead_lettered_ids(inv, since), 30, f"{marker} in the dead-letter topic")
    scan = asyncio.run(scan_dead_letters(inv, since=since))
    assert scan is not None
    (letter,) = [d for d in scan.letters if marker in d.ids()]
    assert (letter.reason, letter.topic, letter.value) == ("unparseable", TOPIC_BUFFER, raw)
    assert letter.partition >= 0 and letter.offset >= 0 and letter.at >= since and "sent_at" in letter.detail

    assert bypass_metric(inv, "pushstack_bypass_deadletter_total", {"reason": "unparseable"}) >= 1
    logs = "".join(p.read_text(errors="replace") for p in dl_stack.run_dir.rglob("bypass*.log"))
    assert f"dead-lettered unparseable record buffer[{letter.partition}]@{letter.offset}" in logs

    status = dl_stack.pushctl("status", "--json", check=True)
    dead = json.loads(status.stdout)["dead_letters"]
    assert dead["topic"] == "push-deadletter" and dead["records"] >= 1 and dead["bypass"]["unparseable"] >= 1
    assert "push-deadletter" in dl_stack.pushctl("status", check=True).stdout

    # the probe's view: the push is visibly rejected, not lost
    ledger = Ledger(deadline=1.0)
    ledger.register("d1", "north")
    ledger.sent(marker, since, ["d1"])
    assert ledger.summary(final=True).lost == 1
    for msg_id in dead_lettered_ids(inv, since):
        if msg_id in ledger:
            ledger.dead_lettered(msg_id)
    s = ledger.summary(final=True)
    assert (s.lost, s.rejected, s.dead_lettered) == (0, 1, 1)


def test_buffered_pushes_wait_out_a_logic_outage_and_none_is_dead_lettered(dl_stack: Stack) -> None:
    inv, since = dl_stack.inventory, time.time() - 1
    run = secrets.token_hex(4)
    ids = [f"ok-{run}-{i}" for i in range(40)]
    records = [
        PushBatch(messages=[Message(id=i, device=f"dev-{i}", sent_at=time.time(), payload="p") for i in part])
        .model_dump_json()
        .encode()
        for part in (ids[:20], ids[20:])
    ]
    consumed0, accepted0 = bypass_metric(inv, "pushstack_bypass_consumed_total"), logic_accepted(inv)
    errors0 = bypass_metric(inv, "pushstack_bypass_forward_errors_total")
    records0 = bypass_metric(inv, "pushstack_bypass_records_total")
    links = ("logic-idc1", "logic-idc2")
    try:
        for link in links:
            dl_stack.pushctl("fault", "down", link, *dl_stack.confirm, check=True)
        produce(inv, *records)
        wait_for(
            # at least one: the bypass reads no further while it retries what it holds
            lambda: bypass_metric(inv, "pushstack_bypass_records_total") > records0,
            30,
            "the bypass read the records",
        )
        time.sleep(4)  # a few rounds of retries while both gateways are unreachable
        assert not set(ids) & dead_lettered_ids(inv, since)
        assert bypass_metric(inv, "pushstack_bypass_forward_errors_total") > errors0
        assert bypass_metric(inv, "pushstack_bypass_consumed_total") == consumed0
    finally:
        for link in links:
            dl_stack.pushctl("fault", "up", link, check=True)
    wait_for(
        lambda: bypass_metric(inv, "pushstack_bypass_consumed_total") >= consumed0 + len(ids),
        60,
        "the buffered pushes forwarded after the outage",
    )
    assert logic_accepted(inv) >= accepted0 + len(ids)
    assert not set(ids) & dead_lettered_ids(inv, since)
    assert bypass_metric(inv, "pushstack_bypass_deadletter_total", {"reason": "undeliverable"}) == 0
