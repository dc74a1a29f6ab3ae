"""`pushctl abort`: the emergency stop, from any terminal.

Whatever holds the target (the action or experiment holding its lock, a runbook verification
registered as a session) gets SIGTERM: it rolls back what it applied, as it would on Ctrl-C, and
exits. A process that does not exit within the timeout (stuck, stopped, wedged on a dead API) is
killed, and its journal is replayed instead, exactly as `pushctl recover` would. Either way abort
returns only when nothing holds the target and the platform has settled at its baseline.

Sessions: a runbook verification runs one `pushctl` child per step, each taking the lock for its
own step only; between steps nothing would hold the lock, so the verifier registers itself in
`<run dir>/sessions/<pid>.json` (`Session`) and abort stops it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pushctl.actions.lock import TargetLock, read_record
from pushctl.actions.recover import recover
from pushctl.contract.topology import Inventory
from pushctl.runtime.paths import run_dir
from pushctl.runtime.pids import pid_alive, start_time

POLL_S = 0.2


def _sessions_dir(inv: Inventory) -> Path:
    return run_dir(inv.name) / "sessions"


class Session:
    """`with Session(inv, "runbook verify"):` — lets `pushctl abort` find a long run that holds the
    target between the steps that take its lock."""

    def __init__(self, inv: Inventory, what: str) -> None:
        self.path = _sessions_dir(inv) / f"{os.getpid()}.json"
        self.what = what

    def __enter__(self) -> Session:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "what": self.what, "since": time.time(), "start": start_time(os.getpid())}
        self.path.write_text(json.dumps(record))
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass
class Holder:
    pid: int
    what: str
    start: int | None  # kernel start time: a pid reused since is not signalled

    def alive(self) -> bool:
        return pid_alive(self.pid) and (self.start is None or start_time(self.pid) == self.start)


@dataclass
class AbortReport:
    stopped: list[dict[str, Any]] = field(default_factory=list)  # pid, what, how, seconds
    recovered: list[dict[str, Any]] = field(default_factory=list)  # journal entries replayed
    settled: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def unsettled(self) -> list[str]:
        return [k for k, v in self.settled.items() if v is None]

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "unsettled": self.unsettled}


def holders(inv: Inventory) -> list[Holder]:
    """Every live pushctl process that holds the target: the lock's holder and registered sessions."""
    found: dict[int, Holder] = {}
    lock = TargetLock(inv, "abort")
    for record, path in [(lock.holder(), None)] + [
        (read_record(p), p) for p in sorted(_sessions_dir(inv).glob("*.json"))
    ]:
        if record is None:
            continue
        try:
            pid = int(str(record.get("pid")))
        except ValueError:
            continue
        start = record.get("start")
        holder = Holder(pid, str(record.get("what", "?")), int(str(start)) if start is not None else None)
        if pid != os.getpid() and holder.alive():
            found.setdefault(pid, holder)
        elif path is not None and not holder.alive():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a session whose process died
    return list(found.values())


def _stop(found: list[Holder], timeout: float, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """SIGTERM each (they roll back on it); SIGKILL whoever is still there after `timeout`."""
    started = time.monotonic()
    for h in found:
        log(f"stopping {h.what} (pid {h.pid}): it rolls back what it applied ...")
        with contextlib.suppress(ProcessLookupError):
            os.kill(h.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            os.kill(h.pid, signal.SIGTERM)
    done: dict[int, dict[str, Any]] = {}

    def record(h: Holder, how: str) -> None:
        done[h.pid] = {"pid": h.pid, "what": h.what, "how": how, "seconds": round(time.monotonic() - started, 1)}

    def exited() -> None:
        for h in found:
            if h.pid not in done and not h.alive():
                record(h, "rolled back and exited")

    deadline = started + timeout
    while len(done) < len(found) and time.monotonic() < deadline:
        exited()
        time.sleep(max(0.0, min(POLL_S, deadline - time.monotonic())))
    exited()
    for h in found:
        if h.pid in done:
            continue
        log(f"{h.what} (pid {h.pid}) did not exit within {timeout:g}s: killing it; its journal is replayed")
        with contextlib.suppress(ProcessLookupError):
            os.kill(h.pid, signal.SIGKILL)
        while h.alive():
            time.sleep(0.05)
        record(h, "killed")
    return [done[h.pid] for h in found]


async def abort(inv: Inventory, *, timeout: float, log: Callable[[str], None]) -> AbortReport:
    """Stop whatever holds the target and bring it back to its baseline (held changes stay held)."""
    started = time.monotonic()
    report = AbortReport()
    found = holders(inv)
    if not found:
        log(f"nothing holds stack {inv.name!r}")
    report.stopped = _stop(found, timeout, log)
    # whatever a killed (or crashed) run left applied: the same undo steps its own rollback runs
    report.recovered, report.settled = await recover(inv, log=log)
    report.seconds = round(time.monotonic() - started, 1)
    return report
