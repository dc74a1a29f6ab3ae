"""The runbook linter: sections, commands parsed with today's CLI (with line numbers), metric names.

Every shipped runbook must lint clean against the documented metrics; each rule is shown to fail
on a runbook broken on purpose (`MisspeltFlag`, `MissingSection`, `UnknownMetric`, ...).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pushctl.cli.main import app
from pushctl.runbooks import (
    EXPERIMENTS_DIR,
    documented_metric_names,
    errors,
    find_runbooks,
    lint,
    load_runbook,
    runbook_dir,
)
from pushctl.runbooks.metrics import parse_exposition

ROOT = typer.main.get_command(app)
DOCS_METRICS = documented_metric_names()
SHIPPED = find_runbooks(runbook_dir())

GOOD = """---
id: {id}
title: Redis payload cache down
severity: SEV2
experiment: redis-outage
owner: storage
failure:
  - pushctl fail redis --mode down --hold --no-probe --duration 1s
---

# Redis down

## Symptoms

`pushstack_access_storage_fallback` == 1 for 1 min.

## Impact

None.

## Diagnose

```pushctl
pushctl status
# expect: storage.mode == "fallback"
```

## Mitigate

```pushctl
pushctl fail redis --mode down --hold --devices 60 --rate 100 --duration 3s
# expect: passed == true
```

## Verify

```pushctl
pushctl slo check --devices 60 --rate 100 --duration 3s
# expect: passed == true
```

## Roll back / recover

```pushctl
pushctl heal redis
```

## Escalate

Page storage.
"""


def write(tmp_path: Path, text: str, name: str = "case") -> Path:
    path = tmp_path / f"{name}.md"
    path.write_text(text.replace("{id}", name))
    return path


def lint_file(path: Path) -> list[str]:
    problems = lint(load_runbook(path), cli=ROOT, metrics=DOCS_METRICS)
    return [f"{p.line}: {p.message}" for p in errors(problems)]


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def test_there_is_a_runbook_per_failure_the_platform_must_survive() -> None:
    assert {p.stem for p in SHIPPED} >= {
        "region-broker-outage", "region-network-failure", "planned-region-drain", "idc-power-loss",
        "breaking-news-spike", "redis-outage", "redis-slow", "kafka-buffer-lag", "reconnect-storm",
    }  # fmt: skip


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_runbook_lints_clean(path: Path) -> None:
    problems = lint(load_runbook(path), cli=ROOT, metrics=DOCS_METRICS, experiments_dir=EXPERIMENTS_DIR)
    assert [f"{path.name}:{p.line}: {p.message}" for p in problems] == []


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_runbook_is_in_the_index(path: Path) -> None:
    assert f"]({path.name})" in (path.parent / "README.md").read_text()


def test_a_good_runbook_lints_clean(tmp_path: Path) -> None:
    assert lint_file(write(tmp_path, GOOD)) == []


def test_misspelt_flag_is_reported_with_its_line(tmp_path: Path) -> None:  # MisspeltFlag
    path = write(tmp_path, GOOD.replace("pushctl heal redis", "pushctl slo check --devcies 60"))
    assert lint_file(path) == [
        f"{line_of(path, '--devcies')}: `pushctl slo check --devcies 60`: "
        "No such option: --devcies (Possible options: --deadline, --devices)"
    ]


def test_removed_command_and_bad_value_are_reported(tmp_path: Path) -> None:  # UnknownCommand, BadValue
    path = write(
        tmp_path,
        GOOD.replace("pushctl heal redis", "pushctl heal cache").replace(
            "--rate 100 --duration 3s\n# expect: passed", "--rate fast --duration 3s\n# expect: passed"
        ),
    )
    found = lint_file(path)
    assert any(m.startswith(f"{line_of(path, 'heal cache')}: ") and "No such command 'cache'" in m for m in found)
    assert any(m.startswith(f"{line_of(path, '--rate fast')}: ") and "Invalid value for '--rate'" in m for m in found)


def test_missing_required_option_is_reported(tmp_path: Path) -> None:  # MissingRequiredOption
    path = write(tmp_path, GOOD.replace("pushctl heal redis", "pushctl drain --spread 5s"))
    assert any("Missing option '--region'" in m for m in lint_file(path))


def test_failure_commands_in_front_matter_are_checked(tmp_path: Path) -> None:  # BadFailureCommand
    path = write(tmp_path, GOOD.replace("--mode down --hold --no-probe", "--mode down --hodl --no-probe"))
    [message] = lint_file(path)
    assert message.startswith(
        f"{line_of(path, '--hodl')}: `pushctl fail redis --mode down --hodl --no-probe "
        "--duration 1s`: No such option: --hodl"
    )


def test_missing_section_and_order(tmp_path: Path) -> None:  # MissingSection, SectionsOutOfOrder
    text = GOOD.replace("## Escalate\n\nPage storage.\n", "").replace("## Impact\n\nNone.\n", "")
    text += "\n## Impact\n\nNone.\n"
    found = lint_file(write(tmp_path, text))
    assert "0: missing section `## Escalate`" in found
    assert any("sections out of order" in m for m in found)


def test_unknown_metric_is_reported_with_a_suggestion(tmp_path: Path) -> None:  # UnknownMetric
    path = write(tmp_path, GOOD.replace("pushstack_access_storage_fallback", "pushstack_access_storage_falback"))
    assert lint_file(path) == [
        f"{line_of(path, 'falback')}: metric pushstack_access_storage_falback is not exported by our services "
        f"(did you mean pushstack_access_storage_fallback?); checked against {DOCS_METRICS.source}"
    ]


def test_command_in_a_non_pushctl_fence_is_an_error(tmp_path: Path) -> None:  # WrongFence
    path = write(tmp_path, GOOD.replace("```pushctl\npushctl heal redis", "```bash\npushctl heal redis"))
    found = lint_file(path)
    assert any("never verified" in m for m in found)
    assert any("`## Roll back / recover` has no ```pushctl command" in m for m in found)


def test_bad_expectation_and_within_on_an_action(tmp_path: Path) -> None:  # BadExpect, WithinOnAction
    text = GOOD.replace('# expect: storage.mode == "fallback"', "# expect: storage.mode == fallback").replace(
        "pushctl heal redis", "pushctl heal redis\n# expect: passed == true within 5s"
    )
    path = write(tmp_path, text)
    found = lint_file(path)
    assert (
        f"{line_of(path, 'mode == fallback')}: expect: 'fallback' is not a JSON value (strings need double "
        'quotes: "fallback")' in found
    )
    assert any("only for read-only ones, not `pushctl heal redis`" in m for m in found)


def test_inventory_flag_and_front_matter_are_checked(tmp_path: Path) -> None:  # InventoryInRunbook, BadMeta
    text = GOOD.replace("pushctl status\n", "pushctl --inventory x.toml status\n").replace("SEV2", "P1")
    found = lint_file(write(tmp_path, text))
    assert any("inventory-free" in m for m in found)
    assert "1: front matter: severity 'P1' is not one of SEV1, SEV2, SEV3, SEV4" in found


def test_id_must_match_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "other.md"
    path.write_text(GOOD.replace("{id}", "case"))
    assert "1: front matter: id 'case' differs from the file name 'other.md'" in lint_file(path)


def test_prose_commands_must_exist(tmp_path: Path) -> None:  # InlineCommand
    path = write(tmp_path, GOOD.replace("None.", "Then run `pushctl drain --region south --hodl`."))
    assert lint_file(path) == [f"{line_of(path, '--hodl')}: `pushctl drain` has no option --hodl"]


def test_exposition_names_include_samples_and_histogram_families() -> None:
    page = (
        "# TYPE pushstack_x_total counter\npushstack_x_total 1.0\n"
        '# TYPE pushstack_y_seconds histogram\npushstack_y_seconds_bucket{le="1"} 0\n'
        "# TYPE pushstack_z gauge\n"
    )
    names = parse_exposition(page)
    assert {"pushstack_x_total", "pushstack_y_seconds", "pushstack_y_seconds_count", "pushstack_z"} <= names


def test_lint_cli_exits_1_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("pushctl heal redis", "pushctl heal redis --now"))
    result = CliRunner().invoke(app, ["runbook", "lint", str(path)])
    assert result.exit_code == 1
    assert f"{path}:{line_of(path, '--now')}: error:" in result.output
    assert "No such option: --now" in result.output


def test_list_and_show_cli() -> None:
    listed = CliRunner().invoke(app, ["runbook", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert "redis-outage" in listed.output
    shown = CliRunner().invoke(app, ["runbook", "show", "redis-outage"])
    assert shown.exit_code == 0, shown.output
    assert "pushctl fail redis --mode down --hold" in shown.output
    assert "Roll back / recover" in shown.output
    unknown = CliRunner().invoke(app, ["runbook", "show", "redis-outgae"])
    assert unknown.exit_code != 0
