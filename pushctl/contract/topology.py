"""The inventory: regions, IDCs, services, Toxiproxy servers and the links between them.

Loaded from TOML into frozen, validated models; an invalid file raises `InventoryError` naming
the file, the key and what is wrong.

    inv = load_inventory("stack/topology.toml")
    inv.link("device-south").listen_addr   # ('127.0.0.1', 18203)
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pushctl.contract.driverspec import DriverSpec
from pushctl.contract.errors import InventoryError
from pushctl.contract.resources import resource

EPHEMERAL_PORTS = range(32768, 61000)
DEFAULT_INVENTORY = resource("stack/topology.toml")
INVENTORY_ENV = "PUSHCTL_INVENTORY"

Port = Annotated[int, Field(ge=1, le=65535)]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$", max_length=48)]


class LinkKind(StrEnum):
    DEVICE = "device"
    VPC = "vpc"
    CROSS_IDC = "cross-idc"
    STORAGE = "storage"
    KAFKA = "kafka"
    INTERNAL = "internal"
    PUBLIC = "public"


class ServiceKind(StrEnum):
    REDIS = "redis"
    KAFKA = "kafka"
    DISKKV = "diskkv"
    SCHEDULER = "scheduler"
    DISPATCHER = "dispatcher"
    BROKER = "broker"
    LOGIC = "logic"
    ACCESS = "access"
    KVWRITER = "kvwriter"
    BYPASS = "bypass"


PUSH_SERVICE_KINDS = frozenset(
    {
        ServiceKind.DISKKV,
        ServiceKind.SCHEDULER,
        ServiceKind.DISPATCHER,
        ServiceKind.BROKER,
        ServiceKind.LOGIC,
        ServiceKind.ACCESS,
        ServiceKind.KVWRITER,
        ServiceKind.BYPASS,
    }
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Region(_Model):
    toxiproxy: Name
    nearest: tuple[Name, ...]
    weight: float = Field(default=1.0, gt=0)


class Idc(_Model):
    pass


class ToxiproxyServer(_Model):
    port: Port
    host: str = "127.0.0.1"
    managed: bool = True

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class PrometheusServer(_Model):
    """The stack's own Prometheus: scrapes every service and Toxiproxy server of the inventory."""

    port: Port
    host: str = "127.0.0.1"
    managed: bool = True
    scrape_interval: str = Field(default="1s", pattern=r"^[0-9]+(ms|s|m)$")
    retention: str = Field(default="2h", pattern=r"^[0-9]+(m|h|d)$")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class Service(_Model):
    kind: ServiceKind
    port: Port
    host: str = "127.0.0.1"
    managed: bool = True
    region: Name | None = None
    idc: Name | None = None
    internal_port: Port | None = None
    controller_port: Port | None = None
    persistence: Literal["none", "aof"] = "none"
    advertise: Name | None = None
    connect: dict[str, Name] = Field(default_factory=dict)

    def port_named(self, name: str) -> int | None:
        return {"main": self.port, "internal": self.internal_port, "controller": self.controller_port}.get(name)

    @property
    def listen_ports(self) -> tuple[int, ...]:
        return tuple(p for p in (self.port, self.internal_port, self.controller_port) if p is not None)


class Link(_Model):
    name: Name
    kind: LinkKind
    toxiproxy: Name
    listen: Port
    upstream: str
    region: Name | None = None
    idc: Name | None = None
    # a device link only the experiment cohort's probe devices use (a second proxy to the same broker):
    # a fault on it reaches that cohort and spares the control cohort (experiments/README.md, Cohorts)
    cohort: Literal["experiment"] | None = None
    # filled by Inventory validation: the address the upstream resolves to
    upstream_addr: str = ""


class Inventory(_Model):
    name: Name
    reference: bool = False
    token: str = Field(min_length=8)
    host: str = "127.0.0.1"
    regions: dict[Name, Region]
    idcs: dict[Name, Idc]
    toxiproxy: dict[Name, ToxiproxyServer]
    services: dict[Name, Service]
    links: tuple[Link, ...]
    driver: DriverSpec = Field(default_factory=DriverSpec)  # who makes the changes (docs/drivers.md)
    prometheus: PrometheusServer | None = None  # None: the stack runs no Prometheus of its own
    source: str = ""

    @model_validator(mode="after")
    def _check_references(self) -> Inventory:
        _check_inventory(self)
        return self

    # ---- lookups --------------------------------------------------------------------------
    def link(self, name: str) -> Link:
        for link in self.links:
            if link.name == name:
                return link
        raise InventoryError(f"unknown link {name!r}; valid links: {', '.join(sorted(self.link_names))}")

    @property
    def link_names(self) -> list[str]:
        return [link.name for link in self.links]

    def service(self, name: str) -> Service:
        if name not in self.services:
            raise InventoryError(f"unknown service {name!r}; valid services: {', '.join(sorted(self.services))}")
        return self.services[name]

    def services_of(self, kind: ServiceKind) -> dict[str, Service]:
        return {n: s for n, s in self.services.items() if s.kind == kind}

    def links_on(self, toxiproxy: str) -> list[Link]:
        return [link for link in self.links if link.toxiproxy == toxiproxy]

    def link_addr(self, name: str) -> tuple[str, int]:
        """Where a client dials to cross link `name`: the proxy's listen address."""
        link = self.link(name)
        return (self.toxiproxy[link.toxiproxy].host, link.listen)

    def link_url(self, name: str, scheme: str = "http") -> str:
        host, port = self.link_addr(name)
        return f"{scheme}://{host}:{port}"

    def broker(self, region: str) -> tuple[str, Service]:
        for name, svc in self.services_of(ServiceKind.BROKER).items():
            if svc.region == region:
                return name, svc
        raise InventoryError(f"no broker for region {region!r}")

    def device_link(self, region: str) -> Link:
        """The region's device link every device uses (the control cohort's, when cohorts are declared)."""
        return self._link_where(LinkKind.DEVICE, region=region)

    def cohort_link(self, region: str) -> Link:
        """The region's device link of the experiment cohort; InventoryError when it declares none."""
        for link in self.links:
            if link.kind == LinkKind.DEVICE and link.region == region and link.cohort == "experiment":
                return link
        raise InventoryError(
            f"region {region!r} has no experiment-cohort device link "
            '(a [[links]] entry of kind "device" with cohort = "experiment")'
        )

    @property
    def has_cohorts(self) -> bool:
        """Every region has an experiment-cohort device link: the probe can split its devices."""
        return all(
            any(lk.kind == LinkKind.DEVICE and lk.region == r and lk.cohort == "experiment" for lk in self.links)
            for r in self.regions
        )

    def vpc_link(self, region: str) -> Link:
        return self._link_where(LinkKind.VPC, region=region)

    def logic_link(self, idc: str) -> Link:
        for link in self.links:
            upstream = link.upstream.split(":")[0]
            svc = self.services.get(upstream)
            if svc is not None and svc.kind == ServiceKind.LOGIC and svc.idc == idc:
                return link
        raise InventoryError(f"no link reaches the logic gateway of {idc!r}")

    def _link_where(self, kind: LinkKind, *, region: str) -> Link:
        for link in self.links:
            if link.kind == kind and link.region == region and link.cohort is None:
                return link
        raise InventoryError(f"no {kind.value} link for region {region!r}")

    def iter_ports(self) -> Iterator[tuple[str, int]]:
        """Every port this inventory listens on (external servers excluded), with who owns it."""
        for name, tp in self.toxiproxy.items():
            if tp.managed:
                yield f"toxiproxy {name}", tp.port
        for name, svc in self.services.items():
            if svc.managed:
                for port in svc.listen_ports:
                    yield f"service {name}", port
        for link in self.links:
            yield f"link {link.name}", link.listen
        if self.prometheus is not None and self.prometheus.managed:
            yield "prometheus", self.prometheus.port


def _check_inventory(inv: Inventory) -> None:
    """Cross-reference checks pydantic cannot express field by field."""
    for rname, region in inv.regions.items():
        if region.toxiproxy not in inv.toxiproxy:
            raise ValueError(f"regions.{rname}.toxiproxy: unknown toxiproxy server {region.toxiproxy!r}")
        for other in region.nearest:
            if other not in inv.regions:
                raise ValueError(f"regions.{rname}.nearest: unknown region {other!r}")
        if region.nearest and region.nearest[0] != rname:
            raise ValueError(f"regions.{rname}.nearest: must start with the region itself")
    for sname, svc in inv.services.items():
        if svc.region is not None and svc.region not in inv.regions:
            raise ValueError(f"services.{sname}.region: unknown region {svc.region!r}")
        if svc.idc is not None and svc.idc not in inv.idcs:
            raise ValueError(f"services.{sname}.idc: unknown idc {svc.idc!r}")
        if svc.kind == ServiceKind.BROKER and (svc.region is None or svc.internal_port is None):
            raise ValueError(f"services.{sname}: a broker needs region and internal_port")
        if svc.kind == ServiceKind.LOGIC and svc.idc is None:
            raise ValueError(f"services.{sname}.idc: a logic gateway needs its idc")
        if svc.kind == ServiceKind.KAFKA and svc.controller_port is None:
            raise ValueError(f"services.{sname}.controller_port: kafka needs a controller port")
    link_names = set()
    for i, link in enumerate(inv.links):
        where = f"links[{i}] ({link.name})"
        if link.name in link_names:
            raise ValueError(f"{where}.name: duplicate link name {link.name!r}")
        link_names.add(link.name)
        if link.toxiproxy not in inv.toxiproxy:
            raise ValueError(
                f"{where}.toxiproxy: unknown toxiproxy server {link.toxiproxy!r}; "
                f"valid: {', '.join(sorted(inv.toxiproxy))}"
            )
        if link.region is not None and link.region not in inv.regions:
            raise ValueError(f"{where}.region: unknown region {link.region!r}")
        if link.idc is not None and link.idc not in inv.idcs:
            raise ValueError(f"{where}.idc: unknown idc {link.idc!r}")
        if link.kind in (LinkKind.DEVICE, LinkKind.VPC) and link.region is None:
            raise ValueError(f"{where}.region: a {link.kind.value} link needs its region")
        if link.cohort is not None and link.kind != LinkKind.DEVICE:
            raise ValueError(f"{where}.cohort: only a device link belongs to a cohort")
        if link.cohort is not None and any(
            lk.kind == LinkKind.DEVICE and lk.region == link.region and lk.cohort == link.cohort for lk in inv.links[:i]
        ):
            raise ValueError(f"{where}.cohort: region {link.region!r} already has an {link.cohort}-cohort device link")
        object.__setattr__(link, "upstream_addr", _resolve_upstream(inv, link.upstream, where))
    for sname, svc in inv.services.items():
        for role, lname in svc.connect.items():
            if lname not in link_names:
                raise ValueError(f"services.{sname}.connect.{role}: unknown link {lname!r}")
        if svc.advertise is not None and svc.advertise not in link_names:
            raise ValueError(f"services.{sname}.advertise: unknown link {svc.advertise!r}")
    for rname in inv.regions:
        if not any(lk.kind == LinkKind.DEVICE and lk.region == rname and lk.cohort is None for lk in inv.links):
            raise ValueError(f"regions.{rname}: no device link for this region")
    seen: dict[int, str] = {}
    for owner, port in inv.iter_ports():
        if port in EPHEMERAL_PORTS:
            raise ValueError(
                f"{owner}: port {port} is inside the kernel's ephemeral range 32768-60999; pick a port outside it"
            )
        if port in seen and seen[port] != owner:
            raise ValueError(f"{owner}: port {port} is already used by {seen[port]}")
        seen[port] = owner


def _resolve_upstream(inv: Inventory, upstream: str, where: str) -> str:
    name, _, portname = upstream.partition(":")
    if name in inv.services:
        svc = inv.services[name]
        port = svc.port_named(portname or "main")
        if port is None:
            raise ValueError(f"{where}.upstream: service {name!r} has no {portname!r} port")
        return f"{svc.host}:{port}"
    if portname.isdigit():
        return upstream
    raise ValueError(
        f"{where}.upstream: {upstream!r} is neither a service (valid: {', '.join(sorted(inv.services))}) nor host:port"
    )


def load_inventory(path: str | Path | None = None) -> Inventory:
    """Load and validate an inventory; `None` means $PUSHCTL_INVENTORY or the reference stack."""
    resolved = Path(path or os.environ.get(INVENTORY_ENV) or DEFAULT_INVENTORY)
    try:
        raw = tomllib.loads(resolved.read_text())
    except FileNotFoundError:
        raise InventoryError(f"{resolved}: no such inventory file") from None
    except OSError as exc:
        raise InventoryError(f"{resolved}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{resolved}: not valid TOML: {exc}") from None
    raw["source"] = str(resolved.resolve())
    _apply_external_overrides(raw)
    try:
        return Inventory.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        where = f"{loc}: " if loc else ""
        raise InventoryError(f"{resolved}: {where}{msg}") from None


def _split_hostport(value: str, var: str) -> tuple[str, int]:
    rest = value.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise InventoryError(f"{var}={value!r}: expected host:port")
    return host, int(port)


def _apply_external_overrides(raw: dict[str, object]) -> None:
    """PUSHCTL_TOXIPROXY_URL / PUSHCTL_REDIS_URL / PUSHCTL_KAFKA_BOOTSTRAP: use external servers."""
    overrides = {
        "PUSHCTL_TOXIPROXY_URL": ("toxiproxy", None),
        "PUSHCTL_REDIS_URL": ("services", ServiceKind.REDIS.value),
        "PUSHCTL_KAFKA_BOOTSTRAP": ("services", ServiceKind.KAFKA.value),
    }
    for var, (section, kind) in overrides.items():
        value = os.environ.get(var)
        if not value:
            continue
        host, port = _split_hostport(value, var)
        table = raw.get(section)
        if not isinstance(table, dict):
            continue
        for entry in table.values():
            if isinstance(entry, dict) and (kind is None or entry.get("kind") == kind):
                entry.update(host=host, port=port, managed=False)
