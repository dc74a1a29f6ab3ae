"""Cohorts: the interval functions against published values, the split, the dial rewrite, the
comparison's checks (each shown failing), the inventory's cohort links and the refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pushctl.contract.errors import InventoryError
from pushctl.contract.topology import load_inventory
from pushctl.errors import UsageError
from pushctl.experiments.cohorts import cohort_checks, compare, render_cohorts
from pushctl.experiments.loader import ExperimentInvalid, load_experiment
from pushctl.experiments.model import CohortSettings, Tolerance
from pushctl.experiments.resolve import cohort_target, resolve
from pushctl.probe.cohorts import assign_cohorts, cohort_via, rewrite
from pushctl.probe.device import DeviceConfig
from pushctl.probe.intervals import bootstrap_p99_diff, newcombe_diff, wilson
from pushctl.probe.ledger import Ledger, LedgerSummary

REPO = Path(__file__).resolve().parents[2]


# ---- intervals: published values -----------------------------------------------------------------
def test_wilson_matches_newcombe_1998_single_proportion_example() -> None:
    lo, hi = wilson(81, 263)  # Newcombe (1998a), Statistics in Medicine 17:857, example (a)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)


@pytest.mark.parametrize(
    ("control", "experiment", "expected"),
    [
        ((48, 80), (56, 70), (0.0524, 0.3339)),  # Newcombe (1998b), Stat Med 17:873, table II, method 10
        ((3, 10), (9, 10), (0.1705, 0.8090)),
        ((5, 56), (0, 29), (-0.1926, 0.0381)),
    ],
)
def test_newcombe_difference_matches_the_published_table(
    control: tuple[int, int], experiment: tuple[int, int], expected: tuple[float, float]
) -> None:
    lo, hi = newcombe_diff(*control, *experiment)
    assert (round(lo, 4), round(hi, 4)) == expected


def test_a_wrong_input_gives_a_wrong_interval() -> None:
    """The published-value tests can fail: swapping the cohorts flips the interval's sign."""
    lo, _ = newcombe_diff(56, 70, 48, 80)
    assert round(lo, 4) != 0.0524


def test_intervals_at_the_edges_and_bad_input() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = newcombe_diff(1000, 1000, 1000, 1000)
    assert lo < 0 < hi and hi - lo < 0.01
    with pytest.raises(ValueError, match="successes"):
        wilson(5, 3)


def test_bootstrap_brackets_a_real_p99_shift_and_not_a_null_one() -> None:
    control = [0.010 + i * 1e-5 for i in range(1000)]
    shifted = [v + 0.200 for v in control]
    lo, hi = bootstrap_p99_diff(control, shifted) or (0.0, 0.0)
    assert 0.15 < lo <= 0.2 <= hi < 0.25
    lo0, hi0 = bootstrap_p99_diff(control, control) or (1.0, 1.0)
    assert lo0 <= 0 <= hi0
    assert bootstrap_p99_diff([], control) is None


# ---- the split and the dial ---------------------------------------------------------------------
def _devices(per_region: int = 30) -> list[tuple[str, str]]:
    return [(f"d-{r}-{i}", r) for r in ("north", "east", "south") for i in range(per_region)]


def test_cohorts_are_even_across_regions_and_seeded() -> None:
    devices = _devices()
    a = assign_cohorts(devices, 0.5, seed=7)
    assert a == assign_cohorts(devices, 0.5, seed=7)
    assert a != assign_cohorts(devices, 0.5, seed=8)
    for region in ("north", "east", "south"):
        assert sum(1 for d, r in devices if r == region and d in a) == 15
    assert len(assign_cohorts(devices, 0.2, seed=1)) == 18
    with pytest.raises(UsageError):
        assign_cohorts(devices, 1.0, seed=1)


def test_experiment_devices_dial_their_cohort_link() -> None:
    inv = load_inventory(REPO / "stack" / "topology.toml")
    via = cohort_via(inv)
    assert rewrite("ws://127.0.0.1:18203/ws", via) == "ws://127.0.0.1:18223/ws"
    assert rewrite("ws://127.0.0.1:18203/ws", {}) == "ws://127.0.0.1:18203/ws"
    assert rewrite("ws://127.0.0.1:17100/ws", via) == "ws://127.0.0.1:17100/ws"


def test_the_inventory_keeps_control_and_experiment_links_apart(tmp_path: Path) -> None:
    inv = load_inventory(REPO / "stack" / "topology.toml")
    assert inv.device_link("south").name == "device-south"
    assert inv.cohort_link("south").name == "device-south-x"
    assert inv.has_cohorts
    text = (REPO / "stack" / "topology.toml").read_text()
    bad = tmp_path / "t.toml"
    bad.write_text(
        text.replace('name = "vpc-north"\nkind = "vpc"', 'name = "vpc-north"\nkind = "vpc"\ncohort = "experiment"')
    )
    with pytest.raises(InventoryError, match="only a device link belongs to a cohort"):
        load_inventory(bad)
    without = tmp_path / "w.toml"
    without.write_text(
        text.replace('cohort = "experiment"\nregion = "east"', 'cohort = "experiment"\nregion = "north"')
    )
    with pytest.raises(InventoryError, match="already has an experiment-cohort device link"):
        load_inventory(without)  # device-east-x filed under north: two experiment links there, none in east


def test_cohort_target_resolves_and_refuses() -> None:
    inv = load_inventory(REPO / "stack" / "topology.toml")
    assert cohort_target(inv, "device-north", "experiment") == "device-north-x"
    assert cohort_target(inv, "device-north", None) == "device-north"
    with pytest.raises(UsageError, match="device links only; kafka is a kafka link"):
        cohort_target(inv, "kafka", "experiment")


# ---- the comparison and its checks -----------------------------------------------------------------
class _FakeProbe:
    """A ledger with two cohorts: 1000 messages to each, `late_control` / `late_experiment` late."""

    def __init__(self, late_control: int, late_experiment: int, delay_experiment: float = 0.0) -> None:
        self.ledger = Ledger(deadline=1.0, t0=1000.0)
        self.cohorts = {"control": frozenset({"c"}), "experiment": frozenset({"e"})}
        for dev, late, delay in (("c", late_control, 0.0), ("e", late_experiment, delay_experiment)):
            self.ledger.register(dev, "north")
            for i in range(1000):
                at = 1000.0 + i * 0.01
                self.ledger.sent(f"{dev}{i}", at, [dev])
                self.ledger.delivered(f"{dev}{i}", dev, at + (2.0 if i < late else 0.01 + delay))

    def summary(
        self, *, since: float | None = None, until: float | None = None, devices: object = None
    ) -> LedgerSummary:
        return self.ledger.summary(since=since, until=until, devices=devices, final=True)  # type: ignore[arg-type]


SETTINGS = CohortSettings(control=Tolerance(min=99.0), max_cost=1.0, min_cost=None)


def test_a_harmless_fault_passes_and_reads_as_a_cost_with_its_interval() -> None:
    cmp = compare(_FakeProbe(0, 1), since=0, until=1e12, confidence=0.95)
    assert cmp.cost == pytest.approx(0.1)
    assert "the fault cost 0.10 points ± " in cmp.verdict()
    assert all(r.ok for r in cohort_checks(cmp, SETTINGS, at=time.time()))
    assert "experiment" in render_cohorts(cmp) and "difference (experiment - control)" in render_cohorts(cmp)


def test_a_fault_that_costs_more_than_the_tolerance_fails_the_difference_check() -> None:
    cmp = compare(_FakeProbe(0, 20), since=0, until=1e12, confidence=0.95)  # 2 points lost
    results = {r.title: r for r in cohort_checks(cmp, SETTINGS, at=time.time())}
    cost = next(r for t, r in results.items() if t.startswith("the fault cost at most"))
    assert not cost.ok and "the fault cost 2.00 points" in cost.detail
    assert next(r for t, r in results.items() if t.startswith("the control cohort")).ok


def test_a_fault_leaking_to_the_control_cohort_fails_the_control_check() -> None:
    cmp = compare(_FakeProbe(20, 20), since=0, until=1e12, confidence=0.95)  # both cohorts hit
    results = cohort_checks(cmp, CohortSettings(min_cost=1.0), at=time.time())
    control = next(r for r in results if r.title.startswith("the control cohort"))
    reached = next(r for r in results if r.title.startswith("the fault reached"))
    assert not control.ok and "control cohort: delivery 98%" in control.detail
    assert not reached.ok  # no difference left: the fault did not single out the experiment cohort
    # a slow rig can make a cohort late, not one cohort later than the other: only the first is timing
    assert control.timing and not reached.timing


def test_the_p99_tolerance_fails_on_a_latency_shift() -> None:
    cmp = compare(_FakeProbe(0, 0, delay_experiment=0.3), since=0, until=1e12, confidence=0.95)
    assert cmp.p99_ci_ms is not None and cmp.p99_ci_ms[0] > 250
    (_, p99) = cohort_checks(cmp, CohortSettings(max_p99_increase_ms=100), at=time.time())
    assert not p99.ok


# ---- experiment files ---------------------------------------------------------------------------------
def _write(tmp_path: Path, method: str, cohorts: str = "cohorts: {share: 50%}\n") -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(
        "title: t\nledger: {duplicates: 0}\n" + cohorts
        + "steady_state: {probes: [{measure: lost, tolerance: {max: 0}}]}\n"
        + f"method:\n  - {method}\n"
    )  # fmt: skip
    return path


def test_a_cohort_scoped_drain_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        load_experiment(_write(tmp_path, "{action: drain, region: south, cohort: experiment}"))
    assert "a drain reaches both cohorts by nature" in str(err.value.message)


def test_a_cohort_step_needs_cohorts_and_a_device_link(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs a cohorts: section"):
        load_experiment(_write(tmp_path, "{action: link-down, link: device-south, cohort: experiment}", cohorts=""))
    inv = load_inventory(REPO / "stack" / "topology.toml")
    loaded = load_experiment(_write(tmp_path, "{action: link-down, link: store, cohort: experiment}"))
    with pytest.raises(ExperimentInvalid, match="device links only"):
        resolve(inv, loaded)
    ok = resolve(inv, load_experiment(_write(tmp_path, "{action: link-down, link: device-south, cohort: experiment}")))
    assert ok.steps[0].plan[0].component == "link device-south-x"


# ---- the command line ----------------------------------------------------------------------------
def _pushctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pushctl.cli.main", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("share", "says"),
    [
        ("abc", "--cohorts must be a share like 30% or 0.3, not 'abc'"),
        ("100%", "the experiment cohort's share must be more than 0% and less than 100%"),
    ],
)
def test_probe_run_refuses_a_bad_cohort_share_in_one_line(share: str, says: str) -> None:
    proc = _pushctl("probe", "run", "--cohorts", share, "--duration", "1s")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[0] == f"error: {says}"
    assert "Traceback" not in proc.stderr


def test_probe_run_refuses_cohorts_on_an_inventory_without_cohort_links(tmp_path: Path) -> None:
    text = (REPO / "stack" / "topology.toml").read_text()
    start = text.index("# The experiment cohort's device links")
    end = text.index('[[links]]\nname = "dispatcher"')
    inv = tmp_path / "plain.toml"
    inv.write_text(text[:start] + text[end:])
    proc = _pushctl("--inventory", str(inv), "probe", "run", "--cohorts", "50%", "--duration", "1s")
    assert proc.returncode == 2
    assert "cohorts need an experiment-cohort device link per region" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_cohort_dial_crosses_to_worker_processes() -> None:
    """Past 8,000 devices the config travels as JSON to worker shards: the cohort must survive it."""
    inv = load_inventory(REPO / "stack" / "topology.toml")
    config = DeviceConfig("http://d", "secret-token", {}, cohort_via=cohort_via(inv), cohort_devices=("a", "b"))
    back = DeviceConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert back.cohort_devices == ("a", "b") and dict(back.cohort_via) == dict(config.cohort_via)


@pytest.mark.parametrize(
    "step",
    [
        "{action: storm, region: south, cohort: experiment}",
        "{action: connections, region: south, drop: 30%, cohort: experiment}",
        "{action: fault, link: device-south, toxic: timeout, attributes: {timeout: 0}, cohort: experiment}",
    ],
)
def test_connection_verbs_and_toxics_of_a_cohort_act_on_its_own_link(tmp_path: Path, step: str) -> None:
    inv = load_inventory(REPO / "stack" / "topology.toml")
    resolved = resolve(inv, load_experiment(_write(tmp_path, step)))
    assert resolved.steps[0].plan[0].component == "link device-south-x"
    without = resolve(inv, load_experiment(_write(tmp_path, step.replace(", cohort: experiment", ""))))
    assert without.steps[0].plan[0].component == "link device-south"
