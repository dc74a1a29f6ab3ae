"""Every command that changes a non-reference inventory refuses until the operator names the target.

Nothing is running here: a refused command must stop before it reaches anything, and a confirmed one
must get as far as executing (where a stub stands in for the real run).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pushctl.cli import actions as actions_cli
from pushctl.cli import fault as fault_cli
from pushctl.contract.topology import DEFAULT_INVENTORY
from pushctl.errors import TargetUnreachable
from tests.helpers import run_main

CHANGES = [
    ["drain", "--region", "south"],
    ["restore", "--region", "south"],
    ["fail", "region", "--region", "south"],
    ["fail", "idc", "--idc", "idc1"],
    ["fail", "redis", "--mode", "down"],
    ["switch-idc", "--to", "idc2"],
    ["throttle", "access", "--limit", "10/s"],
    ["fault", "add", "cache", "latency", "--latency", "10"],
    ["fault", "down", "cache"],
    ["fault", "cpu", "bypass", "--cpus", "0.2"],
]


class Reached(TargetUnreachable):
    """Raised by the stubs: the command got past the confirmation to the point of acting."""


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the reference inventory renamed `staging` and marked as not the reference."""
    text = DEFAULT_INVENTORY.read_text().replace('name = "reference"', 'name = "staging"')
    path = tmp_path / "staging.toml"
    path.write_text(text.replace("reference = true", "reference = false"))
    monkeypatch.delenv("PUSHCTL_CONFIRM_TARGET", raising=False)
    monkeypatch.delenv("PUSHCTL_INVENTORY", raising=False)
    return path


@pytest.fixture(autouse=True)
def stubs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand-ins for the parts that act: the action runner, Toxiproxy, the runtime."""
    reached: list[str] = []

    async def execute(*_args: object, **_kw: object) -> None:
        reached.append("execute")
        raise Reached("reached execute")

    def no_toxiproxy(*_args: object, **_kw: object) -> None:
        reached.append("toxiproxy")
        raise Reached("reached toxiproxy")

    monkeypatch.setattr(actions_cli, "execute", execute)
    monkeypatch.setattr("pushctl.cli.fault.links.apply_fault", no_toxiproxy)
    monkeypatch.setattr(fault_cli, "get_runtime", no_toxiproxy)
    return reached


def run(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """(exit code, stderr without the console's line wrapping)."""
    code, _out, err = run_main(monkeypatch, *args)
    return code, err.replace("\n", "")


@pytest.mark.parametrize("command", CHANGES, ids=lambda c: " ".join(c[:2]))
def test_a_change_to_another_inventory_is_refused_until_its_name_is_given(
    command: list[str], staging: Path, stubs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = run(monkeypatch, "-i", str(staging), *command)
    assert code == 2 and "not the reference stack" in err and "--confirm-target staging" in err, err
    assert "Traceback" not in err and stubs == []

    code, err = run(monkeypatch, "-i", str(staging), *command, "--confirm-target", "prod")
    assert code == 2 and "does not match" in err and stubs == [], err

    code, err = run(monkeypatch, "-i", str(staging), *command, "--confirm-target", "staging")
    assert code == 4 and "reached" in err and len(stubs) == 1, err


def test_the_environment_confirms_the_commands_runbook_verify_runs(
    staging: Path, stubs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUSHCTL_CONFIRM_TARGET", "staging")
    code, err = run(monkeypatch, "-i", str(staging), "drain", "--region", "south")
    assert code == 4 and stubs == ["execute"], err


def test_a_plan_changes_nothing_so_needs_no_confirmation(
    staging: Path, stubs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = run(monkeypatch, "-i", str(staging), "drain", "--region", "south", "--dry-run", "--json")
    assert code == 0 and stubs == [], err


def test_the_reference_stack_needs_no_confirmation(stubs: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUSHCTL_INVENTORY", raising=False)
    code, err = run(monkeypatch, "drain", "--region", "south")
    assert code == 4 and stubs == ["execute"], err


def test_bad_input_is_reported_before_the_confirmation(staging: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, err = run(monkeypatch, "-i", str(staging), "drain", "--region", "mars")
    assert code == 2 and "mars" in err, err
