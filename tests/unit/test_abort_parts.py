"""What `pushctl abort` finds: the lock's holder and registered sessions, never itself or the dead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pushctl.actions.abort import Session, holders
from pushctl.actions.lock import TargetLock
from pushctl.contract.topology import Inventory
from tests.helpers import free_inventory


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Inventory:
    monkeypatch.setenv("PUSHCTL_RUN_DIR", str(tmp_path / "run"))
    return free_inventory(tmp_path)


def test_a_live_session_is_found_and_a_dead_one_forgotten(inv: Inventory) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with Session(inv, "runbook verify x") as session:
            record = json.loads(session.path.read_text())
            # the same record, as the sleeping process would have written it
            (session.path.parent / f"{sleeper.pid}.json").write_text(
                json.dumps({**record, "pid": sleeper.pid, "start": None})
            )
            (session.path.parent / "999999.json").write_text(json.dumps({"pid": 999999, "what": "gone"}))
            found = holders(inv)
            assert [(h.pid, h.what) for h in found] == [(sleeper.pid, "runbook verify x")]  # never abort itself
            assert not (session.path.parent / "999999.json").exists()
        assert not session.path.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_lock_holder_is_found_unless_its_pid_was_reused(inv: Inventory) -> None:
    lock = TargetLock(inv, "drain --region south")
    lock.acquire()
    try:
        data = json.loads(lock.path.read_text())
        assert data["pid"] == os.getpid() and data["start"] is not None
        assert holders(inv) == []  # abort never signals itself
        lock.path.write_text(json.dumps({**data, "pid": 1, "start": -1}))  # a live pid, but not the one that locked
        assert holders(inv) == []
    finally:
        lock.release()
