"""Prometheus in the stack: inventory entry, generated scrape config, pinned install, PromQL checks.

The install and the query client are shown failing on wrong input: no apt-get (`NoApt`), a version
the archive does not serve (`UnservedVersion`), a query Prometheus refuses (`BadPromql`), an
answer that is not Prometheus (`NotPrometheus`), and PromQL checks that must fail on no data, NaN
or one bad series.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from pushctl.contract.derive import derived_inventory
from pushctl.contract.topology import DEFAULT_INVENTORY, load_inventory
from pushctl.errors import ComponentFailed, MissingToolchain, TargetUnreachable, UsageError
from pushctl.experiments.measure import evaluate_promql
from pushctl.experiments.model import PromqlCheck, Tolerance
from pushctl.promql import Sample, check_url, instant_query, prometheus_url
from pushctl.runbooks.expect import parse_expect
from pushctl.runtime import prometheus
from pushctl.runtime.components import Role, components

INV = load_inventory(DEFAULT_INVENTORY)


def test_reference_inventory_runs_prometheus_last_on_loopback() -> None:
    assert INV.prometheus is not None
    assert INV.prometheus.host == "127.0.0.1"
    comps = components(INV)
    assert comps[-1].role == Role.PROMETHEUS
    assert comps[-1].port == INV.prometheus.port
    assert ("prometheus", INV.prometheus.port) in list(INV.iter_ports())
    assert all(c.role != Role.PROMETHEUS for c in components(INV, prometheus=False))


def test_derived_inventory_moves_prometheus_too(tmp_path: Path) -> None:
    path = tmp_path / "topology.toml"
    path.write_text(derived_inventory(DEFAULT_INVENTORY.read_text(), name="copy", shift=1000))
    derived = load_inventory(path)
    assert derived.prometheus is not None and INV.prometheus is not None
    assert derived.prometheus.port == INV.prometheus.port + 1000


def test_scrape_config_targets_every_service_and_toxiproxy_directly() -> None:
    assert INV.prometheus is not None
    config = prometheus.scrape_config(INV, INV.prometheus, ["recording.yml", "alerts.yml"])
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    services = {f"{s.host}:{s.port}" for s in INV.services.values() if s.kind.value not in ("redis", "kafka")}
    proxies = {f"{tp.host}:{tp.port}" for tp in INV.toxiproxy.values()}
    assert targets == services | proxies  # the services' own ports: a faulted link does not blind monitoring
    assert config["global"]["scrape_interval"] == "1s"
    assert all(job["honor_labels"] for job in config["scrape_configs"])


def test_argv_binds_loopback_and_keeps_the_tsdb_in_the_run_dir(tmp_path: Path) -> None:
    assert INV.prometheus is not None
    argv = prometheus.prometheus_argv(Path("/x/prometheus"), INV.prometheus, tmp_path)
    assert f"--web.listen-address=127.0.0.1:{INV.prometheus.port}" in argv
    assert f"--storage.tsdb.path={tmp_path / 'tsdb'}" in argv
    assert "--storage.tsdb.retention.time=2h" in argv


def test_install_without_apt_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NoApt."""
    monkeypatch.setattr("pushctl.runtime.prometheus.shutil.which", lambda _: None)
    with pytest.raises(MissingToolchain, match="needs apt-get and dpkg"):
        prometheus.ensure_prometheus(tmp_path, lambda _: None)


def test_unserved_version_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """UnservedVersion: apt-get download fails; nothing half-installed is left."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("no apt-get/dpkg here (the NoApt case covers it)")
    monkeypatch.setattr(prometheus, "PROMETHEUS_VERSION", "0.0.1+nope")
    with pytest.raises(ComponentFailed, match=r"apt-get download prometheus=0\.0\.1\+nope failed"):
        prometheus.ensure_prometheus(tmp_path, lambda _: None)
    assert not prometheus.install_dir(tmp_path).exists()


def _prometheus(body: dict[str, Any], status: int = 200) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, json=body))


def _vector(*values: tuple[dict[str, str], str]) -> dict[str, Any]:
    result = [{"metric": labels, "value": [1.0, value]} for labels, value in values]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


async def test_instant_query_reads_a_vector() -> None:
    samples = await instant_query("http://p:9", "x", transport=_prometheus(_vector(({"region": "south"}, "0.5"))))
    assert samples == [Sample({"region": "south"}, 0.5)]


async def test_bad_promql_is_a_usage_error() -> None:
    """BadPromql."""
    body = {"status": "error", "errorType": "bad_data", "error": "parse error"}
    with pytest.raises(UsageError, match="parse error"):
        await instant_query("http://p:9", "sum(", transport=_prometheus(body, 400))


async def test_not_prometheus_is_unreachable() -> None:
    """NotPrometheus: a server that answers, but not the Prometheus API."""
    transport = httpx.MockTransport(lambda request: httpx.Response(404, text="nope"))
    with pytest.raises(TargetUnreachable, match="not the Prometheus API"):
        await instant_query("http://p:9", "x", transport=transport)


def test_urls_are_checked_before_anything_is_asked() -> None:
    for bad in ("notaurl", "ftp://x:1", "http://:9090", "http://h:port"):
        with pytest.raises(UsageError):
            check_url(bad)
    assert check_url("http://127.0.0.1:17090/") == "http://127.0.0.1:17090"
    assert prometheus_url(INV, None) == "http://127.0.0.1:17090"
    no_prom = INV.model_copy(update={"prometheus": None})
    with pytest.raises(UsageError, match="runs no Prometheus"):
        prometheus_url(no_prom, None)


@pytest.mark.parametrize(
    ("body", "ok", "says"),
    [
        (_vector(({}, "0.999")), True, "= 0.999"),
        (_vector(({}, "0.5")), False, "= 0.5"),  # a counter that stopped counting
        (_vector(), False, "no data"),
        (_vector(({}, "NaN")), False, "NaN"),
        (_vector(({"region": "north"}, "1"), ({"region": "south"}, "0.2")), False, "1 of 2 series break it"),
    ],
)
async def test_promql_check_holds_only_on_data_within_tolerance(
    monkeypatch: pytest.MonkeyPatch, body: dict[str, Any], ok: bool, says: str
) -> None:
    async def fake_query(url: str, expr: str, **_: Any) -> list[Sample]:
        return await instant_query(url, expr, transport=_prometheus(body))

    monkeypatch.setattr("pushctl.experiments.measure.instant_query", fake_query)
    check = PromqlCheck(promql="push:sli_delivery:ratio_rate1m", tolerance=Tolerance(min=0.99))
    value, held, detail = await evaluate_promql(check, INV, None)
    assert held is ok
    assert says in detail
    if ok:
        assert isinstance(value, float) and not math.isnan(value)


@pytest.mark.parametrize(
    ("answer", "held"),
    [
        ({"value": 0.0, "series": [{"labels": {}, "value": 0.0}]}, True),
        ({"value": 6000.0, "series": [{"labels": {}, "value": 6000.0}]}, False),  # a backlog left
        ({"value": None, "series": []}, False),  # no such series: a runbook check never passes on nothing
    ],
)
def test_runbook_promql_expectation_holds_only_on_a_value_within_it(answer: dict[str, Any], held: bool) -> None:
    """The kafka-buffer-lag runbook's check on `pushctl slo query push:buffer_lag:max --json`."""
    ok, _ = parse_expect("value <= 100 within 30s").check(0, answer)
    assert ok is held


def test_slo_query_without_a_prometheus_is_one_line_exit_2(tmp_path: Path) -> None:
    text = DEFAULT_INVENTORY.read_text()
    start = text.index("[prometheus]")
    path = tmp_path / "topology.toml"
    path.write_text(text[:start] + text[text.index("[services.redis-cache]") :])
    result = subprocess.run(
        [sys.executable, "-m", "pushctl.cli.main", "--inventory", str(path), "slo", "query", "up"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "runs no Prometheus: pass --prometheus URL" in result.stderr
    assert "Traceback" not in result.stderr
