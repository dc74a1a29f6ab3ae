"""The container runtime: one Docker container per component, driven through the Docker SDK.

    pushctl stack up --runtime docker        # builds the images once (cached by content), starts
    pushctl stack status --runtime docker    # the same health checks as the process runtime
    pushctl fail redis --mode crash --runtime docker   # docker kill; rolled back by a start
    pushctl fault cpu logic-idc1 --cpus 0.2 --runtime docker
    pushctl stack down --runtime docker      # removes every container, network and volume it made

Same inventory, same ports, same start order and health checks as `ProcessRuntime`; see
`pushctl.runtime.docker.spec` for what each container is and how it is networked. Faults map to
the engine: crash = `kill` (SIGKILL), pause/resume = `pause`/`unpause` (the cgroup freezer, which
a process cannot notice, unlike SIGSTOP), restart = `restart`, lost capacity = a CFS CPU quota
(`container.update`). Needs an engine that answers: `stack/install/docker/engine.sh` starts one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

# the Docker SDK ships no type hints (types-docker has them; either way works)
import docker  # type: ignore[import-untyped, unused-ignore]
import docker.errors  # type: ignore[import-untyped, unused-ignore]
from docker.models.containers import Container  # type: ignore[import-untyped, unused-ignore]
from docker.types import LogConfig  # type: ignore[import-untyped, unused-ignore]

from pushctl.contract.topology import Inventory
from pushctl.errors import UsageError
from pushctl.faults import links as fault_links
from pushctl.runtime import health
from pushctl.runtime.base import ComponentStatus, Log, Runtime, StackStatus, ensure_kafka_topics
from pushctl.runtime.components import Component, Role, components
from pushctl.runtime.docker import spec
from pushctl.runtime.docker.engine import connect, engine_call, parse_time, refreshed_status, tar_files
from pushctl.runtime.docker.images import ensure_images
from pushctl.runtime.paths import cache_dir

STOP_GRACE_S = 4  # as the process runtime: Kafka needs ~2.3 s for a clean shutdown
CPU_PERIOD_US = 100_000
_LOGS = LogConfig(type="json-file", config={"max-size": "10m", "max-file": "2"})


class DockerRuntime(Runtime):
    name = "docker"

    def __init__(
        self, inv: Inventory, *, log: Log, client: docker.DockerClient | None = None, network: str | None = None
    ) -> None:
        super().__init__(inv, log=log)
        self.components = components(inv)
        self.network = network or spec.network_mode()
        self._client = client
        self._created: list[str] = []
        self._cgroup_parent: str | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect()
        return self._client

    @property
    def cgroup_parent(self) -> str:
        """Where containers' cgroups go: each at the top of the hierarchy (with the cgroupfs driver).

        Under the engine's default parent (`/docker`) every container of the stack shares one CPU
        weight with the parent, against each process of the host on its own: on a busy host the
        whole stack got a fraction of one process's CPU (services took 2.4x longer to start than
        as processes). A cgroup of its own at the top gives each component the weight a process
        has, as in the process runtime. $PUSHCTL_DOCKER_CGROUP_PARENT overrides ("" = engine default).
        """
        if self._cgroup_parent is None:
            explicit = os.environ.get(spec.CGROUP_PARENT_ENV)
            if explicit is not None:
                self._cgroup_parent = explicit
            else:
                driver = self.client.info().get("CgroupDriver", "")
                self._cgroup_parent = "/" if driver == "cgroupfs" else ""
        return self._cgroup_parent

    # ---- lookups ---------------------------------------------------------------------------------
    def _ours(self) -> dict[str, Container]:
        """This stack's containers by component name (found by label, not by name)."""
        found = self.client.containers.list(all=True, filters=spec.stack_filter(self.inv.name))
        return {c.labels.get(spec.LABEL_COMPONENT, c.name): c for c in found}

    def _container(self, component: str) -> Container | None:
        return self._ours().get(component)

    def _component(self, name: str) -> Component:
        comp = next((c for c in self.components if c.name == name), None)
        if comp is None:
            raise UsageError(f"unknown component {name!r}; valid: {', '.join(c.name for c in self.components)}")
        return comp

    # ---- up --------------------------------------------------------------------------------------
    async def up(self, *, timeout: float = 120.0) -> StackStatus:
        tags = await engine_call(ensure_images, self.client, cache_dir(), self.log)
        self._check_ports()
        deadline = time.monotonic() + timeout
        try:
            if self.network == "bridge":
                await engine_call(self._ensure_pod, tags)
            proxies = [c for c in self.components if c.role == Role.TOXIPROXY]
            storage = [c for c in self.components if c.role in (Role.REDIS, Role.KAFKA)]
            # storage needs no link to boot: its containers start with the proxies' (Kafka's JVM
            # formats its volume meanwhile); its health, read through the links, is waited for after
            await self._start_stage(proxies, tags, deadline, also_start=storage)
            await fault_links.sync_links(self.inv)
            await self._start_stage(storage, tags, deadline)
            await ensure_kafka_topics(self.inv, self.components)
            await self._start_stage([c for c in self.components if c.role == Role.SERVICE], tags, deadline)
            await self._start_stage([c for c in self.components if c.role == Role.PROMETHEUS], tags, deadline)
        except BaseException:
            if self._created:
                self.log(f"removing the containers this run created: {', '.join(self._created)}")
                ours = self._ours()
                await self._remove([ours[n] for n in reversed(self._created) if n in ours])
            raise
        return await self.status()

    def _check_ports(self) -> None:
        """A port held by something other than this stack is reported by number and owner."""
        ours = self._ours()
        pod = ours.get(spec.POD)
        if pod is not None and pod.status == "running":
            return  # bridge mode: the engine holds every port for the pod, which is ours
        health.check_ports_free(
            self.components,
            lambda comp: (c := ours.get(comp.name)) is not None and c.status in ("running", "paused"),
        )

    async def _start_stage(
        self, stage: list[Component], tags: dict[str, str], deadline: float, *, also_start: Sequence[Component] = ()
    ) -> None:
        start = [c for c in [*stage, *also_start] if c.managed]
        await asyncio.gather(*(engine_call(self._ensure_container, c, tags) for c in start))
        await asyncio.gather(*(self._wait_healthy(c, deadline) for c in stage))

    def _ensure_container(self, comp: Component, tags: dict[str, str]) -> None:
        """Create and start `comp`'s container, or keep the one running with the same configuration."""
        sp = spec.container_spec(self.inv, comp)
        image = self.client.images.get(tags[sp.image_target])
        config = sp.config_hash(image.id, self.network, self.cgroup_parent)
        existing = self._by_name(sp.name)
        if existing is not None:
            if existing.labels.get(spec.LABEL_STACK) != self.inv.name:
                raise UsageError(f"a container named {sp.name} exists and is not part of stack {self.inv.name!r}")
            if existing.labels.get(spec.LABEL_CONFIG) == config:
                if existing.status == "paused":
                    existing.unpause()
                elif existing.status != "running":
                    existing.start()
                return
            self.log(f"{comp.name}: its configuration changed; creating its container again")
            existing.remove(force=True)
        self._create(sp, tags[sp.image_target], config).start()
        self._created.append(comp.name)

    def _create(self, sp: spec.ContainerSpec, image: str, config: str) -> Container:
        volumes = {}
        if sp.volume is not None:
            if not self.client.volumes.list(filters={"name": sp.volume}):
                self.client.volumes.create(name=sp.volume, labels=spec.stack_labels(self.inv.name))
            volumes[sp.volume] = {"bind": str(spec.DATA), "mode": "rw"}
        net = "host" if self.network == "host" else f"container:{spec.container_name(self.inv.name, spec.POD)}"
        container: Container = self.client.containers.create(
            image,
            command=list(sp.command),
            name=sp.name,
            labels={**sp.labels, spec.LABEL_CONFIG: config},
            environment=dict(sp.environment),
            network_mode=net,
            volumes=volumes,
            log_config=_LOGS,
            stop_signal="SIGTERM",
            cgroup_parent=self.cgroup_parent or None,
        )
        if sp.files:
            container.put_archive("/", tar_files(sp.files))
        return container

    def _ensure_pod(self, tags: dict[str, str]) -> None:
        """Bridge mode: the stack's network and the container that holds the shared namespace."""
        net = spec.network_name(self.inv.name)
        if not self.client.networks.list(names=[net], filters=spec.stack_filter(self.inv.name)):
            self.client.networks.create(net, driver="bridge", labels=spec.stack_labels(self.inv.name))
        ports = tuple(sorted({p for _, p in self.inv.iter_ports()}))
        sp = spec.pod_spec(self.inv, ports)
        image = self.client.images.get(tags["services"])
        config = sp.config_hash(image.id, self.network, self.cgroup_parent)
        existing = self._by_name(sp.name)
        if existing is not None and existing.labels.get(spec.LABEL_CONFIG) == config:
            if existing.status != "running":
                existing.start()
            return
        if existing is not None:
            existing.remove(force=True)
        container = self.client.containers.create(
            tags["services"],
            command=list(sp.command),
            name=sp.name,
            labels={**sp.labels, spec.LABEL_CONFIG: config},
            network=net,
            ports={f"{p}/tcp": ("127.0.0.1", p) for p in ports},
            log_config=_LOGS,
        )
        container.start()
        self._created.append(spec.POD)

    def _by_name(self, name: str) -> Container | None:
        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None

    async def _wait_healthy(self, comp: Component, deadline: float) -> None:
        name = spec.container_name(self.inv.name, comp.name)
        container = await engine_call(self._by_name, name) if comp.managed else None

        async def exited() -> bool:
            status = await engine_call(refreshed_status, container) if container is not None else None
            return comp.managed and status in (None, "exited", "dead")

        await health.wait_healthy(self.inv, comp, deadline, exited=exited, log_tail=lambda: self._log_tail(comp.name))

    async def _log_tail(self, component: str, lines: int = 20) -> str:
        def tail() -> str:
            container = self._container(component)
            if container is None:
                return f"(no container for {component})"
            text = container.logs(tail=lines).decode(errors="replace").rstrip()
            return f"--- last {lines} lines of `docker logs {container.name}` ---\n{text}"

        return await engine_call(tail)

    # ---- down ------------------------------------------------------------------------------------
    async def down(self, *, purge: bool = False) -> list[str]:
        """Remove every container, network and volume labelled with this stack (`purge` is implied)."""
        ours = await engine_call(self._ours)
        running = [name for name, c in ours.items() if c.status in ("running", "paused", "restarting")]
        # components first, the pod (whose namespace they share) last
        await self._remove([c for n, c in ours.items() if n != spec.POD])
        await self._remove([c for n, c in ours.items() if n == spec.POD])
        await engine_call(self._remove_networks_and_volumes)
        if any(not tp.managed for tp in self.inv.toxiproxy.values()):
            await fault_links.remove_links(self.inv)
        return [n for n in running if n != spec.POD]

    async def _remove(self, containers: list[Container]) -> None:
        def remove(container: Container) -> None:
            with contextlib.suppress(docker.errors.NotFound):
                container.reload()
                if container.status == "paused":
                    container.unpause()  # a frozen process cannot act on SIGTERM
                if container.status in ("running", "restarting", "paused"):
                    container.stop(timeout=STOP_GRACE_S)
                container.remove(force=True)

        await asyncio.gather(*(engine_call(remove, c) for c in containers))

    def _remove_networks_and_volumes(self) -> None:
        flt = spec.stack_filter(self.inv.name)
        for net in self.client.networks.list(filters=flt):
            with contextlib.suppress(docker.errors.NotFound):
                net.remove()
        for vol in self.client.volumes.list(filters=flt):
            with contextlib.suppress(docker.errors.NotFound):
                vol.remove(force=True)

    # ---- status, logs ------------------------------------------------------------------------------
    async def status(self) -> StackStatus:
        ours = await engine_call(self._ours)

        async def one(comp: Component) -> ComponentStatus:
            container = ours.get(comp.name)
            state: dict[str, Any] = container.attrs.get("State", {}) if container is not None else {}
            running = not comp.managed or (container is not None and container.status in ("running", "paused"))
            ok, detail = await health.check(self.inv, comp) if running else (False, "not running")
            if container is not None and container.status == "paused":
                ok, detail = False, "paused"
            started = parse_time(state.get("StartedAt")) if running and container is not None else None
            return ComponentStatus.of(
                comp,
                running=running,
                healthy=ok,
                detail=detail if container is None else f"{detail} ({container.short_id})",
                pid=int(state["Pid"]) if state.get("Pid") else None,
                uptime_s=round(time.time() - started, 1) if started else None,
            )

        comps = await asyncio.gather(*(one(c) for c in self.components))
        links = await fault_links.link_statuses(self.inv)
        where = f"{self.network} network"
        return StackStatus(self.inv.name, self.name, where, list(comps), links)

    def logs(self, component: str, *, follow: bool, lines: int) -> Iterator[str]:
        self._component(component)
        container = self._container(component)
        if container is None:
            raise UsageError(f"{component} has no container (is the stack up with --runtime docker?)")
        pending = b""
        for chunk in container.logs(stream=True, follow=follow, tail=lines if lines > 0 else "all"):
            pending += chunk
            *done, pending = pending.split(b"\n")
            for line in done:
                yield line.decode(errors="replace") + "\n"
        if pending:
            yield pending.decode(errors="replace") + "\n"

    # ---- faults ----------------------------------------------------------------------------------
    async def signal(self, component: str, action: str) -> str:
        comp = self._component(component)
        if action in ("restart", "ensure-running"):
            return await self._restart(comp, only_if_down=action == "ensure-running")
        if action not in ("crash", "pause", "resume"):
            raise UsageError(f"unknown action {action!r}; valid: crash, pause, resume, restart, ensure-running")
        container = await engine_call(self._container, component)
        if container is None or container.status not in ("running", "paused"):
            raise UsageError(f"{component} is not running")
        if action == "crash":
            if container.status == "paused":
                await engine_call(container.unpause)  # the engine refuses to kill a paused container
            await engine_call(container.kill, "SIGKILL")
            return f"killed {component} (container {container.short_id}, SIGKILL)"
        if action == "pause":
            if container.status != "paused":
                await engine_call(container.pause)
            return f"paused {component} (container {container.short_id}, cgroup freezer)"
        if container.status == "paused":
            await engine_call(container.unpause)
        return f"resumed {component} (container {container.short_id})"

    async def _restart(self, comp: Component, *, only_if_down: bool) -> str:
        container = await engine_call(self._container, comp.name)
        if container is not None and container.status == "paused":
            await engine_call(container.unpause)
            await engine_call(container.reload)
        if container is not None and container.status == "running" and only_if_down:
            ok, _ = await health.check(self.inv, comp)
            if ok:
                return f"{comp.name} already running (container {container.short_id})"
        if container is None:
            tags = await engine_call(ensure_images, self.client, cache_dir(), self.log)
            await engine_call(self._ensure_container, comp, tags)
        elif container.status == "running":
            await engine_call(container.restart, timeout=STOP_GRACE_S)
        else:
            await engine_call(container.start)
        await self._wait_healthy(comp, time.monotonic() + health.HEALTH_TIMEOUT_S[comp.role])
        if comp.role == Role.TOXIPROXY:  # a restarted Toxiproxy has forgotten its proxies
            await fault_links.sync_links(self.inv)
        new = await engine_call(self._container, comp.name)
        return f"started {comp.name} (container {new.short_id if new else '?'})"

    async def set_cpus(self, component: str, cpus: float | None) -> str:
        """Cap `component` at `cpus` CPUs (a CFS quota); None lifts the cap."""
        self._component(component)
        container = await engine_call(self._container, component)
        if container is None:
            raise UsageError(f"{component} has no container (is the stack up with --runtime docker?)")
        if cpus is None:
            # -1 is "no quota"; 0 would leave the last quota in place
            await engine_call(container.update, cpu_period=CPU_PERIOD_US, cpu_quota=-1)
            return f"{component}: CPU limit lifted"
        quota = max(1000, round(cpus * CPU_PERIOD_US))  # the kernel's smallest quota is 1 ms
        await engine_call(container.update, cpu_period=CPU_PERIOD_US, cpu_quota=quota)
        return f"{component}: limited to {quota / CPU_PERIOD_US:g} CPU (quota {quota} us per {CPU_PERIOD_US} us)"
