"""Install the real components, pinned and idempotently, into the cache (`pushctl stack install`).

- Toxiproxy: `toxiproxy-server` from PATH when it reports the pinned version, else
  `go install github.com/Shopify/toxiproxy/v2/cmd/server@v<version>` with the version stamped in.
- Apache Kafka: pinned Maven Central jars (see `pushctl.runtime.kafka`).
- Redis: `redis-server` from PATH, else Debian's `redis-server` package via apt-get.
- Prometheus: Debian's package, pinned, unpacked into the cache (see `pushctl.runtime.prometheus`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pushctl.errors import ComponentFailed, MissingToolchain
from pushctl.runtime import kafka, prometheus

TOXIPROXY_VERSION = "2.12.0"
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Installed:
    """Paths to the installed components."""

    toxiproxy_server: Path
    redis_server: Path
    kafka_libs: Path | None  # None when Kafka is external
    prometheus: Path | None = None  # None when the inventory runs no Prometheus of its own


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _require(tool: str, how: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise MissingToolchain(f"{tool} not found on PATH: {how}")
    return path


def _toxiproxy_version(binary: str | Path) -> str | None:
    try:
        out = subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return out.stdout.strip().rsplit(" ", 1)[-1] or None


def toxiproxy_path(cache: Path) -> Path | None:
    """The pinned toxiproxy-server, from PATH or the cache, without installing."""
    on_path = shutil.which("toxiproxy-server")
    if on_path and _toxiproxy_version(on_path) == TOXIPROXY_VERSION:
        return Path(on_path)
    cached = cache / f"toxiproxy-{TOXIPROXY_VERSION}" / "toxiproxy-server"
    return cached if cached.exists() else None


def ensure_toxiproxy(cache: Path, log: Log) -> Path:
    found = toxiproxy_path(cache)
    if found is not None:
        return found
    go = _require("go", "install Go 1.23+ (https://go.dev/doc/install) or put toxiproxy-server on PATH")
    target = cache / f"toxiproxy-{TOXIPROXY_VERSION}" / "toxiproxy-server"
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"installing toxiproxy-server {TOXIPROXY_VERSION} with go install ...")
    with tempfile.TemporaryDirectory(dir=cache) as gobin:
        env = {**os.environ, "GOBIN": gobin, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        proc = subprocess.run(
            [
                go,
                "install",
                "-ldflags",
                f"-X {TOXIPROXY_MODULE}.Version={TOXIPROXY_VERSION}",
                f"{TOXIPROXY_MODULE}/cmd/server@v{TOXIPROXY_VERSION}",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=900,
        )
        if proc.returncode != 0:
            raise ComponentFailed(f"go install of toxiproxy failed:\n{_tail(proc.stderr)}")
        # rename, not copy: a half-written binary is never taken as installed
        staged = target.with_suffix(".tmp")
        shutil.copy2(Path(gobin) / "server", staged)
        staged.replace(target)
    if _toxiproxy_version(target) != TOXIPROXY_VERSION:
        raise ComponentFailed(f"{target} does not report version {TOXIPROXY_VERSION}")
    return target


def ensure_redis(log: Log) -> Path:
    found = shutil.which("redis-server")
    if found is not None:
        return Path(found)
    apt = shutil.which("apt-get")
    if apt is None:
        raise MissingToolchain("redis-server not found and no apt-get: install Redis 7 (redis-server) yourself")
    if os.geteuid() != 0:
        raise MissingToolchain("redis-server not found: run `sudo apt-get install redis-server` (needs root)")
    log("installing redis-server with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt, "update", "-qq"], capture_output=True, text=True, env=env, check=False, timeout=600)
    proc = subprocess.run(
        [apt, "install", "-y", "-q", "--no-install-recommends", "redis-server"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=900,
    )
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if proc.returncode != 0 or found is None:
        raise ComponentFailed(f"apt-get install redis-server failed:\n{_tail(proc.stdout + proc.stderr)}")
    return Path(found)


def install_all(
    cache: Path, log: Log, *, need_kafka: bool = True, need_redis: bool = True, need_prometheus: bool = True
) -> Installed:
    """Install whatever is missing; fast when everything is there already."""
    cache.mkdir(parents=True, exist_ok=True)
    toxiproxy = ensure_toxiproxy(cache, log)
    redis = ensure_redis(log) if need_redis else Path("redis-server")
    libs = None
    if need_kafka:
        _require("java", "install OpenJDK 17+ (apt-get install openjdk-17-jre-headless)")
        if not kafka.kafka_installed(cache):
            log(f"installing Apache Kafka {kafka.KAFKA_VERSION} jars from Maven Central ...")
        libs = kafka.install_kafka(cache, log)
    prom = prometheus.ensure_prometheus(cache, log) if need_prometheus else None
    return Installed(toxiproxy_server=toxiproxy, redis_server=redis, kafka_libs=libs, prometheus=prom)
