"""The soak's verdict (bench/soak.py): a leak fails it, bursts and pooled connections do not."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SOAK_PATH = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak_under_test", SOAK_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


WINDOWS = {"after_warmup": (400.0, 1800.0), "baseline": (400.0, 520.0), "final": (1500.0, 1800.1)}


def run(soak: ModuleType, rss: Any, fds: Any, go: Any = None) -> dict[str, Any]:
    """A recorded run of one component "c": rss(t) kB and fds(t) every 10 s, every sample quiet."""
    samples = [
        {
            "t": float(t),
            "quiet": True,
            "pid": {"c": 1},
            "rss_kb": {"c": int(rss(t))},
            "fds": {"c": int(fds(t))},
            "go": {"c": go(t)} if go else {},
        }
        for t in range(0, 1810, 10)
    ]
    report = {
        "windows": WINDOWS,
        "grouped": {},
        "samples": samples,
        "drills": [{"kind": "drain", "start": 130.0, "end": 136.0, "exit_code": 0}],
        "ledger": {"total": {"lost": 0}},
    }
    return dict(soak.verdict(report))


def flat(level: float) -> Any:
    return lambda t: level


def test_a_quiet_component_passes(soak: ModuleType) -> None:
    report = run(soak, flat(60_000), flat(30))
    assert report["passed"], report["criteria"]


def test_a_steady_memory_leak_fails(soak: ModuleType) -> None:
    # 60 MB growing 8 % over the run: 1 % between two neighbouring windows
    report = run(soak, lambda t: 60_000 * (1 + 0.08 * t / 1800), flat(30))
    row = report["components"][0]
    assert not report["passed"] and row["rss_trend_pct"] > 5, row


def test_a_leak_that_starts_late_fails_on_the_windows(soak: ModuleType) -> None:
    report = run(soak, lambda t: 60_000 if t < 1400 else 60_000 * 1.08, flat(30))
    assert not report["passed"] and report["components"][0]["rss_growth_pct"] > 5


def test_bursts_that_come_back_down_pass(soak: ModuleType) -> None:
    # a spike every 6 minutes lifts RSS by 15 % for a minute, then it is returned
    report = run(soak, lambda t: 60_000 * (1.15 if t % 360 < 60 else 1.0), flat(30))
    assert report["passed"], report["components"]


def test_one_leaked_descriptor_per_drill_fails(soak: ModuleType) -> None:
    report = run(soak, flat(60_000), lambda t: 30 + t // 120)
    assert not report["passed"] and "descriptors flat" in [k for k, (ok, _) in report["criteria"].items() if not ok]


def test_pooled_connections_that_come_and_go_pass(soak: ModuleType) -> None:
    rng = random.Random(14)
    noise = {t: rng.choice((0, 0, 0, 2, 4, 8, 12)) for t in range(0, 1810, 10)}  # keep-alive pools: peaks close
    report = run(soak, flat(60_000), lambda t: 200 + noise[t])
    assert report["passed"], report["components"]


def test_go_gauges_are_reported_beside_rss(soak: ModuleType) -> None:
    report = run(
        soak, flat(20_000), flat(67), go=lambda t: {"go_goroutines": 177.0, "go_memstats_heap_inuse_bytes": 5e6}
    )
    gauges = report["components"][0]["go"]
    assert gauges["go_goroutines"][:2] == [177.0, 177.0] and gauges["go_memstats_heap_inuse_bytes"][2] == 0.0
