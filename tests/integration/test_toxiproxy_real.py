"""The Toxiproxy client and link faults against a real toxiproxy-server of our own.

Proxies are created with pushctl and read back with the independent `toxiproxy-python` client;
a TCP echo server behind the link shows that latency on both streams delays a round trip and
that `clear` takes it away. The server is this test's own (not the reference stack's) and is
always killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from toxiproxy import Toxiproxy  # no stubs (pyproject lets mypy skip it); a read-back client only

from pushctl.contract.topology import Inventory
from pushctl.errors import ToxiproxyError
from pushctl.faults import links
from pushctl.faults.toxiproxy import Toxic, ToxiproxyClient
from pushctl.runtime.install import toxiproxy_path
from pushctl.runtime.paths import cache_dir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PORTS = range(27480, 27600)  # below the kernel's ephemeral range (32768-60999)
LATENCY_MS = 200


@dataclass(frozen=True)
class Server:
    port: int
    url: str
    log: Path


def free_port(skip: set[int] | frozenset[int] = frozenset()) -> int:
    for port in PORTS:
        if port in skip:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def toxiproxy_binary() -> Path:
    found = toxiproxy_path(cache_dir())
    if found is None:
        pytest.skip("toxiproxy-server is not installed (pushctl stack install)")
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    binary = toxiproxy_binary()
    port = free_port()
    log = tmp_path_factory.mktemp("toxiproxy") / "toxiproxy.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(binary), "-host", "127.0.0.1", "-port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOG_LEVEL": "info"},
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"toxiproxy-server did not start on {port}:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield Server(port, f"http://127.0.0.1:{port}", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def inventory(server: Server, listen: int, upstream: int) -> Inventory:
    return Inventory.model_validate(
        {
            "name": "itest",
            "token": "integration-token",
            "regions": {},
            "idcs": {},
            "toxiproxy": {"tp-test": {"port": server.port}},
            "services": {},
            "links": [
                {
                    "name": "echo",
                    "kind": "internal",
                    "toxiproxy": "tp-test",
                    "listen": listen,
                    "upstream": f"127.0.0.1:{upstream}",
                }
            ],
        }
    )


def independent_view(port: int) -> dict[str, dict[str, Any]]:
    """What toxiproxy-python (blocking, global host setting) sees on the server."""
    api = Toxiproxy()
    api.update_api_consumer("127.0.0.1", port)
    out = {}
    for name, proxy in api.proxies().items():
        toxics = {t.name: (t.type, t.stream, t.attributes) for t in proxy.toxics().values()}
        out[name] = {
            "listen": proxy.listen,
            "upstream": proxy.upstream,
            "enabled": proxy.enabled,
            "toxics": toxics,
        }
    return out


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def round_trip(port: int) -> float:
    """Seconds from sending 5 bytes on a new connection to reading them back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        started = time.perf_counter()
        writer.write(b"ping\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"ping\n"
        return time.perf_counter() - started
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_links_against_real_toxiproxy(server: Server) -> None:
    upstream = free_port()
    listen = free_port({upstream})
    echo_server = await asyncio.start_server(echo, "127.0.0.1", upstream)
    inv = inventory(server, listen, upstream)
    try:
        async with ToxiproxyClient(server.url) as tp:
            assert await tp.version() == "2.12.0"

        changes = await links.sync_links(inv)
        assert [c.action for c in changes] == ["created"]
        seen = (await asyncio.to_thread(independent_view, server.port))["echo"]
        assert seen == {
            "listen": f"127.0.0.1:{listen}",
            "upstream": f"127.0.0.1:{upstream}",
            "enabled": True,
            "toxics": {},
        }
        assert [c.action for c in await links.sync_links(inv)] == ["unchanged"]
        baseline = min([await round_trip(listen) for _ in range(3)])
        assert baseline < 0.1

        # latency on both streams; an open connection is reset so it cannot miss the toxic (#148)
        old_reader, old_writer = await asyncio.open_connection("127.0.0.1", listen)
        res = await links.add_fault(inv, "echo", "latency", {"latency": LATENCY_MS}, "both", reset_connections=True)
        assert "every open connection" in res.connections
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(old_reader.read(), 5) == b""  # closed by the reset
        old_writer.close()
        with contextlib.suppress(ConnectionError):
            await old_writer.wait_closed()
        seen = (await asyncio.to_thread(independent_view, server.port))["echo"]
        assert seen["enabled"] is True
        assert seen["toxics"] == {
            "latency-up": ("latency", "upstream", {"latency": LATENCY_MS, "jitter": 0}),
            "latency-down": ("latency", "downstream", {"latency": LATENCY_MS, "jitter": 0}),
        }
        slow = await round_trip(listen)
        assert slow >= 2 * LATENCY_MS / 1000 * 0.9, f"round trip {slow:.3f}s with {LATENCY_MS} ms each way"

        # the real server's errors become ours
        async with ToxiproxyClient(server.url) as tp:
            with pytest.raises(ToxiproxyError, match="already has a toxic named 'latency-up'") as info:
                await tp.add_toxic("echo", Toxic(name="latency-up", type="latency"))
            assert info.value.status == 409
            with pytest.raises(ToxiproxyError, match="invalid toxic type") as info:
                await tp.add_toxic("echo", Toxic(name="x", type="nope"))
            assert info.value.status == 400
            with pytest.raises(ToxiproxyError, match="has no proxy 'ghost'"):
                await tp.set_enabled("ghost", False)

        # down closes the listener; clear removes toxics and brings it back
        await links.link_down(inv, "echo")
        assert (await asyncio.to_thread(independent_view, server.port))["echo"]["enabled"] is False
        with pytest.raises(ConnectionRefusedError):
            await round_trip(listen)
        cleared = await links.clear_faults(inv, None)
        assert cleared[0].removed == ("latency-up", "latency-down")
        seen = (await asyncio.to_thread(independent_view, server.port))["echo"]
        assert seen["enabled"] is True and seen["toxics"] == {}
        assert await round_trip(listen) < 0.1

        assert await links.remove_links(inv) == ["echo"]
        assert await asyncio.to_thread(independent_view, server.port) == {}
    finally:
        echo_server.close()
        await echo_server.wait_closed()
        with contextlib.suppress(Exception):
            await links.remove_links(inv)
