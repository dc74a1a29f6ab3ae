"""Client pools shrink back after a burst (the soak saw them stay at their high-water mark for ever)."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest
from pushstack.pools import client_session

KEEPALIVE_S = 0.5


class CountingServer:
    """An HTTP/1.1 keep-alive server on loopback that counts the connections open at each moment."""

    def __init__(self) -> None:
        self.open = 0
        self.peak = 0
        self.delay = 0.05  # long enough that a burst needs several connections
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(Exception):
            await self.server.wait_closed()


async def _burst_then_steady(session: aiohttp.ClientSession, url: str, server: CountingServer) -> int:
    """Eight requests at once, then one at a time for several keep-alive periods: connections left open."""

    async def get() -> None:
        async with session.get(url) as resp:
            await resp.read()

    await asyncio.gather(*(get() for _ in range(8)))
    assert server.peak >= 6
    server.delay = 0.0  # steady traffic: each connection aiohttp cycles through is reused within milliseconds
    loop = asyncio.get_running_loop()
    end = loop.time() + KEEPALIVE_S * 6
    while loop.time() < end:
        await get()
    return server.open


async def test_a_burst_s_connections_close_once_traffic_is_steady_again() -> None:
    server = CountingServer()
    async with server as url, client_session(keepalive_s=KEEPALIVE_S) as session:
        left_open = await _burst_then_steady(session, url, server)
    assert left_open <= 2, f"{left_open} connections still open after the burst (peak {server.peak})"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_aiohttp_s_own_pool_stays_at_its_peak_which_is_why_we_have_ours() -> None:
    """The same traffic through aiohttp's connector: oldest-first reuse keeps every connection warm."""
    server = CountingServer()
    connector = aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_S)
    async with server as url, aiohttp.ClientSession(connector=connector) as session:
        left_open = await _burst_then_steady(session, url, server)
    assert left_open >= 6
