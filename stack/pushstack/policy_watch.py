"""Follow the scheduler's policy set: accept its pushes, poll it as a backstop, keep the newest.

Brokers and the dispatcher hold a copy of the scheduler's `PolicySet`. The scheduler pushes every
change to `POST /v1/policies`; the follower also polls `GET /v1/policies` on the scheduler every
second, so a lost push (a broken link, a restart) heals within about a second. A set replaces the
held one when its version is at least as high (equal versions still carry fresh region health). A
pushed set from the future (more than `MAX_SKEW_S` ahead of this clock) is refused with 409 (the body
is valid; it conflicts with this clock), and a held set from the future gives way to whatever the
scheduler answers when polled: one bad request, or a clock that jumped, cannot make a broker ignore
the scheduler until it restarts.

    follower = PolicyFollower(service, on_change=self._apply)
    follower.routes()          # POST/GET /v1/policies on the service's control API
    await follower.start()     # one bounded first fetch, then the _policy_routine
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from pushctl.contract.api import Policy, PolicySet
from pushctl.contract.topology import Inventory, ServiceKind

from .pools import client_session
from .service import PushService

log = logging.getLogger("pushstack.policy")

POLL_INTERVAL_S = 1.0
POLL_TIMEOUT_S = 1.0
MAX_SKEW_S = 60.0  # a pushed version (wall-clock milliseconds at the scheduler) may lead ours by this much
EMPTY = PolicySet(version=-1, policies=[])


# ---- pure helpers -----------------------------------------------------------------------------
def drain_for(policies: PolicySet, region: str) -> Policy | None:
    """The drain policy in force for `region`, if any."""
    for policy in policies.policies:
        if policy.kind == "drain" and policy.region == region:
            return policy
    return None


def drained_regions(policies: PolicySet) -> frozenset[str]:
    return frozenset(p.region for p in policies.policies if p.kind == "drain")


def unhealthy_regions(policies: PolicySet) -> frozenset[str]:
    return frozenset(name for name, state in policies.regions.items() if not state.healthy)


def scheduler_url(inv: Inventory, connect: dict[str, str]) -> str | None:
    """Where to reach the scheduler: the `scheduler` link of `connect`, else any link to one."""
    if "scheduler" in connect:
        return inv.link_url(connect["scheduler"])
    schedulers = inv.services_of(ServiceKind.SCHEDULER)
    for link in inv.links:
        if link.upstream.partition(":")[0] in schedulers:
            return inv.link_url(link.name)
    return None


# ---- the follower -----------------------------------------------------------------------------
class PolicyFollower:
    """A service's copy of the scheduler's policy set; `on_change` runs on every accepted change."""

    def __init__(
        self,
        service: PushService,
        on_change: Callable[[PolicySet], None],
        *,
        interval: float = POLL_INTERVAL_S,
    ) -> None:
        self._svc = service
        self._on_change = on_change
        self._interval = interval
        self._url = scheduler_url(service.inv, service.spec.connect)
        self._session: aiohttp.ClientSession | None = None
        self.current = EMPTY
        prefix = f"pushstack_{service.kind}"
        self._m_version = service.gauge(f"{prefix}_policy_version", "Version of the policy set held")
        self._m_errors = service.counter(
            f"{prefix}_policy_poll_errors_total", "Failed polls of the scheduler's policy set"
        )
        self._m_version.set(self.current.version)

    def routes(self) -> None:
        self._svc.control("POST", "/v1/policies", self._post)
        self._svc.control("GET", "/v1/policies", self._get)

    async def start(self) -> None:
        self._session = client_session(
            timeout=aiohttp.ClientTimeout(total=POLL_TIMEOUT_S),
            headers={"Authorization": f"Bearer {self._svc.inv.token}"},
        )
        if self._url is None:
            log.warning("%s: no link to a scheduler; following pushed policies only", self._svc.name)
            return
        await self.poll_once()
        self._svc.spawn(self._policy_routine, "_policy_routine")

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def offer(self, policies: PolicySet, *, authoritative: bool = False) -> bool:
        """Take `policies` if it is not older than the held set, or if the held set is from the future
        and `policies` is the scheduler's own answer (`authoritative`); True when something changed."""
        if policies == self.current:
            return False
        if policies.version < self.current.version:
            future = self.current.version > (time.time() + MAX_SKEW_S) * 1000
            if not (authoritative and future):
                return False
            log.warning("%s: held policy set v%d is from the future; resynchronised on the scheduler's v%d",
                        self._svc.name, self.current.version, policies.version)  # fmt: skip
        old, self.current = self.current, policies
        self._m_version.set(policies.version)
        if old.policies != policies.policies:
            log.info(
                "%s: policy set v%d: %s",
                self._svc.name,
                policies.version,
                ", ".join(f"{p.kind} {p.region} ({p.origin})" for p in policies.policies) or "none",
            )
        self._on_change(policies)
        return True

    async def poll_once(self) -> bool:
        """Fetch the scheduler's set once; False when the scheduler did not answer."""
        if self._url is None or self._session is None:
            return False
        try:
            async with self._session.get(f"{self._url}/v1/policies") as resp:
                resp.raise_for_status()
                body = await resp.read()
            self.offer(PolicySet.model_validate_json(body), authoritative=True)
        except (aiohttp.ClientError, TimeoutError, ValidationError) as exc:
            self._m_errors.inc()
            log.debug("%s: policy poll failed: %r", self._svc.name, exc)
            return False
        return True

    async def _policy_routine(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.poll_once()
            except Exception:  # a bug in on_change must not stop following the scheduler (logged)
                log.exception("%s: applying the policy set failed", self._svc.name)

    async def _post(self, request: web.Request) -> web.Response:
        policies = await self._svc.body(request, PolicySet)
        if policies.version > (time.time() + MAX_SKEW_S) * 1000:
            raise web.HTTPConflict(
                text=json.dumps({"error": f"policy version {policies.version} is from the future (clock skew)"}),
                content_type="application/json",
            )
        self.offer(policies)
        return self._svc.reply(self.current)

    async def _get(self, _: web.Request) -> web.Response:
        return self._svc.reply(self.current)
