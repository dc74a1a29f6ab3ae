"""The runbooks' Symptoms tables are the alert rules: parsed here, rendered to Prometheus rule YAML.

One source of truth: a runbook's `## Symptoms` table whose first column is `alert` lists the alerts
that page for that failure, each row an alert name, its PromQL expression and when it fires:

    | alert | expression | fires when |
    |---|---|---|
    | PushBufferLag | `pushstack_bypass_lag` | `> 5000` for 5 min |
    | PushRejected (page) | `increase(pushstack_access_rejected_total[5m])` | `> 0` |

`stack/prometheus/alerts.yml` is generated from them (`python -m pushctl.runbooks.alerts`), and
`pushctl runbook lint` fails when the file and the runbooks disagree.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pushctl.contract.resources import resource
from pushctl.runbooks.model import Problem, Runbook, find_runbooks, load_runbook

ALERTS_FILE = resource("stack/prometheus/alerts.yml")
GROUP = "pushctl-runbooks"
_ROW = re.compile(r"^\s*\|(.*)\|\s*$")
_NAME = re.compile(r"^(?P<name>[A-Z][A-Za-z0-9]*)(?:\s+\((?P<page>page)\))?$")
_WHEN = re.compile(
    r"^(?:`(?P<cond>(?:[<>]=?|[=!]=)\s*-?[0-9][0-9.e+-]*)`)?\s*"
    r"(?:for\s+(?P<n>[0-9]+)\s*(?P<unit>s|min|h))?\s*(?P<note>\(.*\))?$"
)
_UNITS = {"s": "s", "min": "m", "h": "h"}


@dataclass(frozen=True)
class Alert:
    """One alert of a Symptoms table: what Prometheus evaluates, and which runbook it sends you to."""

    name: str
    expr: str  # the table's expression with its condition: what fires
    for_: str | None  # Prometheus duration ("5m"), None: fires at once
    page: bool
    runbook: str
    severity: str
    line: int

    def rule(self) -> tuple[str, str | None, bool]:
        """What must agree wherever the alert is listed."""
        return (self.expr, self.for_, self.page)


def parse_alerts(runbook: Runbook) -> tuple[list[Alert], list[Problem]]:
    """The alerts of `runbook`'s Symptoms tables, and what is wrong with any row."""
    alerts: list[Alert] = []
    problems: list[Problem] = []
    start = _symptoms_line(runbook)
    if start is None:
        return alerts, problems
    in_alert_table = False
    for offset, line in enumerate(runbook.section_text("Symptoms").splitlines()):
        number = start + 1 + offset
        row = _ROW.match(line)
        if row is None:
            in_alert_table = False
            continue
        cells = [c.strip() for c in row.group(1).split("|")]
        if cells[0].lower() == "alert":
            in_alert_table = True
            continue
        if not in_alert_table or set(cells[0]) <= {"-", ":"}:
            continue
        alert = _row(runbook, cells, number, problems)
        if alert is not None:
            alerts.append(alert)
    return alerts, problems


def _symptoms_line(runbook: Runbook) -> int | None:
    for title, line in runbook.sections:
        if title.lower().startswith("symptoms"):
            return line
    return None


def _row(runbook: Runbook, cells: list[str], line: int, problems: list[Problem]) -> Alert | None:
    if len(cells) != 3:
        problems.append(Problem(line, "an alert row has three cells: alert | `expression` | fires when"))
        return None
    name_cell, expr_cell, when_cell = cells
    name = _NAME.match(name_cell)
    if name is None:
        problems.append(Problem(line, f"alert name {name_cell!r}: CamelCase, optionally followed by ' (page)'"))
        return None
    if not (expr_cell.startswith("`") and expr_cell.endswith("`") and len(expr_cell) > 2):
        problems.append(Problem(line, f"{name['name']}: the expression must be one `PromQL` span"))
        return None
    when = _WHEN.match(when_cell)
    if when is None:
        problems.append(
            Problem(
                line,
                f"{name['name']}: fires when {when_cell!r} is not `OP NUMBER`, then optionally"
                " 'for N s|min|h' and a (note)",
            )
        )
        return None
    expr = expr_cell[1:-1].strip()
    if when["cond"]:
        expr = f"{expr} {when['cond']}"
    for_ = f"{when['n']}{_UNITS[when['unit']]}" if when["n"] else None
    severity = str(runbook.meta.get("severity") or "SEV3").lower()
    return Alert(name["name"], expr, for_, bool(name["page"]), runbook.id, severity, line)


def collect(runbooks: list[Runbook]) -> tuple[dict[str, list[Alert]], dict[Path, list[Problem]]]:
    """Every alert by name (each place it is listed), and the problems per runbook file.

    An alert listed in two runbooks must say the same thing in both: otherwise which one pages?
    """
    by_name: dict[str, list[Alert]] = {}
    problems: dict[Path, list[Problem]] = {}
    for rb in runbooks:
        alerts, found = parse_alerts(rb)
        problems.setdefault(rb.path, []).extend(found)
        for alert in alerts:
            first = by_name.setdefault(alert.name, [alert])[0]
            if first is alert:
                continue
            by_name[alert.name].append(alert)
            if alert.rule() != first.rule():
                problems[rb.path].append(
                    Problem(alert.line, f"{alert.name} differs from its row in {first.runbook}.md:{first.line}")
                )
    return by_name, problems


def rules_document(by_name: dict[str, list[Alert]]) -> dict[str, Any]:
    """The Prometheus rule file of these alerts, one rule per name, sorted (so the file diffs well)."""
    rules = []
    for name in sorted(by_name):
        listed = by_name[name]
        first = listed[0]
        rule: dict[str, Any] = {"alert": name, "expr": first.expr}
        if first.for_:
            rule["for"] = first.for_
        severities = sorted(a.severity for a in listed)
        rule["labels"] = {"severity": "page" if first.page else severities[0]}
        rule["annotations"] = {
            "runbook": ", ".join(dict.fromkeys(a.runbook for a in listed)),
            "summary": f"{name}: see runbooks/{first.runbook}.md",
        }
        rules.append(rule)
    return {"groups": [{"name": GROUP, "rules": rules}]}


def render_rules(by_name: dict[str, list[Alert]]) -> str:
    header = "# GENERATED from the runbooks' Symptoms tables by `python -m pushctl.runbooks.alerts`: do not edit.\n"
    return header + yaml.safe_dump(rules_document(by_name), sort_keys=False, width=200)


def check_rules_file(by_name: dict[str, list[Alert]], path: Path = ALERTS_FILE) -> list[Problem]:
    """Problems where the shipped rule file and the runbooks disagree, alert by alert."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        shipped = {r["alert"]: r for g in loaded.get("groups", []) for r in g.get("rules", []) if "alert" in r}
    except (OSError, yaml.YAMLError, AttributeError, TypeError, KeyError) as exc:
        return [Problem(0, f"{path}: cannot read the alert rules ({type(exc).__name__})")]
    wanted = {r["alert"]: r for r in rules_document(by_name)["groups"][0]["rules"]}
    out: list[Problem] = []
    for name in sorted(set(wanted) | set(shipped)):
        if name not in shipped:
            out.append(
                Problem(
                    0,
                    f"{path.name}: no rule for {name} (listed in runbooks/{wanted[name]['annotations']['runbook']}.md)",
                )
            )
        elif name not in wanted:
            out.append(Problem(0, f"{path.name}: rule {name} is in no runbook's Symptoms table"))
        elif shipped[name] != wanted[name]:
            keys = [k for k in ("expr", "for", "labels", "annotations") if shipped[name].get(k) != wanted[name].get(k)]
            out.append(Problem(0, f"{path.name}: {name} differs from the runbooks in {', '.join(keys)}"))
    if out:
        out.append(Problem(0, "regenerate it with `python -m pushctl.runbooks.alerts`"))
    return out


def main(argv: list[str]) -> int:
    """`python -m pushctl.runbooks.alerts [RUNBOOK_DIR] [OUT]`: write the rule file from the runbooks."""
    directory = Path(argv[0]) if argv else resource("runbooks")
    out = Path(argv[1]) if len(argv) > 1 else ALERTS_FILE
    by_name, _ = collect([load_runbook(p) for p in find_runbooks(directory)])
    out.write_text(render_rules(by_name), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
