"""Experiment files: the library is valid, the schema is current, every bad file says where and why."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from pushctl.contract.topology import load_inventory
from pushctl.experiments import ExperimentInvalid, check_file, load_experiment, resolve, schema_text
from pushctl.experiments.model import Tolerance
from tests.helpers import run_main

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "experiments"
LIBRARY_FILES = sorted(LIBRARY.glob("*.yaml"))

GOOD = """\
title: good
ledger: {duplicates: 0}
steady_state:
  probes:
    - {measure: delivery_rate, tolerance: {min: 99.9}}
method:
  - action: drain
    region: south
"""


def cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """`run_main`, with the error panel's wrapped lines joined again."""
    code, out, err = run_main(monkeypatch, *args)
    return code, out, err.replace("\n    ", " ")


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[tuple[int | None, str, str]]:
    problems, loaded = check_file(path)
    if loaded is not None and not problems:
        try:
            resolve(load_inventory(None), loaded)
        except ExperimentInvalid as exc:
            problems = exc.problems
    return [(p.line, p.path, p.message) for p in problems]


def test_the_checked_in_schema_is_generated_from_the_models() -> None:
    assert (LIBRARY / "schema.json").read_text() == schema_text(), (
        "experiments/schema.json is stale: run `pushctl experiment schema --write experiments/schema.json`"
    )


def test_the_library_has_one_experiment_per_failure_the_platform_must_survive() -> None:
    actions = set()
    for path in LIBRARY_FILES:
        for step in yaml.safe_load(path.read_text())["method"]:
            if "action" in step:
                actions.add((step["action"], step.get("mode")))
    assert {
        ("fail-region", "crash"),
        ("fail-region", "vpc-down"),
        ("drain", None),
        ("restore", None),
        ("fail-idc", None),
        ("spike", None),
        ("fail-redis", "down"),
        ("fail-redis", "latency"),
    } <= actions
    assert len(LIBRARY_FILES) >= 8


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.stem)
def test_library_files_are_valid_for_pushctl_and_for_the_json_schema(path: Path) -> None:
    resolved = resolve(load_inventory(None), load_experiment(path))
    assert resolved.steps
    validator = jsonschema.Draft202012Validator(json.loads((LIBRARY / "schema.json").read_text()))
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []
    assert path.read_text().startswith("# yaml-language-server: $schema=./schema.json")


def test_the_schema_rejects_what_pushctl_rejects() -> None:
    validator = jsonschema.Draft202012Validator(json.loads((LIBRARY / "schema.json").read_text()))
    bad = yaml.safe_load(GOOD.replace("action: drain", "action: explode"))
    assert list(validator.iter_errors(bad))


# ---- named malformed files ---------------------------------------------------------------------
CASES = {
    "BadYaml": ("title: x\nmethod: [\n  - wait: 1s\n", 3, "", "invalid YAML"),
    "NotAMapping": ("- just\n- a list\n", 1, "", "YAML mapping"),
    "UnknownAction": (
        GOOD.replace("action: drain", "action: explode"),
        7,
        "method[0].action",
        "unknown action 'explode'",
    ),
    "WrongType": (GOOD.replace("region: south", "region: [south]"), 8, "method[0].region", "valid string"),
    "MissingTolerance": (
        GOOD.replace(", tolerance: {min: 99.9}", ""),
        5,
        "steady_state.probes[0].tolerance",
        "required field missing",
    ),
    "EmptyTolerance": (GOOD.replace("{min: 99.9}", "{}"), 5, "steady_state.probes[0].tolerance", "needs min, max"),
    "UnknownField": (GOOD + "    colour: red\n", 9, "method[0].colour", "unknown field"),
    "BadDuration": (GOOD + "    spread: soon\n", 9, "method[0].spread", "invalid duration"),
    "UnknownStepKind": (GOOD + "  - sleep: 2s\n", 9, "method[1]", "a step names one of"),
    "UnknownMeasure": (
        GOOD.replace("delivery_rate", "happiness"),
        5,
        "steady_state.probes[0].measure",
        "Input should be",
    ),
    "DuplicateKey": (GOOD + "title: again\n", 9, "title", "duplicate key"),
    "UnknownRegion": (GOOD.replace("region: south", "region: mars"), 7, "method[0]", "unknown region 'mars'"),
    "ToxicOnUnknownLink": (
        GOOD.replace("action: drain\n    region: south", "action: fault\n    link: nowhere\n    toxic: latency"),
        7,
        "method[0]",
        "unknown link 'nowhere'",
    ),
    "OutsideBlastRadius": (GOOD + "blast_radius: {regions: [north]}\n", 7, "method[0]", "outside blast_radius"),
    "BackgroundWithoutDuration": (
        GOOD + "  - {action: restore, region: south, background: true}\n",
        9,
        "method[1].background",
        "in the background",
    ),
    "MissingLedger": (
        GOOD.replace("ledger: {duplicates: 0}\n", ""),
        1,
        "ledger",
        "required field missing",
    ),
    "DeltaInSteadyState": (
        GOOD.replace(
            "{measure: delivery_rate, tolerance: {min: 99.9}}",
            "{metric: pushstack_access_rejected_total, service: access, delta: true, tolerance: {max: 0}}",
        ),
        5,
        "steady_state.probes[0].delta",
        "only applies to method probes",
    ),
    "DispatcherOfferedWithoutRegion": (
        GOOD.replace("measure: delivery_rate", "measure: dispatcher_offered"),
        5,
        "steady_state.probes[0].measure",
        "needs the region",
    ),
    "UnknownService": (
        GOOD.replace(
            "{measure: delivery_rate, tolerance: {min: 99.9}}", "{metric: x_total, service: nope, tolerance: {max: 1}}"
        ),
        5,
        "steady_state.probes[0].service",
        "unknown service",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_file_names_line_and_field(tmp_path: Path, case: str) -> None:
    text, line, path, message = CASES[case]
    found = problems_of(write(tmp_path, text))
    assert any(ln == line and p == path and message in m for ln, p, m in found), found


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    text = GOOD.replace("action: drain", "action: explode").replace("{min: 99.9}", "{}") + "bogus: 1\n"
    found = problems_of(write(tmp_path, text))
    assert {p for _, p, _ in found} == {"method[0].action", "steady_state.probes[0].tolerance", "bogus"}


def test_a_value_no_union_member_accepts_is_one_problem(tmp_path: Path) -> None:
    found = problems_of(write(tmp_path, GOOD.replace("{min: 99.9}", "{equals: [1]}")))
    assert len(found) == 1 and "valid string or" in found[0][2]


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_cli_exits_2_with_file_line_and_path_and_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    bad = write(tmp_path, CASES["MissingTolerance"][0], "missing-tolerance.yaml")
    write(tmp_path, GOOD, "fine.yaml")
    code, out, err = cli(monkeypatch, "experiment", command, str(tmp_path))
    assert code == 2, err
    assert f"{bad}:5: steady_state.probes[0].tolerance: required field missing" in err.replace("\n", "")
    assert "Traceback" not in err + out
    assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1


def test_validate_json_lists_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, CASES["UnknownAction"][0])
    code, out, _ = cli(monkeypatch, "experiment", "validate", str(tmp_path), "--json")
    assert code == 2
    data = json.loads(out)
    assert data["problems"][0]["path"] == "method[0].action" and data["problems"][0]["line"] == 7


def test_validate_and_plan_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli(monkeypatch, "experiment", "validate", str(LIBRARY))
    assert code == 0, err
    assert f"{len(LIBRARY_FILES)} experiment files valid" in out
    code, out, err = cli(monkeypatch, "experiment", "plan", str(LIBRARY / "redis-outage.yaml"), "--json")
    assert code == 0, err
    (plan,) = json.loads(out)
    changes = [p for step in plan["method"] for p in step["plan"]]
    assert {c["component"] for c in changes} >= {"link cache", "link cross-idc-cache"}
    assert all(c["undo"] for c in changes)


def test_run_refuses_an_inventory_that_is_not_the_reference_without_confirmation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (REPO / "stack" / "topology.toml").read_text()
    inv = write(
        tmp_path,
        text.replace('name = "reference"', 'name = "other"').replace("reference = true", "reference = false"),
        "inv.toml",
    )
    code, _, err = cli(monkeypatch, "-i", str(inv), "experiment", "run", str(LIBRARY / "redis-outage.yaml"))
    assert code == 2
    assert "--confirm-target other" in err
    code, _, err = cli(
        monkeypatch,
        "-i",
        str(inv),
        "experiment",
        "run",
        str(LIBRARY / "redis-outage.yaml"),
        "--confirm-target",
        "reference",
    )
    assert code == 2 and "does not match the inventory's name 'other'" in err.replace("\n", "")


def test_tolerances() -> None:
    assert Tolerance(min=99.9).holds(99.95) and not Tolerance(min=99.9).holds(99.8)
    assert Tolerance(max=0).holds(0) and not Tolerance(max=0).holds(1)
    assert Tolerance(min=0, max=100).holds(50) and not Tolerance(min=0, max=100).holds(101)
    assert Tolerance(equals="redis").holds("redis") and not Tolerance(equals="redis").holds("fallback")
    assert Tolerance(equals=50).holds(50.0)
    assert not Tolerance(min=1).holds(None) and not Tolerance(min=1).holds("5")
    with pytest.raises(ValueError, match="not both"):
        Tolerance(min=1, equals=2)
    with pytest.raises(ValueError, match="above max"):
        Tolerance(min=2, max=1)
