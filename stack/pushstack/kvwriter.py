"""The disk-KV writer: consumes Kafka `group-payloads` and persists every payload to the disk KV.

Records are keyed by group id; each poll's records go to the disk KV as one batch write
(`group-payload:<id>` -> payload) and the offsets are committed only after the write succeeded, so
a crash or a disk-KV outage replays records instead of losing them (writes are idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped, unused-ignore]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped, unused-ignore]

from pushctl.contract.api import TOPIC_GROUP_PAYLOADS
from pushctl.contract.topology import Inventory
from pushstack.kafkaio import commit, group_consumer, lag, poll, start_consumer, stop_quietly
from pushstack.keys import KEY_GROUP_PAYLOAD
from pushstack.kvclient import DiskKVClient, DiskKVError
from pushstack.pools import client_session
from pushstack.service import PushService

log = logging.getLogger("pushstack.kvwriter")
GROUP_ID = "kvwriter"


class KVWriter(PushService):
    kind = "kvwriter"

    def __init__(self, inventory: Inventory, name: str) -> None:
        super().__init__(inventory, name)
        self.bootstrap = "{}:{}".format(*inventory.link_addr(self.spec.connect["kafka"]))
        self.consumer: AIOKafkaConsumer | None = None
        self._next: dict[TopicPartition, int] = {}
        self.m_persisted = self.counter("pushstack_kvwriter_persisted_total", "Group payloads written.")
        self.m_errors = self.counter("pushstack_kvwriter_write_errors_total", "Disk KV writes that failed.")
        self.m_commit_err = self.counter("pushstack_kvwriter_commit_errors_total", "Offset commits that failed.")
        self.m_skipped = self.counter("pushstack_kvwriter_skipped_total", "Records without a key (ignored).")
        self.m_seconds = self.histogram(
            "pushstack_kvwriter_write_seconds",
            "Time to persist one poll's records.",
            (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.gauge("pushstack_kvwriter_lag", "Records not yet persisted.").set_function(
            lambda: lag(self.consumer, self._next) if self.consumer is not None else 0
        )

    async def on_start(self) -> None:
        self.session = client_session()
        self.kv = DiskKVClient(self.session, self.link_url("diskkv"), self.inv.token)
        self.spawn(self._consume_routine, "_consume_routine")

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await stop_quietly(self.consumer)
        await self.session.close()

    def health_detail(self) -> tuple[bool, dict[str, str]]:
        return True, {"kafka": "consuming" if self.consumer is not None else "connecting"}

    def _make_consumer(self) -> AIOKafkaConsumer:
        return group_consumer(TOPIC_GROUP_PAYLOADS, bootstrap=self.bootstrap, client_id=self.name, group_id=GROUP_ID)

    async def _consume_routine(self) -> None:
        if self.consumer is not None:  # restarted after a crash: leave the group cleanly first
            old, self.consumer = self.consumer, None
            await stop_quietly(old)
        consumer = await start_consumer(self._make_consumer, what=self.name)
        self.consumer = consumer
        while True:
            polled = await poll(consumer, max_records=500, what=self.name)
            items: dict[str, str] = {}
            for records in polled.values():
                for rec in records:
                    if rec.key is None or rec.value is None:
                        self.m_skipped.inc()
                        continue
                    items[KEY_GROUP_PAYLOAD.format(id=rec.key.decode())] = rec.value.decode()
            if items:
                await self._persist(items)
            # a failed commit sends the records again; rewriting them is harmless
            if polled and not await commit(consumer, polled, self._next, what=self.name):
                self.m_commit_err.inc()

    async def _persist(self, items: dict[str, str]) -> None:
        """Write until the disk KV takes it (never skip a record: it would be lost)."""
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                await self.kv.put_many(items)
            except DiskKVError as exc:
                self.m_errors.inc()
                log.warning("disk KV write of %d payloads failed, retrying: %r", len(items), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.m_seconds.observe(time.perf_counter() - started)
            self.m_persisted.inc(len(items))
            return
