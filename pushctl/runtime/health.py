"""Is a component healthy? The same checks for every runtime, each bounded by a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable

import httpx
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from pushctl._http import tls
from pushctl.contract.topology import Inventory
from pushctl.errors import ComponentFailed, UsageError
from pushctl.runtime import kafka
from pushctl.runtime.components import Component, Role

# how long a component may take to become healthy after it starts (Kafka's JVM is the slowest)
HEALTH_TIMEOUT_S = {
    Role.TOXIPROXY: 15.0,
    Role.REDIS: 20.0,
    Role.KAFKA: 90.0,
    Role.SERVICE: 30.0,
    Role.PROMETHEUS: 30.0,
}


async def check(inv: Inventory, comp: Component, *, timeout: float = 2.0) -> tuple[bool, str]:
    """(healthy, detail). Never raises; never waits longer than about `timeout`."""
    try:
        async with asyncio.timeout(timeout + 1.0):
            return await _check(inv, comp, timeout)
    except TimeoutError:
        return False, "health check timed out"
    except Exception as exc:  # noqa: BLE001 - a health check reports, it does not crash the caller
        return False, f"{type(exc).__name__}: {exc}"


async def _check(inv: Inventory, comp: Component, timeout: float) -> tuple[bool, str]:
    if comp.role == Role.TOXIPROXY:
        return await _http_ok(f"http://{comp.host}:{comp.port}/version", timeout)
    if comp.role == Role.PROMETHEUS:
        return await _http_ok(f"http://{comp.host}:{comp.port}/-/ready", timeout)
    if comp.role == Role.REDIS:
        client = aioredis.Redis(
            host=comp.host,
            port=comp.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            return (bool(await client.ping()), "PONG")
        finally:
            await client.aclose()
    if comp.role == Role.KAFKA:
        svc = inv.service(comp.name)
        link = svc.advertise
        host, port = inv.link_addr(link) if link else (comp.host, comp.port)
        ready = await kafka.kafka_ready(f"{host}:{port}", timeout)
        return ready, "metadata answered" if ready else "no metadata answer"
    ok, detail = await _http_ok(f"http://{comp.host}:{comp.port}/healthz", timeout)
    return ok, detail


async def _http_ok(url: str, timeout: float) -> tuple[bool, str]:
    async with httpx.AsyncClient(verify=tls(), timeout=timeout, headers={"User-Agent": "pushctl"}) as client:
        try:
            resp = await client.get(url)
        except httpx.HTTPError as exc:
            return False, f"{url}: {type(exc).__name__}"
    if resp.status_code != 200:
        return False, f"{url}: HTTP {resp.status_code}"
    try:
        status = (
            resp.json().get("status", "ok")
            if resp.headers.get("content-type", "").startswith("application/json")
            else "ok"
        )
    except ValueError:
        status = "ok"
    return status == "ok", str(status)


async def wait_healthy(
    inv: Inventory,
    comp: Component,
    deadline: float,
    *,
    exited: Callable[[], Awaitable[bool]],
    log_tail: Callable[[], Awaitable[str]],
) -> None:
    """Check `comp` until it is healthy, by `deadline` (monotonic) and within its role's time.

    ComponentFailed, with the tail of its log, when `exited()` says it stopped or time runs out:
    each runtime knows how to tell that its component stopped and where its log is.
    """
    limit = min(deadline, time.monotonic() + HEALTH_TIMEOUT_S[comp.role])
    detail = "not checked"
    while time.monotonic() < limit:
        if await exited():
            raise ComponentFailed(f"{comp.name} exited during start-up\n{await log_tail()}")
        ok, detail = await check(inv, comp)
        if ok:
            return
        await asyncio.sleep(0.2)
    raise ComponentFailed(
        f"{comp.name} not healthy after {HEALTH_TIMEOUT_S[comp.role]:.0f}s: {detail}\n{await log_tail()}"
    )


def check_ports_free(components: Iterable[Component], is_ours: Callable[[Component], bool]) -> None:
    """Every port a managed component will listen on is free, unless the component is already ours.

    A port held by anything else is reported by number and owner (the same rule for every runtime).
    """
    for comp in components:
        if not comp.managed or is_ours(comp):
            continue
        for port in comp.ports:
            if port_in_use(comp.host, port):
                owner = port_owner(port) or "unknown process"
                raise UsageError(
                    f"port {port} ({comp.name}) is already in use by {owner}",
                    hint="stop it, or point --inventory at a topology with other ports",
                )


def port_in_use(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def port_owner(port: int) -> str | None:
    """'name (pid N)' of the process listening on `port`, when `ss` can tell."""
    try:
        out = subprocess.run(
            ["ss", "-H", "-ltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    marker = 'users:(("'
    if marker not in out:
        return None
    rest = out.split(marker, 1)[1]
    name, _, rest = rest.partition('"')
    pid = rest.split("pid=", 1)[1].split(",", 1)[0] if "pid=" in rest else "?"
    return f"{name} (pid {pid})"
