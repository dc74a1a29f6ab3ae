"""Kafka clients that survive a Kafka that is not there yet, or goes away (access, kvwriter, bypass).

aiokafka's `start()` fails when the bootstrap server does not answer; a push service must start
anyway and pick Kafka up when it comes. `KafkaProducerLink` keeps trying in the background and
says whether it is ready; `start_consumer` retries until the consumer has joined.

    kafka = KafkaProducerLink("127.0.0.1:18092", client_id="access")
    svc.spawn(kafka.connect_routine(), "_kafka_routine")
    oks = await kafka.send_many("buffer", [(None, b"...")])    # list[bool], False when not ready
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped, unused-ignore]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped, unused-ignore]

log = logging.getLogger("pushstack.kafka")
RETRY_S = 1.0


class KafkaProducerLink:
    def __init__(self, bootstrap: str, *, client_id: str, send_timeout: float = 5.0) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._send_timeout = send_timeout
        self._producer: AIOKafkaProducer | None = None

    @property
    def ready(self) -> bool:
        return self._producer is not None

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

    async def send_many(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> list[bool]:
        """Send records and wait for the broker's ack; one bool per record."""
        producer = self._producer
        if producer is None or not records:
            return [False] * len(records)
        try:
            async with asyncio.timeout(self._send_timeout):
                futures = [await producer.send(topic, value, key=key) for key, value in records]
        except (KafkaError, TimeoutError) as exc:
            log.warning("kafka send to %s failed: %r", topic, exc)
            return [False] * len(records)
        results = await asyncio.gather(*(_wait(f, self._send_timeout) for f in futures))
        return list(results)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await producer.stop()


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


def lag(consumer: AIOKafkaConsumer, next_offsets: Mapping[TopicPartition, int]) -> int:
    """Records behind the high watermark over the assigned partitions, given the offsets we reached."""
    total = 0
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is not None and tp in next_offsets:
            total += max(0, high - next_offsets[tp])
    return total
