"""Plumbing between the docker runtime and the engine: the client, threads, errors, small codecs.

    client = connect()                                  # TargetUnreachable when nothing answers
    containers = await engine_call(client.containers.list, all=True)

The SDK is synchronous: every call runs in a pool of its own, wide enough to act on every
container of a stage at once, and engine errors become pushctl errors at this boundary.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import socket
import tarfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

# the Docker SDK ships no type hints (types-docker has them; either way works)
import docker  # type: ignore[import-untyped, unused-ignore]
import docker.errors  # type: ignore[import-untyped, unused-ignore]
from docker.models.containers import Container  # type: ignore[import-untyped, unused-ignore]

from pushctl.errors import ComponentFailed, PushctlError, TargetUnreachable

# every container of a stage at once: asyncio's default pool has only cores + 4 threads
_WORKERS = 32
_POOL = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="pushctl-docker")
T = TypeVar("T")


def connect(timeout: float = 60.0) -> docker.DockerClient:
    """A client of the engine at $DOCKER_HOST (default: the local socket) that has answered a ping."""
    _check_socket(os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock")
    client = None
    try:
        client = docker.from_env(timeout=int(timeout), max_pool_size=_WORKERS)
        client.ping()
    except docker.errors.DockerException as exc:
        if client is not None:
            client.close()
        raise TargetUnreachable(
            f"no Docker engine answers: {exc}", hint="start one with stack/install/docker/engine.sh (needs root)"
        ) from exc
    return client


def _check_socket(host: str) -> None:
    """Fail early on a local socket nothing listens on (the SDK leaks its socket when it cannot connect)."""
    if not host.startswith("unix://"):
        return
    path = host.removeprefix("unix://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5.0)
        try:
            sock.connect(path)
        except OSError as exc:
            raise TargetUnreachable(
                f"no Docker engine answers on {path}: {exc.strerror or exc}",
                hint="start one with stack/install/docker/engine.sh (needs root)",
            ) from exc


async def engine_call(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking SDK call in a thread; engine errors become pushctl errors (exit 4 or 5)."""
    try:
        return await asyncio.get_running_loop().run_in_executor(_POOL, functools.partial(call, *args, **kwargs))
    except PushctlError:
        raise
    except docker.errors.APIError as exc:
        raise ComponentFailed(f"docker: {exc.explanation or exc}") from exc
    except docker.errors.DockerException as exc:
        raise TargetUnreachable(f"docker: {exc}", hint="is the engine up? stack/install/docker/engine.sh") from exc


def refreshed_status(container: Container) -> str | None:
    """The container's status now; None once it is gone."""
    try:
        container.reload()
    except docker.errors.NotFound:
        return None
    return str(container.status)


def tar_files(files: Mapping[str, str]) -> bytes:
    """An uncompressed tar of text files (path -> content) for `container.put_archive("/", ...)`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def parse_time(value: str | None) -> float | None:
    """Docker's RFC 3339 time with nanoseconds, as a Unix time; None for the zero time."""
    if not value or value.startswith("0001-"):
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    try:
        stamp = datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")
    except ValueError:
        return None
    return stamp.timestamp()
