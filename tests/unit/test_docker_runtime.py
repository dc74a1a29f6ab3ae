"""The docker runtime against a fake engine: labels, down, faults, CPU limits, container specs.

The fake keeps containers, networks and volumes with their labels and answers label filters as the
engine does (`key=value` must match exactly), so "down removes exactly what it created" is tested
without an engine; tests/integration/test_docker_runtime.py runs the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import re
import socket
import sys
import tarfile
from pathlib import Path
from typing import Any

import docker.errors  # type: ignore[import-untyped, unused-ignore]
import pytest
from typer.testing import CliRunner

from pushctl.cli.main import main
from pushctl.contract.topology import Inventory, load_inventory
from pushctl.errors import TargetUnreachable, UsageError
from pushctl.runtime import cpu as cpu_mod
from pushctl.runtime import health
from pushctl.runtime.components import components
from pushctl.runtime.docker import connect, forward, spec
from pushctl.runtime.docker.engine import parse_time, tar_files
from pushctl.runtime.docker.images import _content_hash
from pushctl.runtime.docker.runtime import DockerRuntime

_ids = itertools.count(1)


# ---- a fake engine ----------------------------------------------------------------------------------
def _matches(labels: dict[str, str], filters: dict[str, Any] | None) -> bool:
    for want in (filters or {}).get("label", []):
        key, eq, value = want.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


class FakeContainer:
    def __init__(self, engine: FakeEngine, name: str, labels: dict[str, str], status: str = "running") -> None:
        self.engine = engine
        self.name = name
        self.labels = labels
        self.status = status
        self.id = f"{next(_ids):064x}"
        self.short_id = self.id[:12]
        self.calls: list[str] = []
        self.host_config: dict[str, Any] = {}
        self.files: dict[str, str] = {}
        self.create_kwargs: dict[str, Any] = {}

    @property
    def attrs(self) -> dict[str, Any]:
        running = self.status in ("running", "paused")
        return {"State": {"Pid": 4242 if running else 0, "StartedAt": "2026-11-26T01:25:49.581082414Z"},
                "HostConfig": self.host_config}  # fmt: skip

    def _gone(self) -> None:
        if self not in self.engine.containers_:
            raise docker.errors.NotFound(f"no container {self.name}")

    def reload(self) -> None:
        self._gone()

    def start(self) -> None:
        self.calls.append("start")
        self.status = "running"

    def stop(self, timeout: int = 10) -> None:
        self.calls.append("stop")
        assert self.status != "paused", "a paused container must be resumed before it is stopped"
        self.status = "exited"

    def remove(self, force: bool = False) -> None:
        self.calls.append("remove")
        self._gone()
        self.engine.containers_.remove(self)

    def kill(self, signal: str = "SIGKILL") -> None:
        if self.status == "paused":
            raise docker.errors.APIError("Container is paused, unpause the container before stopping or killing")
        self.calls.append(f"kill {signal}")
        self.status = "exited"

    def pause(self) -> None:
        self.calls.append("pause")
        self.status = "paused"

    def unpause(self) -> None:
        self.calls.append("unpause")
        self.status = "running"

    def restart(self, timeout: int = 10) -> None:
        self.calls.append("restart")
        self.status = "running"

    def update(self, **kwargs: Any) -> None:
        self.calls.append("update")
        self.host_config.update({"CpuPeriod": kwargs.get("cpu_period"), "CpuQuota": kwargs.get("cpu_quota")})

    def put_archive(self, path: str, data: bytes) -> bool:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                extracted = tar.extractfile(member)
                assert extracted is not None
                self.files["/" + member.name] = extracted.read().decode()
        return True

    def logs(self, **kwargs: Any) -> Any:
        data = b"first line\nsecond line\npartial"
        return iter([data[:7], data[7:]]) if kwargs.get("stream") else data


class _Labelled:
    def __init__(self, engine: FakeEngine, kind: str, name: str, labels: dict[str, str]) -> None:
        self.engine, self.kind, self.name, self.labels = engine, kind, name, labels

    def remove(self, force: bool = False) -> None:
        getattr(self.engine, f"{self.kind}_").remove(self)


class FakeContainers:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[FakeContainer]:
        return [c for c in self.engine.containers_ if (all or c.status == "running") and _matches(c.labels, filters)]

    def get(self, name: str) -> FakeContainer:
        for c in self.engine.containers_:
            if c.name == name:
                return c
        raise docker.errors.NotFound(f"no container {name}")

    def create(self, image: str, **kwargs: Any) -> FakeContainer:
        assert not any(c.name == kwargs["name"] for c in self.engine.containers_), "name already in use"
        c = FakeContainer(self.engine, kwargs["name"], dict(kwargs["labels"]), status="created")
        c.create_kwargs = {"image": image, **kwargs}
        self.engine.containers_.append(c)
        return c


class FakeCollection:
    def __init__(self, engine: FakeEngine, kind: str) -> None:
        self.engine, self.kind = engine, kind

    def list(self, names: list[str] | None = None, filters: dict[str, Any] | None = None) -> list[_Labelled]:
        items: list[_Labelled] = getattr(self.engine, f"{self.kind}_")
        wanted = set(names or []) | set([filters["name"]] if filters and "name" in filters else [])
        return [i for i in items if _matches(i.labels, filters) and (not wanted or i.name in wanted)]

    def create(self, name: str, labels: dict[str, str] | None = None, **kwargs: Any) -> _Labelled:
        item = _Labelled(self.engine, self.kind, name, dict(labels or {}))
        getattr(self.engine, f"{self.kind}_").append(item)
        return item


class FakeImages:
    def get(self, name: str) -> Any:
        return type("Image", (), {"id": f"sha256:{abs(hash(name)):x}", "tags": [name]})()


class FakeEngine:
    """Just enough of `docker.DockerClient` for the runtime."""

    def __init__(self, driver: str = "cgroupfs") -> None:
        self.containers_: list[FakeContainer] = []
        self.networks_: list[_Labelled] = []
        self.volumes_: list[_Labelled] = []
        self.containers = FakeContainers(self)
        self.networks = FakeCollection(self, "networks")
        self.volumes = FakeCollection(self, "volumes")
        self.images = FakeImages()
        self.driver = driver

    def info(self) -> dict[str, str]:
        return {"CgroupDriver": self.driver}

    def add(self, stack: str | None, component: str, status: str = "running") -> FakeContainer:
        labels = {} if stack is None else {spec.LABEL_STACK: stack, spec.LABEL_COMPONENT: component}
        c = FakeContainer(self, spec.container_name(stack or "x", component), labels, status)
        self.containers_.append(c)
        return c


@pytest.fixture
def inv(monkeypatch: pytest.MonkeyPatch) -> Inventory:
    monkeypatch.delenv("PUSHCTL_INVENTORY", raising=False)
    return load_inventory()


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


def runtime(inv: Inventory, engine: FakeEngine, network: str = "host") -> DockerRuntime:
    return DockerRuntime(inv, log=lambda _msg: None, client=engine, network=network)  # type: ignore[arg-type, unused-ignore]


# ---- down: exactly what this stack created -------------------------------------------------------------
async def test_down_removes_only_this_stacks_containers_networks_and_volumes(
    inv: Inventory, engine: FakeEngine
) -> None:
    running = engine.add(inv.name, "redis-cache")
    paused = engine.add(inv.name, "kafka", status="paused")
    exited = engine.add(inv.name, "access", status="exited")
    pod = engine.add(inv.name, spec.POD)
    # a stack whose name starts with ours, an unlabelled container: neither is ours
    other = engine.add(f"{inv.name}-2", "redis-cache")
    stranger = engine.add(None, "web")
    for kind in ("networks", "volumes"):
        getattr(engine, kind).create(f"ours-{kind}", labels=spec.stack_labels(inv.name))
        getattr(engine, kind).create(f"theirs-{kind}", labels=spec.stack_labels(f"{inv.name}-2"))
        getattr(engine, kind).create(f"plain-{kind}")

    stopped = await runtime(inv, engine).down()

    assert sorted(stopped) == ["kafka", "redis-cache"]
    assert engine.containers_ == [other, stranger]
    assert [n.name for n in engine.networks_] == ["theirs-networks", "plain-networks"]
    assert [v.name for v in engine.volumes_] == ["theirs-volumes", "plain-volumes"]
    assert paused.calls == ["unpause", "stop", "remove"]  # a frozen process cannot act on SIGTERM
    assert running.calls == ["stop", "remove"]
    assert exited.calls == ["remove"]
    assert pod.calls == ["stop", "remove"]
    assert other.calls == [] and stranger.calls == []


async def test_down_of_a_stack_with_nothing_left_is_a_no_op(inv: Inventory, engine: FakeEngine) -> None:
    other = engine.add("someone-else", "redis-cache")
    assert await runtime(inv, engine).down() == []
    assert engine.containers_ == [other]


def test_the_stack_filter_is_an_exact_label_match() -> None:
    assert spec.stack_filter("reference") == {"label": ["io.pushctl.stack=reference"]}
    assert _matches({spec.LABEL_STACK: "reference"}, spec.stack_filter("reference"))
    assert not _matches({spec.LABEL_STACK: "reference-2"}, spec.stack_filter("reference"))
    assert not _matches({}, spec.stack_filter("reference"))


# ---- up: one labelled container per component, kept while its configuration holds -----------------------
def test_ensure_container_creates_a_labelled_container_with_its_files_then_keeps_it(
    inv: Inventory, engine: FakeEngine
) -> None:
    rt = runtime(inv, engine)
    kafka = next(c for c in rt.components if c.name == "kafka")
    tags = {t: f"pushctl/{t}:abc" for t in ("toxiproxy", "redis", "kafka", "services")}
    rt._ensure_container(kafka, tags)
    (created,) = engine.containers_
    assert created.status == "running"
    assert created.labels[spec.LABEL_STACK] == inv.name
    assert created.labels[spec.LABEL_COMPONENT] == "kafka"
    kw = created.create_kwargs
    assert kw["network_mode"] == "host" and kw["image"] == "pushctl/kafka:abc"
    assert kw["cgroup_parent"] == "/"  # each component weighs as one process does
    assert kw["volumes"] == {f"pushctl-{inv.name}-kafka": {"bind": "/data", "mode": "rw"}}
    assert [v.labels for v in engine.volumes_] == [spec.stack_labels(inv.name)]
    props = created.files[str(spec.KAFKA_PROPERTIES)]
    assert "log.dirs=/data/kraft-logs" in props
    assert "advertised.listeners=CLIENT://127.0.0.1:18092," in props  # through its Toxiproxy link

    rt._ensure_container(kafka, tags)  # the same configuration: the same container, untouched
    assert engine.containers_ == [created] and created.calls == ["start"]

    created.status = "exited"  # crashed: started again, not created again
    rt._ensure_container(kafka, tags)
    assert engine.containers_ == [created] and created.calls == ["start", "start"]

    rt._ensure_container(kafka, {**tags, "kafka": "pushctl/kafka:new"})  # a new image: a new container
    (recreated,) = engine.containers_
    assert recreated is not created and recreated.create_kwargs["image"] == "pushctl/kafka:new"


def test_ensure_container_refuses_a_container_of_that_name_from_elsewhere(inv: Inventory, engine: FakeEngine) -> None:
    rt = runtime(inv, engine)
    foreign = FakeContainer(engine, spec.container_name(inv.name, "redis-cache"), {})
    engine.containers_.append(foreign)
    redis = next(c for c in rt.components if c.name == "redis-cache")
    with pytest.raises(UsageError, match="not part of stack"):
        rt._ensure_container(redis, {"redis": "pushctl/redis:abc"})
    assert foreign.calls == []


@pytest.mark.parametrize(
    ("driver", "env", "expected"),
    [("cgroupfs", None, "/"), ("systemd", None, ""), ("cgroupfs", "", ""), ("systemd", "/mine", "/mine")],
)
def test_cgroup_parent_puts_each_container_at_the_top_unless_told(
    inv: Inventory, monkeypatch: pytest.MonkeyPatch, driver: str, env: str | None, expected: str
) -> None:
    if env is None:
        monkeypatch.delenv(spec.CGROUP_PARENT_ENV, raising=False)
    else:
        monkeypatch.setenv(spec.CGROUP_PARENT_ENV, env)
    assert runtime(inv, FakeEngine(driver)).cgroup_parent == expected


# ---- faults -----------------------------------------------------------------------------------------
async def test_crash_pause_resume_map_to_kill_pause_unpause(inv: Inventory, engine: FakeEngine) -> None:
    rt = runtime(inv, engine)
    redis = engine.add(inv.name, "redis-cache")
    assert "paused" in await rt.signal("redis-cache", "pause")
    assert redis.status == "paused"
    assert "resumed" in await rt.signal("redis-cache", "resume")
    assert "resumed" in await rt.signal("redis-cache", "resume")  # idempotent: the undo may run twice
    await rt.signal("redis-cache", "pause")
    assert "SIGKILL" in await rt.signal("redis-cache", "crash")  # the engine will not kill a paused one
    assert redis.calls == ["pause", "unpause", "pause", "unpause", "kill SIGKILL"]
    with pytest.raises(UsageError, match="not running"):
        await rt.signal("redis-cache", "crash")


async def test_signal_names_the_valid_components_and_actions(inv: Inventory, engine: FakeEngine) -> None:
    rt = runtime(inv, engine)
    with pytest.raises(UsageError, match="unknown component 'nope'; valid: tp-north"):
        await rt.signal("nope", "crash")
    engine.add(inv.name, "access")
    with pytest.raises(UsageError, match="unknown action 'explode'"):
        await rt.signal("access", "explode")


async def test_ensure_running_restarts_a_crashed_container_and_leaves_a_healthy_one(
    inv: Inventory, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def healthy(*_args: Any, **_kw: Any) -> tuple[bool, str]:
        return True, "ok"

    monkeypatch.setattr(health, "check", healthy)
    rt = runtime(inv, engine)
    access = engine.add(inv.name, "access", status="exited")
    assert "started access" in await rt.signal("access", "ensure-running")
    assert access.calls == ["start"]
    assert "already running" in await rt.signal("access", "ensure-running")
    assert "started access" in await rt.signal("access", "restart")
    assert access.calls == ["start", "restart"]


async def test_cpu_limit_is_a_cfs_quota_and_clearing_lifts_it(inv: Inventory, engine: FakeEngine) -> None:
    rt = runtime(inv, engine)
    logic = engine.add(inv.name, "logic-idc1")
    assert "0.2 CPU" in await cpu_mod.set_cpus(rt, "logic-idc1", 0.2)
    assert logic.host_config == {"CpuPeriod": 100_000, "CpuQuota": 20_000}
    await cpu_mod.set_cpus(rt, "logic-idc1", None)
    assert logic.host_config == {"CpuPeriod": 100_000, "CpuQuota": -1}
    with pytest.raises(UsageError, match="at most"):
        await cpu_mod.set_cpus(rt, "logic-idc1", 64.0)


def cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """`pushctl ARGS` through main(), the one error boundary users meet: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["pushctl", *args])
    with CliRunner().isolation() as (_out, err, _):
        try:
            main()
        except SystemExit as exc:
            return (exc.code if isinstance(exc.code, int) else 1), err.getvalue().decode()
        return 0, err.getvalue().decode()


def test_fault_cpu_on_the_process_runtime_without_cgroup_v2_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cpu_mod, "cgroup2_root", lambda: None)
    code, err = cli(monkeypatch, "fault", "cpu", "logic-idc1", "--cpus", "0.2")
    assert code == 2
    assert "not supported by the process runtime" in err.replace("\n", " ")


def test_fault_cpu_needs_cpus_or_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    code, err = cli(monkeypatch, "fault", "cpu", "logic-idc1")
    assert code == 2
    assert "--cpus N or --clear" in err


# ---- status and logs ---------------------------------------------------------------------------------
async def test_status_reports_pid_uptime_and_a_paused_container_as_unhealthy(
    inv: Inventory, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def healthy(*_args: Any, **_kw: Any) -> tuple[bool, str]:
        return True, "ok"

    async def no_links(*_args: Any, **_kw: Any) -> list[Any]:
        return []

    monkeypatch.setattr(health, "check", healthy)
    monkeypatch.setattr("pushctl.faults.links.link_statuses", no_links)
    for comp in components(inv):
        engine.add(inv.name, comp.name, status="paused" if comp.name == "bypass" else "running")
    st = await runtime(inv, engine).status()
    by_name = {c.name: c for c in st.components}
    assert st.runtime == "docker" and not st.healthy
    assert by_name["access"].healthy and by_name["access"].pid == 4242
    assert by_name["access"].uptime_s is not None and by_name["access"].uptime_s > 0
    assert not by_name["bypass"].healthy and by_name["bypass"].detail.startswith("paused")


def test_logs_come_from_the_container_line_by_line(inv: Inventory, engine: FakeEngine) -> None:
    engine.add(inv.name, "access")
    rt = runtime(inv, engine)
    assert list(rt.logs("access", follow=False, lines=10)) == ["first line\n", "second line\n", "partial\n"]
    with pytest.raises(UsageError, match="no container"):
        list(rt.logs("bypass", follow=False, lines=10))


# ---- container specs (pure) ------------------------------------------------------------------------------
def test_every_component_gets_one_uniquely_named_labelled_container(inv: Inventory) -> None:
    specs = [spec.container_spec(inv, c, environ={}) for c in components(inv)]
    assert len({s.name for s in specs}) == len(specs) == len(components(inv))
    for s in specs:
        assert s.labels[spec.LABEL_STACK] == inv.name and s.labels[spec.LABEL_COMPONENT] == s.component
    by_name = {s.component: s for s in specs}
    assert by_name["tp-north"].command[-6:] == (
        "-host",
        "127.0.0.1",
        "-port",
        "17474",
        "-runtime-metrics",
        "-proxy-metrics",
    )
    assert by_name["tp-north"].volume is None
    assert "--appendonly" in by_name["redis-store"].command and "/data" in by_name["redis-store"].command
    access = by_name["access"]
    assert access.image_target == "services"
    assert access.command[-3:] == ("access", "--inventory", "/etc/pushctl/topology.toml")
    assert access.files["/etc/pushctl/topology.toml"] == Path(inv.source).read_text()
    prom = by_name["prometheus"]  # its own image, its config and rules put in beside each other
    assert prom.image_target == "prometheus" and prom.volume is not None
    assert "--config.file=/etc/pushctl/prometheus/prometheus.yml" in prom.command
    assert "--web.listen-address=127.0.0.1:17090" in prom.command and "--storage.tsdb.path=/data/tsdb" in prom.command
    names = ("prometheus.yml", "recording.yml", "alerts.yml")
    assert set(prom.files) == {f"/etc/pushctl/prometheus/{n}" for n in names}


def test_services_get_the_hosts_pushctl_settings_but_not_its_paths(inv: Inventory) -> None:
    access = next(c for c in components(inv) if c.name == "access")
    environ = {"PUSHCTL_INLINE_FALLBACK": "0", "PUSHCTL_RUN_DIR": "/var/run-dir", "HOME": "/root"}
    env = spec.container_spec(inv, access, environ=environ).environment
    assert env["PUSHCTL_INLINE_FALLBACK"] == "0"
    assert env["PUSHCTL_DATA_DIR"] == "/data" and env["PUSHCTL_INVENTORY"] == "/etc/pushctl/topology.toml"
    assert "PUSHCTL_RUN_DIR" not in env and "HOME" not in env


def test_config_hash_follows_what_a_container_is_created_with(inv: Inventory) -> None:
    access = next(c for c in components(inv) if c.name == "access")
    a = spec.container_spec(inv, access, environ={})
    b = spec.container_spec(inv, access, environ={"PUSHCTL_PAYLOAD_TTL_S": "5"})
    assert a.config_hash("img1", "host") == a.config_hash("img1", "host")
    assert len({a.config_hash("img1", "host"), a.config_hash("img2", "host"), a.config_hash("img1", "bridge"),
                b.config_hash("img1", "host"), a.config_hash("img1", "host", "/")}) == 5  # fmt: skip


def test_kafka_cluster_id_is_stable_per_stack_and_valid() -> None:
    assert spec.kafka_cluster_id("reference") == spec.kafka_cluster_id("reference")
    assert spec.kafka_cluster_id("reference") != spec.kafka_cluster_id("other")
    for name in ("reference", "a", "dockertest"):
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", spec.kafka_cluster_id(name))


def test_pod_publishes_every_port_it_forwards(inv: Inventory) -> None:
    ports = tuple(sorted({p for _, p in inv.iter_ports()}))
    pod = spec.pod_spec(inv, ports)
    assert pod.command[:3] == ("/opt/pushctl/bin/python", "-m", "pushctl.runtime.docker.forward")
    assert pod.command[3:] == tuple(map(str, ports)) and pod.labels[spec.LABEL_STACK] == inv.name


def test_network_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(spec.NETWORK_ENV, raising=False)
    assert spec.network_mode() == "host"
    monkeypatch.setenv(spec.NETWORK_ENV, "bridge")
    assert spec.network_mode() == "bridge"
    monkeypatch.setenv(spec.NETWORK_ENV, "overlay")
    with pytest.raises(UsageError, match="valid: host, bridge"):
        spec.network_mode()


# ---- helpers --------------------------------------------------------------------------------------------
def test_content_hash_changes_with_any_input_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("one")
    b.write_text("two")
    first = _content_hash("common", "kafka", [("x/a", a), ("x/b", b)])
    assert first == _content_hash("common", "kafka", [("x/a", a), ("x/b", b)])
    b.write_text("two!")
    assert first != _content_hash("common", "kafka", [("x/a", a), ("x/b", b)])
    assert first != _content_hash("common", "redis", [("x/a", a), ("x/b", b)])


def test_tar_and_time_helpers() -> None:
    with tarfile.open(fileobj=io.BytesIO(tar_files({"/etc/pushctl/a.txt": "hello"}))) as tar:
        (member,) = tar.getmembers()
        assert member.name == "etc/pushctl/a.txt" and member.mode == 0o644
    assert parse_time("1970-01-01T00:00:01.500000000Z") == pytest.approx(1.5)
    assert parse_time("0001-01-01T00:00:00Z") is None and parse_time(None) is None


async def test_forwarder_carries_bytes_and_half_closes_to_the_loopback_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's half-close reaches us
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(forward, "pod_addresses", lambda: ["127.0.0.2"])  # loopback is all of 127/8
    task = asyncio.create_task(forward.serve([port]))
    try:
        for _ in range(100):
            with contextlib.closing(socket.socket()) as probe:
                if probe.connect_ex(("127.0.0.2", port)) == 0:
                    break
            await asyncio.sleep(0.02)
        reader, writer = await asyncio.open_connection("127.0.0.2", port)
        writer.write(b"push frame")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"PUSH FRAME"
        writer.close()
        await writer.wait_closed()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server.close()
        await server.wait_closed()


def test_connect_without_an_engine_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'nothing.sock'}")
    with pytest.raises(TargetUnreachable, match="no Docker engine answers") as info:
        connect(timeout=2)
    assert info.value.hint is not None and "engine.sh" in info.value.hint


async def test_process_runtime_cpu_limit_writes_cpu_max_for_the_whole_process_group(
    inv: Inventory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pushctl.runtime.process import PidRecord, ProcessRuntime

    # a cgroup v2 hierarchy as plain files (the kernel would create a new group's files itself)
    (tmp_path / "cgroup.subtree_control").write_text("")
    (tmp_path / "pushctl" / f"{inv.name}-bypass").mkdir(parents=True)
    (tmp_path / "pushctl" / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(cpu_mod, "cgroup2_root", lambda: tmp_path)
    monkeypatch.setattr(cpu_mod, "_group_members", lambda pgid: [pgid, pgid + 1])
    rt = ProcessRuntime(inv, log=lambda _msg: None)
    monkeypatch.setattr(rt, "alive", lambda name: PidRecord(4242, 1, 0.0, []) if name == "bypass" else None)

    assert "0.25 CPU" in await cpu_mod.set_cpus(rt, "bypass", 0.25)
    group = tmp_path / "pushctl" / f"{inv.name}-bypass"
    assert (group / "cpu.max").read_text() == "25000 100000\n"
    assert (group / "cgroup.procs").read_text() == "4243\n"  # one pid per write: the last one stays
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu\n"
    assert (tmp_path / "pushctl" / "cgroup.subtree_control").read_text() == "+cpu\n"
    assert "lifted" in await cpu_mod.set_cpus(rt, "bypass", None)
    assert (group / "cpu.max").read_text() == "max 100000\n"
    with pytest.raises(UsageError, match="not running"):
        await cpu_mod.set_cpus(rt, "access", 0.5)
