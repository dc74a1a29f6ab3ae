"""Shared CLI state: the inventory a command acts on, loaded once, lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from pushctl.contract.topology import Inventory, load_inventory
from pushctl.drivers import driver_for


@dataclass
class CliState:
    inventory_path: Path | None = None
    _inventory: Inventory | None = field(default=None, repr=False)

    @property
    def inventory(self) -> Inventory:
        if self._inventory is None:
            inv = load_inventory(self.inventory_path)
            driver_for(inv)  # an unknown [driver] kind is bad input, whatever the command
            self._inventory = inv
        return self._inventory


def state(ctx: typer.Context) -> CliState:
    """The CliState of this invocation (created by the root callback)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj
