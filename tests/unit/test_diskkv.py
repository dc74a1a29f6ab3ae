"""The disk KV: SQLite round trips, and its HTTP API with group commit (token required)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pushstack.diskkv import DiskKV, SqliteKV

from pushctl.contract.topology import load_inventory


def test_sqlite_round_trip_survives_reopen(tmp_path: Path) -> None:
    db = SqliteKV(tmp_path / "kv.sqlite3")
    db.write([("a", b"1"), ("b", b"2")])
    db.write([("a", b"3")])
    db.close()
    again = SqliteKV(tmp_path / "kv.sqlite3")
    assert again.read("a") == b"3"
    assert again.read("b") == b"2"
    assert again.read("zz") is None
    again.close()


def test_sqlite_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    SqliteKV(tmp_path / "kv.sqlite3").close()
    conn = sqlite3.connect(tmp_path / "kv.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


@pytest.fixture
async def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PUSHCTL_DATA_DIR", str(tmp_path))
    svc = DiskKV(load_inventory(), "diskkv")
    await svc.on_start()
    async with TestClient(TestServer(svc.app)) as cli:
        yield cli, {"Authorization": f"Bearer {svc.inv.token}"}
    await svc.stop()


async def test_http_put_batch_get(client) -> None:  # type: ignore[no-untyped-def]
    cli, auth = client
    resp = await cli.put("/v1/kv/group-payload:g1", data=b"hello", headers=auth)
    assert resp.status == 204
    resp = await cli.post("/v1/kv", json={"items": {"k1": "v1", "k2": "v2"}}, headers=auth)
    assert resp.status == 200
    assert (await resp.json()) == {"stored": 2}
    assert await (await cli.get("/v1/kv/group-payload:g1", headers=auth)).read() == b"hello"
    assert await (await cli.get("/v1/kv/k2", headers=auth)).read() == b"v2"
    assert (await cli.get("/v1/kv/absent", headers=auth)).status == 404


async def test_concurrent_writes_are_group_committed(client) -> None:  # type: ignore[no-untyped-def]
    cli, auth = client
    responses = await asyncio.gather(
        *(cli.post("/v1/kv", json={"items": {f"k{i}": str(i)}}, headers=auth) for i in range(50))
    )
    assert {r.status for r in responses} == {200}
    metrics = await (await cli.get("/metrics")).text()
    commits = next(
        float(line.split()[1]) for line in metrics.splitlines() if line.startswith("pushstack_diskkv_commits_total")
    )
    assert commits < 50
    assert await (await cli.get("/v1/kv/k49", headers=auth)).read() == b"49"


async def test_control_endpoints_need_the_token(client) -> None:  # type: ignore[no-untyped-def]
    cli, _ = client
    assert (await cli.get("/v1/kv/k1")).status == 401
    assert (await cli.get("/healthz")).status == 200
