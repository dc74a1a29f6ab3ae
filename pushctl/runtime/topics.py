"""Create the stack's Kafka topics through its link (idempotent)."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from pushctl.contract.api import TOPIC_BUFFER, TOPIC_DEADLETTER, TOPIC_GROUP_PAYLOADS
from pushctl.contract.topology import Inventory
from pushctl.errors import ComponentFailed

# the buffer has several partitions so the bypass consumer can scale its workers; dead letters are rare
TOPICS = {TOPIC_GROUP_PAYLOADS: 2, TOPIC_BUFFER: 4, TOPIC_DEADLETTER: 1}


async def ensure_topics(inv: Inventory, kafka_service: str, *, timeout: float = 30.0) -> None:
    svc = inv.service(kafka_service)
    host, port = inv.link_addr(svc.advertise) if svc.advertise else (svc.host, svc.port)
    admin = AIOKafkaAdminClient(bootstrap_servers=f"{host}:{port}", request_timeout_ms=int(timeout * 1000))
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(t, n, 1) for t, n in TOPICS.items() if t not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
    except (KafkaError, TimeoutError) as exc:
        raise ComponentFailed(f"could not create Kafka topics via {host}:{port}: {exc!r}") from exc
    finally:
        await admin.close()
