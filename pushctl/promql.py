"""Ask a Prometheus a PromQL question: the stack's own, or any `--prometheus URL`.

    samples = await instant_query("http://127.0.0.1:17090", "push:sli_delivery:ratio_rate1m")
    samples[0].value        # 0.9993

Errors are ours, each with its exit code: a malformed URL or a query Prometheus refuses is a
UsageError (2), a server that does not answer is TargetUnreachable (4). An empty result is an
empty list: whether that fails is the caller's to say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from pushctl._http import tls
from pushctl.contract.topology import Inventory
from pushctl.errors import TargetUnreachable, UsageError

PROMETHEUS_ENV = "PUSHCTL_PROMETHEUS_URL"
# The delivery SLI from the platform's own counters: messages acked by a device / messages the logic
# gateways accepted, over a window (stack/prometheus/recording.yml records it over 1m), for online
# devices: messages stored in an offline queue, and their later delivery, are left out of both. No
# acked series while messages were accepted is 0 delivered (a breach); nothing accepted is no data.
DELIVERY_SLI = (
    "clamp_min(clamp_max("
    '((sum(increase(pushstack_logic_messages_total{{result="acked"}}[{window}])) or vector(0))'
    " - (sum(increase(pushstack_logic_offline_delivered_total[{window}])) or vector(0)))"
    " / ((sum(increase(pushstack_logic_accepted_total[{window}]))"
    " - (sum(increase(pushstack_logic_offline_stored_total[{window}])) or vector(0))) > 0), 1), 0)"
)


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector (or a scalar, with no labels)."""

    labels: dict[str, str]
    value: float

    def where(self) -> str:
        """`{region=south} ` for a labelled series, '' for a scalar or a single unlabelled one."""
        shown = {k: v for k, v in self.labels.items() if k != "__name__"}
        return "{" + ",".join(f"{k}={v}" for k, v in sorted(shown.items())) + "} " if shown else ""

    def describe(self) -> str:
        return f"{self.where()}{self.value:g}"


def prometheus_url(inv: Inventory | None, override: str | None) -> str:
    """`override` (a flag or $PUSHCTL_PROMETHEUS_URL) when given, else the inventory's Prometheus."""
    if override:
        return check_url(override)
    if inv is not None and inv.prometheus is not None:
        return inv.prometheus.url
    name = inv.name if inv is not None else "this"
    raise UsageError(f"the {name!r} inventory runs no Prometheus: pass --prometheus URL")


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--prometheus {url!r}: expected http(s)://host:port")
    try:
        _ = parts.port
    except ValueError:
        raise UsageError(f"--prometheus {url!r}: the port is not a number") from None
    return url.rstrip("/")


async def instant_query(
    url: str, expr: str, *, timeout: float = 5.0, transport: httpx.AsyncBaseTransport | None = None
) -> list[Sample]:
    """Evaluate `expr` now; the samples of the resulting vector (one for a scalar)."""
    base = check_url(url)
    async with httpx.AsyncClient(
        verify=tls(), timeout=timeout, transport=transport, trust_env=False, headers={"User-Agent": "pushctl"}
    ) as http:
        try:
            resp = await http.post(f"{base}/api/v1/query", data={"query": expr})
        except httpx.HTTPError as exc:
            raise TargetUnreachable(f"Prometheus at {base} did not answer: {type(exc).__name__}") from exc
    try:
        body: Any = resp.json()
    except ValueError:
        raise TargetUnreachable(f"{base} answered HTTP {resp.status_code}, not the Prometheus API") from None
    if not isinstance(body, dict) or "status" not in body:
        raise TargetUnreachable(f"{base} answered HTTP {resp.status_code}, not the Prometheus API")
    if body["status"] != "success":
        if body.get("errorType") == "bad_data":
            raise UsageError(f"PromQL {expr!r}: {body.get('error', 'rejected')}")
        raise TargetUnreachable(f"Prometheus at {base}: {body.get('errorType')}: {body.get('error')}")
    return _samples(body.get("data") or {}, expr)


def _samples(data: dict[str, Any], expr: str) -> list[Sample]:
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return [Sample({}, float(result[1]))]
    if kind == "vector" and isinstance(result, list):
        return [Sample(dict(r.get("metric") or {}), float(r["value"][1])) for r in result]
    raise UsageError(f"PromQL {expr!r} gives a {kind}: ask for an instant vector or a scalar (no [range])")


def numbers(samples: list[Sample]) -> list[Sample]:
    """The samples with a value (NaN: a ratio of nothing, e.g. no traffic in the window)."""
    return [s for s in samples if not math.isnan(s.value)]
