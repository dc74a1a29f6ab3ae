"""The action journal: intent and undo steps written to disk *before* anything changes.

One JSON file per action run under `<run dir>/journal/`. Each mutation is preceded by the undo
step that reverses it (`will_undo`), fsynced, so whatever kills pushctl (Ctrl-C, SIGTERM,
`kill -9`, a power cut) leaves a file from which `pushctl recover` restores the baseline.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pushctl.actions.undo import UndoStep, undo_from_json
from pushctl.contract.topology import Inventory
from pushctl.runtime.paths import run_dir

Status = Literal["intent", "applying", "applied", "held", "completed", "rolled-back", "rollback-failed", "recovered"]
OPEN_STATUSES = ("intent", "applying", "applied", "rollback-failed")


@dataclass
class JournalEntry:
    id: str
    action: str
    params: dict[str, Any]
    inventory: str
    pid: int
    created_at: float
    status: Status = "intent"
    plan: list[str] = field(default_factory=list)
    undo: list[UndoStep] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES

    def to_json(self) -> dict[str, Any]:
        """The journal file's content (its format is shared with every pushctl version)."""
        data = asdict(replace(self, undo=[]))
        data["undo"] = [step.to_json() for step in self.undo]
        return data


def journal_dir(inv: Inventory) -> Path:
    return run_dir(inv.name) / "journal"


class Journal:
    """Writes one entry durably; every change is a full atomic rewrite (small files, rare writes)."""

    def __init__(self, entry: JournalEntry) -> None:
        self.entry = entry

    @classmethod
    def begin(cls, inv: Inventory, action: str, params: dict[str, Any], plan: list[str]) -> Journal:
        directory = journal_dir(inv)
        directory.mkdir(parents=True, exist_ok=True)
        ident = f"{time.strftime('%Y%m%dT%H%M%S')}-{action}-{uuid.uuid4().hex[:6]}"
        entry = JournalEntry(
            id=ident,
            action=action,
            params=params,
            inventory=inv.source,
            pid=os.getpid(),
            created_at=time.time(),
            plan=plan,
            path=str(directory / f"{ident}.json"),
        )
        journal = cls(entry)
        journal.flush()
        return journal

    def will_undo(self, step: UndoStep) -> None:
        """Record how to reverse the mutation about to happen; call before making it."""
        self.entry.undo.append(step)
        if self.entry.status == "intent":
            self.entry.status = "applying"
        self.flush()

    def event(self, what: str, **data: Any) -> None:
        self.entry.events.append({"t": time.time(), "what": what, **data})
        self.flush()

    def set_status(self, status: Status) -> None:
        self.entry.status = status
        self.flush()

    def flush(self) -> None:
        path = Path(self.entry.path)
        tmp = path.with_suffix(".tmp")
        data = json.dumps(self.entry.to_json(), indent=2, default=str)
        with tmp.open("w") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load_entries(inv: Inventory) -> list[JournalEntry]:
    """Every journal entry of this stack, oldest first."""
    out: list[JournalEntry] = []
    directory = journal_dir(inv)
    if not directory.exists():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        raw["undo"] = [undo_from_json(u) for u in raw.get("undo", [])]
        out.append(JournalEntry(**raw))
    return out


def open_entries(inv: Inventory) -> list[JournalEntry]:
    """Entries whose action may have left a change behind (not rolled back, not held on purpose)."""
    return [e for e in load_entries(inv) if e.open]
