"""`pushctl init DIR` scaffolds a valid project; `pushctl --version` names the installed distribution."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from pushctl.contract.topology import DEFAULT_INVENTORY, load_inventory
from pushctl.scaffold import inventory_template, project_name
from tests.helpers import run_main

FILES = [
    "topology.toml",
    "experiments/drain-south-and-restore.yaml",
    "experiments/schema.json",
    "runbooks/region-drain.md",
    "gate.sh",
]


def _tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_init_into_a_new_directory_writes_a_valid_project(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    proj = tmp_path / "Edge Platform"
    code, out, err = run_main(monkeypatch, "init", str(proj))
    assert code == 0, err
    assert sorted(_tree(proj)) == sorted(FILES)
    for name in FILES:
        assert f"wrote {proj / name}" in out
    next_steps = out.split("next:\n", 1)[1].splitlines()
    assert len(next_steps) == 3, out
    assert "experiment validate" in next_steps[0] and "stack up" in next_steps[1] and "gate.sh" in next_steps[2]

    inv = load_inventory(proj / "topology.toml")
    reference = load_inventory(DEFAULT_INVENTORY)
    assert (inv.name, inv.reference) == ("edge-platform", False)
    assert inv.token != reference.token and len(inv.token) >= 32
    assert dict(inv.iter_ports()) == dict(reference.iter_ports())  # ports left as in the reference
    assert inv.model_dump(exclude={"name", "reference", "token", "source"}) == reference.model_dump(
        exclude={"name", "reference", "token", "source"}
    )

    code, out, err = run_main(
        monkeypatch, "-i", str(proj / "topology.toml"), "experiment", "validate", str(proj / "experiments")
    )
    assert code == 0, out + err
    code, out, err = run_main(monkeypatch, "runbook", "lint", "--dir", str(proj / "runbooks"))
    assert code == 0, out + err

    gate = proj / "gate.sh"
    assert os.access(gate, os.X_OK)
    assert subprocess.run(["sh", "-n", str(gate)], check=False).returncode == 0
    text = gate.read_text()
    assert "experiment run experiments --confirm-target edge-platform" in text and "--junit" in text


def test_two_projects_get_different_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert run_main(monkeypatch, "init", str(tmp_path / name))[0] == 0
    tokens = {load_inventory(tmp_path / n / "topology.toml").token for n in ("a", "b")}
    assert len(tokens) == 2


def test_the_inventory_template_explains_every_key() -> None:
    text = inventory_template(DEFAULT_INVENTORY.read_text(), name="mine", token="t" * 32)
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    keys: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                keys.add(key)
                walk(sub)
        elif isinstance(value, list):
            for sub in value:
                walk(sub)

    raw = tomllib.loads(text)
    walk({k: v for k, v in raw.items() if k not in ("regions", "idcs", "toxiproxy", "services")})
    for table in ("regions", "toxiproxy", "services"):
        for entry in raw[table].values():
            walk(entry)
    keys -= set(raw["services"]["logic-idc1"]["connect"])  # connect's roles are values, explained as `connect`
    missing = [k for k in sorted(keys) if k not in comments]
    assert not missing, f"keys without a comment: {missing}"
    assert "ports" in comments.lower() and "17xxx" in comments


def test_init_refuses_a_non_empty_directory_and_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    before = _tree(tmp_path)
    code, out, err = run_main(monkeypatch, "init", str(tmp_path))
    assert code == 2
    assert err.strip().count("\n") == 0 and "not empty" in err and "--force" in err
    assert out == ""
    assert _tree(tmp_path) == before


def test_init_refuses_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "topology.toml"
    target.write_text("x\n")
    code, _, err = run_main(monkeypatch, "init", str(target))
    assert code == 2 and "is a file" in err
    assert target.read_text() == "x\n"


def test_init_force_writes_beside_other_files_and_overwrites_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    (tmp_path / "gate.sh").write_text("old\n")
    code, _, err = run_main(monkeypatch, "init", str(tmp_path), "--force")
    assert code == 0, err
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert (tmp_path / "gate.sh").read_text() != "old\n"
    assert sorted(_tree(tmp_path)) == sorted([*FILES, "notes.txt"])


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_the_installed_distributions(monkeypatch: pytest.MonkeyPatch, flag: str) -> None:
    code, out, err = run_main(monkeypatch, flag)
    assert code == 0, err
    assert out == f"pushctl {importlib.metadata.version('pushctl')}\n"


@pytest.mark.parametrize(
    ("directory", "name"),
    [("proj", "proj"), ("My Platform", "my-platform"), ("2024_edge", "platform-2024-edge"), ("--", "platform")],
)
def test_project_name_is_a_valid_inventory_name(tmp_path: Path, directory: str, name: str) -> None:
    assert project_name(tmp_path / directory) == name
