"""The dispatcher: tells a device which brokers to connect to, nearest first.

    GET /v1/endpoints?device=ID[&region=R]   (public: devices call it) -> Endpoints

Every region's device-facing address (`ws://HOST:PORT/ws` of its `device-<region>` link), ordered
by the home region's `nearest` list; regions drained by a scheduler policy are left out, regions
the scheduler reports unhealthy go last. The home region is `region`, else a stable hash of the
device id over the regions by weight (`home_region`). Control API (bearer token):
`POST /v1/policies` (the scheduler pushes its set) and `GET /v1/policies`.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Collection, Sequence
from typing import ClassVar

from aiohttp import web

from pushctl.contract import frames
from pushctl.contract.api import PolicySet
from pushctl.contract.topology import Inventory

from .policy_watch import PolicyFollower, drained_regions, unhealthy_regions
from .service import PushService


def home_region(inv: Inventory, device: str) -> str:
    """The region a device belongs to when it does not say: crc32 of its id over region weights."""
    total = sum(r.weight for r in inv.regions.values())
    point = zlib.crc32(device.encode()) / 2**32 * total
    for name, region in inv.regions.items():
        point -= region.weight
        if point < 0:
            return name
    return next(reversed(inv.regions))


def order_regions(
    nearest: Sequence[str],
    regions: Sequence[str],
    drained: Collection[str] = (),
    unhealthy: Collection[str] = (),
) -> list[str]:
    """Regions to offer: `nearest` order (then any region it omits), drained out, unhealthy last.

    Never empty: when every region is drained, all are offered (unhealthy still last) - a device
    with somewhere to go beats one with nowhere.
    """
    order = list(dict.fromkeys([*nearest, *regions]))
    kept = [r for r in order if r not in drained] or order
    return sorted(kept, key=lambda r: r in unhealthy)  # stable: keeps the nearest order


def endpoint_urls(inv: Inventory) -> dict[str, str]:
    """Each region's device-facing WebSocket URL (through its device link)."""
    urls = {}
    for region in inv.regions:
        host, port = inv.link_addr(inv.device_link(region).name)
        urls[region] = f"ws://{host}:{port}{frames.WS_PATH}"
    return urls


class Dispatcher(PushService):
    """Hands out broker endpoints."""

    kind: ClassVar[str] = "dispatcher"

    def __init__(self, inventory: Inventory, name: str) -> None:
        super().__init__(inventory, name)
        self._urls = endpoint_urls(inventory)
        self._cache: dict[str, str] = {}  # home region -> serialised endpoint list
        self.follower = PolicyFollower(self, self._on_policies)
        self.follower.routes()
        self._m_requests = self.counter(
            "pushstack_dispatcher_requests_total", "Endpoint requests by home region", ("region",)
        )

    def routes(self) -> None:
        self.app.router.add_get("/v1/endpoints", self._endpoints)

    def health_detail(self) -> tuple[bool, dict[str, str]]:
        ps = self.follower.current
        return True, {
            "policy_version": str(ps.version),
            "drained": ",".join(sorted(drained_regions(ps))) or "none",
            "unhealthy": ",".join(sorted(unhealthy_regions(ps))) or "none",
        }

    async def on_start(self) -> None:
        await self.follower.start()

    async def on_stop(self) -> None:
        await self.follower.stop()

    def endpoints_for(self, home: str) -> str:
        """The JSON list of endpoints for devices of `home`, cached until the policies change."""
        cached = self._cache.get(home)
        if cached is None:
            ps = self.follower.current
            order = order_regions(
                self.inv.regions[home].nearest,
                list(self.inv.regions),
                drained_regions(ps),
                unhealthy_regions(ps),
            )
            cached = json.dumps([{"region": r, "url": self._urls[r]} for r in order], separators=(",", ":"))
            self._cache[home] = cached
        return cached

    def _on_policies(self, _: PolicySet) -> None:
        self._cache.clear()

    async def _endpoints(self, request: web.Request) -> web.Response:
        device = request.query.get("device", "")
        if not device:
            return web.json_response({"error": "query parameter 'device' is required"}, status=400)
        home = request.query.get("region") or home_region(self.inv, device)
        if home not in self.inv.regions:
            return web.json_response(
                {"error": f"unknown region {home!r}; valid regions: {', '.join(self.inv.regions)}"},
                status=400,
            )
        self._m_requests.labels(home).inc()
        body = f'{{"device":{json.dumps(device)},"endpoints":{self.endpoints_for(home)}}}'
        return web.Response(text=body, content_type="application/json")
