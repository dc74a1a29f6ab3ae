"""The Prometheus metric names our services export: scraped from the live stack, or read from the docs.

A runbook may only name metrics that exist. The live stack is the truth (`scrape_metric_names`);
without one, the tables of `docs/*.md` stand in (`documented_metric_names`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from pushctl._http import tls
from pushctl.contract.resources import resource
from pushctl.contract.topology import PUSH_SERVICE_KINDS, Inventory
from pushctl.errors import TargetUnreachable

DOCS_DIR = resource("docs")
METRIC_NAME = re.compile(r"\bpushstack_[a-z0-9_]*[a-z0-9]")
_TYPE_LINE = re.compile(r"^#\s+TYPE\s+(\S+)\s+(\w+)")
_SAMPLE_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


@dataclass(frozen=True)
class MetricNames:
    """The names a runbook may use, and where they came from (for messages)."""

    names: frozenset[str]
    source: str

    def __contains__(self, name: object) -> bool:
        return name in self.names


def names_in(text: str) -> Iterable[tuple[int, str]]:
    """(line offset, metric name) for every `pushstack_...` name in `text`."""
    for offset, line in enumerate(text.splitlines()):
        for match in METRIC_NAME.finditer(line):
            yield offset, match.group(0)


def parse_exposition(text: str) -> set[str]:
    """Names a Prometheus text page defines: every sample, and each histogram's family name."""
    names: set[str] = set()
    for line in text.splitlines():
        typed = _TYPE_LINE.match(line)
        if typed:
            family, kind = typed.groups()
            names.add(family)
            names.update(family + suffix for suffix in _SAMPLE_SUFFIXES.get(kind, ()))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def documented_metric_names(docs_dir: Path = DOCS_DIR) -> MetricNames:
    """Names in the first column of the metric tables of `docs/*.md` (histograms with their samples)."""
    names: set[str] = set()
    for path in sorted(docs_dir.glob("*.md")):
        for line in path.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not line.lstrip().startswith("|") or len(cells) < 2:
                continue
            found = METRIC_NAME.search(cells[0])
            if not found:
                continue
            names.add(found.group(0))
            if "histogram" in cells[1:3]:
                names.update(found.group(0) + s for s in _SAMPLE_SUFFIXES["histogram"])
    return MetricNames(frozenset(names), f"the metric tables of {docs_dir}")


async def scrape_metric_names(inv: Inventory, *, timeout: float = 3.0) -> MetricNames:
    """GET /metrics of every push service of the inventory; TargetUnreachable if one does not answer."""
    services = {n: s for n, s in inv.services.items() if s.kind in PUSH_SERVICE_KINDS}
    async with httpx.AsyncClient(verify=tls(), timeout=timeout, trust_env=False) as http:

        async def one(name: str, url: str) -> set[str]:
            try:
                resp = await http.get(url)
                resp.raise_for_status()
            except httpx.HTTPError as exc:
                raise TargetUnreachable(f"cannot scrape {name} at {url}: {type(exc).__name__}") from exc
            return parse_exposition(resp.text)

        pages = await asyncio.gather(*(one(n, f"http://{s.host}:{s.port}/metrics") for n, s in services.items()))
    names = set().union(*pages) if pages else set()
    return MetricNames(frozenset(names), f"/metrics of the {len(services)} services of stack {inv.name!r}")
