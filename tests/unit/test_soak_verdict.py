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


def go_server(heap_goal: Any, goroutines: Any = None) -> Any:
    def gauges(t: float) -> dict[str, float]:
        return {"go_goroutines": goroutines(t) if goroutines else 194.0, "go_memstats_next_gc_bytes": heap_goal(t)}

    return gauges


def test_a_go_server_whose_rss_drifts_but_whose_heap_is_flat_passes(soak: ModuleType) -> None:
    # Toxiproxy on the quiet machine: RSS +11 % over the run, its live heap flat
    report = run(soak, lambda t: 24_000 * (1 + 0.11 * t / 1800), flat(69), go=go_server(flat(8e6)))
    row = report["components"][0]
    assert report["passed"], report["criteria"]
    assert row["rss_trend_pct"] > 5 and row["go"]["go_memstats_next_gc_bytes"][2] == 0.0


def test_a_go_server_whose_heap_grows_fails(soak: ModuleType) -> None:
    report = run(soak, flat(24_000), flat(69), go=go_server(lambda t: 8e6 * (1 + 0.1 * t / 1800)))
    failed = [why for ok, why in report["criteria"].values() if not ok]
    assert not report["passed"] and "go_memstats_next_gc_bytes" in failed[0], failed


def test_a_go_server_that_leaks_goroutines_fails(soak: ModuleType) -> None:
    # one proxied connection leaked per drill: two goroutines every 2 minutes, heap and descriptors flat
    report = run(soak, flat(24_000), flat(69), go=go_server(flat(8e6), goroutines=lambda t: 194.0 + 2 * (t // 120)))
    assert not report["passed"], report["criteria"]


def test_prometheus_is_judged_by_its_head_series(soak: ModuleType) -> None:
    def prometheus(series: Any) -> Any:
        return lambda t: {"go_goroutines": 40.0, "go_memstats_next_gc_bytes": 3e7 * (1 + t / 1800), **series(t)}

    head_fills = run(soak, lambda t: 70_000 * (1 + 0.12 * t / 1800), flat(23), go=prometheus(lambda t: {}))
    assert not head_fills["passed"], "without its head series, Prometheus is judged by its heap"
    steady = prometheus(lambda t: {"prometheus_tsdb_head_series": 4_000.0})
    assert run(soak, lambda t: 70_000 * (1 + 0.12 * t / 1800), flat(23), go=steady)["passed"]
    unbounded = prometheus(lambda t: {"prometheus_tsdb_head_series": 4_000.0 + 960 * (t // 360)})
    report = run(soak, flat(70_000), flat(23), go=unbounded)
    assert not report["passed"] and "prometheus_tsdb_head_series" in str(report["criteria"]), report["criteria"]
