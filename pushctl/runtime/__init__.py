"""Runtimes run the reference stack: local processes (default) or docker containers."""

from __future__ import annotations

from pushctl.contract.topology import Inventory
from pushctl.errors import UsageError
from pushctl.runtime.base import Log, Runtime, StackStatus

RUNTIMES = ("process", "docker")


def get_runtime(name: str, inv: Inventory, *, log: Log) -> Runtime:
    """The runtime called `name` for this inventory."""
    if name == "process":
        from pushctl.runtime.process import ProcessRuntime

        return ProcessRuntime(inv, log=log)
    if name == "docker":
        try:
            from pushctl.runtime.docker import DockerRuntime  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            raise UsageError("the docker runtime is not available in this build") from None
        return DockerRuntime(inv, log=log)  # type: ignore[no-any-return,unused-ignore]
    raise UsageError(f"unknown runtime {name!r}; valid: {', '.join(RUNTIMES)}")


__all__ = ["RUNTIMES", "Runtime", "StackStatus", "get_runtime"]
