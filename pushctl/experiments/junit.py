"""JUnit XML from run journals: a testsuite per experiment, a testcase per check and stop condition.

    write_junit([journal_dict, ...], Path("experiments.xml"))

Testcases: every steady-state check (before, during, after), the whole run's ledger, every method
probe with a tolerance, every action's verified claims, every stop condition (a failure when it
fired), the method itself (an error when a step failed or the run was interrupted) and the
rollback (a failure when an undo failed). Checks a run never reached are `skipped`. Failure
messages carry the measured numbers. An inconclusive run (only timing checks failed while the rig
could not keep up) reports those checks as `skipped` with the rig's reasons, never as passed.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from pushctl.experiments.score import FORMULA, score_of

PHASES = (
    ("before", "steady state before"),
    ("during", "steady state during the method"),
    ("after", "steady state after"),
    ("run", "the whole run's ledger"),
)


def _case(suite: ET.Element, classname: str, name: str, seconds: float = 0.0) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")


def _class(title: str) -> str:
    return "experiment." + (re.sub(r"[^A-Za-z0-9]+", "_", title).strip("_").lower() or "unnamed")


def suite_of(run: dict[str, Any]) -> ET.Element:
    title = str(run.get("title") or run.get("file") or "experiment")
    cls = _class(title)
    started = float(run.get("started_at") or time.time())
    suite = ET.Element(
        "testsuite",
        name=title,
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        hostname=socket.gethostname(),
        time=f"{float(run.get('duration_s') or 0):.3f}",
        file=str(run.get("file")),
    )
    props = ET.SubElement(suite, "properties")
    for key in ("status", "verdict", "deviated", "exit_code", "run_id", "inventory", "error"):
        ET.SubElement(props, "property", name=key, value=str(run.get(key)))
    inconclusive = run.get("verdict") == "inconclusive"
    why = "inconclusive: the rig could not keep up: " + "; ".join(run.get("inconclusive") or [])

    def miss(case: ET.Element, message: str, kind: str) -> None:
        if inconclusive:
            ET.SubElement(case, "skipped", message=f"{why} ({message})")
        else:
            ET.SubElement(case, "failure", message=message, type=kind).text = message

    ET.SubElement(props, "property", name="journal", value=str(run.get("journal_path", "")))
    status = run.get("status")
    reason = f"not evaluated: the run ended {status}" + (f" ({run['error']})" if run.get("error") else "")
    states = run.get("steady_states") or {}
    exp = run.get("experiment") or {}
    planned = {
        "before": (exp.get("steady_state") or {}).get("probes") or [],
        "during": (exp.get("steady_state") or {}).get("during") or [],
        "after": (exp.get("steady_state") or {}).get("probes") or [],
        "run": ["lost", "unexpected", "duplicates", "rejected"],
    }
    for key, label in PHASES:
        state = states.get(key)
        if state is None:
            for i, _ in enumerate(planned[key]):
                ET.SubElement(_case(suite, f"{cls}.{key}", f"{label}: check {i + 1}"), "skipped", message=reason)
            continue
        for check in state.get("checks", []):
            case = _case(suite, f"{cls}.{key}", f"{label}: {check['title']}")
            if not check["ok"]:
                miss(case, check["detail"], "HypothesisDeviated" if key != "run" else "LedgerBroken")
    _cohort_cases(suite, props, run, cls, miss)
    for step in run.get("method") or []:
        if step.get("kind") == "probe" and isinstance(step.get("output"), dict) and "ok" in step["output"]:
            out = step["output"]
            case = _case(suite, f"{cls}.method", f"method probe: {out['title']}")
            if not out["ok"]:
                miss(case, out["detail"], "HypothesisDeviated")
        for check in step.get("checks") or []:
            case = _case(suite, f"{cls}.method", f"step {step['index'] + 1} ({step['label']}): verify")
            case.set("name", f"{case.get('name')}: {check['check']}")
            if not check["ok"]:
                miss(case, check["check"], "ActionCheckFailed")
    stops = run.get("stop_conditions") or []
    for stop in stops:
        case = _case(suite, f"{cls}.stop_conditions", f"stop condition: {stop['name']}")
        if stop.get("fired"):
            msg = (
                f"fired after {stop['for_s']:g}s broken: {stop.get('detail')} "
                f"(worst {stop.get('worst')}, tolerance {stop['tolerance']})"
            )
            miss(case, msg, "StopConditionFired")
    if not stops:
        for i, _ in enumerate(exp.get("stop_conditions") or []):
            ET.SubElement(_case(suite, f"{cls}.stop_conditions", f"stop condition {i + 1}"), "skipped", message=reason)
    method = _case(suite, f"{cls}.method", "method", _method_seconds(run))
    failed_steps = [s for s in run.get("method") or [] if s.get("status") in ("failed", "deviated")]
    if status == "interrupted":
        ET.SubElement(method, "error", message=str(run.get("error") or "interrupted"), type="Interrupted")
    elif failed_steps:
        msg = "; ".join(f"{s['label']}: {s.get('error') or _failed_checks(s)}" for s in failed_steps)
        kind = "StepFailed" if any(s["status"] == "failed" for s in failed_steps) else "HypothesisDeviated"
        if kind == "StepFailed":
            ET.SubElement(method, "error", message=msg, type=kind).text = msg
        else:
            miss(method, msg, kind)
    elif status == "failed" and run.get("error") and not _any_failed_check(states):
        ET.SubElement(method, "error", message=str(run["error"]), type="RunFailed")
    rollback = _case(suite, f"{cls}.rollback", "rollback")
    bad = [r for r in run.get("rollbacks") or [] if not r.get("ok")]
    if bad:
        msg = "; ".join(f"{r['step']}: {r['detail']}" for r in bad)
        ET.SubElement(rollback, "failure", message=msg, type="RollbackFailed").text = msg
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
    suite.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    return suite


def _cohort_cases(
    suite: ET.Element, props: ET.Element, run: dict[str, Any], cls: str, miss: Callable[[ET.Element, str, str], None]
) -> None:
    """Control vs experiment cohorts: their numbers as properties, their tolerances as testcases."""
    cohorts = run.get("cohorts")
    if not isinstance(cohorts, dict):
        return
    diff = cohorts.get("difference") or {}
    values: dict[str, Any] = {
        "cohorts.confidence": cohorts.get("confidence"),
        "cohorts.cost_points": cohorts.get("cost_points"),
        "cohorts.cost_ci": cohorts.get("cost_ci"),
        "cohorts.delivery_diff_points": diff.get("delivery_points"),
        "cohorts.delivery_diff_ci": diff.get("delivery_ci"),
        "cohorts.late_diff_points": diff.get("late_points"),
        "cohorts.late_diff_ci": diff.get("late_ci"),
        "cohorts.p99_diff_ms": diff.get("p99_ms"),
        "cohorts.p99_diff_ci_ms": diff.get("p99_ci_ms"),
        "cohorts.verdict": cohorts.get("verdict"),
    }
    for name in ("control", "experiment"):
        line = cohorts.get(name) or {}
        for key in ("devices", "sent", "delivery_rate", "late_share", "lost", "p99_ms"):
            values[f"cohorts.{name}.{key}"] = line.get(key)
    for key, value in values.items():
        ET.SubElement(props, "property", name=key, value=str(value))
    for check in ((run.get("steady_states") or {}).get("cohorts") or {}).get("checks", []):
        case = _case(suite, f"{cls}.cohorts", f"cohorts: {check['title']}")
        if not check["ok"]:
            miss(case, check["detail"], "CohortDifference")


def _method_seconds(run: dict[str, Any]) -> float:
    steps = run.get("method") or []
    starts = [s["started_at"] for s in steps if s.get("started_at")]
    ends = [s["ended_at"] for s in steps if s.get("ended_at")]
    return max(0.0, max(ends) - min(starts)) if starts and ends else 0.0


def _failed_checks(step: dict[str, Any]) -> str:
    out = step.get("output")
    if isinstance(out, dict) and "detail" in out:
        return str(out["detail"])
    return "; ".join(c["check"] for c in step.get("checks") or [] if not c["ok"]) or str(step.get("status"))


def _any_failed_check(states: dict[str, Any]) -> bool:
    return any(not c["ok"] for s in states.values() if s for c in s.get("checks", []))


def add_score_properties(suites: Sequence[ET.Element], runs: Sequence[dict[str, Any]]) -> None:
    """Each testsuite's weight and what its run counts as, and the whole report's resilience score.

    (The root `testsuites` element has no properties in the JUnit schema, so every suite carries the
    score; `score_outcome` is passed, failed, inconclusive or not judged.)
    """
    score = score_of(list(runs))
    value = "n/a" if score.value is None else f"{score.value:.1f}"
    for suite, entry in zip(suites, score.entries, strict=True):
        props = suite.find("properties")
        if props is None:
            props = ET.SubElement(suite, "properties")
        for name, text in (
            ("weight", f"{entry.weight:g}"),
            ("score_outcome", entry.outcome),
            ("resilience_score", value),
            ("resilience_score_counted_weight", f"{score.counted_weight:g}"),
            ("resilience_score_formula", FORMULA),
        ):
            ET.SubElement(props, "property", name=name, value=text)


def junit_xml(runs: Iterable[dict[str, Any]]) -> str:
    root = ET.Element("testsuites", name="pushctl experiments")
    runs = list(runs)
    suites = [suite_of(r) for r in runs]
    add_score_properties(suites, runs)
    root.extend(suites)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in suites)))
    root.set("time", f"{sum(float(s.get('time', '0')) for s in suites):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(runs: Sequence[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(runs), encoding="utf-8")
