"""The sender: what an app server does, at a steady rate, with every message written in the ledger.

Single pushes go out at `rate` per second, batched into one `POST /v1/push/batch` every ~15 ms;
group pushes at `group_rate` per second, one `POST /v1/push/group` each, to `group_size` devices
picked at random or to a whole region, and (alongside) region group pushes at `region_group_rate`.
Targets are picked among ALL probe devices, connected or not: an offline device must still get its
messages later, from the platform's offline queue. Every message has a unique id and is recorded in
the ledger (with its kind: single, group, region-group) before it leaves; a push the platform
answers it did not take is recorded as rejected (visible, so not a loss), a push whose request got
no answer stays expected (it may have been taken).

The sender also measures its own pace: `delay_ms()` is the worst lateness, since the last call, of
a request against the plan (loop lag, or the in-flight limit holding requests back), which the rig
monitor (`pushctl.probe.rig`) reads to tell a slow rig from a slow platform.

    sender = Sender(access_url, token, devices, ledger, run_id="a1b2", rate=200)
    await sender.run(duration=10.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import httpx
from pydantic import BaseModel, ValidationError

from pushctl._http import tls
from pushctl.contract.api import AccessResult, GroupPush, SingleBatch, SinglePush
from pushctl.probe.ledger import Ledger

BATCH_INTERVAL = 0.015
PATH_BATCH = "/v1/push/batch"
PATH_GROUP = "/v1/push/group"


class Pacer:
    """How many events are due by `now` at a constant rate; never drifts, never bursts past it.

    >>> p = Pacer(200, start=0.0)
    >>> p.due(0.015), p.due(0.030), p.due(1.0)
    (3, 3, 194)
    """

    def __init__(self, rate: float, start: float) -> None:
        if rate < 0 or not math.isfinite(rate):
            raise ValueError("rate must be a finite number >= 0")
        self.rate = rate
        self.start = start
        self.emitted = 0

    def due(self, now: float) -> int:
        target = math.floor(self.rate * max(0.0, now - self.start) + 1e-9)
        n = max(0, target - self.emitted)
        self.emitted += n
        return n

    def next_due(self) -> float:
        """When the next event is due (infinity at rate 0)."""
        return self.start + (self.emitted + 1) / self.rate if self.rate > 0 else math.inf


@dataclass
class SenderStats:
    messages: int = 0  # single pushes sent
    groups: int = 0  # group pushes sent (to a device list and to a region)
    expected: int = 0  # deliveries expected (a group to N devices counts N)
    requests: int = 0
    failed_requests: int = 0  # transport errors and non-2xx answers (their messages will be lost)
    accepted: int = 0
    direct: int = 0
    buffered: int = 0  # diverted to the Kafka buffer by the access tier's throttle
    rejected: int = 0
    in_flight: int = 0
    max_delay_ms: float = 0.0  # worst lateness of a request against the plan, over the whole run


class Sender:
    """Sends single and group pushes for `duration` seconds (or until `stop()`)."""

    def __init__(
        self,
        access_url: str,
        token: str,
        devices: Sequence[str],
        ledger: Ledger,
        *,
        run_id: str,
        rate: float,
        group_rate: float = 0.0,
        group_size: int = 10,
        group_target: Literal["devices", "region"] = "devices",
        region_group_rate: float = 0.0,
        regions: Sequence[str] = (),
        region_members: Callable[[str], Sequence[str]] | None = None,
        payload_bytes: int = 32,
        batch_interval: float = BATCH_INTERVAL,
        max_in_flight: int = 32,
        request_timeout: float = 5.0,
        seed: int | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not devices:
            raise ValueError("the sender needs at least one device")
        if (group_target == "region" or region_group_rate > 0) and (not regions or region_members is None):
            raise ValueError("region group pushes need regions and region_members")
        self.stats = SenderStats()
        self._devices = list(devices)
        self._ledger = ledger
        self._run_id = run_id
        self._rate = rate
        self._group_rate = group_rate
        self._group_size = max(1, min(group_size, len(self._devices)))
        self._group_target = group_target
        self._region_group_rate = region_group_rate
        self._regions = list(regions)
        self._region_members = region_members
        self._payload = "x" * payload_bytes
        self._interval = batch_interval
        self._slots = asyncio.Semaphore(max_in_flight)
        self._rng = random.Random(seed)  # noqa: S311 - picking targets, not cryptography
        self._seq = 0
        self._stop = asyncio.Event()
        self._posts: set[asyncio.Task[None]] = set()
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(verify=tls(), trust_env=False)
        self._base = access_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = request_timeout
        self._rate_changed = False
        self._delay_max = 0.0  # seconds, since the last delay_ms()
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    def stop(self) -> None:
        """Stop sending at the next tick (posts already in flight complete)."""
        self._stop.set()

    @property
    def rate(self) -> float:
        """Single pushes per second being sent now."""
        return self._rate

    def delay_ms(self) -> float:
        """The worst lateness of a request against the plan since the last call (milliseconds)."""
        worst, self._delay_max = self._delay_max, 0.0
        return worst * 1000.0

    def set_rate(self, rate: float) -> None:
        """Send single pushes at `rate` from the next tick on (a traffic spike, and back)."""
        if rate < 0 or not math.isfinite(rate):
            raise ValueError("rate must be a finite number >= 0")
        self._rate = rate
        self._rate_changed = True

    async def run(self, duration: float | None) -> None:
        """Send until `duration` seconds have passed (None: until `stop()`), then await in-flight posts."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.started_at = time.time()
        if self._ledger.t0 is None:
            self._ledger.t0 = self.started_at  # per-second counters count from here
        singles, groups = Pacer(self._rate, start), Pacer(self._group_rate, start)
        region_groups = Pacer(self._region_group_rate, start)
        end = math.inf if duration is None else start + duration
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await self._stop.wait()
                now = min(loop.time(), end)
                first_due = _wall(loop, singles.next_due())  # the tick's earliest push: the latest against the plan
                self._send_singles(singles.due(now), first_due)
                if self._rate_changed:  # pace the new rate from now: no burst, no gap
                    self._rate_changed = False
                    singles = Pacer(self._rate, now)
                for _ in range(groups.due(now)):
                    self._send_group(self._group_target, _wall(loop, now))
                for _ in range(region_groups.due(now)):
                    self._send_group("region", _wall(loop, now))
                if self._stop.is_set() or now >= end:
                    break
        finally:
            self.stopped_at = time.time()
            if self._posts:
                await asyncio.gather(*self._posts, return_exceptions=True)
            if self._own_http:
                await self._http.aclose()

    # ---- building messages -----------------------------------------------------------------
    def _next_id(self, prefix: str = "") -> str:
        self._seq += 1
        return f"{self._run_id}-{prefix}{self._seq}"

    def _send_singles(self, n: int, due: float) -> None:
        if n <= 0:
            return
        at = time.time()
        messages = []
        for _ in range(n):
            device = self._rng.choice(self._devices)
            msg = SinglePush(id=self._next_id(), device=device, payload=self._payload, sent_at=at)
            self._ledger.sent(msg.id, at, (msg.device,), kind="single")
            messages.append(msg)
        self.stats.messages += n
        self.stats.expected += n
        self._post(PATH_BATCH, SingleBatch(messages=messages), [m.id for m in messages], due)

    def _send_group(self, target: Literal["devices", "region"], due: float) -> None:
        at = time.time()
        msg_id = self._next_id("g" if target == "devices" else "r")
        if target == "region":
            assert self._region_members is not None  # noqa: S101 - checked in __init__
            region = self._rng.choice(self._regions)
            members = self._region_members(region)
            self._ledger.sent(msg_id, at, members, open=True, kind="region-group")
            body = GroupPush(id=msg_id, payload=self._payload, sent_at=at, region=region)
            self.stats.expected += len(members)
        else:
            members = self._rng.sample(self._devices, self._group_size)
            self._ledger.sent(msg_id, at, members, kind="group")
            body = GroupPush(id=msg_id, payload=self._payload, sent_at=at, devices=members)
            self.stats.expected += len(members)
        self.stats.groups += 1
        self._post(PATH_GROUP, body, [msg_id], due)

    # ---- posting -------------------------------------------------------------------------------
    def _post(self, path: str, body: BaseModel, ids: list[str], due: float) -> None:
        task = asyncio.create_task(self._post_routine(path, body.model_dump_json(exclude_none=True), ids, due))
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    async def _post_routine(self, path: str, content: str, ids: list[str], due: float) -> None:
        async with self._slots:
            late = max(0.0, time.time() - due)
            self._delay_max = max(self._delay_max, late)
            self.stats.max_delay_ms = max(self.stats.max_delay_ms, late * 1000.0)
            self.stats.requests += 1
            self.stats.in_flight += 1
            try:
                resp = await self._http.post(
                    self._base + path,
                    content=content,
                    headers={**self._headers, "Content-Type": "application/json"},
                    timeout=self._timeout,
                )
            except httpx.HTTPError:
                self.stats.failed_requests += 1  # no answer: the platform may have taken them (still expected)
                return
            finally:
                self.stats.in_flight -= 1
        result = _result(resp)
        if resp.status_code >= 400:
            self.stats.failed_requests += 1
            if result is None or not result.accepted:
                # the platform answered that it did not take them: visibly rejected, not lost
                for msg_id in ids:
                    self._ledger.rejected(msg_id)
                self.stats.rejected += len(ids) if result is None else result.rejected
                return
        if result is None:
            self.stats.failed_requests += 1
            return
        for msg_id in result.rejected_ids:
            self._ledger.rejected(msg_id)
        self.stats.accepted += result.accepted
        self.stats.direct += result.direct
        self.stats.buffered += result.buffered
        self.stats.rejected += result.rejected


def _wall(loop: asyncio.AbstractEventLoop, due: float) -> float:
    """A loop-clock due time on the wall clock (now, when it is not due yet): the plan a request is late against."""
    return time.time() - max(0.0, loop.time() - due)


def _result(resp: httpx.Response) -> AccessResult | None:
    try:
        return AccessResult.model_validate_json(resp.content)
    except ValidationError:
        return None
