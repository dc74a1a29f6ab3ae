"""Lost capacity: cap a component at a share of CPU (`pushctl fault cpu COMPONENT --cpus 0.2`).

    await set_cpus(runtime, "logic-idc1", 0.2)    # at most 20 ms of CPU per 100 ms
    await set_cpus(runtime, "logic-idc1", None)   # no cap

- docker runtime: a CFS quota on the container (`container.update`), kept across restarts.
- process runtime: a cgroup v2 group of its own with `cpu.max`, holding every process of the
  component's process group, where this machine lets pushctl write one (root, a cgroup v2
  hierarchy with the cpu controller); elsewhere it is refused with exit 2. A restarted process
  starts outside the group, uncapped.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pushctl.errors import UsageError
from pushctl.runtime.base import Runtime
from pushctl.runtime.process import ProcessRuntime

PERIOD_US = 100_000
_GROUP = "pushctl"


async def set_cpus(runtime: Runtime, component: str, cpus: float | None) -> str:
    """Cap `component` of `runtime` at `cpus` CPUs, or lift the cap (None)."""
    if cpus is not None and not 0 < cpus <= (os.cpu_count() or 1):
        raise UsageError(f"--cpus {cpus:g}: must be above 0 and at most this machine's {os.cpu_count()} CPUs")
    setter = getattr(runtime, "set_cpus", None)
    if setter is not None:
        message: str = await setter(component, cpus)
        return message
    if not isinstance(runtime, ProcessRuntime):
        raise UsageError(f"CPU limits are not supported by the {runtime.name} runtime")
    return await asyncio.to_thread(_process_cpus, runtime, component, cpus)


def _process_cpus(runtime: ProcessRuntime, component: str, cpus: float | None) -> str:
    if component not in {c.name for c in runtime.components}:
        names = ", ".join(c.name for c in runtime.components)
        raise UsageError(f"unknown component {component!r}; valid: {names}")
    root = cgroup2_root()
    if root is None:
        raise UsageError(
            "CPU limits are not supported by the process runtime here: no writable cgroup v2 hierarchy "
            "with the cpu controller (use --runtime docker)"
        )
    group = root / _GROUP / f"{runtime.inv.name}-{component}"
    if cpus is None:
        if (group / "cpu.max").exists():
            (group / "cpu.max").write_text(f"max {PERIOD_US}\n")
        return f"{component}: CPU limit lifted"
    rec = runtime.alive(component)
    if rec is None:
        raise UsageError(f"{component} is not running")
    try:
        _enable_cpu(root / _GROUP)
        group.mkdir(exist_ok=True)
        quota = max(1000, round(cpus * PERIOD_US))
        (group / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
        for pid in _group_members(rec.pid):
            (group / "cgroup.procs").write_text(f"{pid}\n")
    except OSError as exc:
        raise UsageError(
            f"CPU limits are not supported by the process runtime here: {group}: {exc.strerror} (use --runtime docker)"
        ) from exc
    return f"{component}: limited to {quota / PERIOD_US:g} CPU (cgroup {group})"


def cgroup2_root() -> Path | None:
    """The cgroup v2 mount, when its cpu controller exists and its root may be written."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        pre, _, post = line.partition(" - ")
        if post.split(" ", 1)[0] != "cgroup2":
            continue
        root = Path(pre.split()[4])
        try:
            controllers = (root / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if "cpu" in controllers and os.access(root / "cgroup.subtree_control", os.W_OK):
            return root
    return None


def _enable_cpu(parent: Path) -> None:
    """`parent` (holding no processes itself) hands the cpu controller to its children."""
    for level in (parent.parent, parent):
        level.mkdir(exist_ok=True)
        if "cpu" not in (level / "cgroup.subtree_control").read_text().split():
            (level / "cgroup.subtree_control").write_text("+cpu\n")


def _group_members(pgid: int) -> list[int]:
    """Every live process in process group `pgid` (a component and its children)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members or [pgid]
