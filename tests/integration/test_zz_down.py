"""Runs last (file order): `stack down` stops every process of ours and leaves no proxy listening."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from pushctl.runtime.pids import pid_alive
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def test_stack_down_leaves_no_process_and_no_proxy(stack: Stack) -> None:
    pids = [int(json.loads(p.read_text())["pid"]) for p in (stack.run_dir / "pids").glob("*.json")]
    assert pids
    started = time.monotonic()
    stack.pushctl("stack", "down", check=True)
    assert time.monotonic() - started < 15
    assert [p for p in pids if pid_alive(p)] == []
    assert list((stack.run_dir / "pids").glob("*.json")) == []
    for _, port in stack.inventory.iter_ports():
        with socket.socket() as sock:
            sock.settimeout(0.5)
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"
    assert Path(stack.run_dir).exists()  # logs kept until --purge
