"""The disk KV: group payloads on a real embedded engine that fsyncs (SQLite, WAL, synchronous=FULL).

The kvwriter persists every group payload here from Kafka; a logic gateway reads it back when the
cache Redis has failed or lost the key. The API is in `pushstack.kvclient`. Concurrent writes are
group-committed: whatever arrived while the previous transaction was fsyncing goes into the next
one, so throughput follows the disk's fsync rate times the batch, not the request rate. SQLite runs
in worker threads so the event loop never blocks on the disk.

Data lives in `$PUSHCTL_DATA_DIR/kv.sqlite3` (default `./.pushstack-data/<service>/`).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from pathlib import Path

from aiohttp import web

from pushctl.contract.api import KVBatch, KVStored
from pushctl.contract.topology import Inventory
from pushstack.service import PushService

DATA_DIR_ENV = "PUSHCTL_DATA_DIR"


class SqliteKV:
    """A key -> bytes table; every method blocks (call it from a worker thread)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect(path)
        self._writer.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        self._reader = self._connect(path)
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit: an ack means on disk
        return conn

    def write(self, items: list[tuple[str, bytes]]) -> None:
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                self._writer.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", items)
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")

    def read(self, key: str) -> bytes | None:
        with self._read_lock:
            row = self._reader.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


class DiskKV(PushService):
    kind = "diskkv"

    def __init__(self, inventory: Inventory, name: str) -> None:
        super().__init__(inventory, name)
        default_dir = Path.cwd() / ".pushstack-data" / name
        self.data_dir = Path(os.environ.get(DATA_DIR_ENV) or default_dir)
        self._db: SqliteKV | None = None
        self._pending: list[tuple[list[tuple[str, bytes]], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self.m_written = self.counter("pushstack_diskkv_written_total", "Values written (committed).")
        self.m_commits = self.counter("pushstack_diskkv_commits_total", "Transactions committed (fsynced).")
        self.m_commit_s = self.histogram(
            "pushstack_diskkv_commit_seconds",
            "Time to commit one group of writes.",
            (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.m_reads = self.counter("pushstack_diskkv_reads_total", "Reads by result.", ("result",))
        for result in ("hit", "miss"):
            self.m_reads.labels(result)  # exported at 0 from the start: dashboards read a number
        self.m_errors = self.counter("pushstack_diskkv_errors_total", "Failed transactions.")

    def routes(self) -> None:
        self.control("PUT", "/v1/kv/{key}", self._put)
        self.control("POST", "/v1/kv", self._put_many)
        self.control("GET", "/v1/kv/{key}", self._get)

    async def on_start(self) -> None:
        self._db = await asyncio.to_thread(SqliteKV, self.data_dir / "kv.sqlite3")
        self.spawn(self._commit_routine, "_commit_routine")

    async def on_stop(self) -> None:
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(RuntimeError("disk KV stopping"))
        self._pending.clear()
        if self._db is not None:
            await asyncio.to_thread(self._db.close)
            self._db = None

    def health_detail(self) -> tuple[bool, dict[str, str]]:
        return self._db is not None, {"data_dir": str(self.data_dir)}

    # ---- handlers ---------------------------------------------------------------------------
    async def _put(self, request: web.Request) -> web.Response:
        await self._write([(request.match_info["key"], await request.read())])
        return web.Response(status=204)

    async def _put_many(self, request: web.Request) -> web.Response:
        batch = await self.body(request, KVBatch)
        items = [(k, v.encode()) for k, v in batch.items.items()]
        if items:
            await self._write(items)
        return self.reply(KVStored(stored=len(items)))

    async def _get(self, request: web.Request) -> web.Response:
        db = self._require_db()
        value = await asyncio.to_thread(db.read, request.match_info["key"])
        if value is None:
            self.m_reads.labels("miss").inc()
            return web.json_response({"error": "no such key"}, status=404)
        self.m_reads.labels("hit").inc()
        return web.Response(body=value, content_type="application/octet-stream")

    # ---- group commit -----------------------------------------------------------------------
    async def _write(self, items: list[tuple[str, bytes]]) -> None:
        self._require_db()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((items, fut))
        self._wake.set()
        try:
            await fut
        except Exception as exc:
            raise web.HTTPServiceUnavailable(
                text=f'{{"error": "write failed: {type(exc).__name__}"}}', content_type="application/json"
            ) from exc

    async def _commit_routine(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            group, self._pending = self._pending, []
            if not group:
                continue
            items = [item for part, _ in group for item in part]
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self._require_db().write, items)
            except (sqlite3.Error, OSError) as exc:
                self.m_errors.inc()
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.m_commit_s.observe(time.perf_counter() - started)
            self.m_commits.inc()
            self.m_written.inc(len(items))
            for _, fut in group:
                if not fut.done():
                    fut.set_result(None)

    def _require_db(self) -> SqliteKV:
        if self._db is None:
            raise web.HTTPServiceUnavailable(text='{"error": "disk KV not open"}', content_type="application/json")
        return self._db
