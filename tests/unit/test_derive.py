"""A derived inventory is a second stack's: its own name, not the reference, no shared port."""

from __future__ import annotations

from pathlib import Path

from pushctl.contract.derive import derived_inventory
from pushctl.contract.topology import load_inventory

REFERENCE = Path(__file__).parents[2] / "stack" / "topology.toml"


def _ports(inv_path: Path) -> set[int]:
    return {port for _, port in load_inventory(inv_path).iter_ports()}


def test_derived_inventory_moves_every_port_and_is_not_the_reference(tmp_path: Path) -> None:
    copy = tmp_path / "topology.toml"
    copy.write_text(derived_inventory(REFERENCE.read_text(), name="side", shift=9000))
    inv = load_inventory(copy)
    assert inv.name == "side" and inv.reference is False
    before, after = _ports(REFERENCE), _ports(copy)
    assert after == {p + 9000 for p in before}
