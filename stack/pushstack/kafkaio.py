"""Kafka clients that survive a Kafka that is not there yet, or goes away (access, kvwriter, bypass).

aiokafka's `start()` fails when the bootstrap server does not answer; a push service must start
anyway and pick Kafka up when it comes. `KafkaProducerLink` keeps trying in the background and
says whether it is ready; `start_consumer` retries until the consumer has joined. `group_consumer`,
`poll` and `commit` are the at-least-once consume loop of the bypass and the kvwriter.

    kafka = KafkaProducerLink("127.0.0.1:18092", client_id="access")
    svc.spawn(kafka.connect_routine, "_kafka_routine")
    oks = await kafka.send_many("buffer", [(None, b"...")])    # list[bool], False when not ready

    consumer = await start_consumer(lambda: group_consumer("buffer", ...), what="bypass")
    polled = await poll(consumer, max_records=500, what="bypass")   # {} after a failed poll
    ...                                                             # the work, then
    await commit(consumer, polled, next_offsets, what="bypass")     # False when the commit failed
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped, unused-ignore]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]
from aiokafka.structs import ConsumerRecord, TopicPartition  # type: ignore[import-untyped, unused-ignore]

log = logging.getLogger("pushstack.kafka")
RETRY_S = 1.0
Polled = dict[TopicPartition, list[ConsumerRecord]]  # what one poll returned, by partition


class KafkaProducerLink:
    def __init__(
        self, bootstrap: str, *, client_id: str, send_timeout: float = 2.0, pause_after_failure: float = 2.0
    ) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._send_timeout = send_timeout
        self._pause = pause_after_failure
        self._producer: AIOKafkaProducer | None = None
        self._down_until = 0.0
        self._suspect = False  # a send failed: after the pause, one probe at a time until one works
        self._probing = False
        self._inflight: dict[int, float] = {}  # send id -> start: a send this slow means trouble
        self._ids = itertools.count()
        self.slow_after = 0.5

    @property
    def ready(self) -> bool:
        """Connected, and no send failed within the last `pause_after_failure` seconds: a failed
        Kafka is not waited on by every request (a circuit breaker), only probed again later."""
        now = time.monotonic()
        if self._producer is None or now < self._down_until or self._probing:
            return False
        return not self._inflight or now - min(self._inflight.values()) < self.slow_after

    async def connect_routine(self) -> None:
        """Start the producer, retrying every second until Kafka answers (then return)."""
        while self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                linger_ms=2,
                max_batch_size=256 * 1024,
                max_request_size=8 * 1024 * 1024,
                request_timeout_ms=int(self._send_timeout * 1000),
            )
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                log.info("kafka %s not ready: %r", self._bootstrap, exc)
                with contextlib.suppress(KafkaError, OSError):
                    await producer.stop()
                await asyncio.sleep(RETRY_S)
                continue
            self._producer = producer
            log.info("kafka producer connected to %s", self._bootstrap)

    async def send_many(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes]],
        *,
        headers: Sequence[Sequence[tuple[str, bytes]]] | None = None,
    ) -> list[bool]:
        """Send records (each with its `headers`, when given) and wait for the broker's ack; one
        bool per record."""
        producer = self._producer
        if producer is None or not records or not self.ready:
            return [False] * len(records)
        self._probing = self._suspect
        token = next(self._ids)
        self._inflight[token] = time.monotonic()
        try:
            results = await self._send(producer, topic, records, headers)
        finally:
            self._probing = False
            del self._inflight[token]
        if all(results):
            self._suspect = False
        else:
            self._suspect = True
            self._down_until = time.monotonic() + self._pause
        return results

    async def _send(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes]],
        headers: Sequence[Sequence[tuple[str, bytes]]] | None,
    ) -> list[bool]:
        per_record = headers if headers is not None else [()] * len(records)
        try:
            async with asyncio.timeout(self._send_timeout):
                futures = [
                    await producer.send(topic, value, key=key, headers=list(h) or None)
                    for (key, value), h in zip(records, per_record, strict=True)
                ]
        except (KafkaError, TimeoutError) as exc:
            log.warning("kafka send to %s failed: %r", topic, exc)
            return [False] * len(records)
        return list(await asyncio.gather(*(_wait(f, self._send_timeout) for f in futures)))

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_quietly(producer)


async def stop_quietly(client: AIOKafkaProducer | AIOKafkaConsumer, limit: float = 1.5) -> None:
    """Stop a Kafka client without hanging a shutdown on a Kafka that is gone."""
    with contextlib.suppress(KafkaError, OSError, TimeoutError):
        async with asyncio.timeout(limit):
            await client.stop()


async def _wait(fut: asyncio.Future[object], limit: float) -> bool:
    try:
        async with asyncio.timeout(limit):
            await fut
    except (KafkaError, TimeoutError) as exc:
        log.warning("kafka record not acked: %r", exc)
        return False
    return True


async def start_consumer(make: Callable[[], AIOKafkaConsumer], *, what: str) -> AIOKafkaConsumer:
    """A started consumer; retries every second until Kafka answers."""
    while True:
        consumer = make()
        try:
            await consumer.start()
        except (KafkaError, OSError) as exc:
            log.info("%s: kafka not ready: %r", what, exc)
            with contextlib.suppress(KafkaError, OSError):
                await consumer.stop()
            await asyncio.sleep(RETRY_S)
            continue
        log.info("%s: consumer started", what)
        return consumer


def group_consumer(topic: str, *, bootstrap: str, client_id: str, group_id: str) -> AIOKafkaConsumer:
    """A consumer in `group_id` that reads `topic` from its earliest record and commits only when told:
    a record counts as done once its work is, so a crash replays it instead of losing it."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # a crashed member holds its partitions until its session expires: the broker's minimum (6 s)
        # rather than 10 s, so a restarted consumer takes its backlog back sooner
        session_timeout_ms=6000,
        heartbeat_interval_ms=2000,
    )


async def poll(consumer: AIOKafkaConsumer, *, max_records: int, what: str) -> Polled:
    """Up to `max_records` records (empty after half a second without any); a failed poll is
    logged and answered, a second later, with no records, so the consume loop just goes on."""
    try:
        polled: Polled = await consumer.getmany(timeout_ms=500, max_records=max_records)
    except KafkaError as exc:
        log.warning("%s: poll failed: %r", what, exc)
        await asyncio.sleep(1.0)
        return {}
    return polled


async def commit(
    consumer: AIOKafkaConsumer, polled: Polled, next_offsets: dict[TopicPartition, int], *, what: str
) -> bool:
    """Commit what was polled and note where each partition goes on (for `lag`); False when the
    commit failed, which is logged and otherwise harmless: the records come again (at least once)."""
    ok = True
    try:
        await consumer.commit()
    except KafkaError as exc:
        log.warning("%s: offset commit failed: %r", what, exc)
        ok = False
    for tp, records in polled.items():
        if records:
            next_offsets[tp] = records[-1].offset + 1
    return ok


def lag(consumer: AIOKafkaConsumer, next_offsets: Mapping[TopicPartition, int]) -> int:
    """Records behind the high watermark over the assigned partitions, given the offsets we reached."""
    total = 0
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is not None and tp in next_offsets:
            total += max(0, high - next_offsets[tp])
    return total
