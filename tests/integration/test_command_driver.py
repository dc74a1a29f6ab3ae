"""The `command` driver against the real stack: examples/command-driver/topology.toml, whose every change
is a plain `curl` call, with the journal, rollback and `recover` guarantees of the reference driver.

Each test writes the session stack's own inventory plus the example's [driver] table (its ports mapped
onto the session stack's) and runs the real CLI with it; planted defects are edits of that table.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pushctl.contract.topology import load_inventory
from tests.integration.conftest import REPO, Stack
from tests.integration.test_failover import run_json, wait_baseline

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "command-driver" / "topology.toml"
MARK = "# ==== the command driver"
PROBE = ["--devices", "60", "--rate", "100"]


def _drain_table(text: str, *, apply: str | None = None, undo: str | None = None) -> str:
    """The driver table with the drain verb's apply or undo template replaced (a planted defect)."""
    head, rest = text.split("[driver.commands.drain]\n", 1)
    table, tail = rest.split("\n[driver.commands.switch]", 1)
    if apply is not None:
        table = re.sub(r"^apply = '''.*?'''$", lambda _: f"apply = '''{apply}'''", table, flags=re.S | re.M)
    if undo is not None:
        table = re.sub(r"^undo = '''.*?'''$", lambda _: f"undo = '''{undo}'''", table, flags=re.S | re.M)
    return f"{head}[driver.commands.drain]\n{table}\n[driver.commands.switch]{tail}"


def command_stack(stack: Stack, tmp: Path, settle_s: int = 10, **plant: str) -> Stack:
    """The session stack, driven through the example's command driver (ports mapped onto this stack's)."""
    ref = load_inventory(REPO / "stack" / "topology.toml")
    ports = {svc.port: stack.inventory.services[name].port for name, svc in ref.services.items()}
    ports |= {tp.port: stack.inventory.toxiproxy[name].port for name, tp in ref.toxiproxy.items()}
    text = EXAMPLE.read_text()
    driver = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{ports[int(m[1])]}", text[text.index(MARK) :])
    driver = _drain_table(driver, **plant) if plant else driver
    driver = driver.replace("settle_s = 10", f"settle_s = {settle_s}")
    path = tmp / "command-topology.toml"
    path.write_text(Path(stack.inventory.source).read_text() + "\n" + driver)
    inv = load_inventory(path)
    return Stack(inv, stack.run_dir, {**stack.env, "PUSHCTL_TOKEN": inv.token}, stack.status)


def _journal(data: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(Path(data["journal"]).read_text())
    return entry


def test_drain_hold_and_restore_through_curl_hold_the_slo(stack: Stack, tmp_path: Path) -> None:
    cmd = command_stack(stack, tmp_path)
    code, data = run_json(cmd, "drain", "--region", "south", "--spread", "1s", "--hold", *PROBE)
    assert code == 0, data["verdict"]
    assert data["passed"] and data["during"]["lost"] == 0 and data["measurements"]["drained"] is True
    entry = _journal(data)
    (undo,) = entry["undo"]
    assert undo["op"] == "run_command" and "curl" in undo["args"]["command"]
    assert cmd.inventory.token not in json.dumps(entry)  # {env:PUSHCTL_TOKEN}: the secret is never journaled
    _, status = run_json(cmd, "status")
    assert [(p["region"], p["origin"]) for p in status["policies"]] == [("south", "operator")]
    code, data = run_json(cmd, "restore", "--region", "south", *PROBE)  # runs drain's undo command
    assert code == 0, data["verdict"]
    wait_baseline(cmd)


def test_a_failing_apply_command_rolls_back_what_it_did(stack: Stack, tmp_path: Path) -> None:
    ref = command_stack(stack, tmp_path)
    real = ref.inventory.driver.commands["drain"].apply
    cmd = command_stack(stack, tmp_path, apply=f"{real} && echo 'the platform says no' >&2 && exit 3")
    proc = cmd.pushctl("drain", "--region", "south", "--spread", "0s", "--no-probe", *cmd.confirm)
    assert proc.returncode == 4, proc.stderr
    assert "the drain command exited 3: the platform says no" in proc.stderr
    (path,) = sorted((cmd.run_dir / "journal").glob("*-drain-*.json"))[-1:]
    assert json.loads(path.read_text())["status"] == "rolled-back"
    wait_baseline(cmd)  # the drain the command made before failing is gone


def _start_long_drain(cmd: Stack) -> tuple[subprocess.Popen[bytes], Path | None]:
    """A drain of north in another process, and its journal once it is `applied` (None after 30 s).

    Devices on north keep the drain going for its 30 s spread: the caller kills or wedges it meanwhile."""
    args = ["drain", "--region", "north", "--spread", "30s", "--devices", "30", "--rate", "20", *cmd.confirm]
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pushctl.cli.main", "--inventory", cmd.inventory.source, *args],
        env=cmd.env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while time.time() - started < 30:
        for path in (cmd.run_dir / "journal").glob("*-drain-*.json"):
            entry = json.loads(path.read_text())
            if entry["created_at"] >= started and entry["status"] == "applied":
                return proc, path
        time.sleep(0.2)
    return proc, None


def test_kill_9_mid_change_then_recover_runs_the_journaled_undo_command(stack: Stack, tmp_path: Path) -> None:
    cmd = command_stack(stack, tmp_path)
    proc, journal = _start_long_drain(cmd)
    proc.kill()
    proc.wait(timeout=10)
    assert journal is not None, "the drain never reached 'applied'"
    _, status = run_json(cmd, "status")
    assert [p["region"] for p in status["policies"]] == ["north"]  # left behind by the dead pushctl
    code, data = run_json(cmd, "recover")
    assert code == 0, data
    (done,) = data["recovered"]
    assert done["ok"] and "drain undo command ran" in done["steps"][0]["detail"]
    assert data["settled"]["back_at_baseline_s"] is not None
    assert json.loads(journal.read_text())["status"] == "recovered"
    wait_baseline(cmd)


def test_an_undo_command_that_does_nothing_fails_the_baseline_check(stack: Stack, tmp_path: Path) -> None:
    cmd = command_stack(stack, tmp_path, settle_s=2, undo="true")  # planted: exits 0, restores nothing
    proc = cmd.pushctl("drain", "--region", "south", "--spread", "0s", "--no-probe", *cmd.confirm, timeout=60)
    assert proc.returncode == 7, proc.stderr
    assert "not back at its baseline" in proc.stderr
    again = cmd.pushctl("recover", timeout=60)  # runs the do-nothing undo again: still not at the baseline
    assert again.returncode == 7 and "printed before: NOT within 2 s" in again.stderr, again.stderr
    # put the platform back by hand, then recover closes the journal (the baseline now matches)
    scheduler = cmd.inventory.services["scheduler"]
    headers = {"Authorization": f"Bearer {cmd.inventory.token}"}
    httpx.delete(f"http://{scheduler.host}:{scheduler.port}/v1/policies", headers=headers, timeout=5).raise_for_status()
    code, data = run_json(cmd, "recover")
    assert code == 0, data
    wait_baseline(cmd)


def test_a_command_that_changes_nothing_fails_the_verification(stack: Stack, tmp_path: Path) -> None:
    cmd = command_stack(stack, tmp_path, apply="true")  # planted: exits 0, drains nothing
    code, data = run_json(cmd, "drain", "--region", "south", "--spread", "0s", "--timeout", "2s", "--no-probe")
    assert code == 1, data
    # no probe: no device on south to move; the dispatcher, asked directly, still hands south out
    assert not data["passed"] and "the dispatcher handed out drained south" in data["verdict"]
    wait_baseline(cmd)


def test_a_verb_the_inventory_does_not_define_is_refused_before_anything_runs(stack: Stack, tmp_path: Path) -> None:
    cmd = command_stack(stack, tmp_path)
    before = set((cmd.run_dir / "journal").glob("*.json"))
    proc = cmd.pushctl("fail", "region", "--region", "south", "--no-probe", *cmd.confirm)
    assert proc.returncode == 2, proc.stderr
    assert "command driver" in proc.stderr and "Traceback" not in proc.stderr
    assert set((cmd.run_dir / "journal").glob("*.json")) == before  # nothing journaled, nothing applied


def test_abort_of_a_stuck_drain_replays_its_journaled_undo_command(stack: Stack, tmp_path: Path) -> None:
    """`pushctl abort` from a second terminal: the drain is wedged (SIGSTOP), so abort kills it and runs the
    curl undo command its journal holds; the platform is back at the driver's baseline."""
    cmd = command_stack(stack, tmp_path)
    proc, journal = _start_long_drain(cmd)
    try:
        assert journal is not None, "the drain never reached 'applied'"
        os.kill(proc.pid, signal.SIGSTOP)
        aborted = cmd.pushctl("abort", "--json", "--timeout", "10ms", timeout=240)
        assert aborted.returncode == 0, aborted.stderr[-2000:]
        report = json.loads(aborted.stdout)
        assert [(s["pid"], s["how"]) for s in report["stopped"]] == [(proc.pid, "killed")]
        (done,) = report["recovered"]
        assert done["ok"] and "drain undo command ran" in done["steps"][0]["detail"], done
        wait_baseline(cmd)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
