"""Apache Kafka as one KRaft node (broker and controller in one JVM), fetched from Maven Central.

No tarball and no shell scripts: Maven copies the runtime jars of `org.apache.kafka:kafka_2.13`
into the cache, and the broker runs in the foreground on the machine's own java.

    libs = install_kafka(cache, log=print)                     # once; idempotent
    argv, env = prepare_kafka(inv, "kafka", data_dir, libs)    # before every start
    ...start argv with env in the foreground...
    await kafka_ready("127.0.0.1:18092", timeout=60)

Listeners, each bound to the service's host (127.0.0.1 in the reference stack):

    CLIENT      port               advertised as the listen address of the Toxiproxy link named by
                                   `advertise`: clients reconnect to what metadata advertises, so
                                   every client, whatever it bootstraps from, goes through the proxy
    INTERNAL    internal_port      inter-broker traffic (the transaction coordinator sends markers to
                                   its own broker over it); advertised as itself, so the broker's own
                                   traffic never depends on the proxy. When the inventory sets no
                                   `internal_port` for the service it is `controller_port + 1`
                                   (17094 in the reference stack), checked against every port the
                                   inventory uses and the kernel's ephemeral range.
    CONTROLLER  controller_port    the KRaft quorum: a static one-voter quorum, never advertised to
                                   clients, never proxied

Memory: the JVM flags below plus a 2 MiB log-cleaner dedupe buffer (the default allocates 128 MiB
up front), small thread pools and one partition for every internal topic keep the broker near
170 MB RSS after 30 s with light traffic and after a 20 MB burst (a 256 MB heap committed up front,
`-Xms256m`, measured about 230 MB); `MALLOC_ARENA_MAX=2` stops glibc from giving each thread its
own malloc arena. The heap is capped at 256 MB, so the worst case stays well under 512 MB.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

# aiokafka ships neither type hints nor a py.typed marker
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped, unused-ignore]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]

from pushctl.contract.resources import resource
from pushctl.contract.topology import EPHEMERAL_PORTS, Inventory, ServiceKind
from pushctl.errors import ComponentFailed, InventoryError, MissingToolchain

KAFKA_VERSION = "4.4.0"
# kafka_2.13 4.4.0 resolves slf4j-api 1.7.x and log4j-core 2.25.5 (`mvn dependency:tree`); slf4j 1.x
# is routed to log4j2 by log4j-slf4j-impl (2.x would need log4j-slf4j2-impl). `_check_classpath`
# fails the install if a version bump breaks this pairing.
LOG4J_VERSION = "2.25.5"
SLF4J_BINDING = "log4j-slf4j-impl"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_MIN_JAVA = 17

JVM_OPTIONS: tuple[str, ...] = (
    # A fixed heap, touched at start (what Kafka's own start script does with -Xms = -Xmx): its
    # footprint is known up front and RSS stays flat, so a soak can tell a leak from a heap growing
    # on demand (with -Xms64m RSS climbed 159 -> 207 MB over 30 minutes, all of it heap sizing).
    "-Xms128m",
    "-Xmx128m",
    "-XX:+AlwaysPreTouch",
    "-XX:MaxMetaspaceSize=160m",
    "-XX:MaxDirectMemorySize=64m",
    "-XX:ReservedCodeCacheSize=64m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Xss512k",
    "-Djdk.nio.maxCachedBufferSize=262144",
    "-Djava.awt.headless=true",
)
ENV: Mapping[str, str] = {"MALLOC_ARENA_MAX": "2"}

_RESOURCES = resource("stack/install/kafka")
_MARKER = ".pushctl-installed"
_CLUSTER_ID_FILE = "cluster.id"
_CLUSTER_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{21}$")
_MVN_TIMEOUT = 900.0
_FORMAT_TIMEOUT = 120.0
_TAIL_LINES = 25


# ---- install -------------------------------------------------------------------------------------
def kafka_home(cache: Path) -> Path:
    return cache / f"kafka-{KAFKA_VERSION}"


def kafka_installed(cache: Path) -> bool:
    """True when a complete install of the pinned version is in `cache`."""
    home = kafka_home(cache)
    return (home / _MARKER).is_file() and (home / "libs" / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()


def install_kafka(cache: Path, log: Callable[[str], None]) -> Path:
    """Resolve the pinned broker's jars into `cache/kafka-<version>/libs` and return that directory.

    Idempotent. Maven writes into a staging directory that is renamed into place only once it is
    complete, so an interrupted install is never mistaken for a finished one.
    """
    home = kafka_home(cache)
    if kafka_installed(cache):
        return home / "libs"
    find_java()  # the broker needs it anyway: say so before a long download
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolchain("mvn not found: install Apache Maven (apt-get install maven)")
    cache.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(cache, home.name)
    staging = Path(tempfile.mkdtemp(prefix=f".{home.name}.", dir=cache))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the install is an ordinary directory
        pom = staging / "pom.xml"
        pom.write_text(
            _render_resource(
                "pom.xml.in",
                KAFKA_VERSION=KAFKA_VERSION,
                LOG4J_VERSION=LOG4J_VERSION,
                SLF4J_BINDING=SLF4J_BINDING,
            )
        )
        log(f"resolving org.apache.kafka:kafka_2.13:{KAFKA_VERSION} with Maven into {home}")
        argv = [
            mvn, "-B", "-q", "-f", str(pom),
            f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging / 'libs'}",
        ]  # fmt: skip
        _run(argv, what="mvn dependency:copy-dependencies", timeout=_MVN_TIMEOUT, cwd=staging)
        jars = _check_classpath(staging / "libs")
        (staging / _MARKER).write_text(f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}\n{jars} jars\n")
        if home.exists():  # a leftover without its marker: never complete
            shutil.rmtree(home)
        try:
            staging.rename(home)
        except OSError:
            if not kafka_installed(cache):  # lost a race to a concurrent install: fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"kafka {KAFKA_VERSION} installed: {jars} jars in {home / 'libs'}")
    return home / "libs"


def _remove_stale_staging(cache: Path, name: str) -> None:
    """Staging directories of killed installs; one younger than the Maven timeout may be live."""
    now = time.time()
    for old in cache.glob(f".{name}.*"):
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > _MVN_TIMEOUT:
                shutil.rmtree(old)


def _check_classpath(libs: Path) -> int:
    """Fail the install when the jars cannot run a broker that logs through log4j2."""
    names = sorted(p.name for p in libs.glob("*.jar"))
    if f"kafka_2.13-{KAFKA_VERSION}.jar" not in names:
        raise ComponentFailed(f"maven did not copy kafka_2.13-{KAFKA_VERSION}.jar into {libs}")
    slf4j = [n for n in names if re.fullmatch(r"slf4j-api-[\d.]+\.jar", n)]
    if len(slf4j) != 1:
        raise ComponentFailed(f"expected one slf4j-api jar in {libs}, found {slf4j or 'none'}")
    wanted = "log4j-slf4j-impl" if slf4j[0].startswith("slf4j-api-1.") else "log4j-slf4j2-impl"
    for jar in (f"{wanted}-{LOG4J_VERSION}.jar", f"log4j-core-{LOG4J_VERSION}.jar"):
        if jar not in names:
            raise ComponentFailed(
                f"kafka {KAFKA_VERSION} resolved {slf4j[0]} but {jar} is missing from {libs}: "
                "update SLF4J_BINDING / LOG4J_VERSION in pushctl/runtime/kafka.py"
            )
    return len(names)


@functools.cache
def find_java() -> str:
    """The java that runs the broker: $JAVA_HOME/bin/java, else the first on PATH; 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").is_file() else None
    java = java or shutil.which("java")
    if java is None:
        raise MissingToolchain("java not found: install OpenJDK 17+ (apt-get install openjdk-17-jre-headless)")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingToolchain(f"{java} does not run ({exc}): install OpenJDK 17+") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = 0 if match is None else int(match[2] if match[1] == "1" and match[2] else match[1])
    if major < _MIN_JAVA:
        raise MissingToolchain(
            f"{java} is Java {major or '?'}; Kafka {KAFKA_VERSION} needs {_MIN_JAVA}+ "
            "(apt-get install openjdk-17-jre-headless)"
        )
    return str(Path(java).resolve())


# ---- configuration (pure) -------------------------------------------------------------------------
@dataclass(frozen=True)
class KafkaSettings:
    """Where one broker listens, what it advertises and where it keeps its files."""

    host: str
    port: int
    internal_port: int
    controller_port: int
    advertised: tuple[str, int]
    data_dir: Path

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "kraft-logs"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.log"

    @property
    def server_properties(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j2_properties(self) -> Path:
        return self.data_dir / "log4j2.properties"


def kafka_settings(inv: Inventory, service_name: str, data_dir: Path) -> KafkaSettings:
    """Read one kafka service's ports from the inventory; raises `InventoryError` when unusable."""
    svc = inv.service(service_name)
    where = f"services.{service_name}"
    if svc.kind != ServiceKind.KAFKA:
        raise InventoryError(f"{where}: is a {svc.kind.value} service, not kafka")
    if svc.controller_port is None:
        raise InventoryError(f"{where}.controller_port: kafka needs a controller port")
    if svc.advertise is None:
        raise InventoryError(f"{where}.advertise: name the Toxiproxy link kafka clients dial")
    link = inv.link(svc.advertise)
    if link.upstream_addr != f"{svc.host}:{svc.port}":
        raise InventoryError(
            f"{where}.advertise: link {link.name!r} leads to {link.upstream_addr}, "
            f"not to the client listener {svc.host}:{svc.port}"
        )
    internal = svc.internal_port
    if internal is None:
        internal = svc.controller_port + 1
        owners = {port: owner for owner, port in inv.iter_ports()}
        if internal in EPHEMERAL_PORTS or internal > 65535 or internal in owners:
            clash = owners.get(internal, "the kernel's ephemeral range")
            raise InventoryError(
                f"{where}: the inter-broker port defaults to controller_port + 1 = {internal}, "
                f"which clashes with {clash}; set {where}.internal_port"
            )
    return KafkaSettings(
        host=svc.host,
        port=svc.port,
        internal_port=internal,
        controller_port=svc.controller_port,
        advertised=inv.link_addr(svc.advertise),
        data_dir=data_dir,
    )


def server_properties(s: KafkaSettings) -> dict[str, str]:
    """The broker's server.properties, as a mapping."""
    adv_host, adv_port = s.advertised
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{s.host}:{s.controller_port}",
        "controller.listener.names": "CONTROLLER",
        "listeners": (
            f"CLIENT://{s.host}:{s.port},INTERNAL://{s.host}:{s.internal_port},"
            f"CONTROLLER://{s.host}:{s.controller_port}"
        ),
        "advertised.listeners": f"CLIENT://{adv_host}:{adv_port},INTERNAL://{s.host}:{s.internal_port}",
        "inter.broker.listener.name": "INTERNAL",
        "listener.security.protocol.map": "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(s.log_dir),
        # one node: every replication factor 1, every internal topic one partition
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        # after a crash (SIGKILL) the restarted node cannot register until its previous broker
        # session expires: 9 s by default; a short session makes crash-and-restart drills quick
        "broker.session.timeout.ms": "4000",
        "broker.heartbeat.interval.ms": "500",
        # memory and threads: a test broker on a shared 2-core machine
        "log.cleaner.dedupe.buffer.size": "2097152",
        "log.cleaner.threads": "1",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "num.replica.fetchers": "1",
        "queued.max.requests": "100",
        "log.segment.bytes": str(64 * 1024 * 1024),
        "log.retention.hours": "24",
    }


def render_properties(props: Mapping[str, str]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n")

    lines = ["# Written by pushctl (pushctl/runtime/kafka.py) before every start: edits are lost."]
    lines += [f"{key}={escape(value)}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def render_log4j2_properties(log_file: Path) -> str:
    return _render_resource("log4j2.properties.in", LOG_FILE=str(log_file))


def broker_argv(java: str, s: KafkaSettings, libs_dir: Path) -> list[str]:
    """The foreground command line of the broker."""
    return [
        java,
        *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={s.log4j2_properties}",
        f"-Dkafka.logs.dir={s.data_dir}",
        "-cp",
        str(libs_dir / "*"),  # java expands the wildcard itself
        "kafka.Kafka",
        str(s.server_properties),
    ]


def new_cluster_id() -> str:
    """16 random bytes, url-safe base64 without padding, never starting with '-' (a CLI flag)."""
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _render_resource(name: str, **values: str) -> str:
    text = (_RESOURCES / name).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = re.search(r"@[A-Z0-9_]+@", text)
    if left:
        raise ValueError(f"{_RESOURCES / name}: placeholder {left[0]} has no value")
    return text


# ---- prepare a start ------------------------------------------------------------------------------
def prepare_kafka(
    inv: Inventory, service_name: str, data_dir: Path, libs_dir: Path
) -> tuple[list[str], dict[str, str]]:
    """Write the broker's config into `data_dir`, format its storage on the first start only, and
    return `(argv, extra_env)` that run the broker in the foreground (argv[0] is the java path).
    """
    settings = kafka_settings(inv, service_name, data_dir)
    if not (libs_dir / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
        raise ComponentFailed(f"kafka {KAFKA_VERSION} is not installed in {libs_dir}")
    java = find_java()
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(settings.server_properties, render_properties(server_properties(settings)))
    _write_atomic(settings.log4j2_properties, render_log4j2_properties(settings.log_file))
    cluster_id = _cluster_id(data_dir)
    if not (settings.log_dir / "meta.properties").is_file():
        fmt = ["format", "-t", cluster_id, "-c", str(settings.server_properties), "--ignore-formatted"]
        jvm = broker_argv(java, settings, libs_dir)[:-2]  # same JVM and classpath, another main class
        _run(
            [*jvm, "kafka.tools.StorageTool", *fmt],
            what="kafka storage format",
            timeout=_FORMAT_TIMEOUT,
            env={**os.environ, **ENV},
        )
    return broker_argv(java, settings, libs_dir), dict(ENV)


def _cluster_id(data_dir: Path) -> str:
    path = data_dir / _CLUSTER_ID_FILE
    try:
        cid = path.read_text().strip()
    except FileNotFoundError:
        cid = ""
    if not _CLUSTER_ID.fullmatch(cid):
        cid = new_cluster_id()
        _write_atomic(path, cid + "\n")
    return cid


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _run(
    argv: list[str],
    *,
    what: str,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ComponentFailed(f"{what} did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-_TAIL_LINES:]) or "(no output)"
        raise ComponentFailed(f"{what} failed (exit {done.returncode}):\n{tail}")


# ---- readiness ------------------------------------------------------------------------------------
_probing: contextvars.ContextVar[bool] = contextvars.ContextVar("pushctl_kafka_probing", default=False)


def _not_probing(record: logging.LogRecord) -> bool:
    """Drop aiokafka's connection errors while a readiness probe polls a broker still starting."""
    return not _probing.get()


for _name in ("aiokafka", "aiokafka.conn", "aiokafka.cluster", "aiokafka.admin.client"):
    logging.getLogger(_name).addFilter(_not_probing)


async def kafka_ready(bootstrap: str, timeout: float) -> bool:
    """True once a metadata request through `bootstrap` lists a registered broker; False after
    `timeout` seconds. Never raises for an unreachable broker and never outlives `timeout`.

        ok = await kafka_ready("127.0.0.1:18092", timeout=60)
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    token = _probing.set(True)
    try:
        while (remaining := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    if await _metadata_lists_a_broker(bootstrap, request_timeout=min(remaining, 5.0)):
                        return True
            except TimeoutError:
                return False
            except (KafkaError, OSError):
                pass
            await asyncio.sleep(max(0.0, min(0.5, deadline - loop.time())))
        return False
    finally:
        _probing.reset(token)


async def _metadata_lists_a_broker(bootstrap: str, *, request_timeout: float) -> bool:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="pushctl-ready",
        request_timeout_ms=max(1, int(request_timeout * 1000)),
    )
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return bool(cluster.get("brokers"))
    finally:
        await admin.close()
