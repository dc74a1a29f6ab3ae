"""The bypass consumer: drains the Kafka `buffer` into the logic gateways, bounded by CPU load.

Each record of `buffer` is a PushBatch (payloads inline) that the access tier diverted. The
consumer forwards them with the same weights and failover as the access tier
(`pushstack.routing`), at a rate and with a number of concurrent worker tasks that a
`CpuGovernor` adjusts every half second: its own process CPU (time.process_time deltas) pushes
them down when busy, a backlog with headroom pushes them up. The machine's CPU (/proc/stat, else
the load average) can push them down too, but is off by default: on a shared box the probe and the
proxies keep it high and the buffer would never drain. Offsets are committed only after the
gateways accepted every message, or it went to the dead-letter topic: a record that is not a
PushBatch, or a message the gateways refuse as invalid (`pushstack.deadletters`). Messages no
gateway takes for any other reason (an IDC outage) are retried until one does.

Environment: PUSHCTL_BYPASS_MIN_WORKERS (1), PUSHCTL_BYPASS_MAX_WORKERS (8),
PUSHCTL_BYPASS_CPU_TARGET (0.5 of one core), PUSHCTL_BYPASS_SYSTEM_MAX (1.0 = off, e.g. 0.9),
PUSHCTL_BYPASS_MAX_RATE (20000 messages/s).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped, unused-ignore]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped, unused-ignore]
from pydantic import ValidationError

from pushctl.contract.api import TOPIC_BUFFER, Message, PushBatch
from pushctl.contract.deadletter import DeadLetter
from pushctl.contract.topology import Inventory
from pushstack.deadletters import DeadLetterSink, Settled, refusal_reason, settle
from pushstack.kafkaio import KafkaProducerLink, commit, group_consumer, lag, poll, start_consumer, stop_quietly
from pushstack.routing import LogicRouter, Refusal
from pushstack.service import PushService
from pushstack.throttle import TokenBucket

GROUP_ID = "bypass"
log = logging.getLogger("pushstack.bypass")
Origin = tuple[str, int, int]  # topic, partition, offset of the record a message came in


class CpuGovernor:
    """AIMD on a messages/s budget and a worker count, driven by CPU readings (pure)."""

    def __init__(
        self, *, min_workers: int, max_workers: int, cpu_target: float, system_max: float, max_rate: float
    ) -> None:
        self.min_workers, self.max_workers = min_workers, max(min_workers, max_workers)
        self.cpu_target, self.system_max = cpu_target, system_max
        self.min_rate, self.max_rate = min(100.0, max_rate), max_rate
        self.workers = min_workers
        self.rate = max(self.min_rate, max_rate / 10)

    def update(self, cpu: float, system: float | None, backlog: int) -> None:
        busy = cpu > self.cpu_target or (system is not None and system > self.system_max)
        if busy:
            self.rate = max(self.min_rate, self.rate * 0.7)
            self.workers = max(self.min_workers, self.workers - 1)
        elif backlog > 0 and cpu < 0.8 * self.cpu_target:
            self.rate = min(self.max_rate, self.rate * 1.25 + 50)
            self.workers = min(self.max_workers, self.workers + 1)
        elif backlog == 0:
            self.workers = max(self.min_workers, self.workers - 1)


class CpuMeter:
    """This process's CPU (fraction of one core) and the machine's (fraction of all cores)."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()
        self._stat = self._read_stat()

    @staticmethod
    def _read_stat() -> tuple[int, int] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        values = [int(v) for v in fields]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    def sample(self) -> tuple[float, float | None]:
        wall, cpu, stat = time.monotonic(), time.process_time(), self._read_stat()
        own = (cpu - self._cpu) / max(wall - self._wall, 1e-6)
        system: float | None = None
        if stat is not None and self._stat is not None and stat[0] > self._stat[0]:
            system = 1 - (stat[1] - self._stat[1]) / (stat[0] - self._stat[0])
        elif stat is None:
            system = os.getloadavg()[0] / (os.cpu_count() or 1)
        self._wall, self._cpu, self._stat = wall, cpu, stat
        return own, system


def _env_num(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


class BypassConsumer(PushService):
    kind = "bypass"

    def __init__(self, inventory: Inventory, name: str) -> None:
        super().__init__(inventory, name)
        self.bootstrap = "{}:{}".format(*inventory.link_addr(self.spec.connect["kafka"]))
        self.governor = CpuGovernor(
            min_workers=int(_env_num("PUSHCTL_BYPASS_MIN_WORKERS", 1)),
            max_workers=int(_env_num("PUSHCTL_BYPASS_MAX_WORKERS", 8)),
            cpu_target=_env_num("PUSHCTL_BYPASS_CPU_TARGET", 0.5),
            system_max=_env_num("PUSHCTL_BYPASS_SYSTEM_MAX", 1.0),
            max_rate=_env_num("PUSHCTL_BYPASS_MAX_RATE", 20000),
        )
        self.bucket = TokenBucket(self.governor.rate, burst=max(self.governor.rate / 2, 500))
        self.consumer: AIOKafkaConsumer | None = None
        self._next: dict[TopicPartition, int] = {}
        self.cpu = 0.0
        self.m_consumed = self.counter("pushstack_bypass_consumed_total", "Buffered messages forwarded to logic.")
        self.m_records = self.counter("pushstack_bypass_records_total", "Buffer records consumed.")
        self.m_bad = self.counter("pushstack_bypass_bad_records_total", "Records that are not a PushBatch.")
        self.m_errors = self.counter("pushstack_bypass_forward_errors_total", "Messages no gateway took (retried).")
        self.m_deadletter = self.counter(
            "pushstack_bypass_deadletter_total",
            "Records written to the dead-letter topic, by reason (unparseable, undeliverable).",
            ("reason",),
        )
        for reason in ("unparseable", "undeliverable"):
            self.m_deadletter.labels(reason)  # exported at 0 from the start: a check reads a number
        self.deadletters = DeadLetterSink(
            KafkaProducerLink(self.bootstrap, client_id=f"{name}-deadletter"), self.m_deadletter
        )
        self.gauge("pushstack_bypass_workers", "Concurrent forwarding tasks.").set_function(
            lambda: self.governor.workers
        )
        self.gauge("pushstack_bypass_rate_limit", "Messages/s the CPU governor allows.").set_function(
            lambda: self.governor.rate
        )
        self.gauge("pushstack_bypass_cpu", "This process's CPU, fraction of one core.").set_function(lambda: self.cpu)
        self.gauge("pushstack_bypass_lag", "Buffer records not yet consumed.").set_function(self._lag)

    def _lag(self) -> int:
        return lag(self.consumer, self._next) if self.consumer is not None else 0

    async def on_start(self) -> None:
        self.router = LogicRouter(self.inv, self.inv.token)
        await self.router.start()
        self.spawn(self.deadletters.kafka.connect_routine, "_deadletter_routine")
        self.spawn(self._consume_routine, "_consume_routine")
        self.spawn(self._governor_routine, "_governor_routine")

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await stop_quietly(self.consumer)
        await self.deadletters.kafka.close()
        await self.router.close()

    def health_detail(self) -> tuple[bool, dict[str, str]]:
        return True, {
            "kafka": "consuming" if self.consumer is not None else "connecting",
            "workers": str(self.governor.workers),
            "dead_letters": str(self.deadletters.written),
        }

    async def _governor_routine(self) -> None:
        meter = CpuMeter()
        while True:
            await asyncio.sleep(0.5)
            self.cpu, system = meter.sample()
            self.governor.update(self.cpu, system, self._lag())
            self.bucket.rate = self.governor.rate
            self.bucket.burst = max(self.governor.rate / 2, 500)

    def _make_consumer(self) -> AIOKafkaConsumer:
        return group_consumer(TOPIC_BUFFER, bootstrap=self.bootstrap, client_id=self.name, group_id=GROUP_ID)

    async def _consume_routine(self) -> None:
        if self.consumer is not None:  # restarted after a crash: leave the group cleanly first
            old, self.consumer = self.consumer, None
            await stop_quietly(old)
        consumer = await start_consumer(self._make_consumer, what=self.name)
        self.consumer = consumer
        while True:
            polled = await poll(consumer, max_records=self.governor.workers * 2, what=self.name)
            if not polled:
                continue
            messages: list[Message] = []
            origin: dict[int, Origin] = {}  # id(message) -> its record, for a dead letter
            unreadable: list[DeadLetter] = []
            for records in polled.values():
                for rec in records:
                    self.m_records.inc()
                    try:
                        batch = PushBatch.model_validate_json(rec.value or b"")
                    except ValidationError as exc:
                        # the access tier validates every push before buffering it: this is a bug, keep the record
                        self.m_bad.inc()
                        unreadable.append(_unparseable(rec.value or b"", (rec.topic, rec.partition, rec.offset), exc))
                        continue
                    origin.update((id(m), (rec.topic, rec.partition, rec.offset)) for m in batch.messages)
                    messages.extend(batch.messages)
            await self.deadletters.write(unreadable)
            await self._pace(len(messages))
            refused = await self._forward(messages)
            await self.deadletters.write([_undeliverable(m, origin[id(m)], r) for m, r in refused])
            # a failed commit sends the records again: at-least-once, devices de-duplicate
            await commit(consumer, polled, self._next, what=self.name)

    async def _pace(self, n: int) -> None:
        while n > 0:
            n -= self.bucket.take(n)
            if n > 0:
                await asyncio.sleep(max(self.bucket.wait_time(n), 0.005))

    async def _forward(self, messages: list[Message]) -> list[tuple[Message, Refusal]]:
        """Forward with `workers` concurrent requests; retry what no gateway took until taken.
        Returns the messages the gateways refused as invalid (to be dead-lettered)."""
        delay = 0.1
        dead: list[tuple[Message, Refusal]] = []
        pending = Settled(retry=messages)
        while pending.retry or pending.suspect:
            workers = max(1, self.governor.workers)
            size = max(1, -(-len(pending.retry) // workers))
            parts = [pending.retry[i : i + size] for i in range(0, len(pending.retry), size)]
            parts += pending.next_suspect_parts()
            results = await asyncio.gather(*(self.router.push(part) for part in parts))
            settled = Settled()
            for part, reply in zip(parts, results, strict=True):
                settled.add(settle(part, reply))
            self.m_consumed.inc(settled.taken)
            dead += settled.dead
            if settled.retry:
                self.m_errors.inc(len(settled.retry))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            pending = settled
        return dead


def _unparseable(value: bytes, origin: Origin, exc: ValidationError) -> DeadLetter:
    first = exc.errors()[0]
    detail = f"{first['msg']} at {first['loc']}" if first["loc"] else first["msg"]
    topic, partition, offset = origin
    return DeadLetter.unparseable(value, topic=topic, partition=partition, offset=offset, at=time.time(), detail=detail)


def _undeliverable(message: Message, origin: Origin, refusal: Refusal) -> DeadLetter:
    topic, partition, offset = origin
    return DeadLetter.undeliverable(
        [message],
        refusal_reason(refusal),
        topic=topic,
        partition=partition,
        offset=offset,
        at=time.time(),
        detail=refusal.detail,
    )
