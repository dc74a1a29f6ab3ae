"""Typed client for the platform's control API (the contract in `pushctl.contract.api`).

pushctl talks to each service's own address from the inventory, never through the Toxiproxy
links it breaks: a fault on a link must not blind the operator's control plane.

    async with PlatformClient(inv) as api:
        await api.add_policy(PolicyIn(region="south", spread_s=5))
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ValidationError

from pushctl._http import tls
from pushctl.contract.api import (
    ConnectionLimit,
    Connections,
    Endpoints,
    Policy,
    PolicyIn,
    PolicySet,
    RoutingWeights,
    StorageMode,
    Throttle,
)
from pushctl.contract.topology import Inventory, ServiceKind
from pushctl.errors import PushctlError, TargetUnreachable, UsageError

M = TypeVar("M", bound=BaseModel)
USER_AGENT = "pushctl/0.1.0 (control)"


class PlatformClient:
    """Async client for the scheduler, brokers, logic gateways and access tier."""

    def __init__(
        self, inv: Inventory, *, timeout: float = 3.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.inv = inv
        self._http = httpx.AsyncClient(
            verify=tls(),
            timeout=timeout,
            transport=transport,
            trust_env=False,
            headers={"Authorization": f"Bearer {inv.token}", "User-Agent": USER_AGENT},
        )

    async def __aenter__(self) -> PlatformClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- plumbing ------------------------------------------------------------------------------
    def url(self, service: str, path: str, *, internal: bool = False) -> str:
        svc = self.inv.service(service)
        port = svc.internal_port if internal and svc.internal_port else svc.port
        return f"http://{svc.host}:{port}{path}"

    async def _call(self, method: str, url: str, model: type[M] | None, json: Any = None) -> Any:
        try:
            resp = await self._http.request(method, url, json=json)
        except httpx.HTTPError as exc:
            raise TargetUnreachable(f"{method} {url}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("error") or resp.text
            except ValueError:
                detail = resp.text
            err: PushctlError
            if resp.status_code in (400, 404, 409, 422):
                err = UsageError(f"{method} {url} refused ({resp.status_code}): {detail}")
            else:
                err = TargetUnreachable(f"{method} {url} failed ({resp.status_code}): {detail}")
            raise err
        if model is None or resp.status_code == 204:
            return None
        try:
            return model.model_validate_json(resp.content)
        except ValidationError as exc:
            raise TargetUnreachable(f"{url} answered something that is not a {model.__name__}: {exc}") from exc

    def _name_of(self, kind: ServiceKind, **where: str) -> str:
        for name, svc in self.inv.services_of(kind).items():
            if all(getattr(svc, k) == v for k, v in where.items()):
                return name
        raise UsageError(f"the inventory has no {kind.value} with {where}")

    # ---- scheduler -----------------------------------------------------------------------------
    @property
    def scheduler(self) -> str:
        return self._name_of(ServiceKind.SCHEDULER)

    async def policies(self) -> PolicySet:
        result: PolicySet = await self._call("GET", self.url(self.scheduler, "/v1/policies"), PolicySet)
        return result

    async def add_policy(self, policy: PolicyIn) -> Policy:
        result: Policy = await self._call("POST", self.url(self.scheduler, "/v1/policies"), Policy, policy.model_dump())
        return result

    async def remove_policy(self, policy_id: str) -> None:
        try:
            await self._call("DELETE", self.url(self.scheduler, f"/v1/policies/{policy_id}"), None)
        except UsageError as exc:
            if "(404)" not in exc.message:  # already gone is what we wanted
                raise

    async def remove_all_policies(self) -> None:
        await self._call("DELETE", self.url(self.scheduler, "/v1/policies"), None)

    async def set_auto(self, enabled: bool) -> None:
        await self._call("PUT", self.url(self.scheduler, "/v1/auto"), None, {"enabled": enabled})

    async def auto(self) -> bool:
        resp = await self._http.get(self.url(self.scheduler, "/v1/auto"))
        return bool(resp.json().get("enabled", False))

    # ---- brokers -------------------------------------------------------------------------------
    async def connections(self, region: str) -> Connections:
        name, _ = self.inv.broker(region)
        result: Connections = await self._call("GET", self.url(name, "/v1/connections", internal=True), Connections)
        return result

    async def set_limit(self, region: str, limit: int) -> Connections:
        """A region's broker holds at most `limit` device connections from now on (existing ones stay)."""
        name, _ = self.inv.broker(region)
        result: Connections = await self._call(
            "PUT", self.url(name, "/v1/limit", internal=True), Connections, ConnectionLimit(limit=limit).model_dump()
        )
        return result

    async def all_connections(self) -> dict[str, Connections | None]:
        """Connections per region; None where the broker does not answer."""

        async def one(region: str) -> Connections | None:
            try:
                return await self.connections(region)
            except TargetUnreachable:
                return None

        regions = list(self.inv.regions)
        return dict(zip(regions, await asyncio.gather(*(one(r) for r in regions)), strict=True))

    # ---- dispatcher ----------------------------------------------------------------------------
    async def endpoint_regions(self, device: str, home: str) -> list[str]:
        """The regions the dispatcher hands a device of `home` now, in its order."""
        name = self._name_of(ServiceKind.DISPATCHER)
        url = self.url(name, "/v1/endpoints")
        try:
            resp = await self._http.get(url, params={"device": device, "region": home})
        except httpx.HTTPError as exc:
            raise TargetUnreachable(f"GET {url}: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise TargetUnreachable(f"GET {url} failed ({resp.status_code}): {resp.text[:200]}")
        try:
            return [e.region for e in Endpoints.model_validate_json(resp.content).endpoints]
        except ValidationError as exc:
            raise TargetUnreachable(f"{url} answered something that is not an Endpoints: {exc}") from exc

    # ---- logic gateways ------------------------------------------------------------------------
    def _logic_names(self) -> list[str]:
        return list(self.inv.services_of(ServiceKind.LOGIC))

    async def routing(self) -> RoutingWeights:
        """Routing weights, from the first gateway that answers (they share them via the store)."""
        last: PushctlError | None = None
        for name in self._logic_names():
            try:
                result: RoutingWeights = await self._call("GET", self.url(name, "/v1/routing"), RoutingWeights)
            except TargetUnreachable as exc:
                last = exc
            else:
                return result
        raise last or TargetUnreachable("no logic gateway in the inventory")

    async def routing_by_gateway(self) -> dict[str, dict[str, float] | None]:
        """Every gateway's own answer to GET /v1/routing (None where it did not answer): they must agree."""

        async def one(name: str) -> dict[str, float] | None:
            try:
                result: RoutingWeights = await self._call("GET", self.url(name, "/v1/routing"), RoutingWeights)
            except PushctlError:
                return None
            return result.weights

        names = self._logic_names()
        return dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))

    async def set_routing(self, weights: dict[str, float]) -> RoutingWeights:
        unknown = set(weights) - set(self.inv.idcs)
        if unknown:
            raise UsageError(f"unknown idc {', '.join(sorted(unknown))}; valid: {', '.join(self.inv.idcs)}")
        last: PushctlError | None = None
        for name in self._logic_names():
            try:
                result: RoutingWeights = await self._call(
                    "PUT", self.url(name, "/v1/routing"), RoutingWeights, {"weights": weights}
                )
            except TargetUnreachable as exc:
                last = exc
            else:
                return result
        raise last or TargetUnreachable("no logic gateway in the inventory")

    # ---- access tier ---------------------------------------------------------------------------
    @property
    def access(self) -> str:
        return self._name_of(ServiceKind.ACCESS)

    async def throttle(self) -> Throttle:
        result: Throttle = await self._call("GET", self.url(self.access, "/v1/throttle"), Throttle)
        return result

    async def set_throttle(self, throttle: Throttle) -> Throttle:
        result: Throttle = await self._call(
            "PUT", self.url(self.access, "/v1/throttle"), Throttle, throttle.model_dump()
        )
        return result

    async def storage(self) -> StorageMode:
        result: StorageMode = await self._call("GET", self.url(self.access, "/v1/storage"), StorageMode)
        return result

    async def metrics(self, service: str) -> str:
        """Prometheus text of a service."""
        try:
            resp = await self._http.get(self.url(service, "/metrics"))
        except httpx.HTTPError as exc:
            raise TargetUnreachable(f"{service} /metrics: {type(exc).__name__}") from exc
        return resp.text

    async def metric_value(self, service: str, metric: str, labels: Mapping[str, str] | None = None) -> float | None:
        """Sum of a Prometheus metric's samples on a service, only those with `labels` (None when absent)."""
        return sum_samples(await self.metrics(service), metric, labels)

    async def buffer_lag(self) -> float | None:
        """Messages waiting in the Kafka buffer, as the bypass consumer reports it."""
        bypass = next(iter(self.inv.services_of(ServiceKind.BYPASS)), None)
        if bypass is None:
            return None
        return await self.metric_value(bypass, "pushstack_bypass_lag")

    async def dead_letters(self) -> dict[str, float] | None:
        """Records the bypass consumer dead-lettered since it started, by reason (None without one)."""
        bypass = next(iter(self.inv.services_of(ServiceKind.BYPASS)), None)
        if bypass is None:
            return None
        text = await self.metrics(bypass)
        counts: dict[str, float] = {}
        for reason in ("unparseable", "undeliverable"):
            value = sum_samples(text, "pushstack_bypass_deadletter_total", {"reason": reason})
            if value is not None:
                counts[reason] = value
        return counts


def sum_samples(text: str, metric: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The sum of the samples named `metric` in Prometheus text whose labels include `labels`.

    `metric` is the sample name as exposed (`pushstack_access_pushes_total`), so a counter's
    `_created` samples never count. None when no sample matches.
    """
    want = dict(labels or {})
    total: float | None = None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == metric and want.items() <= sample.labels.items():
                    total = (total or 0.0) + sample.value
    except ValueError as exc:
        raise TargetUnreachable(f"unreadable metrics while looking for {metric}: {exc}") from exc
    return total
