"""The import contracts in pyproject.toml cover every module of pushctl but the contract.

`lint-imports` only checks the modules a contract names: a new package of pushctl that the lists
forget would be free to import into the contract or be imported by the stack.
"""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import pushctl

REPO = Path(__file__).resolve().parents[2]


def _contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["name"]: c for c in config["contracts"]}


def _toolkit_modules() -> set[str]:
    return {f"pushctl.{m.name}" for m in pkgutil.iter_modules(pushctl.__path__)} - {"pushctl.contract"}


def test_the_contract_and_the_stack_are_kept_from_every_other_module() -> None:
    contracts = _contracts()
    expected = sorted(_toolkit_modules())
    for name in (
        "pushctl.contract imports nothing else of pushctl",
        "the reference stack imports only pushctl.contract from pushctl",
    ):
        assert sorted(contracts[name]["forbidden_modules"]) == expected, name  # type: ignore[call-overload]


def test_the_chaos_toolkit_extension_is_kept_from_every_internal_module() -> None:
    contract = _contracts()["the Chaos Toolkit extension drives pushctl through its CLI, never its internals"]
    expected = sorted((_toolkit_modules() | {"pushctl.contract"}) - {"pushctl.chaostoolkit"})
    assert sorted(contract["forbidden_modules"]) == expected  # type: ignore[call-overload]


def test_the_toolkit_never_imports_the_stack() -> None:
    contract = _contracts()["pushctl drives the stack through its API, never by importing it"]
    assert contract["source_modules"] == ["pushctl"]
    assert contract["forbidden_modules"] == ["pushstack"]
