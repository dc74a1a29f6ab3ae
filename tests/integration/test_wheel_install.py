"""The wheel works anywhere: built, installed into a fresh venv, driven from an empty directory.

What an SRE adopting pushctl does, without a checkout in sight: `pip install` the wheel,
`pushctl init`, `pushctl stack install`, start a stack on the project's inventory (moved to ports of
this test's own, +11000: 28xxx and 29xxx), drain a region, stop the stack. Every data file comes
from the wheel's package data. pip fetches the build backend and the dependencies from the index
it is configured with: where that index cannot be reached the test skips, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from pushctl.contract.derive import derived_inventory
from pushctl.runtime.pids import pid_alive

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# 17xxx -> 28xxx, 18xxx -> 29xxx: no other test uses it (a developer's stack beside it may: move it)
PORT_SHIFT = int(os.environ.get("PUSHCTL_WHEEL_TEST_PORT_SHIFT", "11000"))
NAME = "wheel-check"
_PIP = ("-m", "pip", "--disable-pip-version-check")
# what pip says when it cannot reach its index (checked on the first download: the build backend)
_NO_INDEX = ("No matching distribution found for hatchling", "Failed to establish", "NewConnectionError")


def _run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout, check=False)


def _ok(proc: subprocess.CompletedProcess[str], what: str) -> str:
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _clean_env(run_dir: Path, venv_bin: Path) -> dict[str, str]:
    """This machine's environment without any pushctl setting or virtualenv of the checkout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PUSHCTL_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["PUSHCTL_RUN_DIR"] = str(run_dir)
    return env


def _build_wheel(out: Path, env: dict[str, str]) -> Path:
    """`pip wheel --no-deps` of the checkout (pip fetches hatchling); skips when no index answers."""
    proc = _run(
        [sys.executable, *_PIP, "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)],
        cwd=out,
        env=env,
        timeout=300,
    )
    said = [line.strip() for line in proc.stderr.splitlines() if any(m in line for m in _NO_INDEX)]
    if proc.returncode != 0 and said:
        pytest.skip(f"no package index reachable to fetch the build backend: {said[-1]}")
    _ok(proc, "pip wheel")
    wheels = sorted(out.glob("pushctl-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _pids(run_dir: Path) -> list[int]:
    return [int(json.loads(p.read_text())["pid"]) for p in (run_dir / NAME / "pids").glob("*.json")]


@pytest.mark.timeout(420)
def test_the_wheel_installs_and_runs_a_stack_from_an_empty_directory(tmp_path: Path) -> None:
    dist, home, work, run_dir = (tmp_path / d for d in ("dist", "venv", "work", "run"))
    for d in (dist, work, run_dir):
        d.mkdir()
    env = _clean_env(run_dir, home / "bin")
    wheel = _build_wheel(dist, env)

    venv.create(home, with_pip=True)
    python, pushctl = str(home / "bin" / "python"), str(home / "bin" / "pushctl")
    _ok(_run([python, *_PIP, "install", "--quiet", str(wheel)], cwd=work, env=env, timeout=600), "pip install")

    def cli(*args: str, timeout: float = 120) -> str:
        return _ok(_run([pushctl, *args], cwd=work, env=env, timeout=timeout), f"pushctl {' '.join(args)}")

    # the package data, not a checkout: nothing of the repository is reachable from here
    where = _ok(
        _run([python, "-c", "from pushctl.contract import resources as r; print(r.checkout(), r.data_root())"],
             cwd=work, env=env, timeout=60),
        "resources",
    )  # fmt: skip
    checkout, data_root = where.split()
    assert checkout == "None" and Path(data_root).is_relative_to(home), where

    assert cli("--version") == f"pushctl {wheel.name.split('-')[1]}\n"
    cli("init", "proj")
    assert (work / "proj" / "topology.toml").is_file()
    cli("-i", "proj/topology.toml", "experiment", "validate", "proj/experiments")
    cli("runbook", "lint", "--dir", "proj/runbooks")
    cli("stack", "install", timeout=600)

    inventory = work / "shifted.toml"
    inventory.write_text(derived_inventory((work / "proj" / "topology.toml").read_text(), name=NAME, shift=PORT_SHIFT))
    inv = ("-i", str(inventory))
    pids: list[int] = []
    try:
        cli(*inv, "stack", "up", timeout=300)
        pids = _pids(run_dir)
        assert pids, "stack up recorded no process"
        report = json.loads(
            cli(*inv, "drain", "--region", "south", "--spread", "2s", "--devices", "30", "--rate", "30",
                "--confirm-target", NAME, "--json", timeout=180)
        )  # fmt: skip
        assert report["passed"] is True, report
        assert report["measurements"]["devices_left"] == 0, report
        cli(*inv, "stack", "down", "--purge", timeout=90)
    finally:
        pids = pids or _pids(run_dir)
        if any(pid_alive(p) for p in pids):  # the test failed half-way: stop what it started
            _run([pushctl, *inv, "stack", "down", "--purge"], cwd=work, env=env, timeout=90)
        leftovers = [p for p in pids if pid_alive(p)]
        for pid in leftovers:
            os.kill(pid, 9)
        shutil.rmtree(home, ignore_errors=True)
    assert not leftovers, f"stack down left processes running: {leftovers}"
    assert not (run_dir / NAME).exists(), "stack down --purge left the run directory"
