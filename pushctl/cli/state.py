"""Shared CLI state: the inventory a command acts on, loaded once, lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from pushctl.contract.topology import Inventory, load_inventory


@dataclass
class CliState:
    inventory_path: Path | None = None
    _inventory: Inventory | None = field(default=None, repr=False)

    @property
    def inventory(self) -> Inventory:
        if self._inventory is None:
            self._inventory = load_inventory(self.inventory_path)
        return self._inventory


def state(ctx: typer.Context) -> CliState:
    """The CliState of this invocation (created by the root callback)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj
