"""The runtime interface: what `pushctl stack` needs from local processes or containers,
and the steps of bringing a stack up that do not depend on where it runs."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pushctl.contract.topology import Inventory
from pushctl.runtime import topics
from pushctl.runtime.components import Component, Role

Log = Callable[[str], None]


@dataclass
class ComponentStatus:
    name: str
    role: str
    kind: str
    ports: tuple[int, ...]
    running: bool
    healthy: bool
    detail: str = ""
    pid: int | None = None
    uptime_s: float | None = None
    managed: bool = True

    @classmethod
    def of(
        cls,
        comp: Component,
        *,
        running: bool,
        healthy: bool,
        detail: str,
        pid: int | None = None,
        uptime_s: float | None = None,
    ) -> ComponentStatus:
        """What a runtime found of `comp`; name, role, kind, ports and `managed` come from the component."""
        return cls(
            name=comp.name,
            role=comp.role.value,
            kind=comp.kind,
            ports=comp.ports,
            running=running,
            healthy=healthy,
            detail=detail,
            pid=pid,
            uptime_s=uptime_s,
            managed=comp.managed,
        )


@dataclass
class LinkStatus:
    name: str
    kind: str
    toxiproxy: str
    listen: str
    upstream: str
    present: bool
    enabled: bool
    toxics: list[str] = field(default_factory=list)


@dataclass
class StackStatus:
    stack: str
    runtime: str
    run_dir: str
    components: list[ComponentStatus]
    links: list[LinkStatus]

    @property
    def healthy(self) -> bool:
        return all(c.healthy for c in self.components) and all(lk.present and lk.enabled for lk in self.links)

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "runtime": self.runtime,
            "run_dir": self.run_dir,
            "healthy": self.healthy,
            "components": [asdict(c) for c in self.components],
            "links": [asdict(lk) for lk in self.links],
        }


class Runtime(abc.ABC):
    """Runs the components of one inventory. Implementations: `process`, `docker`."""

    name: str = "abstract"

    def __init__(self, inv: Inventory, *, log: Log) -> None:
        self.inv = inv
        self.log = log

    @abc.abstractmethod
    async def up(self, *, timeout: float) -> StackStatus:
        """Start every component in dependency order (idempotent), create every link, wait for health."""

    @abc.abstractmethod
    async def down(self, *, purge: bool = False) -> list[str]:
        """Stop everything this stack started; return what was stopped."""

    @abc.abstractmethod
    async def status(self) -> StackStatus:
        """Live state of every component and link."""

    @abc.abstractmethod
    def logs(self, component: str, *, follow: bool, lines: int) -> Iterator[str]:
        """Lines of a component's log."""

    @abc.abstractmethod
    async def signal(self, component: str, action: str) -> str:
        """`crash` (SIGKILL), `pause` (SIGSTOP), `resume` (SIGCONT) or `restart` a component."""


async def ensure_kafka_topics(inv: Inventory, comps: Sequence[Component]) -> None:
    """Create the stack's topics once its Kafka is healthy (a stack without Kafka has none)."""
    kafka = next((c for c in comps if c.role == Role.KAFKA), None)
    if kafka is not None:
        await topics.ensure_topics(inv, kafka.name)
