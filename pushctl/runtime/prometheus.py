"""The stack's Prometheus: installed pinned from Debian, configured from the inventory.

Debian's `prometheus` package is fetched with `apt-get download` and unpacked with `dpkg -x` into
the cache, never installed: its postinst would start a daemon on 0.0.0.0:9090 and pull the web UI's
JavaScript dependencies. The scrape config is generated from the inventory, so a derived inventory
(other ports) scrapes its own stack.

    binary = ensure_prometheus(cache_dir(), print)          # .../prometheus-2.42.0+ds-5+deb12u1/usr/bin/prometheus
    write_config(inv, data_dir)                             # data_dir/prometheus.yml + the rule files
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pushctl.contract.resources import resource
from pushctl.contract.topology import PUSH_SERVICE_KINDS, Inventory, PrometheusServer
from pushctl.errors import ComponentFailed, MissingToolchain

PROMETHEUS_VERSION = "2.42.0+ds-5+deb12u1"  # Debian bookworm's package, with promtool
RULES_DIR = resource("stack/prometheus")
RULE_FILES = ("recording.yml", "alerts.yml")
Log = Callable[[str], None]


def install_dir(cache: Path) -> Path:
    return cache / f"prometheus-{PROMETHEUS_VERSION}"


def binaries(cache: Path) -> tuple[Path, Path]:
    """(prometheus, promtool) inside the cache, installed or not."""
    bin_dir = install_dir(cache) / "usr" / "bin"
    return bin_dir / "prometheus", bin_dir / "promtool"


def reports_version(binary: Path) -> bool:
    """Whether `binary --version` names the pinned Debian revision (so a stale unpack is replaced)."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return f"revision: {PROMETHEUS_VERSION}" in out.stdout + out.stderr


def ensure_prometheus(cache: Path, log: Log) -> Path:
    """The pinned prometheus binary, unpacked into the cache when missing; idempotent and fast when present."""
    prometheus, promtool = binaries(cache)
    if reports_version(prometheus) and reports_version(promtool):
        return prometheus
    apt = shutil.which("apt-get")
    dpkg = shutil.which("dpkg")
    if apt is None or dpkg is None:
        raise MissingToolchain(
            f"prometheus {PROMETHEUS_VERSION} needs apt-get and dpkg to fetch Debian's package: "
            "run on Debian/Ubuntu, or drop [prometheus] from the inventory"
        )
    log(f"installing prometheus {PROMETHEUS_VERSION} (Debian package, unpacked, not installed) ...")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        got = subprocess.run(
            [apt, "download", f"prometheus={PROMETHEUS_VERSION}"],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        debs = list(Path(tmp).glob("prometheus_*.deb"))
        if got.returncode != 0 or not debs:
            reason = (got.stderr.strip().splitlines() or ["no .deb downloaded"])[-1]
            raise ComponentFailed(
                f"apt-get download prometheus={PROMETHEUS_VERSION} failed: {reason}"
                " (is bookworm in the apt sources? `apt-cache policy prometheus`)"
            )
        staged = Path(tmp) / "root"
        unpacked = subprocess.run(
            [dpkg, "-x", str(debs[0]), str(staged)], capture_output=True, text=True, check=False, timeout=300
        )
        if unpacked.returncode != 0:
            raise ComponentFailed(f"dpkg -x {debs[0].name} failed: {unpacked.stderr.strip()[-300:]}")
        target = install_dir(cache)
        if target.exists():
            shutil.rmtree(target)
        staged.replace(target)  # a rename: a half-unpacked tree is never taken as installed
    if not reports_version(prometheus):
        raise ComponentFailed(f"{prometheus} does not report version {PROMETHEUS_VERSION}")
    return prometheus


def scrape_config(inv: Inventory, prom: PrometheusServer, rule_files: list[str]) -> dict[str, Any]:
    """prometheus.yml for `inv`: one job per kind of push service, one for the Toxiproxy servers.

    Targets are the services' own addresses, not their Toxiproxy links: a fault on a link must not
    blind the monitoring of the service behind it. `honor_labels`: a metric's own `idc` or `region`
    label (access's view of each IDC) wins over the target's.
    """
    jobs: dict[str, list[dict[str, Any]]] = {}
    for name, svc in inv.services.items():
        if svc.kind in PUSH_SERVICE_KINDS:
            labels = {"service": name, **({"region": svc.region} if svc.region else {})}
            labels |= {"idc": svc.idc} if svc.idc else {}
            jobs.setdefault(svc.kind.value, []).append({"targets": [f"{svc.host}:{svc.port}"], "labels": labels})
    for name, tp in inv.toxiproxy.items():
        jobs.setdefault("toxiproxy", []).append({"targets": [f"{tp.host}:{tp.port}"], "labels": {"server": name}})
    return {
        "global": {
            "scrape_interval": prom.scrape_interval,
            "evaluation_interval": prom.scrape_interval,
            "scrape_timeout": prom.scrape_interval,
            "external_labels": {"stack": inv.name},
        },
        "rule_files": rule_files,
        "scrape_configs": [
            {"job_name": job, "metrics_path": "/metrics", "honor_labels": True, "static_configs": targets}
            for job, targets in sorted(jobs.items())
        ],
    }


CONFIG_FILE = "prometheus.yml"


def config_files(inv: Inventory, prom: PrometheusServer) -> dict[str, str]:
    """prometheus.yml and the shipped rule files, by file name: they go side by side in one directory
    (the config names the rule files relative to itself), on disk or into a container."""
    files = {}
    for name in RULE_FILES:
        source = RULES_DIR / name
        if not source.is_file():
            raise ComponentFailed(f"{source}: rule file missing (a wheel built without stack/prometheus?)")
        files[name] = source.read_text()
    files[CONFIG_FILE] = yaml.safe_dump(scrape_config(inv, prom, list(RULE_FILES)), sort_keys=False)
    return files


def write_config(inv: Inventory, prom: PrometheusServer, data: Path) -> Path:
    """Write prometheus.yml and copies of the shipped rule files into `data`; return the config's path."""
    for name, text in config_files(inv, prom).items():
        (data / name).write_text(text)
    return data / CONFIG_FILE


def prometheus_argv(binary: Path, prom: PrometheusServer, data: Path, config_dir: Path | None = None) -> list[str]:
    """Bound to the inventory's host (127.0.0.1), TSDB in the run directory, short retention."""
    return [
        str(binary),
        f"--config.file={(config_dir or data) / CONFIG_FILE}",
        f"--web.listen-address={prom.host}:{prom.port}",
        f"--storage.tsdb.path={data / 'tsdb'}",
        f"--storage.tsdb.retention.time={prom.retention}",
        "--log.level=warn",
    ]
