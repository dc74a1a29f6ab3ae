"""One action at a time per target: a lock file naming its holder, free again when the holder dies."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from pushctl.contract.topology import Inventory
from pushctl.errors import LockHeld
from pushctl.runtime.paths import run_dir
from pushctl.runtime.pids import pid_alive, start_time


def read_record(path: Path) -> dict[str, object] | None:
    """A holder's JSON record (the lock file, a session file); None when gone or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class TargetLock:
    """`with TargetLock(inv, "drain south"):` — raises LockHeld while another live pushctl holds it."""

    def __init__(self, inv: Inventory, what: str) -> None:
        self.path = run_dir(inv.name) / "action.lock"
        self.what = what
        self._held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is not None and pid_alive(int(str(holder.get("pid", -1)))):
                    since = time.strftime("%H:%M:%S", time.localtime(float(str(holder.get("since", 0)))))
                    raise LockHeld(
                        f"{holder.get('what', 'another action')} (pid {holder.get('pid')}, since {since}) "
                        f"holds the lock on stack {self.path.parent.name!r}",
                        hint="wait for it, or stop it: Ctrl-C in its terminal, or `pushctl abort` from any",
                    ) from None
                # the holder died (kill -9): its lock does not hold the target forever
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            with os.fdopen(fd, "w") as fh:
                record = {"pid": os.getpid(), "what": self.what, "since": time.time(), "start": start_time(os.getpid())}
                json.dump(record, fh)
            self._held = True
            return
        raise LockHeld(f"could not take the lock {self.path}")

    def holder(self) -> dict[str, object] | None:
        """The lock file's record of its holder (pid, what, since), None when free or unreadable."""
        return read_record(self.path)

    def release(self) -> None:
        if self._held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._held = False

    def __enter__(self) -> TargetLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
