"""Reading the platform's dead-letter topic: the pushes it kept and said it could not deliver.

A push id found there was visibly rejected, not lost: the probe marks it so in its ledger, and
`pushctl status` shows how many records the topic holds. The record format is the contract's
(`pushctl.contract.deadletter`); a platform without Kafka in its inventory has no dead letters.

    scan = await scan_dead_letters(inv, since=t0)     # None: no Kafka in the inventory
    scan.records, scan.ids(), scan.by_reason()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass

# aiokafka ships neither type hints nor a py.typed marker
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped, unused-ignore]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped, unused-ignore]

from pushctl.contract.api import TOPIC_DEADLETTER
from pushctl.contract.deadletter import DeadLetter
from pushctl.contract.topology import Inventory, ServiceKind
from pushctl.errors import TargetUnreachable


@dataclass(frozen=True)
class DeadLetterScan:
    """`records`: every record the topic holds; `letters`: those read (sent since `since`)."""

    topic: str
    records: int
    letters: tuple[DeadLetter, ...] = ()
    foreign: int = 0  # records read that are not dead letters (no deadletter.reason header)

    def ids(self) -> set[str]:
        return {i for letter in self.letters for i in letter.ids()}

    def by_reason(self) -> dict[str, int]:
        return dict(Counter(letter.kind for letter in self.letters))

    def to_json(self) -> dict[str, object]:
        return {"topic": self.topic, "records": self.records, "read": len(self.letters), "by_reason": self.by_reason()}


def kafka_bootstrap(inv: Inventory) -> str | None:
    """host:port clients reach the inventory's Kafka through (its advertised link), or None."""
    svc = next(iter(inv.services_of(ServiceKind.KAFKA).values()), None)
    if svc is None:
        return None
    host, port = inv.link_addr(svc.advertise) if svc.advertise else (svc.host, svc.port)
    return f"{host}:{port}"


async def scan_dead_letters(
    inv: Inventory, *, since: float | None = None, read: bool = True, timeout: float = 10.0
) -> DeadLetterScan | None:
    """Count the dead-letter topic's records and (with `read`) read those written since `since`
    (epoch seconds; all when None). None when the inventory has no Kafka; TargetUnreachable when
    Kafka does not answer within `timeout`."""
    bootstrap = kafka_bootstrap(inv)
    if bootstrap is None:
        return None
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="pushctl-deadletters",
        enable_auto_commit=False,
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        async with asyncio.timeout(timeout):
            await consumer.start()
            return await _scan(consumer, since, read)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise TargetUnreachable(f"dead-letter topic via {bootstrap}: {type(exc).__name__}") from exc
    finally:
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            async with asyncio.timeout(2.0):
                await consumer.stop()


async def _scan(consumer: AIOKafkaConsumer, since: float | None, read: bool) -> DeadLetterScan:
    if TOPIC_DEADLETTER not in await consumer.topics():
        return DeadLetterScan(TOPIC_DEADLETTER, 0)
    # without a group, a subscription is assigned every partition once the metadata has come
    consumer.subscribe([TOPIC_DEADLETTER])
    while not consumer.assignment():  # noqa: ASYNC110 - aiokafka has no event for "assigned"
        await asyncio.sleep(0.05)
    tps: list[TopicPartition] = sorted(consumer.assignment())
    begin = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    records = sum(end[tp] - begin[tp] for tp in tps)
    if not read or not records:
        return DeadLetterScan(TOPIC_DEADLETTER, records)
    start = dict(begin)
    if since is not None:
        found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in tps})
        start = {tp: found[tp].offset if found.get(tp) is not None else end[tp] for tp in tps}
    for tp in tps:
        consumer.seek(tp, start[tp])
    letters: list[DeadLetter] = []
    foreign = 0
    remaining = {tp for tp in tps if start[tp] < end[tp]}
    while remaining:
        polled = await consumer.getmany(*remaining, timeout_ms=500)
        for tp, recs in polled.items():
            for rec in recs:
                if rec.offset >= end[tp]:
                    continue
                try:
                    letters.append(DeadLetter.from_record(rec.value, rec.headers))
                except ValueError:
                    foreign += 1
        remaining = {tp for tp in remaining if await consumer.position(tp) < end[tp]}
    return DeadLetterScan(TOPIC_DEADLETTER, records, tuple(letters), foreign)
