"""pushctl: chaos testing and SRE control for push-notification platforms.

The public surface is the CLI (`pushctl --help`); the importable API is kept small:

    from pushctl import load_inventory, PushctlError
"""

from __future__ import annotations

from pushctl.contract.topology import Inventory, load_inventory
from pushctl.errors import PushctlError

__all__ = ["Inventory", "PushctlError", "load_inventory"]
__version__ = "0.1.0"
