"""The components of a stack, in start order, as a runtime-neutral description.

A runtime (local processes, docker containers) turns each `Component` into something running;
health checks are the same for both.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pushctl.contract.topology import PUSH_SERVICE_KINDS, Inventory, ServiceKind


class Role(StrEnum):
    TOXIPROXY = "toxiproxy"
    REDIS = "redis"
    KAFKA = "kafka"
    SERVICE = "service"
    PROMETHEUS = "prometheus"


# start order: proxies first (every link goes through them), storage, then push services by dependency
_SERVICE_ORDER = [
    ServiceKind.DISKKV,
    ServiceKind.SCHEDULER,
    ServiceKind.DISPATCHER,
    ServiceKind.BROKER,
    ServiceKind.LOGIC,
    ServiceKind.ACCESS,
    ServiceKind.KVWRITER,
    ServiceKind.BYPASS,
]


@dataclass(frozen=True)
class Component:
    """One thing the runtime runs: a Toxiproxy server, a Redis, Kafka, a push service or Prometheus."""

    name: str
    role: Role
    kind: str
    host: str
    ports: tuple[int, ...]
    stage: int  # components of one stage start together; stages start in order
    managed: bool = True
    persistence: str = "none"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.ports[0]


def components(inv: Inventory, *, prometheus: bool = True) -> list[Component]:
    """Every component of the inventory, in start order (Prometheus last, when asked for and configured)."""
    out: list[Component] = []
    for name, tp in inv.toxiproxy.items():
        out.append(Component(name, Role.TOXIPROXY, "toxiproxy", tp.host, (tp.port,), 0, tp.managed))
    for name, svc in inv.services.items():
        if svc.kind == ServiceKind.REDIS:
            out.append(
                Component(name, Role.REDIS, "redis", svc.host, svc.listen_ports, 1, svc.managed, svc.persistence)
            )
        elif svc.kind == ServiceKind.KAFKA:
            out.append(Component(name, Role.KAFKA, "kafka", svc.host, svc.listen_ports, 1, svc.managed))
    for stage, kind in enumerate(_SERVICE_ORDER, start=2):
        for name, svc in inv.services.items():
            if svc.kind == kind and kind in PUSH_SERVICE_KINDS:
                out.append(Component(name, Role.SERVICE, kind.value, svc.host, svc.listen_ports, stage, svc.managed))
    if prometheus and inv.prometheus is not None:
        prom = inv.prometheus
        stage = len(_SERVICE_ORDER) + 2
        out.append(Component("prometheus", Role.PROMETHEUS, "prometheus", prom.host, (prom.port,), stage, prom.managed))
    return out


def redis_argv(binary: Path, comp: Component, data_dir: Path) -> list[str]:
    """redis-server on 127.0.0.1: `cache` keeps nothing on disk, `store` appends every write (AOF)."""
    argv = [
        str(binary),
        "--bind",
        comp.host,
        "--port",
        str(comp.port),
        "--protected-mode",
        "yes",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--daemonize",
        "no",
        "--maxclients",
        "4000",
        # an idle client connection closes after 30 s, as production Redis is usually set: our
        # services' redis-py pools reuse the newest connection first, so what a burst opened ages out
        # instead of staying open (through the internal Toxiproxy) for ever
        "--timeout",
        "30",
        "--loglevel",
        "notice",
    ]
    if comp.persistence == "aof":
        argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
    else:
        argv += ["--appendonly", "no"]
    return argv


def toxiproxy_argv(binary: Path, comp: Component) -> list[str]:
    """`-runtime-metrics`: the Go runtime's gauges (goroutines, heap in use) on the API's /metrics, which
    tell a leak from the allocator keeping freed memory after a burst (RSS alone cannot).
    `-proxy-metrics`: bytes per link and direction, so Prometheus sees a link go quiet under a fault."""
    return [str(binary), "-host", comp.host, "-port", str(comp.port), "-runtime-metrics", "-proxy-metrics"]


def service_argv(comp: Component, inventory_path: str) -> list[str]:
    return [sys.executable, "-m", "pushstack.run", comp.name, "--inventory", inventory_path]
