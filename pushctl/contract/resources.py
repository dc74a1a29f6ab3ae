"""Where pushctl's data files are: the source checkout when it runs from one, the installed wheel otherwise.

pushctl ships more than code: the reference inventory, the experiment library and its schema, the
runbooks, the OpenAPI and metric docs, and the install resources of the stack (Kafka's build files,
the Dockerfile and its scripts). In a checkout they sit beside `pushctl/`; a wheel carries them as
package data under `pushctl/_data/`, at the same relative paths (pyproject's `force-include`). Every
caller names a file by its path in the repository and gets the one that exists here:

    resource("stack/topology.toml")   # <checkout>/stack/topology.toml, or .../pushctl/_data/stack/topology.toml
    checkout()                        # the checkout's root, or None when running from a wheel

This module lives in the contract, and uses only the standard library, because the contract's
`topology` and `openapi` modules need it and may import nothing else of pushctl.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

DATA_DIR = "_data"  # inside the `pushctl` package of a wheel
_ROOT = Path(__file__).resolve().parents[2]
# files that only a checkout of pushctl has at its root (a wheel's site-packages has neither)
_CHECKOUT_MARKERS = ("pyproject.toml", "stack/topology.toml")


def checkout() -> Path | None:
    """The root of the source checkout pushctl is imported from; None for an installed wheel.

    Builds that need the sources themselves (the docker runtime's wheel of pushctl) ask this.
    """
    return _ROOT if all((_ROOT / marker).is_file() for marker in _CHECKOUT_MARKERS) else None


def data_root() -> Path:
    """The directory that holds the repository's data files: the checkout, else the package data."""
    root = checkout()
    if root is not None:
        return root
    # pip unpacks wheels, so the package is a directory and this is a real path
    return Path(str(importlib.resources.files("pushctl") / DATA_DIR))


def resource(relative: str) -> Path:
    """The file or directory at `relative` (its path in the repository, e.g. "experiments").

    The path may not exist (a wheel built without its data); callers report that as they did for
    a checkout missing the file.
    """
    return data_root() / relative
