"""What the bypass does with a record it cannot parse or a message no gateway will take.

Nothing accepted is dropped silently: such a record goes to the dead-letter topic
(`pushctl.contract.deadletter` has the format), is counted in
`pushstack_bypass_deadletter_total{reason}` and logged, all before the source offset is committed.

A message is undeliverable only when a gateway answered that its request is invalid
(`routing.Refusal.definite`) in a request of that message alone. A refused request of several
messages is sent again in requests half as large, until the invalid ones stand alone, so one bad message
does not take its neighbours with it. Anything else no gateway took (unreachable, 5xx, 401, 429) is
retried for as long as it takes: an IDC outage delays messages, it does not dead-letter them.

    settled = settle(part, await router.push(part))   # taken / retry / suspect / dead
    sink = DeadLetterSink(producer, counter)
    await sink.write(letters)                          # returns once Kafka acked every letter
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter

from pushctl.contract.api import TOPIC_DEADLETTER, Message
from pushctl.contract.deadletter import DeadLetter
from pushstack.kafkaio import KafkaProducerLink
from pushstack.routing import PushReply, Refusal

log = logging.getLogger("pushstack.deadletter")
RETRY_S = 1.0


@dataclass
class Settled:
    """One forward attempt, sorted: `taken` by a gateway, to `retry` later (nobody took them),
    `suspect` (in an invalid request of several: send again in smaller requests), `dead` (invalid
    on their own: dead-letter them)."""

    taken: int = 0
    retry: list[Message] = field(default_factory=list)
    suspect: list[Message] = field(default_factory=list)
    dead: list[tuple[Message, Refusal]] = field(default_factory=list)
    suspect_batch: int = 0  # the largest refused request the suspects were in

    def add(self, other: Settled) -> None:
        self.taken += other.taken
        self.retry += other.retry
        self.suspect += other.suspect
        self.dead += other.dead
        self.suspect_batch = max(self.suspect_batch, other.suspect_batch)

    def next_suspect_parts(self) -> list[list[Message]]:
        """The suspects in requests half as large as the largest refused one: the bisection step.
        Every refused request was at most that large, so the refused requests shrink each round
        until the invalid messages are refused alone."""
        size = max(1, (self.suspect_batch + 1) // 2)
        return [self.suspect[i : i + size] for i in range(0, len(self.suspect), size)]


def settle(part: Sequence[Message], reply: PushReply) -> Settled:
    """Sort the messages of one `router.push(part)` by what became of them (pure)."""
    out = Settled()
    for i, (message, ok) in enumerate(zip(part, reply.ok, strict=True)):
        refusal = reply.refused.get(i)
        if ok:
            out.taken += 1
        elif refusal is None or not refusal.definite:
            out.retry.append(message)
        elif refusal.batch > 1:
            out.suspect.append(message)
            out.suspect_batch = max(out.suspect_batch, refusal.batch)
        else:
            out.dead.append((message, refusal))
    return out


def refusal_reason(refusal: Refusal) -> str:
    """The `undeliverable: <why>` part of a dead letter's reason."""
    return f"{refusal.idc} answered {refusal.status}"


class DeadLetterSink:
    """Writes dead letters to Kafka, counts and logs them; `write` returns only once all are acked,
    so the caller may then commit the source offsets."""

    def __init__(self, kafka: KafkaProducerLink, counter: Counter, *, retry_s: float = RETRY_S) -> None:
        self.kafka = kafka
        self.counter = counter
        self.retry_s = retry_s
        self.written = 0  # letters Kafka acked since this process started

    async def write(self, letters: Sequence[DeadLetter]) -> None:
        pending = list(letters)
        while pending:
            oks = await self.kafka.send_many(
                TOPIC_DEADLETTER, [(None, d.value) for d in pending], headers=[d.headers() for d in pending]
            )
            for letter, ok in zip(pending, oks, strict=True):
                if ok:
                    self.written += 1
                    self.counter.labels(letter.kind).inc()
                    ids = letter.ids()
                    log.error(
                        "dead-lettered %s record %s[%d]@%d (%d ids%s): %s %s",
                        letter.kind,
                        letter.topic,
                        letter.partition,
                        letter.offset,
                        len(ids),
                        f", first {ids[0]!r}" if ids else "",
                        letter.reason,
                        letter.detail,
                    )
            pending = [d for d, ok in zip(pending, oks, strict=True) if not ok]
            if pending:
                log.warning("%d dead letters not written yet (kafka), retrying", len(pending))
                await asyncio.sleep(self.retry_s)
