"""Choosing a logic gateway: the weight split, health marks and failover (access tier, bypass).

Each device hashes to a fixed point in [0, 1); the routing weights cut that interval into one
slice per IDC, so a device's messages keep going to the same gateway while the weights hold.
Gateways marked unhealthy are left out of the split; when none is healthy every gateway is tried,
because the marks are only hints and losing a message is worse than one wasted request.

A gateway that answers 4xx refused the request, it is not down. A refusal that says the request
itself is invalid (`Refusal.definite`: 400, 413, 422) is reported per message, so a caller can tell
"no gateway reachable right now" (retry) from "the gateways reject this" (give up visibly).

    router = LogicRouter(inv, token)
    await router.start()                       # session + the poll routine's first round
    reply = await router.push(messages)        # reply.ok[i]; reply.refused[i] when definitely refused
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp

from pushctl.contract.api import Accepted, GroupTask, LogicLoad, Message, PushBatch, RoutingWeights
from pushctl.contract.topology import Inventory, ServiceKind
from pushstack.pools import client_session

T = TypeVar("T")
log = logging.getLogger("pushstack.routing")
_HASH_SPACE = float(2**32)


def hash_point(key: str) -> float:
    """A stable point in [0, 1) for `key` (the same in every process, unlike `hash`)."""
    return zlib.crc32(key.encode()) / _HASH_SPACE


class WeightTable:
    """Cumulative weights over the gateways that may take traffic now."""

    def __init__(self, weights: Mapping[str, float], healthy: Sequence[str]) -> None:
        usable = [idc for idc in sorted(healthy) if weights.get(idc, 0.0) > 0]
        if usable:
            shares = [weights[idc] for idc in usable]
        else:  # weights point only at dead gateways (or are all zero): spread over the healthy ones
            usable = sorted(healthy)
            shares = [1.0] * len(usable)
        if not usable:
            raise ValueError("no gateway to route to")
        total = sum(shares)
        self.idcs = usable
        self._bounds: list[float] = []
        acc = 0.0
        for share in shares[:-1]:
            acc += share / total
            self._bounds.append(acc)

    def pick(self, key: str) -> str:
        return self.idcs[bisect.bisect_right(self._bounds, hash_point(key))]


def split(items: Sequence[T], key: Callable[[T], str], table: WeightTable) -> dict[str, list[T]]:
    """Partition `items` by the gateway each one's key picks (empty parts are left out)."""
    if len(table.idcs) == 1:
        return {table.idcs[0]: list(items)} if items else {}
    parts: dict[str, list[T]] = {}
    for item in items:
        parts.setdefault(table.pick(key(item)), []).append(item)
    return parts


def failover_order(first: str, idcs: Sequence[str], healthy: Mapping[str, bool]) -> list[str]:
    """`first`, then the healthy others, then the unhealthy others (marks are hints, not verdicts)."""
    rest = [i for i in idcs if i != first]
    return [first] + [i for i in rest if healthy.get(i, True)] + [i for i in rest if not healthy.get(i, True)]


# the request itself is invalid: sending it again, anywhere, gets the same answer
DEFINITE_REFUSALS = frozenset({400, 413, 422})


@dataclass(frozen=True)
class Refusal:
    """A gateway's 4xx answer to a request of `batch` messages."""

    idc: str
    status: int
    detail: str
    batch: int = 1

    @property
    def definite(self) -> bool:
        """The request is invalid (not: unauthorised, rate-limited, unknown route, ...)."""
        return self.status in DEFINITE_REFUSALS


@dataclass
class PushReply:
    """`ok[i]`: some gateway took message i; `missing`: ids it took only after failing to fetch
    their payload by reference (it did not keep them: re-send them with the payload inline);
    `refused[i]`: no gateway took message i and one said its request was invalid (`Refusal.definite`;
    with `batch` > 1 any message of that request may be the invalid one)."""

    ok: list[bool]
    missing: set[str]
    refused: dict[int, Refusal] = field(default_factory=dict)


class LogicRouter:
    """An HTTP client for every logic gateway, with weights, health marks and failover."""

    def __init__(
        self,
        inv: Inventory,
        token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 3.0,
        poll_interval: float = 1.0,
    ) -> None:
        gateways = sorted(s.idc for s in inv.services_of(ServiceKind.LOGIC).values() if s.idc)
        self.urls = {idc: inv.link_url(inv.logic_link(idc).name) for idc in gateways}
        self.idcs = list(self.urls)
        self.weights: dict[str, float] = dict.fromkeys(self.idcs, 1.0)
        self.healthy: dict[str, bool] = dict.fromkeys(self.idcs, True)
        self.loads: dict[str, LogicLoad] = {}
        self.failovers = 0
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 1.0))
        self._poll_interval = poll_interval
        self._table: WeightTable | None = None
        self._task: asyncio.Task[None] | None = None
        self.on_failover: Callable[[str], None] = lambda _idc: None

    async def start(self) -> None:
        if self._session is None:
            self._session = client_session(limit=64, limit_per_host=16)
        self._task = asyncio.create_task(self._poll_routine(), name="_poll_routine")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("LogicRouter.start() first")
        return self._session

    @property
    def total_load(self) -> float:
        return sum(load.messages_per_s for load in self.loads.values())

    def table(self) -> WeightTable:
        if self._table is None:
            healthy = [i for i in self.idcs if self.healthy[i]] or self.idcs
            self._table = WeightTable(self.weights, healthy)
        return self._table

    def mark(self, idc: str, healthy: bool) -> None:
        if self.healthy.get(idc) != healthy:
            log.warning("logic gateway %s marked %s", idc, "healthy" if healthy else "unhealthy")
            self.healthy[idc] = healthy
            self._table = None

    def set_weights(self, weights: Mapping[str, float]) -> None:
        new = {idc: float(weights.get(idc, 0.0)) for idc in self.idcs}
        if new != self.weights:
            self.weights = new
            self._table = None

    # ---- sending ----------------------------------------------------------------------------
    async def push(self, messages: list[Message]) -> PushReply:
        """Send messages to their gateways, failing over; see `PushReply`."""
        reply = PushReply([], set())
        if not messages:
            return reply
        parts = split(messages, lambda m: m.device, self.table())
        answers = await asyncio.gather(*(self._push_part(idc, part) for idc, part in parts.items()))
        accepted: set[int] = set()
        refused: dict[int, Refusal] = {}
        for part, answer in zip(parts.values(), answers, strict=True):
            if isinstance(answer, Accepted):
                accepted.update(id(m) for m in part)
                reply.missing.update(answer.missing)
            elif answer is not None:
                refused.update((id(m), answer) for m in part)
        reply.ok = [id(m) in accepted for m in messages]
        reply.refused = {i: refused[id(m)] for i, m in enumerate(messages) if id(m) in refused}
        return reply

    async def _push_part(self, first: str, part: list[Message]) -> Accepted | Refusal | None:
        body = PushBatch(messages=part).model_dump_json()
        answer = await self._send_with_failover(first, "/v1/push", body)
        if isinstance(answer, Refusal):
            return Refusal(answer.idc, answer.status, answer.detail, batch=len(part))
        return answer

    async def group(self, task: GroupTask) -> int:
        """Split a group task's devices by weight; returns how many devices some gateway accepted."""
        parts = split(task.devices, lambda d: d, self.table())
        bodies = [
            (idc, GroupTask(id=task.id, devices=devices, sent_at=task.sent_at, payload_ref=task.payload_ref))
            for idc, devices in parts.items()
        ]
        answers = await asyncio.gather(
            *(self._send_with_failover(idc, "/v1/group", t.model_dump_json()) for idc, t in bodies)
        )
        return sum(
            len(t.devices) for (_, t), answer in zip(bodies, answers, strict=True) if isinstance(answer, Accepted)
        )

    async def _send_with_failover(self, first: str, path: str, body: str) -> Accepted | Refusal | None:
        """The first gateway's acceptance, in failover order; else the first definite refusal (the
        request is invalid); else None (nobody took it, nobody said it was invalid: try again)."""
        refusal: Refusal | None = None
        for n, idc in enumerate(failover_order(first, self.idcs, self.healthy)):
            if n:
                self.failovers += 1
                self.on_failover(idc)
            answer = await self._post(idc, path, body)
            if isinstance(answer, Accepted):
                return answer
            if answer is not None and answer.definite and refusal is None:
                refusal = answer
        return refusal

    async def _post(self, idc: str, path: str, body: str) -> Accepted | Refusal | None:
        """Accepted, a Refusal (4xx: the request was bad, the gateway is fine), or None (down)."""
        try:
            async with self._require_session().post(
                self.urls[idc] + path, data=body, headers=self._headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                if resp.status == 202:
                    return Accepted.model_validate_json(raw)
                if 400 <= resp.status < 500:
                    log.warning("logic gateway %s refused %s (%d): %s", idc, path, resp.status, raw[:200])
                    return Refusal(idc, resp.status, raw[:200].decode(errors="replace"))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("logic gateway %s: %s failed: %r", idc, path, exc)
        self.mark(idc, False)
        return None

    # ---- polling ----------------------------------------------------------------------------
    async def _poll_routine(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self._poll_interval)

    async def poll_once(self) -> None:
        """Read every gateway's load (which also restores health marks) and the routing weights."""
        await asyncio.gather(*(self._poll_load(idc) for idc in self.idcs))
        for idc in [i for i in self.idcs if self.healthy[i]]:
            weights = await self._get(idc, "/v1/routing")
            if weights is not None:
                with contextlib.suppress(ValueError):
                    self.set_weights(RoutingWeights.model_validate_json(weights).weights)
                break

    async def _poll_load(self, idc: str) -> None:
        raw = await self._get(idc, "/v1/load")
        if raw is None:
            self.loads.pop(idc, None)
            self.mark(idc, False)
            return
        with contextlib.suppress(ValueError):
            self.loads[idc] = LogicLoad.model_validate_json(raw)
        self.mark(idc, True)

    async def _get(self, idc: str, path: str) -> bytes | None:
        try:
            async with self._require_session().get(
                self.urls[idc] + path, headers=self._headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                return raw if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None
