"""The rule files: alert rules are exactly the runbooks' Symptoms, promtool accepts and tests them.

Each check is shown failing: a Symptom row edited (`EditedThreshold`), a row that is not a rule
(`ProseCondition`), one alert said two ways (`DisagreeingRunbooks`), a broken recording rule
(`BrokenSli`: promtool test fails), and a dashboard that drifted from its generator.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pushctl.cli.main import app
from pushctl.grafana import DASHBOARD_FILE, dashboard, dashboard_text, documented_metrics, panel_queries
from pushctl.runbooks import find_runbooks, load_runbook, runbook_dir
from pushctl.runbooks.alerts import ALERTS_FILE, check_rules_file, collect, parse_alerts, render_rules
from pushctl.runtime.paths import cache_dir
from pushctl.runtime.prometheus import RULES_DIR, binaries, reports_version

RUNBOOKS = [load_runbook(p) for p in find_runbooks(runbook_dir())]


def _promtool() -> Path:
    _, promtool = binaries(cache_dir())
    if not reports_version(promtool):
        pytest.skip("promtool not installed: run `pushctl stack install` (./dev setup does)")
    return promtool


def _copy_runbooks(tmp_path: Path) -> Path:
    target = tmp_path / "runbooks"
    shutil.copytree(runbook_dir(), target)
    return target


def test_committed_alert_rules_are_the_runbooks_symptoms() -> None:
    by_name, problems = collect(RUNBOOKS)
    assert not [p for ps in problems.values() for p in ps]
    assert ALERTS_FILE.read_text() == render_rules(by_name)
    assert check_rules_file(by_name) == []
    assert {"PushBufferLag", "PushRejected", "PushStorageFallback", "PushBrokerDown"} <= set(by_name)


def test_edited_threshold_makes_lint_name_the_alert(tmp_path: Path) -> None:
    """EditedThreshold: a runbook says 9000 where the shipped rule fires at 5000."""
    directory = _copy_runbooks(tmp_path)
    path = directory / "kafka-buffer-lag.md"
    path.write_text(path.read_text().replace("| `> 5000` for 5 min |", "| `> 9000` for 5 min |"))
    by_name, _ = collect([load_runbook(p) for p in find_runbooks(directory)])
    messages = [p.message for p in check_rules_file(by_name)]
    assert "alerts.yml: PushBufferLag differs from the runbooks in expr" in messages


def test_removed_row_and_extra_rule_are_both_reported(tmp_path: Path) -> None:
    directory = _copy_runbooks(tmp_path)
    path = directory / "kafka-buffer-lag.md"
    path.write_text("\n".join(ln for ln in path.read_text().splitlines() if "PushDeadLetters" not in ln) + "\n")
    by_name, _ = collect([load_runbook(p) for p in find_runbooks(directory)])
    assert any("rule PushDeadLetters is in no runbook" in p.message for p in check_rules_file(by_name))
    rules = tmp_path / "alerts.yml"
    rules.write_text(render_rules(by_name))
    full, _ = collect(RUNBOOKS)
    assert any("no rule for PushDeadLetters" in p.message for p in check_rules_file(full, rules))


def test_prose_condition_is_a_lint_error_at_its_line(tmp_path: Path) -> None:
    """ProseCondition: `> 10x` the hour before is not a rule Prometheus can evaluate."""
    path = tmp_path / "storm.md"
    source = (runbook_dir() / "reconnect-storm.md").read_text()
    row = next(ln for ln in source.splitlines() if ln.startswith("| PushConnectStorm"))
    path.write_text(
        source.replace(
            row, "| PushConnectStorm | `sum(rate(pushstack_broker_connects_total[1m]))` | `> 10x` the hour before |"
        )
    )
    alerts, problems = parse_alerts(load_runbook(path))
    assert "PushConnectStorm" not in {a.name for a in alerts}
    assert len(problems) == 1
    assert problems[0].line == source.splitlines().index(row) + 1
    assert "is not `OP NUMBER`" in problems[0].message


def test_disagreeing_runbooks_fail_lint_through_the_cli(tmp_path: Path) -> None:
    """DisagreeingRunbooks: PushAccessSlow listed in two runbooks with two durations."""
    directory = _copy_runbooks(tmp_path)
    path = directory / "redis-slow.md"
    path.write_text(path.read_text().replace("`> 0.1` for 2 min", "`> 0.1` for 5 min"))
    result = CliRunner().invoke(app, ["runbook", "lint", "--dir", str(directory)])
    assert result.exit_code == 1
    assert "PushAccessSlow differs from its row in breaking-news-spike.md" in result.output


def test_promtool_checks_and_tests_the_shipped_rules() -> None:
    promtool = _promtool()
    checked = subprocess.run(
        [str(promtool), "check", "rules", "recording.yml", "alerts.yml"],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [str(promtool), "test", "rules", "rules.test.yml"],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_test_fails_on_a_broken_sli(tmp_path: Path) -> None:
    """BrokenSli: the delivery SLI counts messages for offline devices (stored, not acked) as undelivered,
    as it first did (CI read 57 % on a healthy stack); the rule test catches it."""
    promtool = _promtool()
    shutil.copytree(RULES_DIR, tmp_path / "rules")
    recording = tmp_path / "rules" / "recording.yml"
    text = recording.read_text()
    recording.write_text(
        text.replace(
            "push:logic_online_acked:rate1m / (push:logic_online_accepted:rate1m > 0)",
            "push:logic_acked:rate1m / (push:logic_accepted:rate1m > 0)",
        )
    )
    tested = subprocess.run(
        [str(promtool), "test", "rules", "rules.test.yml"],
        cwd=tmp_path / "rules",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert tested.returncode != 0
    assert "push:sli_delivery:ratio_rate1m" in tested.stdout + tested.stderr


def test_committed_dashboard_is_the_generators_output() -> None:
    assert json.loads(DASHBOARD_FILE.read_text()) == dashboard()
    assert DASHBOARD_FILE.read_text() == dashboard_text()


def test_dashboard_has_a_panel_per_documented_metric_and_sli() -> None:
    titles = {title for title, _ in panel_queries(dashboard())}
    documented = {m.name for m in documented_metrics()}
    assert documented <= titles
    assert "push:sli_delivery:ratio_rate1m" in titles
    assert "pushstack_broker_ack_seconds" in documented  # protocol.md's table shape is read too
    queries = dict(panel_queries(dashboard()))
    assert queries["pushstack_access_pushes_total"] == "sum by (path) (rate(pushstack_access_pushes_total[1m]))"
    assert queries["pushstack_broker_ack_seconds"].startswith("histogram_quantile(0.99")
