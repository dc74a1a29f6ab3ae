"""Target drivers: the inventory's [driver] table validated on load, the command driver's templates,
its journal-before-apply order, its refusals, and how its failures read."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pushctl.actions.base import ActionContext
from pushctl.actions.journal import Journal, journal_dir, load_entries
from pushctl.actions.undo import run_undo, undo_from_json
from pushctl.contract.driverspec import render
from pushctl.contract.topology import Inventory, load_inventory
from pushctl.drivers import Driver, driver_for, known_kinds
from pushctl.drivers.command import CommandDriver, RunCommand
from pushctl.drivers.reference import ReferenceDriver
from pushctl.drivers.shell import run_shell
from pushctl.errors import CommandFailed, InventoryError, UsageError
from tests.helpers import REFERENCE, free_topology, run_main

pytestmark = pytest.mark.timeout(30)

DRAIN = """
[driver]
kind = "command"

[driver.commands.drain]
apply = "{apply}"
undo = "{undo}"
"""


def inventory(tmp_path: Path, driver: str) -> Path:
    """The reference topology on free ports (named `unit`: a defect that let a change through would hit
    no stack of anyone's), with `driver` appended."""
    (tmp_path / "base").mkdir(exist_ok=True)
    base = free_topology(tmp_path / "base", name="unit", offsets=range(4000, 13000, 10)).read_text()
    path = tmp_path / "topology.toml"
    path.write_text(base + driver)
    return path


def command_inv(tmp_path: Path, apply: str, undo: str, extra: str = "") -> Inventory:
    text = DRAIN.replace("{apply}", apply.replace('"', '\\"')).replace("{undo}", undo.replace('"', '\\"')) + extra
    return load_inventory(inventory(tmp_path, text))


@pytest.fixture(autouse=True)
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PUSHCTL_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("PUSHCTL_INVENTORY", raising=False)
    return tmp_path / "run"


# ---- the inventory ------------------------------------------------------------------------------
def test_no_driver_table_means_the_reference_driver_and_both_kinds_are_installed(tmp_path: Path) -> None:
    inv = load_inventory(REFERENCE)
    assert isinstance(driver_for(inv), ReferenceDriver)
    # both implement the protocol (mypy checks these assignments; isinstance checks the names at run time)
    reference: Driver = ReferenceDriver(inv)
    command: Driver = CommandDriver(command_inv(tmp_path, "x", "y"))
    assert isinstance(reference, Driver) and isinstance(command, Driver)
    assert {"command", "reference"} <= set(known_kinds())


@pytest.mark.parametrize(
    ("driver", "says"),
    [
        ('\n[driver]\nkind = "ansible"\n', "driver.kind: unknown driver 'ansible'; installed: "),
        (
            DRAIN.replace("{apply}", "drain {regoin}").replace("{undo}", "undrain {region}"),
            "unknown placeholder {regoin}",
        ),
        ('\n[driver]\nkind = "command"\n[driver.commands.drain]\napply = "drain {region}"\n', "undo: Field required"),
        (DRAIN.replace("{apply}", "x").replace("{undo}", "y").replace(".drain]", ".reboot]"), "unknown verb 'reboot'"),
        (DRAIN.replace("{apply}", "x {spread_s}").replace("{undo}", "y {spread_s}"), "unknown placeholder {spread_s}"),
        (DRAIN.replace("{apply}", "if x; then { y; }; fi").replace("{undo}", "z"), "unknown placeholder { y; }"),
        (DRAIN.replace("{apply}", "x {env:9LIVES}").replace("{undo}", "z"), "'9LIVES' is not an environment"),
    ],
    ids=["unknown-kind", "unknown-placeholder", "no-undo", "unknown-verb", "undo-of-drain", "shell-brace", "env-name"],
)
def test_a_bad_driver_table_is_one_line_exit_2_and_nothing_applied(
    tmp_path: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch, driver: str, says: str
) -> None:
    path = inventory(tmp_path, driver)
    code, _, err = run_main(monkeypatch, "--inventory", str(path), "drain", "--region", "south", "--no-probe")
    assert code == 2, err
    assert says in err.replace("\n", ""), err
    assert "Traceback" not in err
    assert not (run_dir / "unit").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["switch-idc", "--to", "idc2", "--no-probe"], "defines no switch command"),
        (["throttle", "access", "--limit", "100", "--no-probe"], "defines no throttle command"),
        (["fail", "region", "--region", "south", "--no-probe"], "reference stack's own mechanics"),
        (["fail", "idc", "--idc", "idc1", "--no-probe"], "reference stack's own mechanics"),
    ],
)
def test_a_verb_the_command_inventory_does_not_define_is_refused_before_anything_runs(
    tmp_path: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], says: str
) -> None:
    inv = command_inv(tmp_path, "drain {region}", "undrain {region}")
    code, _, err = run_main(monkeypatch, "--inventory", inv.source, *args)
    assert code == 2, err
    assert says in err.replace("\n", ""), err
    assert not journal_dir(inv).exists()  # no journal: nothing was applied


def test_a_secret_the_environment_lacks_is_refused_before_anything_runs(
    tmp_path: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PUSHCTL_TEST_NO_SUCH_TOKEN", raising=False)
    inv = command_inv(tmp_path, "drain {env:PUSHCTL_TEST_NO_SUCH_TOKEN}", "undrain {region}")
    code, _, err = run_main(monkeypatch, "--inventory", inv.source, "drain", "--region", "south", "--no-probe")
    assert code == 2, err
    assert "$PUSHCTL_TEST_NO_SUCH_TOKEN" in err and not journal_dir(inv).exists()


# ---- templates ----------------------------------------------------------------------------------
async def test_placeholders_are_shell_quoted_and_secrets_stay_references(monkeypatch: pytest.MonkeyPatch) -> None:
    hostile = "south'; touch /tmp/pwned; echo '"
    command = render("printf %s {region} {{literal}} {env:PUSHCTL_TEST_SECRET}", {"region": hostile})
    assert "s3cret" not in command and '"${PUSHCTL_TEST_SECRET}"' in command
    monkeypatch.setenv("PUSHCTL_TEST_SECRET", "s3 cret")
    out = await run_shell(command, timeout_s=5, what="the test command")
    assert out == f"{hostile}{{literal}}s3 cret"  # one word each: nothing ran but printf
    assert (
        render("-d {body}", {"body": {"region": "south", "spread_s": 5.0}})
        == """-d '{"region":"south","spread_s":5.0}'"""
    )


async def test_a_non_zero_exit_or_a_timeout_is_a_clear_command_failure() -> None:
    with pytest.raises(CommandFailed, match="the drain command exited 3: no such region"):
        await run_shell("echo 'no such region' >&2; exit 3", timeout_s=5, what="the drain command")
    started = time.monotonic()
    with pytest.raises(CommandFailed, match=r"the drain command timed out after 0\.5s"):
        await run_shell("sleep 20 & sleep 20; wait", timeout_s=0.5, what="the drain command")
    assert time.monotonic() - started < 5  # the whole process group was killed, not waited for
    assert CommandFailed("x").exit_code == 4


# ---- the journal order and the undo step --------------------------------------------------------
def _ctx(inv: Inventory) -> ActionContext:
    journal = Journal.begin(inv, "drain", {"region": "south"}, [])
    return ActionContext(inv, None, journal, "process", lambda _: None)  # type: ignore[arg-type]


async def test_the_undo_command_is_journaled_before_the_apply_command_runs(tmp_path: Path, run_dir: Path) -> None:
    seen = tmp_path / "journal-at-apply.txt"
    # the apply command copies what the journal file holds at the moment it runs
    inv = command_inv(tmp_path, f"cat {run_dir}/unit/journal/*.json > {seen}", "echo undone {region}")
    await driver_for(inv).drain(_ctx(inv), "south", 5.0)
    assert '"op": "run_command"' in seen.read_text() and "echo undone south" in seen.read_text()


async def test_the_journaled_undo_step_reloads_and_replays_like_any_other(tmp_path: Path) -> None:
    marker = tmp_path / "undone"
    inv = command_inv(tmp_path, "true", f"touch {marker}.{{region}}")
    ctx = _ctx(inv)
    await driver_for(inv).drain(ctx, "south", 5.0)
    (entry,) = load_entries(inv)
    (step,) = entry.undo
    assert isinstance(step, RunCommand) and step.to_json()["op"] == "run_command"
    assert undo_from_json(step.to_json()) == step
    (outcome,) = await run_undo(inv, entry.undo, log=lambda _: None)
    assert outcome.ok and marker.with_suffix(".south").exists()


async def test_a_failing_undo_command_is_a_failed_step_not_a_traceback(tmp_path: Path) -> None:
    step = RunCommand(verb="drain", command="echo 'policy store down' >&2; exit 1", timeout_s=5)
    (outcome,) = await run_undo(load_inventory(REFERENCE), [step], log=lambda _: None)
    assert not outcome.ok and outcome.detail == "the drain undo command exited 1: policy store down"


async def test_the_baseline_check_fails_when_the_state_does_not_come_back(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("no policies")
    baseline = f'\n[driver.baseline]\ncommand = "cat {state}"\nsettle_s = 0.6\n'
    inv = command_inv(tmp_path, "true", "true", baseline)
    driver = driver_for(inv)
    before = await driver.snapshot()
    assert before == "no policies"
    assert (await driver.wait_baseline(before))[0] is not None
    state.write_text("drain-south-1234")  # an undo that did nothing leaves this behind
    seconds, now = await driver.wait_baseline(before)
    assert seconds is None and now == "drain-south-1234"


def test_restore_needs_the_drain_undo_and_heal_needs_nothing(tmp_path: Path) -> None:
    driver = driver_for(command_inv(tmp_path, "drain {region}", "undrain {region}"))
    driver.require("restore", "restore --region south")
    driver.require("journal", "heal region")
    with pytest.raises(UsageError):
        driver.require("storage_fault", "fail redis")
    with pytest.raises(InventoryError):
        load_inventory(
            inventory(tmp_path, '\n[driver]\nkind = "reference"\ntimeout_s = 5\n[driver.baseline]\ncommand = "x"\n')
        )


def test_the_example_is_the_reference_topology_plus_its_driver_table() -> None:
    """examples/command-driver drives the reference stack: its topology must stay the reference one."""
    example = REFERENCE.parents[1] / "examples" / "command-driver" / "topology.toml"
    inv = load_inventory(example)
    assert inv.driver.kind == "command" and set(inv.driver.commands) == {"drain", "switch", "throttle", "storage_fault"}
    topology = example.read_text().split("# ==== the command driver")[0].splitlines()[3:]
    assert [ln for ln in topology if ln] == [ln for ln in REFERENCE.read_text().splitlines()[1:] if ln], (
        f"{example} no longer copies stack/topology.toml: copy it again below the header (keep the [driver] table)"
    )
