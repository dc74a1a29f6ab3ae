"""The scheduler: holds the drain policies, watches the brokers, drains unhealthy regions itself.

Control API (bearer token):
    GET    /v1/policies        -> PolicySet with per-region health
    POST   /v1/policies        PolicyIn -> Policy (201); 409 for a second drain or the last region
    DELETE /v1/policies/{id}   -> 204
    DELETE /v1/policies        -> 204, every policy (rollback)
    GET    /v1/auto, PUT /v1/auto   AutoMode: the auto-drain switch (env PUSHCTL_SCHEDULER_AUTO=0)

Every change is persisted in the store (`scheduler:policies`) and pushed to every broker (through
its VPC link) and to the dispatcher; they also poll `GET /v1/policies` every second.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import ClassVar

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from pydantic import ValidationError
from redis.exceptions import RedisError

from pushctl.contract.api import AutoMode, Connections, PolicyIn, PolicySet
from pushctl.contract.topology import Inventory, ServiceKind

from .policy_book import PolicyBook, PolicyError
from .pools import client_session
from .service import PushService

log = logging.getLogger("pushstack.scheduler")

KEY_POLICIES = "scheduler:policies"
AUTO_ENV = "PUSHCTL_SCHEDULER_AUTO"
WATCH_INTERVAL_S = 1.0
POLL_TIMEOUT_S = 0.8
PUSH_TIMEOUT_S = 1.0
STARTUP_GRACE_S = 5.0  # brokers started with the stack get this long before auto drains them


def policy_targets(inv: Inventory) -> dict[str, str]:
    """Who receives the policy set: each broker through its VPC link, each dispatcher's link."""
    targets: dict[str, str] = {}
    for name, svc in inv.services_of(ServiceKind.BROKER).items():
        if svc.region is not None:  # always, by inventory validation
            targets[name] = inv.link_url(inv.vpc_link(svc.region).name)
    for name, svc in inv.services_of(ServiceKind.DISPATCHER).items():
        link = next((lk for lk in inv.links if lk.upstream in (name, f"{name}:main")), None)
        targets[name] = inv.link_url(link.name) if link else f"http://{svc.host}:{svc.port}"
    return targets


class Scheduler(PushService):
    """The global policy holder."""

    kind: ClassVar[str] = "scheduler"

    def __init__(self, inventory: Inventory, name: str) -> None:
        super().__init__(inventory, name)
        self._started = time.time()
        self.book = PolicyBook(list(inventory.regions), now=self._started)
        self.auto = os.environ.get(AUTO_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
        self._brokers = {
            svc.region: inventory.link_url(inventory.vpc_link(svc.region).name)
            for svc in inventory.services_of(ServiceKind.BROKER).values()
            if svc.region is not None
        }
        self._targets = policy_targets(inventory)
        self._session: aiohttp.ClientSession | None = None
        self._store: aioredis.Redis | None = None
        self._loaded = False  # the persisted set was read (or we changed ours first)
        self._dirty = asyncio.Event()
        self._push = asyncio.Event()
        self._m_policies = self.gauge("pushstack_scheduler_policies", "Policies in force")
        self._m_version = self.gauge("pushstack_scheduler_policy_version", "Version of the policy set")
        self._m_auto = self.gauge("pushstack_scheduler_auto_enabled", "1 when auto drains are on")
        self._m_healthy = self.gauge("pushstack_scheduler_region_healthy", "1 when healthy", ("region",))
        self._m_conns = self.gauge(
            "pushstack_scheduler_region_connections", "Connections its broker reports", ("region",)
        )
        self._m_limit = self.gauge("pushstack_scheduler_region_limit", "Its broker's limit", ("region",))
        self._m_auto_actions = self.counter(
            "pushstack_scheduler_auto_actions_total", "Auto drains issued and withdrawn", ("action",)
        )
        for action in ("drain", "withdraw"):
            self._m_auto_actions.labels(action)  # exported at 0 from the start: dashboards read a number
        self._m_push_errors = self.counter("pushstack_scheduler_push_errors_total", "Failed policy pushes", ("target",))
        for target in self._targets:
            self._m_push_errors.labels(target)  # exported at 0 from the start: dashboards read a number
        self._m_persist_errors = self.counter(
            "pushstack_scheduler_persist_errors_total", "Failed reads/writes of the persisted set"
        )
        self._publish_metrics()

    def routes(self) -> None:
        self.control("GET", "/v1/policies", self._get_policies)
        self.control("POST", "/v1/policies", self._post_policy)
        self.control("DELETE", "/v1/policies", self._delete_all)
        self.control("DELETE", "/v1/policies/{id}", self._delete_policy)
        self.control("GET", "/v1/auto", self._get_auto)
        self.control("PUT", "/v1/auto", self._put_auto)

    def health_detail(self) -> tuple[bool, dict[str, str]]:
        detail = {name: "healthy" if h.healthy else f"unhealthy: {h.reason}" for name, h in self.book.regions.items()}
        detail["persisted"] = "yes" if self._loaded and not self._dirty.is_set() else "pending"
        return True, detail

    # ---- lifecycle ------------------------------------------------------------------------
    async def on_start(self) -> None:
        self._session = client_session(headers={"Authorization": f"Bearer {self.inv.token}"})
        if "store" in self.spec.connect:
            self._store = self.redis_for("store")
            await self._load()
        else:
            log.warning("%s: no store link; policies live in memory only", self.name)
            self._loaded = True
        self.spawn(self._watch_routine, "_watch_routine")
        self.spawn(self._persist_routine, "_persist_routine")
        self.spawn(self._push_routine, "_push_routine")
        self._push.set()

    async def on_stop(self) -> None:
        if self._dirty.is_set():
            await self._save()
        if self._session is not None:
            await self._session.close()
        if self._store is not None:
            await self._store.aclose()

    # ---- control API ----------------------------------------------------------------------
    async def _get_policies(self, _: web.Request) -> web.Response:
        return self.reply(self.book.snapshot())

    async def _post_policy(self, request: web.Request) -> web.Response:
        wanted = await self.body(request, PolicyIn)
        if wanted.origin != "operator":  # auto drains are the scheduler's own: it withdraws them by itself
            return _error(400, "origin must be 'operator': auto drains are the scheduler's own")
        try:
            policy = self.book.add(wanted, now=time.time())
        except PolicyError as exc:
            return _error(exc.status, str(exc))
        log.info("policy %s: drain %s (spread %.1fs, %s)", policy.id, policy.region, policy.spread_s, policy.origin)
        self._changed()
        return self.reply(policy, status=201)

    async def _delete_policy(self, request: web.Request) -> web.Response:
        try:
            policy = self.book.remove(request.match_info["id"], now=time.time())
        except PolicyError as exc:
            return _error(exc.status, str(exc))
        log.info("policy %s withdrawn (drain %s)", policy.id, policy.region)
        self._changed()
        return web.Response(status=204)

    async def _delete_all(self, _: web.Request) -> web.Response:
        n = self.book.clear(now=time.time())
        log.info("all policies withdrawn (%d)", n)
        self._changed()
        return web.Response(status=204)

    async def _get_auto(self, _: web.Request) -> web.Response:
        return self.reply(AutoMode(enabled=self.auto))

    async def _put_auto(self, request: web.Request) -> web.Response:
        self.auto = (await self.body(request, AutoMode)).enabled
        log.info("auto drains %s", "on" if self.auto else "off")
        if not self.auto and self.book.clear(now=time.time(), origin="auto"):
            self._changed()
        self._publish_metrics()
        return self.reply(AutoMode(enabled=self.auto))

    # ---- routines -------------------------------------------------------------------------
    async def _watch_routine(self) -> None:
        """Poll every broker each second; judge health; drain or restore when auto is on."""
        while True:
            seen = await asyncio.gather(*(self._poll_region(region) for region in self._brokers))
            now = time.time()
            flipped = False
            for region, conns in zip(self._brokers, seen, strict=True):
                if self.book.observe(region, conns, now=now):
                    h = self.book.regions[region]
                    log.warning("region %s is %s", region, "healthy" if h.healthy else f"unhealthy: {h.reason}")
                    flipped = True
            if self.auto and now - self._started >= STARTUP_GRACE_S:
                for action in self.book.auto_step(now=now):
                    log.warning("auto: %s", action)
                    self._m_auto_actions.labels(action.split()[0]).inc()
                    self._changed()
            if flipped:
                self._push.set()
            self._publish_metrics()
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def _poll_region(self, region: str) -> Connections | None:
        """A region is reachable when both its VPC (connections API) and its public network answer.

        The public check dials the region's device-facing link, as a device would: a region whose
        public network is down serves nobody even though its broker is fine.
        """
        conns, public = await asyncio.gather(self._poll(self._brokers[region]), self._public_ok(region))
        return conns if public else None

    async def _public_ok(self, region: str) -> bool:
        url = self.inv.link_url(self.inv.device_link(region).name)
        try:
            async with self._http.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=POLL_TIMEOUT_S)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _poll(self, url: str) -> Connections | None:
        try:
            async with self._http.get(
                f"{url}/v1/connections", timeout=aiohttp.ClientTimeout(total=POLL_TIMEOUT_S)
            ) as resp:
                resp.raise_for_status()
                return Connections.model_validate_json(await resp.read())
        except (aiohttp.ClientError, TimeoutError, ValidationError):
            return None

    async def _push_routine(self) -> None:
        """Push the current set to every follower; changes during a push trigger another."""
        while True:
            await self._push.wait()
            self._push.clear()
            body = self.book.snapshot().model_dump_json()
            await asyncio.gather(*(self._push_to(t, url, body) for t, url in self._targets.items()))

    async def _push_to(self, target: str, url: str, body: str) -> None:
        try:
            async with self._http.post(
                f"{url}/v1/policies",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=PUSH_TIMEOUT_S),
            ) as resp:
                resp.raise_for_status()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # followers poll us every second; a lost push only costs that second
            self._m_push_errors.labels(target).inc()
            log.debug("push to %s failed: %r", target, exc)

    async def _persist_routine(self) -> None:
        """Write the set after each change; retry every second while the store is away."""
        while True:
            if not self._loaded:
                await self._load()
            if self._dirty.is_set():
                await self._save()
            if self._dirty.is_set() or not self._loaded:
                await asyncio.sleep(WATCH_INTERVAL_S)
            else:
                await self._dirty.wait()

    # ---- internals ------------------------------------------------------------------------
    @property
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._session

    def _changed(self) -> None:
        self._loaded = True  # from now on our set is authoritative over anything persisted
        self._dirty.set()
        self._push.set()
        self._publish_metrics()

    async def _load(self) -> None:
        if self._store is None:
            self._loaded = True
            return
        try:
            raw = await self._store.get(KEY_POLICIES)
        except (RedisError, OSError) as exc:
            self._m_persist_errors.inc()
            log.warning("cannot read persisted policies yet: %r", exc)
            return
        if raw is not None and not self._loaded:
            try:
                self.book.load(PolicySet.model_validate_json(raw))
            except ValidationError as exc:
                log.error("ignoring unreadable persisted policies: %s", exc)  # noqa: TRY400 - no traceback
            else:
                log.info("restored %d policies (v%d)", len(self.book.policies), self.book.version)
                self._push.set()
        self._loaded = True
        self._publish_metrics()

    async def _save(self) -> None:
        if self._store is None:
            self._dirty.clear()
            return
        snapshot = self.book.snapshot()
        persisted = PolicySet(version=snapshot.version, policies=snapshot.policies)
        try:
            await self._store.set(KEY_POLICIES, persisted.model_dump_json())
        except (RedisError, OSError) as exc:
            self._m_persist_errors.inc()
            log.warning("cannot persist policies (will retry): %r", exc)
            return
        if self.book.version == snapshot.version:
            self._dirty.clear()

    def _publish_metrics(self) -> None:
        self._m_policies.set(len(self.book.policies))
        self._m_version.set(self.book.version)
        self._m_auto.set(1 if self.auto else 0)
        for region, h in self.book.regions.items():
            self._m_healthy.labels(region).set(1 if h.healthy else 0)
            self._m_conns.labels(region).set(h.connections)
            self._m_limit.labels(region).set(h.limit)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
