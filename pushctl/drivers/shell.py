"""Run one `command` driver command: `/bin/sh -c`, a time limit, and a non-zero exit as a clear error."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from pushctl.errors import CommandFailed, UsageError

OUTPUT_SHOWN = 300  # characters of stderr/stdout a failure quotes


def missing_env(names: set[str] | frozenset[str]) -> list[str]:
    """The environment variables among `names` that are not set (a template's {env:NAME})."""
    return sorted(n for n in names if n not in os.environ)


def require_env(names: set[str] | frozenset[str], what: str) -> None:
    missing = missing_env(names)
    if missing:
        raise UsageError(f"{what} reads ${missing[0]} from the environment, and it is not set", hint="export it")


async def run_shell(command: str, *, timeout_s: float, what: str) -> str:
    """Run `command`; its stdout (stripped). Raises CommandFailed on a non-zero exit or after `timeout_s`
    (the command's whole process group is killed then, and when the caller is cancelled)."""
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group: a timeout kills what it started too
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    except TimeoutError:
        await _kill(proc)
        raise CommandFailed(f"{what} timed out after {timeout_s:g}s: {_short(command)}") from None
    except asyncio.CancelledError:
        await _kill(proc)
        raise
    stdout, stderr = out.decode(errors="replace").strip(), err.decode(errors="replace").strip()
    if proc.returncode != 0:
        said = (stderr or stdout)[-OUTPUT_SHOWN:].replace("\n", " / ")
        raise CommandFailed(f"{what} exited {proc.returncode}: {said or '(no output)'}")
    return stdout


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await proc.wait()


def _short(command: str) -> str:
    return command if len(command) <= 120 else command[:117] + "..."
