"""The bridge mode's pod: forward each port from the pod's bridge address to its loopback.

    python -m pushctl.runtime.docker.forward 21474 21475 ...   # the pod container's command

Every component of a bridge-mode stack shares the pod's network namespace and listens on the
inventory's 127.0.0.1 ports there. The engine publishes each port on the host's 127.0.0.1 and
delivers it to the pod's bridge address, where this forwards it, byte for byte and half-close
for half-close, to the same port on the pod's loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import sys

_CHUNK = 65536
log = logging.getLogger("pushctl.forward")


def pod_addresses() -> list[str]:
    """The pod's own IPv4 addresses other than loopback (its hostname resolves to them)."""
    infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos if not str(info[4][0]).startswith("127.")})


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.transport.abort()


async def _handle(port: int, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    try:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        client_w.transport.abort()  # nothing listens yet: the client sees a reset, as without us
        return
    try:
        await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
    finally:
        for writer in (up_w, client_w):
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def serve(ports: list[int]) -> None:
    """Forward `ports` until cancelled."""
    servers: list[asyncio.Server] = []
    try:
        for addr in pod_addresses():
            for port in ports:
                servers.append(await asyncio.start_server(functools.partial(_handle, port), addr, port))
        log.info("forwarding %d ports from %s to 127.0.0.1", len(ports), ", ".join(pod_addresses()))
        await asyncio.Event().wait()
    finally:
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ports = [int(p) for p in (sys.argv[1:] if argv is None else argv)]
    asyncio.run(serve(ports))


if __name__ == "__main__":
    main()
