"""Pushes a broker wrote and the acks it waits for.

A `/v1/deliver` call is one `Delivery`: the (device, message id) pairs it wrote and the acks that
came back. `AckBook` maps each pair to the deliveries waiting for it, so an `ack` frame from a
device completes every call that carried the message (a retried message may be in flight twice).

    book = AckBook(latency=histogram)
    d = Delivery()
    book.expect(d, ("dev-1", "m1"))     # after writing the push frame
    book.ack(("dev-1", "m1"))           # when the device's ack arrives: d.acked == [("dev-1", "m1")]
    book.forget(d)                      # when the call returns, acked or not
"""

from __future__ import annotations

import asyncio
import json
import time

from prometheus_client import Histogram

from pushctl.contract.api import Message

Key = tuple[str, str]  # (device, message id)


def push_frame(message: Message) -> str:
    """The `push` frame for a message (the logic gateway resolved `payload_ref` already)."""
    return json.dumps(
        {"type": "push", "id": message.id, "payload": message.payload or "", "sent_at": message.sent_at},
        separators=(",", ":"),
    )


class Delivery:
    """One deliver call waiting for its acks."""

    __slots__ = ("acked", "done", "gone", "started", "waiting")

    def __init__(self) -> None:
        self.waiting: set[Key] = set()
        self.acked: list[Key] = []
        self.gone: list[Key] = []  # the device's connection closed before it acked
        self.done = asyncio.Event()
        self.started = time.monotonic()

    def _ack(self, key: Key) -> None:
        if key in self.waiting:
            self.waiting.discard(key)
            self.acked.append(key)
            if not self.waiting:
                self.done.set()

    def _gone(self, key: Key) -> None:
        if key in self.waiting:
            self.waiting.discard(key)
            self.gone.append(key)
            if not self.waiting:
                self.done.set()


class AckBook:
    """Who waits for which ack."""

    def __init__(self, latency: Histogram) -> None:
        self._pending: dict[Key, list[Delivery]] = {}
        self._by_device: dict[str, set[Key]] = {}
        self._latency = latency

    def __len__(self) -> int:
        return len(self._pending)

    def expect(self, delivery: Delivery, key: Key) -> bool:
        """`delivery` waits for `key`; False when it already does (a duplicate in one call)."""
        if key in delivery.waiting:
            return False
        delivery.waiting.add(key)
        self._pending.setdefault(key, []).append(delivery)
        self._by_device.setdefault(key[0], set()).add(key)
        return True

    def device_gone(self, device: str) -> None:
        """The device's connection closed: its unacked pushes fail now, not at the call's timeout.

        The logic gateway then looks the route up again at once; a drained device is usually
        already connected elsewhere (make-before-break is not guaranteed by every client).
        """
        for key in self._by_device.pop(device, ()):
            for delivery in self._pending.pop(key, ()):
                delivery._gone(key)

    def ack(self, key: Key) -> None:
        keys = self._by_device.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_device[key[0]]
        waiters = self._pending.pop(key, None)
        if waiters:
            now = time.monotonic()
            for delivery in waiters:
                self._latency.observe(now - delivery.started)
                delivery._ack(key)

    def forget(self, delivery: Delivery) -> None:
        """Stop waiting for what `delivery` still misses (its call is returning)."""
        for key in delivery.waiting:
            waiters = self._pending.get(key)
            if waiters is not None:
                if delivery in waiters:
                    waiters.remove(delivery)
                if not waiters:
                    del self._pending[key]
                    keys = self._by_device.get(key[0])
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del self._by_device[key[0]]
