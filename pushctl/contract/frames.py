"""Device <-> broker WebSocket frames (JSON text frames). Documented in docs/protocol.md.

A device connects to `ws://HOST:PORT/ws`, sends `auth` first, then receives `push` frames and
answers each with `ack`. The broker may send `reconnect` (go elsewhere, after a delay) and
answers the application-level `ping` with `pong`. Refusals come as `error` then a close.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict

WS_PATH = "/ws"

# close codes a device understands
CLOSE_OVER_LIMIT = 1013  # try again later (RFC 6455 "Try Again Later"): connect to the next region
CLOSE_UNAUTHORIZED = 1008  # policy violation: bad device id or token
CLOSE_RECONNECT = 4000  # the broker ordered a reconnect and closes after the grace period
CLOSE_REPLACED = 4001  # a newer connection of the same device took over: do not reconnect this one


def device_token(secret: str, device_id: str) -> str:
    """The token a device presents: an HMAC of its id under the platform's secret."""
    return hmac.new(secret.encode(), device_id.encode(), hashlib.sha256).hexdigest()[:32]


class _Frame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Auth(_Frame):
    type: Literal["auth"] = "auth"
    device: str
    token: str
    region: str | None = None  # the device's home region, used for accounting only


class AuthOk(_Frame):
    type: Literal["auth_ok"] = "auth_ok"
    broker: str
    region: str


class Push(_Frame):
    type: Literal["push"] = "push"
    id: str
    payload: str
    sent_at: float  # epoch seconds when the app server sent it (for latency accounting)


class Ack(_Frame):
    type: Literal["ack"] = "ack"
    id: str


def ack_frame(msg_id: str) -> str:
    """`Ack(id=msg_id).model_dump_json()` without building a model: one per push on a device's hot path."""
    return json.dumps({"type": "ack", "id": msg_id}, ensure_ascii=False, separators=(",", ":"))


class Reconnect(_Frame):
    """Order to reconnect elsewhere after `after_ms`, avoiding the listed regions."""

    type: Literal["reconnect"] = "reconnect"
    after_ms: int
    avoid: list[str]
    reason: str


class Ping(_Frame):
    type: Literal["ping"] = "ping"


class Pong(_Frame):
    type: Literal["pong"] = "pong"


class Error(_Frame):
    type: Literal["error"] = "error"
    code: Literal["over_limit", "unauthorized", "bad_frame", "draining"]
    reason: str
    retry_after_ms: int = 0
