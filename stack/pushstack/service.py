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
from typing import Any, ClassVar, Self, TypeVar

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from pushctl.contract.api import MAX_BODY, MAX_PAYLOAD
from pushctl.contract.topology import Inventory, Service

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("pushstack")
RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0
RESTART_RESET_S = 60.0  # a routine that ran this long before crashing restarts at the shortest backoff


class PushService:
    """One service of the stack. `async with svc:` starts it; `await svc.serve_forever()` runs it."""

    kind: ClassVar[str] = "service"

    def __init__(self, inventory: Inventory, name: str) -> None:
        self.inv = inventory
        self.name = name
        self.spec: Service = inventory.service(name)
        self.registry = CollectorRegistry()
        self.app = web.Application(middlewares=[self._auth_middleware], client_max_size=MAX_BODY)
        self._control_paths: set[tuple[str, str]] = set()
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started_at = time.time()
        self._stopping = asyncio.Event()
        self._down: dict[str, str] = {}  # supervised routines that crashed and wait to restart
        self._m_restarts = self.counter(
            "pushstack_routine_restarts_total", "Background routines restarted after a crash", ("routine",)
        )
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

    def spawn(self, routine: Callable[[], Coroutine[Any, Any, None]], name: str) -> asyncio.Task[None]:
        """Run `routine()` in the background under supervision (see `_supervise`)."""
        task = asyncio.create_task(self._supervise(routine, name), name=name)
        self._tasks.append(task)
        return task

    async def _supervise(self, routine: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """A routine that crashes is logged, shown on /healthz (degraded, by name) while it is down, and
        started again after a backoff (0.5 s, doubling to 30 s; back to 0.5 s once it ran a minute).
        A routine never dies quietly and never stays dead: a dependency that failed once (a Redis
        timeout in the wrong place) must not stop the service's work for good."""
        backoff = RESTART_MIN_S
        while True:
            started = time.monotonic()
            try:
                await routine()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping.is_set():
                    return
                self._down[name] = f"crashed ({type(exc).__name__}), restarting"
                self._m_restarts.labels(name).inc()
                log.exception("routine %s crashed, restarting in %.1fs", name, backoff)
            else:
                return  # it ended by itself: its work is done
            if time.monotonic() - started > RESTART_RESET_S:
                backoff = RESTART_MIN_S
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_MAX_S)
            self._down.pop(name, None)

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
        """The request's JSON body as `model`: 415 unless JSON, 413 past the size limits, 400 if invalid."""
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(
                text=_json_error(f"send application/json, not {request.content_type or 'nothing'}"),
                content_type="application/json",
            )
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(
                MAX_BODY,
                request.content_length,
                text=_json_error(f"request body over {MAX_BODY} bytes"),
                content_type="application/json",
            )
        try:
            # strict: a JSON value of another type ("5" for 5, "true" for true) is refused, as the
            # OpenAPI documents say, rather than coerced
            return model.model_validate_json(await request.read(), strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            if first["type"] == "string_too_long" and first["loc"] and first["loc"][-1] == "payload":
                raise web.HTTPRequestEntityTooLarge(
                    MAX_PAYLOAD,
                    len(str(first.get("input", ""))),
                    text=_json_error(f"payload over {MAX_PAYLOAD} characters at {first['loc']}"),
                    content_type="application/json",
                ) from None
            raise web.HTTPBadRequest(
                text=_json_error(f"invalid body: {first['msg']} at {first['loc']}"),
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

    async def __aenter__(self) -> Self:
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
    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        path = route.canonical if route is not None else request.path
        if (request.method, path) in self._control_paths:
            expected = f"Bearer {self.inv.token}"
            if request.headers.get("Authorization") != expected:
                return web.Response(
                    status=401,
                    text=_json_error("missing or wrong bearer token"),
                    content_type="application/json",
                    headers={"WWW-Authenticate": "Bearer"},  # RFC 6750: say which scheme to use
                )
        return await handler(request)

    async def _healthz(self, _: web.Request) -> web.Response:
        healthy, detail = self.health_detail()
        if self._down:
            healthy = False
            detail = {**detail, **{f"routine {name}": why for name, why in self._down.items()}}
        body = {"status": "ok" if healthy else "degraded", "service": self.name, "detail": detail}
        return web.json_response(body, status=200)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _json_error(message: str) -> str:
    import json

    return json.dumps({"error": message})


BaseModelT = TypeVar("BaseModelT", bound=BaseModel)
