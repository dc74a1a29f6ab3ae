"""pid_alive / start_time: a zombie is not alive, and a reused pid is told apart by its start time."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from pushctl.runtime.pids import pid_alive, start_time


def test_this_process_is_alive_with_a_stable_start_time() -> None:
    assert pid_alive(os.getpid())
    first = start_time(os.getpid())
    assert first is not None and first == start_time(os.getpid())


def test_an_exited_child_is_not_alive_before_or_after_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while pid_alive(child.pid) and time.monotonic() < deadline:  # a zombie until we reap it
        time.sleep(0.01)
    assert not pid_alive(child.pid) and start_time(child.pid) is None
    child.wait()
    assert not pid_alive(child.pid)


def test_no_such_process() -> None:
    assert not pid_alive(2**22 + 1) and start_time(2**22 + 1) is None
