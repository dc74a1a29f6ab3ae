"""The dead-letter record: what a consumer could not parse or forward, kept and said, never dropped.

A record on the `push-deadletter` topic (`TOPIC_DEADLETTER`) carries, as its value, bytes that can
be replayed as they are: the source record's own bytes when it could not be parsed, else a
`PushBatch` of the messages no gateway would take. Kafka record headers say why and where from:

    deadletter.reason     "unparseable" | "undeliverable: <why>"
    deadletter.detail     the parse error or the gateway's answer (may be empty)
    deadletter.topic      source topic           deadletter.partition  source partition
    deadletter.offset     source offset          deadletter.at         when, epoch seconds

The push ids a record stands for (`ids()`) are what the probe counts as visibly rejected; for an
unparseable record they are whatever ids can still be read from it.

    letter = DeadLetter.unparseable(raw, topic="buffer", partition=0, offset=7, at=now, detail=err)
    await producer.send(TOPIC_DEADLETTER, letter.value, headers=letter.headers())
    DeadLetter.from_record(rec.value, rec.headers).ids()     # ["m1", "m2"]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pushctl.contract.api import Message, PushBatch

UNPARSEABLE = "unparseable"
UNDELIVERABLE = "undeliverable"
HEADER = "deadletter."
_MAX_DETAIL = 500


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered record: its replayable `value`, the reason, and where it came from."""

    value: bytes
    reason: str
    topic: str
    partition: int
    offset: int
    at: float
    detail: str = ""

    @classmethod
    def unparseable(
        cls, value: bytes, *, topic: str, partition: int, offset: int, at: float, detail: str = ""
    ) -> DeadLetter:
        return cls(value, UNPARSEABLE, topic, partition, offset, at, detail[:_MAX_DETAIL])

    @classmethod
    def undeliverable(
        cls,
        messages: Sequence[Message],
        why: str,
        *,
        topic: str,
        partition: int,
        offset: int,
        at: float,
        detail: str = "",
    ) -> DeadLetter:
        value = PushBatch(messages=list(messages)).model_dump_json().encode()
        return cls(value, f"{UNDELIVERABLE}: {why}", topic, partition, offset, at, detail[:_MAX_DETAIL])

    @property
    def kind(self) -> str:
        """The reason without its details (`unparseable`, `undeliverable`): a metric label."""
        return self.reason.split(":", 1)[0]

    def headers(self) -> list[tuple[str, bytes]]:
        fields = {
            "reason": self.reason,
            "detail": self.detail,
            "topic": self.topic,
            "partition": str(self.partition),
            "offset": str(self.offset),
            "at": repr(self.at),
        }
        return [(HEADER + k, v.encode()) for k, v in fields.items()]

    @classmethod
    def from_record(cls, value: bytes | None, headers: Iterable[tuple[str, bytes]] | None) -> DeadLetter:
        """Read a record of the dead-letter topic back; ValueError when it is not one."""
        got = {k[len(HEADER) :]: v.decode(errors="replace") for k, v in headers or () if k.startswith(HEADER)}
        try:
            return cls(
                value or b"",
                got["reason"],
                got.get("topic", ""),
                int(got.get("partition", "-1")),
                int(got.get("offset", "-1")),
                float(got.get("at", "0")),
                got.get("detail", ""),
            )
        except KeyError:
            raise ValueError("not a dead-letter record: no deadletter.reason header") from None

    def ids(self) -> list[str]:
        """The push ids this record stands for, as far as they can be read from its value."""
        return salvage_ids(self.value)


def salvage_ids(value: bytes) -> list[str]:
    """Message ids in bytes shaped like a PushBatch (`{"messages": [{"id": ...}, ...]}`), even when
    the rest of it is invalid; [] when the bytes are not such JSON at all."""
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return []
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list):
        return []
    return [m["id"] for m in messages if isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"]]
