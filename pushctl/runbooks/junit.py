"""JUnit XML for `pushctl runbook verify --junit FILE`: one suite per runbook, one case per step.

Lint errors are one case, `lint`, failed with every problem as `file:line: message`; a failed step
carries its expectations and the tail of the command's output, which CI shows on the test page.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from pushctl.runbooks.verify import RunbookResult, Step, VerifyReport


def _case(suite: ET.Element, classname: str, name: str, seconds: float) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.1f}")


def _step_name(index: int, step: Step) -> str:
    where = f" (line {step.line})" if step.line else ""
    return f"{index:02d} {step.phase}: {step.command}{where}"


def _suite(root: ET.Element, result: RunbookResult) -> None:
    suite = ET.SubElement(root, "testsuite", name=f"runbook {result.id}", file=result.path)
    classname = f"runbooks.{result.id}"
    errors = [p for p in result.problems if p.severity == "error"]
    lint = _case(suite, classname, "00 lint", 0.0)
    if errors:
        text = "\n".join(f"{result.path}:{p.line}: {p.message}" for p in result.problems)
        ET.SubElement(lint, "failure", message=f"{len(errors)} lint error(s)").text = text
    failures = int(bool(errors))
    skipped = 0
    for index, step in enumerate(result.steps, start=1):
        case = _case(suite, classname, _step_name(index, step), step.seconds)
        if step.status == "failed":
            failures += 1
            detail = "\n".join(
                f"line {c.line}: {c.expect}: {'ok' if c.ok else 'FAILED'} ({c.found})" for c in step.checks
            )
            body = "\n".join(x for x in (step.message, detail, step.output) if x)
            ET.SubElement(case, "failure", message=step.message or "failed").text = body
        elif step.status == "skipped":
            skipped += 1
            ET.SubElement(case, "skipped", message=step.message or "an earlier step failed")
    suite.set("tests", str(len(result.steps) + 1))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("time", f"{result.seconds:.1f}")


def write_junit(report: VerifyReport, path: Path) -> None:
    root = ET.Element("testsuites", name="pushctl runbook verify", time=f"{report.seconds:.1f}")
    for result in report.results:
        _suite(root, result)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
