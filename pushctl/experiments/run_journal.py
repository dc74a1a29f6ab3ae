"""The run journal: one JSON file per experiment run, rewritten atomically as the run goes.

It is there for every run, interrupted ones included: a run killed with `kill -9` leaves the
file as of its last write (status `running`, its dead `pid`); `read_journal` reports it as
`interrupted`. The undo steps themselves live in the action journals (`pushctl.actions.journal`),
one per applied action, which is what `pushctl recover` replays.

    {"status": "completed|failed|aborted|interrupted", "deviated": false,
     "steady_states": {"before": {...}, "after": {...}, "during": {...}},
     "method": [{"label", "started_at", "ended_at", "status", "output", "journal"}, ...],
     "stop_conditions": [...], "rollbacks": [...], "timeline": {"per_second": [...]}, ...}
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from pushctl.contract.topology import Inventory
from pushctl.runtime.paths import run_dir
from pushctl.runtime.pids import pid_alive

RunStatus = Literal["running", "completed", "failed", "aborted", "interrupted"]
FLUSH_EVERY_S = 1.0


def journal_dir(inv: Inventory) -> Path:
    return run_dir(inv.name) / "experiments"


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48] or "experiment"


class RunJournal:
    """The JSON document of one run; `flush()` writes it whole (tmp file + rename + fsync)."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self._flushed = 0.0

    @classmethod
    def create(cls, inv: Inventory, file: str, experiment: dict[str, Any], *, path: Path | None = None) -> RunJournal:
        run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        if path is None:
            path = journal_dir(inv) / f"{run_id}-{slug(str(experiment.get('title', '')))}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "run_id": run_id,
            "title": experiment.get("title"),
            "file": file,
            "journal_path": str(path),
            "inventory": inv.name,
            "pid": os.getpid(),
            "started_at": time.time(),
            "ended_at": None,
            "duration_s": None,
            "status": "running",
            "deviated": False,
            "exit_code": None,
            "phase": "starting",
            "error": None,
            "experiment": experiment,
            "steady_states": {"before": None, "during": None, "after": None},
            "method": [],
            "stop_conditions": [],
            "rollbacks": [],
            "windows": [],
            "timeline": {"t0": None, "deadline_s": None, "per_second": [], "connections": []},
            "summary": None,
        }
        journal = cls(path, data)
        journal.flush(sync=True)
        return journal

    def phase(self, name: str) -> None:
        self.data["phase"] = name
        self.flush()

    def step(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Add a method step record (the caller updates it in place, then flushes)."""
        self.data["method"].append(entry)
        self.flush()
        return entry

    def maybe_flush(self) -> None:
        """Flush at most once per second (the timeline grows every second)."""
        if time.monotonic() - self._flushed >= FLUSH_EVERY_S:
            self.flush()

    def finish(self, status: RunStatus, *, deviated: bool, exit_code: int, error: str | None = None) -> None:
        ended = time.time()
        self.data.update(
            status=status,
            deviated=deviated,
            exit_code=exit_code,
            ended_at=ended,
            phase="done",
            duration_s=round(ended - float(self.data["started_at"]), 2),
        )
        if error:
            self.data["error"] = error
        self.flush(sync=True)

    def flush(self, *, sync: bool = False) -> None:
        """Replace the file atomically. Only `sync` fsyncs: on a busy disk an fsync can stall the
        event loop (and with it the probe) for a second; what must survive a crash, the undo
        steps, is in the action journals, which fsync every write."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w") as fh:
            fh.write(json.dumps(self.data, indent=1, default=str))
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        tmp.replace(self.path)
        self._flushed = time.monotonic()


def read_journal(path: Path) -> dict[str, Any]:
    """A run journal; a `running` one whose process is gone is reported `interrupted`."""
    data: dict[str, Any] = json.loads(path.read_text())
    if data.get("status") == "running" and not pid_alive(int(data.get("pid", -1))):
        data["status"] = "interrupted"
        data["error"] = data.get("error") or "the run's process died (kill -9?); `pushctl recover` undoes its actions"
    return data
