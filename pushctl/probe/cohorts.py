"""Control and experiment cohorts of probe devices, and the device links each cohort dials.

The experiment cohort connects through its own device link per region (`cohort = "experiment"`
in the inventory: a second Toxiproxy proxy to the same broker), the control cohort through the
region's usual one. The dispatcher hands every device the same addresses; an experiment device
dials its cohort's proxy in place of the usual one, as a phone on another carrier reaches the
same broker through another network. A fault on the cohort's links thus reaches only its devices.

    experiment = assign_cohorts(devices, share=0.5, seed=7)   # the same devices for the same seed
    via = cohort_via(inv)          # {"127.0.0.1:18201": "127.0.0.1:18221", ...}
    rewrite("ws://127.0.0.1:18201/ws", via)                   # "ws://127.0.0.1:18221/ws"
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from pushctl.contract.errors import InventoryError
from pushctl.contract.topology import Inventory
from pushctl.errors import UsageError


def assign_cohorts(devices: Sequence[tuple[str, str]], share: float, seed: int | None) -> frozenset[str]:
    """The experiment cohort: `share` of each home region's devices (rounded), picked with `seed`.

    Per region, so both cohorts span every region alike; seeded, so a rerun picks the same slots.
    """
    if not 0 < share < 1:
        raise UsageError(f"the experiment cohort's share must be between 0% and 100% exclusive (got {share:.0%})")
    by_region: dict[str, list[str]] = {}
    for device, home in devices:
        by_region.setdefault(home, []).append(device)
    chosen: set[str] = set()
    for region, members in by_region.items():
        rng = random.Random(f"{seed}:{region}")  # noqa: S311 - a reproducible split, not security
        k = round(len(members) * share)
        chosen.update(rng.sample(members, k))
    return frozenset(chosen)


def cohort_via(inv: Inventory) -> dict[str, str]:
    """host:port of each region's control device link -> that of its experiment-cohort link."""
    out: dict[str, str] = {}
    for region in inv.regions:
        try:
            cohort = inv.cohort_link(region)
        except InventoryError as exc:
            raise UsageError(
                f"{inv.source or inv.name}: cohorts need an experiment-cohort device link per region: {exc}",
                hint='add [[links]] with kind = "device", cohort = "experiment" (see stack/topology.toml)',
            ) from None
        host, port = inv.link_addr(inv.device_link(region).name)
        xhost, xport = inv.link_addr(cohort.name)
        out[f"{host}:{port}"] = f"{xhost}:{xport}"
    return out


def rewrite(url: str, via: Mapping[str, str]) -> str:
    """`url` with its host:port replaced when `via` maps it (an experiment device's dial)."""
    if not via:
        return url
    parts = urlsplit(url)
    target = via.get(parts.netloc)
    return url if target is None else urlunsplit(parts._replace(netloc=target))
