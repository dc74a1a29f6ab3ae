"""One TLS context for every httpx client pushctl opens.

Building an `httpx.AsyncClient` loads the CA bundle into a fresh SSL context, ~100 ms of CPU on these
machines; pushctl opens clients while the probe runs (status reads, fault calls, undo steps), and each
of those stalled the probe's event loop. The context is built once and shared; verification is unchanged.
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def tls() -> ssl.SSLContext:
    """The shared client TLS context (certificate verification on, as httpx's default)."""
    return ssl.create_default_context()
