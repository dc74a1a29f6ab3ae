"""Is a process alive: one reading of /proc/<pid>/stat for everything that keeps a pid (the stack's
pid files, the target lock, run journals, test and benchmark harnesses)."""

from __future__ import annotations

from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent to reap it (a zombie holds no lock and serves nothing)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def start_time(pid: int) -> int | None:
    """The kernel's start time of a live `pid` (clock ticks since boot): tells a reused pid from ours."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return int(fields[19])
