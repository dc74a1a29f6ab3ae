"""The control API every push service implements: paths, schemas and Kafka topic names.

One OpenAPI document per service kind (docs/openapi/<kind>.json, generated from these models and
`pushctl.contract.operations` by `python -m pushctl.contract.openapi`) describes them. Control endpoints need
`Authorization: Bearer <inventory token>`; `/healthz` and `/metrics` do not.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

# ---- Kafka topics: pushctl provisions them, services use them ------------------------------------------------------
TOPIC_GROUP_PAYLOADS = "group-payloads"  # access -> kvwriter -> disk KV
TOPIC_BUFFER = "buffer"  # access (throttled) -> bypass consumer -> logic
TOPIC_DEADLETTER = "push-deadletter"  # bypass: records it cannot parse or forward (contract.deadletter)


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- limits every edge enforces (docs/protocol.md, "Limits") -------------------------------------
MAX_ID = 128  # characters of a message or device id
MAX_PAYLOAD = 4096  # characters of a payload (the size APNs and FCM allow a notification)
MAX_BATCH = 10_000  # messages in one request
MAX_GROUP = 100_000  # devices named in one group push
MAX_BODY = 16 * 1024 * 1024  # bytes of one request body (413 beyond)
MAX_RATE = 10_000_000.0  # a throttle limit or safe load, per second


def _integral(value: object) -> object:
    """JSON has one number type: 5.0 is the integer 5 (as JSON Schema says), "5" is not a number."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# an integer as JSON Schema means it; the services validate bodies strictly, which alone refuses 5.0
Int = Annotated[int, BeforeValidator(_integral)]
Id = Annotated[
    str,
    Field(
        min_length=1, max_length=MAX_ID, description=f"an id: 1 to {MAX_ID} characters, any Unicode, unique per message"
    ),
]
Timestamp = Annotated[
    float,
    Field(
        ge=0,
        allow_inf_nan=False,
        description="the app server's send time in seconds since the Unix epoch (UTC; finite, >= 0); "
        "what latency is measured from",
    ),
]
Payload = Annotated[
    str,
    Field(
        max_length=MAX_PAYLOAD,
        description=f"the notification's text: at most {MAX_PAYLOAD} characters (413 beyond)",
    ),
]
Rate = Annotated[float, Field(ge=0, le=MAX_RATE, allow_inf_nan=False, description="messages per second")]
Count = Annotated[int, Field(ge=0)]
Version = Annotated[
    int,
    Field(
        ge=-1,
        description="the set's version: the scheduler's wall clock in milliseconds since the Unix epoch "
        "when it last changed; -1 for the empty set held before the first fetch",
    ),
    BeforeValidator(_integral),  # after the bounds, so they stay JSON Schema (minimum), not a raw "ge"
]


class Error(_Schema):
    """Every error answer's body (4xx and 5xx from the services themselves)."""

    error: str = Field(description="what was wrong, for a human")


class Health(_Schema):
    """`GET /healthz` on every service."""

    status: Literal["ok", "degraded"] = Field(description="degraded: the service runs but lacks a dependency")
    service: str = Field(description="the service's name in the inventory")
    detail: dict[str, str] = Field(default_factory=dict, description="named facts about the service's state")


# ---- scheduler ---------------------------------------------------------------------------------
class PolicyIn(_Schema):
    """`POST /v1/policies` on the scheduler: drain a region."""

    kind: Literal["drain"] = Field(default="drain", description="the only policy kind: drain a region")
    region: str = Field(description="the region to drain (one of the inventory's regions)")
    spread_s: float = Field(
        default=5.0, ge=0, le=600, description="seconds over which the region's devices are told to reconnect"
    )
    origin: Literal["operator", "auto"] = Field(
        default="operator", description="who asked: an operator, or the scheduler's own auto drain"
    )


class Policy(PolicyIn):
    """A policy in force."""

    id: str = Field(description="the policy's id, given by the scheduler (`drain-<region>-<8 hex digits>`)")
    created_at: float = Field(description="when the policy was added, seconds since the Unix epoch")


class RegionState(_Schema):
    """What the scheduler knows of one region's broker."""

    healthy: bool = Field(description="the broker answered recently on both networks")
    connections: Int = Field(description="device connections the broker holds")
    limit: Int = Field(description="the broker's connection limit")
    drained: bool = Field(description="a drain policy is in force for the region")


class PolicySet(_Schema):
    """The scheduler's policies and region health; brokers and the dispatcher follow it."""

    version: Version
    policies: list[Policy] = Field(description="the policies in force")
    regions: dict[str, RegionState] = Field(default_factory=dict, description="region name -> its state")


class AutoMode(_Schema):
    """`PUT /v1/auto` on the scheduler: whether it drains unhealthy regions on its own."""

    enabled: bool = Field(description="true: the scheduler drains a region it finds unreachable, and withdraws it")


# ---- dispatcher --------------------------------------------------------------------------------
class Endpoint(_Schema):
    """One region's device-facing address."""

    region: str = Field(description="the region's name")
    url: str = Field(description="the WebSocket URL a device connects to (`ws://host:port/ws`)")


class Endpoints(_Schema):
    """`GET /v1/endpoints` on the dispatcher."""

    device: str = Field(description="the device id asked about")
    endpoints: list[Endpoint] = Field(description="regions nearest first; drained regions left out, unhealthy last")


# ---- broker ------------------------------------------------------------------------------------
class Message(_Schema):
    """One push to one device, as the logic gateway and brokers carry it."""

    id: Id
    device: Id
    sent_at: Timestamp
    payload: Payload | None = Field(
        default=None, description="the payload inline (storage fallback, or already resolved)"
    )
    payload_ref: str | None = Field(default=None, description="a cache or disk KV key to fetch the payload from")
    group: str | None = Field(default=None, description="the group push's id when this message is part of one")


class DeliverRequest(_Schema):
    """`POST /v1/deliver` on a broker."""

    messages: list[Message] = Field(max_length=MAX_GROUP, description=f"at most {MAX_GROUP} messages")
    timeout_ms: Int = Field(default=2000, ge=1, le=30000, description="milliseconds to wait for acks")


class DeliverResult(_Schema):
    """What became of each message of a delivery."""

    acked: list[str] = Field(description="ids the device acked")
    offline: list[str] = Field(description="ids whose device holds no connection on this broker")
    timeout: list[str] = Field(description="ids written, but not acked within timeout_ms")
    # A group fan-out sends one message id to many devices, so an id alone cannot say which device
    # acked. A broker that fills these (the device of each entry above, in the same order) lets the
    # gateway account per device; without them it must re-send a group id it cannot attribute.
    acked_devices: list[str] = Field(default_factory=list, description="the device of each acked id, same order")
    offline_devices: list[str] = Field(default_factory=list, description="the device of each offline id")
    timeout_devices: list[str] = Field(default_factory=list, description="the device of each timed-out id")


class Connections(_Schema):
    """`GET /v1/connections` on a broker."""

    broker: str = Field(description="the broker's name")
    region: str = Field(description="the broker's region")
    count: int = Field(description="device connections held now")
    limit: int = Field(description="the most device connections it holds at once")
    draining: bool = Field(description="a drain policy for its region is in force")


class ConnectionLimit(_Schema):
    """`PUT /v1/limit` on a broker: the most device connections it holds at once."""

    limit: Int = Field(ge=0, le=1_000_000, description="connections; 0 refuses every device")


# ---- logic gateway -----------------------------------------------------------------------------
class PushBatch(_Schema):
    """`POST /v1/push` on a logic gateway: single pushes."""

    messages: list[Message] = Field(max_length=MAX_GROUP, description=f"at most {MAX_GROUP} messages")


class GroupTask(_Schema):
    """`POST /v1/group` on a logic gateway: one payload to many devices."""

    id: Id
    devices: list[Id] = Field(max_length=MAX_GROUP, description=f"the devices, at most {MAX_GROUP}")
    sent_at: Timestamp
    payload_ref: str = Field(description="the cache or disk KV key holding the payload")


class Accepted(_Schema):
    """What a logic gateway took on."""

    accepted: int = Field(description="messages accepted (journaled; delivered at least once from here on)")
    # ids taken by reference whose payload the gateway could not fetch: not accepted, re-send inline
    missing: list[str] = Field(
        default_factory=list, description="ids whose payload_ref could not be fetched: not accepted, re-send inline"
    )


class RoutingWeights(_Schema):
    """`PUT /v1/routing` on a logic gateway: how traffic splits between IDCs."""

    weights: dict[str, Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]] = Field(
        min_length=1,
        description="IDC name -> relative weight (0 to 1,000,000); at least one positive; missing IDCs get 0",
    )


class LogicLoad(_Schema):
    """`GET /v1/load` on a logic gateway: what the access tier's auto throttle reads."""

    service: str = Field(description="the gateway's name")
    idc: str = Field(description="the gateway's IDC")
    messages_per_s: float = Field(description="messages finished (acked, stored offline or dropped) per second")
    queued: int = Field(description="messages accepted, waiting to be processed")
    inflight: int = Field(description="messages in a delivery request to a broker right now")


# ---- access tier -------------------------------------------------------------------------------
class SinglePush(_Schema):
    """`POST /v1/push/single` on the access tier: one push to one device."""

    id: Id
    device: Id
    payload: Payload
    sent_at: Timestamp


class SingleBatch(_Schema):
    """`POST /v1/push/batch` on the access tier."""

    messages: list[SinglePush] = Field(max_length=MAX_BATCH, description=f"at most {MAX_BATCH} pushes")


class GroupPush(_Schema):
    """`POST /v1/push/group` on the access tier: one payload to named devices, or to a region's."""

    model_config = ConfigDict(
        extra="forbid",
        # exactly one audience, as `_one_audience` checks: JSON Schema says it with oneOf
        json_schema_extra={
            "oneOf": [
                {"required": ["devices"], "properties": {"devices": {"type": "array"}}},
                {"required": ["region"], "properties": {"region": {"type": "string"}}},
            ]
        },
    )

    id: Id
    payload: Payload
    sent_at: Timestamp
    devices: list[Id] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_GROUP,
        description=f"the devices (1 to {MAX_GROUP}; duplicates count once); exactly one of devices and region",
    )
    region: str | None = Field(
        default=None, description="every device seen in this region; exactly one of devices and region"
    )

    @model_validator(mode="after")
    def _one_audience(self) -> GroupPush:
        if (self.devices is None) == (self.region is None):
            raise ValueError("give exactly one of devices or region")
        return self


class AccessResult(_Schema):
    """What the access tier did with a push request."""

    accepted: int = Field(description="pushes taken (direct plus buffered)")
    direct: int = Field(description="pushes handed to a logic gateway")
    buffered: int = Field(description="pushes put on the Kafka buffer (throttled)")
    rejected: int = Field(description="pushes no path took")
    # the ids of single pushes no path took: the caller knows exactly what was refused, never guesses
    rejected_ids: list[str] = Field(default_factory=list, description="the ids of the single pushes rejected")


class Throttle(_Schema):
    """`PUT /v1/throttle` on the access tier: how much takes the direct path."""

    model_config = ConfigDict(
        extra="forbid",
        # mode fixed needs a limit (the handler answers 400 otherwise)
        json_schema_extra={
            "anyOf": [
                {"properties": {"mode": {"enum": ["off", "auto"]}}},
                {"required": ["mode", "limit_per_s"], "properties": {"limit_per_s": {"type": "number"}}},
            ]
        },
    )

    mode: Literal["off", "fixed", "auto"] = Field(
        default="off",
        description="off: everything direct; fixed: limit_per_s direct; auto: divert past threshold x safe load",
    )
    limit_per_s: Rate | None = Field(
        default=None, description="mode fixed: messages per second on the direct path (required then)"
    )
    safe_load_per_s: Annotated[float, Field(gt=0, le=MAX_RATE, allow_inf_nan=False)] = Field(
        default=20000.0, description="mode auto: the logic tier's safe load, messages per second"
    )
    threshold: float = Field(
        default=0.8, gt=0, le=1, description="mode auto: the fraction of the safe load where diverting starts"
    )


class StorageMode(_Schema):
    """`GET /v1/storage` on the access tier."""

    mode: Literal["redis", "fallback"] = Field(description="fallback: the cache failed, payloads travel inline")
    since: float = Field(description="when the mode last changed, seconds since the Unix epoch")


# ---- disk KV -----------------------------------------------------------------------------------
class KVBatch(_Schema):
    """`POST /v1/kv` on the disk KV: many values in one transaction."""

    items: dict[str, str] = Field(description="key -> value (stored as its UTF-8 bytes); may be empty")


class KVStored(_Schema):
    """What one `POST /v1/kv` stored."""

    stored: int = Field(description="values written and fsynced")
