"""The disk KV's small HTTP API, as a schema and a client (used by the kvwriter and logic).

PUT  /v1/kv/{key}      body = the value's bytes                      -> 204
POST /v1/kv            {"items": {key: value}} (one transaction)     -> 200 {"stored": n}
GET  /v1/kv/{key}      -> 200 with the value's bytes, 404 when absent

kv = DiskKVClient(session, "http://127.0.0.1:18601", token)
await kv.put_many({"group-payload:g1": "hello"})
await kv.get("group-payload:g1")    # "hello", or None when absent
"""

from __future__ import annotations

import aiohttp

from pushctl.contract.api import KVBatch, KVStored


class DiskKVError(Exception):
    """The disk KV did not answer, or answered with an error; retrying may succeed."""

    retriable = True


class DiskKVClient:
    """Talks to the disk KV through one link; every call raises `DiskKVError` on failure."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str, *, timeout: float = 5.0):
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def put_many(self, items: dict[str, str]) -> int:
        body = KVBatch(items=items).model_dump_json()
        headers = {**self._headers, "Content-Type": "application/json"}
        try:
            async with self._session.post(
                f"{self._base}/v1/kv", data=body, headers=headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise DiskKVError(f"disk KV batch write answered {resp.status}: {raw[:200]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DiskKVError(f"disk KV unreachable: {exc!r}") from exc
        return KVStored.model_validate_json(raw).stored

    async def get(self, key: str) -> str | None:
        try:
            async with self._session.get(
                f"{self._base}/v1/kv/{key}", headers=self._headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise DiskKVError(f"disk KV read answered {resp.status}: {raw[:200]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DiskKVError(f"disk KV unreachable: {exc!r}") from exc
        return raw.decode()
