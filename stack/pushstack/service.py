"""Plumbing every push service shares: the HTTP app, health, metrics, bearer auth, lifecycle.

A service subclasses `PushService`, adds its routes in `routes()`, starts its background tasks in
`on_start()` and releases them in `on_stop()`. `/healthz` and `/metrics` need no token; every
route registered with `self.control(...)` needs `Authorization: Bearer <inventory token>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from pushctl.contract.topology import Inventory, Service

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("pushstack")


class PushService:
    """One service of the stack. `async with svc:` starts it; `await svc.serve_forever()` runs it."""

    kind: ClassVar[str] = "service"

    def __init__(self, inventory: Inventory, name: str) -> None:
        self.inv = inventory
        self.name = name
        self.spec: Service = inventory.service(name)
        self.registry = CollectorRegistry()
        self.app = web.Application(middlewares=[self._auth_middleware], client_max_size=64 * 1024 * 1024)
        self._control_paths: set[tuple[str, str]] = set()
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started_at = time.time()
        self._stopping = asyncio.Event()
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/metrics", self._metrics)
        self.routes()

    # ---- for subclasses ----------------------------------------------------------------------
    def routes(self) -> None:
        """Register the service's routes (use `self.control` for token-protected ones)."""

    async def on_start(self) -> None:
        """Connect clients, start background routines."""

    async def on_stop(self) -> None:
        """Close clients (background routines are cancelled by `stop`)."""

    def health_detail(self) -> tuple[bool, dict[str, str]]:
        """(healthy, detail) for /healthz; degraded services still answer 200 with status."""
        return True, {}

    # ---- helpers ----------------------------------------------------------------------------
    def control(self, method: str, path: str, handler: Handler) -> None:
        """A token-protected control endpoint."""
        self.app.router.add_route(method, path, handler)
        self._control_paths.add((method, path))

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=self.registry)

    def histogram(self, name: str, doc: str, buckets: tuple[float, ...] | None = None) -> Histogram:
        if buckets is None:
            return Histogram(name, doc, registry=self.registry)
        return Histogram(name, doc, buckets=buckets, registry=self.registry)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A background routine; its crash is logged, never silently lost."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._routine_done)
        self._tasks.append(task)
        return task

    def link_url(self, role: str, scheme: str = "http") -> str:
        """URL of the link this service reaches `role` through (from its `connect` table)."""
        return self.inv.link_url(self.spec.connect[role], scheme)

    def redis_for(self, role: str, *, timeout: float = 1.0) -> aioredis.Redis:
        """A Redis client through the link for `role`, failing fast (no hidden retries)."""
        host, port = self.inv.link_addr(self.spec.connect[role])
        return aioredis.Redis(
            host=host,
            port=port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            max_connections=64,
        )

    @staticmethod
    async def body(request: web.Request, model: type[BaseModelT]) -> BaseModelT:
        try:
            return model.model_validate_json(await request.read())
        except ValidationError as exc:
            raise web.HTTPBadRequest(
                text=_json_error(f"invalid body: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}"),
                content_type="application/json",
            ) from None

    @staticmethod
    def reply(model: BaseModel, status: int = 200) -> web.Response:
        return web.Response(body=model.model_dump_json(), status=status, content_type="application/json")

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        await self.on_start()
        await self._listen(self.spec.port)

    async def _listen(self, port: int) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.spec.host, port, reuse_address=True, backlog=4096)
        await site.start()
        self._runners.append(runner)

    async def stop(self) -> None:
        """Idempotent: cancel routines, close listeners and clients."""
        self._stopping.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
        await self.on_stop()

    async def __aenter__(self) -> PushService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT, then stop gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        async with self:
            log.info("%s (%s) listening on %s:%s", self.name, self.kind, self.spec.host, self.spec.port)
            await self._stopping.wait()

    # ---- internals --------------------------------------------------------------------------
    def _routine_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stopping.is_set():
            return
        exc = task.exception()
        if exc is not None:
            log.error("routine %s crashed: %r", task.get_name(), exc, exc_info=exc)

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        path = route.canonical if route is not None else request.path
        if (request.method, path) in self._control_paths:
            expected = f"Bearer {self.inv.token}"
            if request.headers.get("Authorization") != expected:
                return web.Response(
                    status=401, text=_json_error("missing or wrong bearer token"), content_type="application/json"
                )
        return await handler(request)

    async def _healthz(self, _: web.Request) -> web.Response:
        healthy, detail = self.health_detail()
        body = {"status": "ok" if healthy else "degraded", "service": self.name, "detail": detail}
        return web.json_response(body, status=200)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _json_error(message: str) -> str:
    import json

    return json.dumps({"error": message})


from typing import TypeVar  # noqa: E402

BaseModelT = TypeVar("BaseModelT", bound=BaseModel)
