"""The stack's real Prometheus: it scrapes every service, the dashboard's queries have data, and
`slo check --prometheus` judges the SLO from the platform's own metrics (each exit code shown)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pushctl.grafana import DASHBOARD_FILE, panel_queries
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def _url(stack: Stack) -> str:
    assert stack.inventory.prometheus is not None
    return stack.inventory.prometheus.url


def _api(stack: Stack, path: str, **params: str) -> Any:
    resp = httpx.get(f"{_url(stack)}/api/v1/{path}", params=params, timeout=5)
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]


def _wait(what: str, cond: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def test_prometheus_is_up_and_scrapes_every_service_and_toxiproxy(stack: Stack) -> None:
    status = json.loads(stack.pushctl("stack", "status", "--json", check=True).stdout)
    prom = next(c for c in status["components"] if c["name"] == "prometheus")
    assert prom["healthy"] and prom["running"]
    inv = stack.inventory
    expected = {
        f"http://{s.host}:{s.port}/metrics" for s in inv.services.values() if s.kind.value not in ("redis", "kafka")
    }
    expected |= {f"http://{tp.host}:{tp.port}/metrics" for tp in inv.toxiproxy.values()}

    def all_up() -> bool:
        targets = httpx.get(f"{_url(stack)}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return {t["scrapeUrl"] for t in targets if t["health"] == "up"} == expected

    _wait("every target scraped and up", all_up)
    # -proxy-metrics: each link's bytes, by proxy name
    proxies = {s["metric"]["proxy"] for s in _api(stack, "query", query="toxiproxy_proxy_sent_bytes_total")["result"]}
    assert "device-south" in proxies


def test_every_dashboard_panel_has_data_and_slo_check_reads_prometheus(stack: Stack) -> None:
    started = time.time()
    stack.pushctl(
        "probe",
        "run",
        "--devices",
        "30",
        "--rate",
        "100",
        "--duration",
        "4s",
        "--group-rate",
        "2",
        "--group-size",
        "5",
        check=True,
        timeout=90,
    )
    _wait(
        "the delivery SLI recorded",
        lambda: bool(_api(stack, "query", query="push:sli_delivery:ratio_rate1m")["result"]),
    )
    doc = json.loads(DASHBOARD_FILE.read_text())
    empty = []
    for title, expr in panel_queries(doc):
        if not _api(stack, "query", query=expr)["result"]:
            empty.append(title)
    # counters of events a healthy stack never has (failovers, refusals, dead letters) are exported at 0
    # from the start for every label value the services know: every panel has data
    assert empty == [], f"panels without data: {empty}"

    url = _url(stack)
    # the window holds this test's own traffic only: earlier tests on the session stack broke things on
    # purpose (drops, outages), and the SLI rightly counts what they cost
    window = f"{int(time.time() - started) + 3}s"
    held = stack.pushctl("slo", "check", "--prometheus", url, "--window", window, "--target", "99")
    assert held.returncode == 0, held.stdout + held.stderr
    assert "SLO held" in held.stderr + held.stdout
    # the same SLI halved: a breach, from the metrics alone
    breached = stack.pushctl("slo", "check", "--prometheus", url, "--query", "push:sli_delivery:ratio_rate1m * 0.5")
    assert breached.returncode == 1, breached.stdout + breached.stderr
    assert "SLO breached" in breached.stderr
    for args, code, says in (
        (["--query", "push:no_such_sli"], 8, "no data"),
        (["--query", "sum(rate(x[1m]"], 2, "parse error"),
    ):
        proc = stack.pushctl("slo", "check", "--prometheus", url, *args)
        assert proc.returncode == code and says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    unreachable = stack.pushctl("slo", "check", "--prometheus", "http://127.0.0.1:9")
    assert unreachable.returncode == 4 and "did not answer" in unreachable.stderr
    bad = stack.pushctl("slo", "check", "--prometheus", "127.0.0.1:9090")
    assert bad.returncode == 2 and "expected http(s)://host:port" in bad.stderr
