"""The Kafka node's configuration and install, without java, Maven or a network."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import stat
from pathlib import Path

import pytest

from pushctl.contract.topology import DEFAULT_INVENTORY, EPHEMERAL_PORTS, Inventory, load_inventory
from pushctl.errors import ComponentFailed, InventoryError, MissingToolchain
from pushctl.runtime import kafka
from pushctl.runtime.kafka import (
    ENV,
    JVM_OPTIONS,
    KAFKA_VERSION,
    LOG4J_VERSION,
    install_kafka,
    kafka_installed,
    kafka_ready,
    kafka_settings,
    new_cluster_id,
    prepare_kafka,
    render_log4j2_properties,
    server_properties,
)

JAVA = "/opt/fake-jdk/bin/java"


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def inventory_with(tmp_path: Path, old: str, new: str) -> Inventory:
    text = DEFAULT_INVENTORY.read_text()
    assert old in text
    path = tmp_path / "topology.toml"
    path.write_text(text.replace(old, new, 1))
    return load_inventory(path)


def listeners(value: str) -> dict[str, tuple[str, int]]:
    out = {}
    for item in value.split(","):
        name, _, addr = item.partition("://")
        host, _, port = addr.rpartition(":")
        out[name] = (host, int(port))
    return out


@pytest.fixture
def inv() -> Inventory:
    return load_inventory(DEFAULT_INVENTORY)


@pytest.fixture
def fake_java(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """No java runs: find_java is fixed and every subprocess is recorded; a format writes meta.properties."""
    calls: list[list[str]] = []

    def run(argv: list[str], **_: object) -> None:
        calls.append(argv)
        if "kafka.tools.StorageTool" in argv:
            config = parse_properties(Path(argv[argv.index("-c") + 1]).read_text())
            log_dir = Path(config["log.dirs"])
            log_dir.mkdir(parents=True)
            (log_dir / "meta.properties").write_text(f"cluster.id={argv[argv.index('-t') + 1]}\n")

    monkeypatch.setattr(kafka, "find_java", lambda: JAVA)
    monkeypatch.setattr(kafka, "_run", run)
    return calls


@pytest.fixture
def libs(tmp_path: Path) -> Path:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").touch()
    return libs


# ---- properties -----------------------------------------------------------------------------------
def test_client_listener_advertises_the_toxiproxy_link(inv: Inventory, tmp_path: Path) -> None:
    props = server_properties(kafka_settings(inv, "kafka", tmp_path))

    advertised = listeners(props["advertised.listeners"])
    assert advertised["CLIENT"] == inv.link_addr("kafka") == ("127.0.0.1", 18092)
    assert listeners(props["listeners"])["CLIENT"] == ("127.0.0.1", 17092)
    assert "CONTROLLER" not in advertised


def test_every_listener_binds_loopback_outside_the_ephemeral_range(inv: Inventory, tmp_path: Path) -> None:
    props = server_properties(kafka_settings(inv, "kafka", tmp_path))

    bound = listeners(props["listeners"])
    assert set(bound) == {"CLIENT", "INTERNAL", "CONTROLLER"}
    assert {host for host, _ in bound.values()} == {"127.0.0.1"}
    assert not [port for _, port in bound.values() if port in EPHEMERAL_PORTS]
    assert props["controller.quorum.voters"] == "1@127.0.0.1:17093"
    assert bound["CONTROLLER"] == ("127.0.0.1", 17093)


def test_broker_traffic_uses_an_internal_listener_off_the_proxy(inv: Inventory, tmp_path: Path) -> None:
    props = server_properties(kafka_settings(inv, "kafka", tmp_path))

    assert props["inter.broker.listener.name"] == "INTERNAL"
    internal = listeners(props["advertised.listeners"])["INTERNAL"]
    assert internal == listeners(props["listeners"])["INTERNAL"] == ("127.0.0.1", 17094)


def test_single_node_settings(inv: Inventory, tmp_path: Path) -> None:
    props = server_properties(kafka_settings(inv, "kafka", tmp_path))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "default.replication.factor",
        "offsets.topic.num.partitions",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert Path(props["log.dirs"]).is_relative_to(tmp_path)


def test_memory_is_bounded(inv: Inventory, tmp_path: Path) -> None:
    props = server_properties(kafka_settings(inv, "kafka", tmp_path))

    assert props["log.cleaner.dedupe.buffer.size"] == "2097152"
    heap = {opt[:4]: opt[4:] for opt in JVM_OPTIONS if opt.startswith(("-Xms", "-Xmx"))}
    assert heap["-Xms"] == heap["-Xmx"] == "128m"  # fixed: RSS is known up front and stays flat
    assert "-XX:+AlwaysPreTouch" in JVM_OPTIONS
    for flag in ("-XX:MaxMetaspaceSize=", "-XX:MaxDirectMemorySize=", "-XX:ReservedCodeCacheSize="):
        assert any(opt.startswith(flag) for opt in JVM_OPTIONS), flag
    assert "-XX:+ExitOnOutOfMemoryError" in JVM_OPTIONS
    assert ENV["MALLOC_ARENA_MAX"] == "2"


def test_explicit_internal_port_wins(tmp_path: Path) -> None:
    inv = inventory_with(tmp_path, "internal_port = 17094 ", "internal_port = 17095 ")

    props = server_properties(kafka_settings(inv, "kafka", tmp_path))

    assert listeners(props["listeners"])["INTERNAL"] == ("127.0.0.1", 17095)


def test_derived_internal_port_that_clashes_is_rejected(tmp_path: Path) -> None:
    inv = inventory_with(tmp_path, "controller_port = 17093\ninternal_port = 17094 ", "controller_port = 17091\n")

    with pytest.raises(InventoryError, match=r"controller_port \+ 1 = 17092.*internal_port"):
        kafka_settings(inv, "kafka", tmp_path)


def test_kafka_without_advertised_link_is_rejected(tmp_path: Path) -> None:
    inv = inventory_with(tmp_path, 'advertise = "kafka"', "")

    with pytest.raises(InventoryError, match=r"services\.kafka\.advertise"):
        kafka_settings(inv, "kafka", tmp_path)


def test_advertised_link_must_lead_to_the_client_listener(tmp_path: Path) -> None:
    inv = inventory_with(tmp_path, 'advertise = "kafka"', 'advertise = "cache"')

    with pytest.raises(InventoryError, match=r"not to the client listener 127\.0\.0\.1:17092"):
        kafka_settings(inv, "kafka", tmp_path)


def test_non_kafka_service_is_rejected(inv: Inventory, tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="is a redis service"):
        kafka_settings(inv, "redis-cache", tmp_path)


def test_log4j2_logs_to_a_file_and_warns_on_console(tmp_path: Path) -> None:
    text = render_log4j2_properties(tmp_path / "kafka.log")

    props = {k.strip(): v.strip() for k, v in parse_properties(text).items()}
    assert props["appender.file.fileName"] == str(tmp_path / "kafka.log")
    assert props["appender.console.filter.threshold.level"] == "warn"
    assert not re.search(r"@[A-Z_]+@", text)


def test_pom_pins_kafka_and_the_slf4j_binding() -> None:
    pom = kafka._render_resource(
        "pom.xml.in",
        KAFKA_VERSION=KAFKA_VERSION,
        LOG4J_VERSION=LOG4J_VERSION,
        SLF4J_BINDING="log4j-slf4j-impl",
    )

    assert f"<version>{KAFKA_VERSION}</version>" in pom
    assert "<artifactId>log4j-slf4j-impl</artifactId>" in pom
    assert not re.search(r"@[A-Z_]+@", pom)


# ---- cluster id and prepare -----------------------------------------------------------------------
def test_cluster_id_is_16_url_safe_bytes_never_a_flag() -> None:
    for _ in range(300):
        cid = new_cluster_id()
        assert len(cid) == 22
        assert not cid.startswith("-")
        assert re.fullmatch(r"[A-Za-z0-9_-]+", cid)
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_prepare_writes_config_and_formats_once(
    inv: Inventory, tmp_path: Path, libs: Path, fake_java: list[list[str]]
) -> None:
    data = tmp_path / "data"

    argv, env = prepare_kafka(inv, "kafka", data, libs)
    again, _ = prepare_kafka(inv, "kafka", data, libs)

    formats = [call for call in fake_java if "kafka.tools.StorageTool" in call]
    assert len(formats) == 1
    cid = (data / "cluster.id").read_text().strip()
    assert formats[0][formats[0].index("-t") + 1] == cid
    assert "--ignore-formatted" in formats[0]
    props = parse_properties((data / "server.properties").read_text())
    assert listeners(props["advertised.listeners"])["CLIENT"] == ("127.0.0.1", 18092)
    assert (data / "log4j2.properties").is_file()
    assert argv == again
    assert argv[0] == JAVA
    assert argv[-2:] == ["kafka.Kafka", str(data / "server.properties")]
    assert argv[argv.index("-cp") + 1] == f"{libs}/*"
    assert f"-Dlog4j2.configurationFile={data / 'log4j2.properties'}" in argv
    assert env == dict(ENV)


def test_prepare_keeps_the_cluster_id_of_an_earlier_run(
    inv: Inventory, tmp_path: Path, libs: Path, fake_java: list[list[str]]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "cluster.id").write_text("MkU3OEVBNTcwNTJENDM2Qg\n")

    prepare_kafka(inv, "kafka", data, libs)

    assert fake_java[0][fake_java[0].index("-t") + 1] == "MkU3OEVBNTcwNTJENDM2Qg"


def test_prepare_without_install_fails(inv: Inventory, tmp_path: Path, fake_java: list[list[str]]) -> None:
    with pytest.raises(ComponentFailed, match="not installed"):
        prepare_kafka(inv, "kafka", tmp_path / "data", tmp_path / "nothing")


# ---- install with a fake mvn ----------------------------------------------------------------------
def fake_mvn(bin_dir: Path, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    mvn = bin_dir / "mvn"
    mvn.write_text("#!/bin/sh\n" + body)
    mvn.chmod(mvn.stat().st_mode | stat.S_IXUSR)


COPY_JARS = f"""
for a in "$@"; do case "$a" in -DoutputDirectory=*) out="${{a#-DoutputDirectory=}}";; esac; done
mkdir -p "$out"
for j in kafka_2.13-{KAFKA_VERSION} slf4j-api-1.7.36 \\
         log4j-core-{LOG4J_VERSION} log4j-slf4j-impl-{LOG4J_VERSION}; do
  : > "$out/$j.jar"
done
"""


def test_install_resolves_into_the_cache_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mvn(tmp_path / "bin", COPY_JARS + 'echo run >> "$0.calls"\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.defpath}")  # the fake mvn shadows any real one
    monkeypatch.setattr(kafka, "find_java", lambda: JAVA)
    cache = tmp_path / "cache"
    messages: list[str] = []

    libs = install_kafka(cache, messages.append)
    again = install_kafka(cache, messages.append)

    assert libs == again == cache / f"kafka-{KAFKA_VERSION}" / "libs"
    assert kafka_installed(cache)
    assert (tmp_path / "bin" / "mvn.calls").read_text() == "run\n"
    assert [p.name for p in cache.iterdir()] == [f"kafka-{KAFKA_VERSION}"]  # no staging left over
    assert messages


def test_failed_mvn_reports_its_last_lines_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mvn(
        tmp_path / "bin",
        'for i in $(seq 1 40); do echo "line $i"; done\necho "[ERROR] no network" >&2\nexit 1\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.defpath}")  # the fake mvn shadows any real one
    monkeypatch.setattr(kafka, "find_java", lambda: JAVA)
    cache = tmp_path / "cache"

    with pytest.raises(ComponentFailed) as caught:
        install_kafka(cache, lambda _: None)

    assert "no network" in str(caught.value)
    assert "line 40" in str(caught.value)
    assert "line 1\n" not in str(caught.value)
    assert not kafka_installed(cache)
    assert list(cache.iterdir()) == []


def test_wrong_slf4j_binding_fails_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mvn(tmp_path / "bin", COPY_JARS.replace("slf4j-api-1.7.36", "slf4j-api-2.0.17"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.defpath}")  # the fake mvn shadows any real one
    monkeypatch.setattr(kafka, "find_java", lambda: JAVA)

    with pytest.raises(ComponentFailed, match="log4j-slf4j2-impl"):
        install_kafka(tmp_path / "cache", lambda _: None)

    assert not kafka_installed(tmp_path / "cache")


def test_interrupted_install_is_not_taken_as_complete(tmp_path: Path) -> None:
    libs = tmp_path / f"kafka-{KAFKA_VERSION}" / "libs"
    libs.mkdir(parents=True)
    (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").touch()

    assert not kafka_installed(tmp_path)


def test_missing_mvn_names_the_tool_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(kafka, "find_java", lambda: JAVA)

    with pytest.raises(MissingToolchain, match=r"^mvn not found: .*apt-get install maven") as caught:
        install_kafka(tmp_path / "cache", lambda _: None)

    assert caught.value.exit_code == 2


def test_missing_java_names_the_tool_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    kafka.find_java.cache_clear()
    try:
        with pytest.raises(MissingToolchain, match=r"^java not found: install OpenJDK 17\+"):
            install_kafka(tmp_path / "cache", lambda _: None)
    finally:
        kafka.find_java.cache_clear()


# ---- readiness never hangs ------------------------------------------------------------------------
async def test_ready_is_false_when_nothing_listens() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    loop = asyncio.get_running_loop()
    started = loop.time()

    assert not await kafka_ready(f"127.0.0.1:{port}", timeout=1.0)
    assert loop.time() - started < 2.0


async def test_ready_is_false_against_a_black_hole() -> None:
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept, read nothing, answer nothing

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        assert not await kafka_ready(f"127.0.0.1:{port}", timeout=1.5)
        assert loop.time() - started < 2.5
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def test_install_removes_the_staging_of_a_killed_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mvn(tmp_path / "bin", COPY_JARS)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.defpath}")
    monkeypatch.setattr(kafka, "find_java", lambda: JAVA)
    cache = tmp_path / "cache"
    stale = cache / f".kafka-{KAFKA_VERSION}.killed"
    (stale / "libs").mkdir(parents=True)
    os.utime(stale, (0, 0))

    install_kafka(cache, lambda _: None)

    assert [p.name for p in cache.iterdir()] == [f"kafka-{KAFKA_VERSION}"]
