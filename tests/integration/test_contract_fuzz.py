"""Schemathesis against every kind of service: a request valid by the OpenAPI document is accepted, an
invalid one refused, and every answer (status, headers, content type, body) is one the document declares.

Fuzzing changes what it touches (limits, routing, throttle, policies, auto drains), so it runs on a
stack of its own, on ports shifted by -8000, torn down and purged afterwards; the session stack the
other tests share is never touched. Every check runs (`--checks all`), with a fixed seed and a bounded
number of examples per operation so a run is the same every time and takes about a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushctl.contract.openapi import document, render
from pushctl.contract.operations import OPERATIONS
from pushctl.contract.topology import ServiceKind
from tests.integration.conftest import REPO, Stack, derived_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
PORT_SHIFT = -8000  # 17xxx -> 9xxx, 18xxx -> 10xxx: clear of every other test's and bench's stack
SEED = 14
MAX_EXAMPLES = 25

# The only setting that differs from schemathesis's defaults. A body over a limit (a payload over
# 4,096 characters, a body over 16 MiB) is refused with 413, as docs/protocol.md section 9 says:
# a refusal as much as 400 is, so schema-invalid data answered 413 counts as rejected. Every default
# status stays; nothing else (5xx included) is excused.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
"""


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("fuzz")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with derived_stack(REPO / "stack" / "topology.toml", "fuzz", shift=PORT_SHIFT, env=env, tmp=tmp) as st:
        try:
            yield st
        finally:
            st.pushctl("stack", "down", "--purge", timeout=60)


def schemathesis(doc: Path, url: str, token: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run the schemathesis CLI on one document against `url`; its output is the failure report."""
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
            "--config-file",
            str(config),
            "--no-color",
            "run",
            str(doc),
            "--url",
            url,
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--generation-database",
            "none",  # no replay of earlier runs: the seed alone decides the examples
            "--workers",
            "1",
            "--request-timeout",
            "40",  # a delivery may wait 30 s for acks (timeout_ms <= 30000)
            "--output-truncate",
            "true",
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("kind", list(OPERATIONS), ids=lambda k: k.value)
def test_every_service_kind_honours_its_document(fuzz_stack: Stack, kind: ServiceKind, tmp_path: Path) -> None:
    doc = document(kind, fuzz_stack.inventory)
    server = doc["servers"][0]
    url = server["url"].replace("{port}", server["variables"]["port"]["default"])
    path = tmp_path / f"{kind.value}.json"
    path.write_text(render(doc))
    proc = schemathesis(path, url, fuzz_stack.inventory.token, tmp_path)
    assert proc.returncode == 0, f"{kind.value} at {url}:\n{proc.stdout[-12000:]}\n{proc.stderr[-2000:]}"
    assert "No issues found" in proc.stdout, proc.stdout[-4000:]


def test_the_fuzzed_documents_are_the_checked_in_ones_but_for_their_servers(fuzz_stack: Stack) -> None:
    """What is fuzzed here is what docs/openapi/ publishes: only the addresses differ."""
    for kind in OPERATIONS:
        fuzzed = document(kind, fuzz_stack.inventory)
        published = json.loads((REPO / "docs" / "openapi" / f"{kind.value}.json").read_text())
        for doc in (fuzzed, published):
            doc.pop("servers")
            doc["info"].pop("description")
        assert fuzzed == published, kind.value
