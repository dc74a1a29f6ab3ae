"""The docker runtime: the reference stack in containers (`pushctl stack up --runtime docker`)."""

from __future__ import annotations

from pushctl.runtime.docker.engine import connect
from pushctl.runtime.docker.runtime import DockerRuntime

__all__ = ["DockerRuntime", "connect"]
