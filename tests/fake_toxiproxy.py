"""A fake Toxiproxy API (`httpx.MockTransport`) for the unit tests of our Toxiproxy client and faults."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

Hook = Callable[[httpx.Request], httpx.Response | None]
KNOWN_TYPES = {"latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data"}


def _err(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": message, "status": status})


class FakeToxiproxy:
    """An in-memory Toxiproxy 2.12 API, one per base URL (host:port) it is asked about.

    `inject(method, path, hook)` queues a hook for the next matching request; the hook may
    return a response, raise an httpx error, or return None to let the fake answer. Servers
    listed in `down` refuse connections. test_fault_cli.py uses it for the reference stack.
    """

    def __init__(self) -> None:
        self.servers: dict[str, dict[str, dict[str, Any]]] = {}
        self.requests: list[httpx.Request] = []
        self.hooks: list[tuple[str, str, Hook]] = []
        self.down: set[str] = set()  # "host:port" of servers that refuse connections

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def proxies(self, server: str = "127.0.0.1:8474") -> dict[str, dict[str, Any]]:
        return self.servers.setdefault(server, {})

    def add_proxy(self, name: str, listen: str, upstream: str, *, server: str = "127.0.0.1:8474") -> None:
        self.proxies(server)[name] = {
            "name": name,
            "listen": listen,
            "upstream": upstream,
            "enabled": True,
            "toxics": [],
        }

    def inject(self, method: str, path: str, hook: Hook) -> None:
        self.hooks.append((method, path, hook))

    def calls(self, method: str, path: str | None = None) -> int:
        return sum(1 for r in self.requests if r.method == method and (path is None or r.url.path == path))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if f"{request.url.host}:{request.url.port}" in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        for i, (method, path, hook) in enumerate(self.hooks):
            if method == request.method and path == request.url.path:
                del self.hooks[i]
                answer = hook(request)
                if answer is not None:
                    return answer
                break
        return self.serve(request)

    def serve(self, request: httpx.Request) -> httpx.Response:
        proxies = self.proxies(f"{request.url.host}:{request.url.port}")
        parts = [p for p in request.url.path.split("/") if p]
        body: Any = json.loads(request.content) if request.content else {}
        method = request.method
        if parts == ["version"]:
            return httpx.Response(200, json={"version": "2.12.0"})
        if parts == ["reset"] and method == "POST":
            for p in proxies.values():
                p["enabled"], p["toxics"] = True, []
            return httpx.Response(204)
        if parts == ["populate"] and method == "POST":
            for spec in body:
                proxies[spec["name"]] = {**spec, "enabled": spec.get("enabled", True), "toxics": []}
            return httpx.Response(201, json={"proxies": [proxies[s["name"]] for s in body]})
        if parts == ["proxies"]:
            if method == "GET":
                return httpx.Response(200, json=proxies)
            if body["name"] in proxies:
                return _err(409, "proxy already exists")
            proxies[body["name"]] = {**body, "enabled": body.get("enabled", True), "toxics": [], "Logger": {}}
            return httpx.Response(201, json=proxies[body["name"]])
        proxy = proxies.get(parts[1])
        if proxy is None:
            return _err(404, "proxy not found")
        if len(parts) == 2:
            if method == "DELETE":
                del proxies[parts[1]]
                return httpx.Response(204)
            if method == "PATCH":
                proxy.update(body)
            return httpx.Response(200, json=proxy)
        toxics = proxy["toxics"]
        if len(parts) == 3:
            if method == "GET":
                return httpx.Response(200, json=toxics)
            if body.get("type") not in KNOWN_TYPES:
                return _err(400, "invalid toxic type")
            if any(t["name"] == body["name"] for t in toxics):
                return _err(409, "toxic already exists")
            toxic = {"stream": "downstream", "toxicity": 1, **body}
            toxics.append(toxic)
            return httpx.Response(200, json=toxic)
        before = len(toxics)
        proxy["toxics"] = [t for t in toxics if t["name"] != parts[3]]
        return httpx.Response(204) if len(proxy["toxics"]) < before else _err(404, "toxic not found")
