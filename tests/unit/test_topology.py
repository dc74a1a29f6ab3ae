"""The inventory model: the reference topology loads, invalid files name file, key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushctl.contract.topology import DEFAULT_INVENTORY, LinkKind, load_inventory
from pushctl.errors import InventoryError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inv.toml"
    path.write_text(text)
    return path


def _reference_text() -> str:
    return DEFAULT_INVENTORY.read_text()


def test_reference_topology_loads_every_link_and_region() -> None:
    inv = load_inventory()
    assert set(inv.regions) == {"north", "east", "south"}
    assert set(inv.idcs) == {"idc1", "idc2"}
    for region in inv.regions:
        link = inv.device_link(region)
        assert link.kind == LinkKind.DEVICE
        # each region's public network has its own Toxiproxy server
        assert link.toxiproxy == f"tp-{region}"
        assert inv.vpc_link(region).toxiproxy == "tp-internal"
    kinds = {link.kind for link in inv.links}
    assert {LinkKind.DEVICE, LinkKind.VPC, LinkKind.CROSS_IDC, LinkKind.STORAGE, LinkKind.KAFKA} <= kinds
    assert inv.link("kafka").upstream_addr == "127.0.0.1:17092"
    assert inv.link_addr("device-south") == ("127.0.0.1", 18203)


def test_no_port_is_in_the_ephemeral_range_and_none_repeats() -> None:
    inv = load_inventory()
    ports = [port for _, port in inv.iter_ports()]
    assert len(ports) == len(set(ports))
    assert all(not 32768 <= p <= 60999 for p in ports)


def test_ephemeral_port_is_rejected_with_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, _reference_text().replace("listen = 18203", "listen = 40000"))
    with pytest.raises(InventoryError) as err:
        load_inventory(path)
    assert str(path) in err.value.message
    assert "device-south" in err.value.message
    assert "40000" in err.value.message
    assert "ephemeral" in err.value.message


def test_link_on_unknown_toxiproxy_names_valid_servers(tmp_path: Path) -> None:
    path = _write(
        tmp_path, _reference_text().replace('toxiproxy = "tp-south"\nlisten', 'toxiproxy = "tp-mars"\nlisten')
    )
    with pytest.raises(
        InventoryError, match=r"links\[2\] \(device-south\)\.toxiproxy: unknown toxiproxy server 'tp-mars'"
    ):
        load_inventory(path)


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, _reference_text().replace("port = 17379", 'port = "six"'))
    with pytest.raises(InventoryError, match=r"services\.redis-cache\.port"):
        load_inventory(path)


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, _reference_text().replace("[idcs.idc1]", "[idcs.idc1]\ncolour = 'red'"))
    with pytest.raises(InventoryError, match=r"idcs\.idc1\.colour"):
        load_inventory(path)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="not valid TOML"):
        load_inventory(_write(tmp_path, "name = "))
    with pytest.raises(InventoryError, match="no such inventory file"):
        load_inventory(tmp_path / "absent.toml")


def test_unknown_link_lookup_lists_valid_links() -> None:
    with pytest.raises(InventoryError, match=r"valid links: .*device-south"):
        load_inventory().link("device-mars")


def test_external_servers_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHCTL_REDIS_URL", "redis://10.1.2.3:6379/0")
    monkeypatch.setenv("PUSHCTL_TOXIPROXY_URL", "http://127.0.0.1:8474")
    inv = load_inventory()
    cache = inv.service("redis-cache")
    assert (cache.host, cache.port, cache.managed) == ("10.1.2.3", 6379, False)
    assert inv.link("store").upstream_addr == "10.1.2.3:6379"
    assert all(not tp.managed and tp.port == 8474 for tp in inv.toxiproxy.values())
