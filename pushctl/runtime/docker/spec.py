"""What each container of a stack is, as pure data: name, image, command, files, labels, network.

Nothing here talks to Docker, so the mapping from inventory to containers is tested without an
engine. `DockerRuntime` turns a `ContainerSpec` into a container.

Every object the runtime creates carries the label `io.pushctl.stack=<inventory name>`; `down`
removes exactly the containers, networks and volumes with that label (and only those).

Networking (`PUSHCTL_DOCKER_NETWORK`):

    host    (default) every container shares the host's network namespace. The inventory's
            addresses are 127.0.0.1 ports and the platform hands them out as they are (the
            dispatcher's broker addresses, Kafka's advertised listener), so the same inventory,
            the same ports and the same pushctl commands work for both runtimes. It is also the
            only mode where nothing may listen beyond loopback: nothing is published, no NAT.
    bridge  a stack network of its own (a user-defined bridge, labelled) and one "pod"
            container on it that holds a network namespace every component joins, as the
            containers of a Kubernetes pod do: inside, 127.0.0.1 is the pod's loopback and the
            inventory works unchanged; the pod publishes every inventory port on the host's
            127.0.0.1 and forwards it to the pod's loopback. Components are isolated from the
            host's other listeners; it needs an engine that can publish ports (iptables or its
            userland proxy).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pushctl.contract.topology import Inventory
from pushctl.errors import UsageError
from pushctl.runtime import kafka, prometheus
from pushctl.runtime.components import Component, Role, redis_argv, toxiproxy_argv

LABEL_STACK = "io.pushctl.stack"
LABEL_COMPONENT = "io.pushctl.component"
LABEL_ROLE = "io.pushctl.role"
LABEL_CONFIG = "io.pushctl.config"
LABEL_INVENTORY = "io.pushctl.inventory"
LABEL_CONTENT = "io.pushctl.content-hash"

NETWORKS = ("host", "bridge")
NETWORK_ENV = "PUSHCTL_DOCKER_NETWORK"
CGROUP_PARENT_ENV = "PUSHCTL_DOCKER_CGROUP_PARENT"
POD = "pod"  # the component name of the bridge mode's network-namespace holder

DATA = PurePosixPath("/data")
INVENTORY_PATH = PurePosixPath("/etc/pushctl/topology.toml")
KAFKA_PROPERTIES = PurePosixPath("/etc/pushctl/server.properties")
TOXIPROXY_BIN = Path("/usr/local/bin/toxiproxy-server")
REDIS_BIN = Path("/usr/bin/redis-server")
PROMETHEUS_BIN = Path("/usr/local/bin/prometheus")
PROMETHEUS_CONFIG_DIR = PurePosixPath("/etc/pushctl/prometheus")
PYTHON = "/opt/pushctl/bin/python"

# the host's PUSHCTL_* settings the services read (limits, TTLs, external servers) reach the
# containers too; these describe the host side only
_HOST_ONLY_ENV = frozenset(
    {"PUSHCTL_INVENTORY", "PUSHCTL_RUN_DIR", "PUSHCTL_CACHE", "PUSHCTL_RUNTIME", "PUSHCTL_DATA_DIR"}
)


@dataclass(frozen=True)
class ContainerSpec:
    """One container: everything `docker create` needs, and the files to put in before start."""

    component: str
    name: str
    image_target: str  # toxiproxy | prometheus | redis | kafka | services
    command: tuple[str, ...]
    labels: Mapping[str, str]
    environment: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    volume: str | None = None  # named volume mounted at /data
    ports: tuple[int, ...] = ()

    def config_hash(self, image_id: str, network: str, cgroup_parent: str = "") -> str:
        """Changes whenever the container would have to be created again."""
        body = json.dumps(
            {
                "image": image_id,
                "network": network,
                "cgroup_parent": cgroup_parent,
                "command": self.command,
                "env": dict(self.environment),
                "files": dict(self.files),
                "volume": self.volume,
            },
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def network_mode() -> str:
    mode = os.environ.get(NETWORK_ENV, "host")
    if mode not in NETWORKS:
        raise UsageError(f"{NETWORK_ENV}={mode!r}: valid: {', '.join(NETWORKS)}")
    return mode


def container_name(stack: str, component: str) -> str:
    return f"pushctl-{stack}-{component}"


def network_name(stack: str) -> str:
    return f"pushctl-{stack}"


def stack_labels(stack: str) -> dict[str, str]:
    return {LABEL_STACK: stack}


def stack_filter(stack: str) -> dict[str, list[str]]:
    """The engine-side filter that finds everything of one stack."""
    return {"label": [f"{LABEL_STACK}={stack}"]}


def kafka_cluster_id(stack: str) -> str:
    """A stable cluster id per stack (a volume is formatted once, with the id of its stack)."""
    raw = hashlib.sha256(f"pushctl-kafka-{stack}".encode()).digest()[:16]
    cid = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return cid if not cid.startswith("-") else "A" + cid[1:]


def service_env(environ: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k.startswith("PUSHCTL_") and k not in _HOST_ONLY_ENV}
    env.update(PUSHCTL_DATA_DIR=str(DATA), PUSHCTL_INVENTORY=str(INVENTORY_PATH), PYTHONUNBUFFERED="1")
    return env


def container_spec(inv: Inventory, comp: Component, *, environ: Mapping[str, str] | None = None) -> ContainerSpec:
    """The container that runs `comp` of `inv`."""
    environ = os.environ if environ is None else environ
    labels = {
        **stack_labels(inv.name),
        LABEL_COMPONENT: comp.name,
        LABEL_ROLE: comp.role.value,
        LABEL_INVENTORY: inv.source,
    }
    volume: str | None = f"pushctl-{inv.name}-{comp.name}"
    env: dict[str, str] = {}
    files: dict[str, str] = {}
    if comp.role == Role.TOXIPROXY:
        target, argv, volume = "toxiproxy", toxiproxy_argv(TOXIPROXY_BIN, comp), None
        env = {"LOG_LEVEL": "warn"}
    elif comp.role == Role.REDIS:
        target, argv = "redis", redis_argv(REDIS_BIN, comp, Path(str(DATA)))
    elif comp.role == Role.PROMETHEUS:
        assert inv.prometheus is not None  # noqa: S101 - the component exists only when configured
        config_dir = Path(str(PROMETHEUS_CONFIG_DIR))
        target = "prometheus"
        argv = prometheus.prometheus_argv(PROMETHEUS_BIN, inv.prometheus, Path(str(DATA)), config_dir)
        files = {str(PROMETHEUS_CONFIG_DIR / n): t for n, t in prometheus.config_files(inv, inv.prometheus).items()}
    elif comp.role == Role.KAFKA:
        settings = kafka.kafka_settings(inv, comp.name, Path(str(DATA)))
        target, argv = "kafka", ["/usr/local/bin/kafka-start", *kafka.JVM_OPTIONS]
        env = {**kafka.ENV, "KAFKA_CLUSTER_ID": kafka_cluster_id(inv.name)}
        files = {str(KAFKA_PROPERTIES): kafka.render_properties(kafka.server_properties(settings))}
    else:
        target = "services"
        argv = [PYTHON, "-m", "pushstack.run", comp.name, "--inventory", str(INVENTORY_PATH)]
        env = service_env(environ)
        files = {str(INVENTORY_PATH): Path(inv.source).read_text() if inv.source else ""}
    return ContainerSpec(
        component=comp.name,
        name=container_name(inv.name, comp.name),
        image_target=target,
        command=tuple(argv),
        labels=labels,
        environment=env,
        files=files,
        volume=volume,
        ports=comp.ports,
    )


def pod_spec(inv: Inventory, ports: tuple[int, ...]) -> ContainerSpec:
    """Bridge mode: the container whose network namespace every component joins.

    It forwards each port from the pod's bridge address to the pod's loopback, where the
    components listen, so a port published on the host's 127.0.0.1 reaches them.
    """
    return ContainerSpec(
        component=POD,
        name=container_name(inv.name, POD),
        image_target="services",
        command=(PYTHON, "-m", "pushctl.runtime.docker.forward", *map(str, ports)),
        labels={**stack_labels(inv.name), LABEL_COMPONENT: POD, LABEL_ROLE: POD, LABEL_INVENTORY: inv.source},
        ports=ports,
    )
