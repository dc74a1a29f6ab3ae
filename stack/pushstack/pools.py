"""HTTP client pools that shrink back after a burst.

aiohttp (since 3.11) hands out the *oldest* idle keep-alive connection first. Under steady traffic
every pooled connection is then reused well within the keep-alive timeout, so a pool never closes
what a burst opened: it stays at the highest concurrency it has ever seen (the soak saw the
connections through the internal Toxiproxy step up at each drill and never come down). Reusing
the *newest* idle connection first, as Go's net/http and redis-py do, leaves the burst's extra
connections idle at the far end, where the keep-alive timeout closes them.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

# idle keep-alive connections close after this long; also aiohttp's default
KEEPALIVE_S = 15.0


class NewestFirstConnector(aiohttp.TCPConnector):
    """A TCPConnector that reuses the most recently released connection first (last in, first out)."""

    async def _get(self, key: ConnectionKey, traces: list[Trace]) -> Connection | None:
        conns = self._conns.get(key)
        if conns:
            # aiohttp takes from the left and releases to the right: bring the newest to the left
            conns.rotate(1)
        return await super()._get(key, traces)


def client_session(
    *,
    limit: int = 100,
    limit_per_host: int = 0,
    keepalive_s: float = KEEPALIVE_S,
    **kwargs: Any,
) -> aiohttp.ClientSession:
    """An aiohttp session over a pool that closes the connections a burst opened once it is over."""
    connector = NewestFirstConnector(limit=limit, limit_per_host=limit_per_host, keepalive_timeout=keepalive_s)
    return aiohttp.ClientSession(connector=connector, **kwargs)
