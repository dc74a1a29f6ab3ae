"""Where the data files are: the checkout when running from one, the wheel's package data otherwise."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import pushctl
from pushctl.contract import openapi, resources, topology
from pushctl.errors import MissingToolchain
from pushctl.runbooks import catalog, metrics
from pushctl.runtime import kafka
from pushctl.runtime.docker import images

REPO = Path(__file__).resolve().parents[2]


def test_from_a_checkout_every_resource_is_the_checkouts_own_file() -> None:
    assert resources.checkout() == REPO
    assert resources.resource("stack/topology.toml") == REPO / "stack" / "topology.toml"
    assert topology.DEFAULT_INVENTORY == REPO / "stack" / "topology.toml"
    assert openapi.DOCS_DIR == REPO / "docs" / "openapi"
    assert metrics.DOCS_DIR == REPO / "docs"
    assert catalog.DEFAULT_DIR == REPO / "runbooks"
    assert catalog.EXPERIMENTS_DIR == REPO / "experiments"
    assert images.DOCKERFILE == REPO / "stack" / "Dockerfile"
    assert images.DOCKER_DIR == REPO / "stack" / "install" / "docker"
    assert kafka._RESOURCES == REPO / "stack" / "install" / "kafka"


def test_without_a_checkout_resources_are_the_package_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(resources, "_ROOT", tmp_path)  # a site-packages' parent: no pyproject.toml
    assert resources.checkout() is None
    data = Path(pushctl.__file__).parent / resources.DATA_DIR
    assert resources.resource("experiments") == data / "experiments"


def test_the_docker_runtime_refuses_to_build_without_a_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "checkout", lambda: None)
    with pytest.raises(MissingToolchain, match="needs a pushctl source checkout"):
        images._repo()


def test_the_wheel_carries_every_resource_at_its_repository_path() -> None:
    """pyproject's force-include maps each path to pushctl/_data/<the same path>, and each exists."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    forced = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    for source, target in forced.items():
        assert target == f"pushctl/{resources.DATA_DIR}/{source}"
        assert (REPO / source).exists(), source
    used = ["stack/topology.toml", "stack/Dockerfile", "stack/install", "experiments", "runbooks", "docs"]
    for path in used:
        assert any(path == s or path.startswith(s + "/") for s in forced), f"{path} is not in the wheel"
