"""The control API every push service implements: paths, schemas, topic and key names.

One OpenAPI document (docs/openapi.json, generated from these models by
`python -m pushctl.contract.openapi`) describes them. Control endpoints need
`Authorization: Bearer <inventory token>`; `/healthz` and `/metrics` do not.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# ---- names shared by services and pushctl ------------------------------------------------------
TOPIC_GROUP_PAYLOADS = "group-payloads"  # access -> kvwriter -> disk KV
TOPIC_BUFFER = "buffer"  # access (throttled) -> bypass consumer -> logic
TOPIC_DEADLETTER = "push-deadletter"  # bypass: records it cannot parse or forward (contract.deadletter)
KEY_ROUTES = "routes"  # store hash: device -> broker name
KEY_REGION_DEVICES = "region-devices:{region}"  # store set: devices seen in a region
KEY_OFFLINE = "offline:{device}"  # store hash: message id -> message JSON
KEY_ONLINE_EVENTS = "online-events"  # store list: devices that came back (logic pops)
KEY_ROUTING = "routing:weights"  # store hash: idc -> weight
KEY_PAYLOAD = "payload:{id}"  # cache string: single-push payload
KEY_GROUP_PAYLOAD = "group-payload:{id}"  # cache string: group payload (disk KV holds it too)


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- limits every edge enforces (docs/protocol.md, "Limits") -------------------------------------
MAX_ID = 128  # characters of a message or device id
MAX_PAYLOAD = 4096  # characters of a payload (the size APNs and FCM allow a notification)
MAX_BATCH = 10_000  # messages in one request
MAX_GROUP = 100_000  # devices named in one group push
MAX_BODY = 16 * 1024 * 1024  # bytes of one request body (413 beyond)
MAX_RATE = 10_000_000.0  # a throttle limit or safe load, per second

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID, description=f"1 to {MAX_ID} characters")]
Timestamp = Annotated[
    float, Field(ge=0, allow_inf_nan=False, description="seconds since the Unix epoch (finite, >= 0)")
]
Payload = Annotated[str, Field(max_length=MAX_PAYLOAD, description=f"at most {MAX_PAYLOAD} characters")]
Rate = Annotated[float, Field(ge=0, le=MAX_RATE, allow_inf_nan=False, description="per second")]


class Health(_Schema):
    status: Literal["ok", "degraded"]
    service: str
    detail: dict[str, str] = Field(default_factory=dict)


# ---- scheduler ---------------------------------------------------------------------------------
class PolicyIn(_Schema):
    kind: Literal["drain"] = "drain"
    region: str
    spread_s: float = Field(default=5.0, ge=0, le=600)
    origin: Literal["operator", "auto"] = "operator"


class Policy(PolicyIn):
    id: str
    created_at: float


class RegionState(_Schema):
    healthy: bool
    connections: int
    limit: int
    drained: bool


class PolicySet(_Schema):
    version: int = Field(ge=-1)
    policies: list[Policy]
    regions: dict[str, RegionState] = Field(default_factory=dict)


class AutoMode(_Schema):
    """`PUT /v1/auto` on the scheduler: whether it drains unhealthy regions on its own."""

    enabled: bool


# ---- dispatcher --------------------------------------------------------------------------------
class Endpoint(_Schema):
    region: str
    url: str


class Endpoints(_Schema):
    device: str
    endpoints: list[Endpoint]


# ---- broker ------------------------------------------------------------------------------------
class Message(_Schema):
    id: Id
    device: Id
    sent_at: Timestamp
    payload: Payload | None = None  # inline payload (storage fallback or already resolved)
    payload_ref: str | None = None  # cache / disk KV key to fetch it from
    group: str | None = None


class DeliverRequest(_Schema):
    messages: list[Message] = Field(max_length=MAX_GROUP)
    timeout_ms: int = Field(default=2000, ge=1, le=30000)


class DeliverResult(_Schema):
    acked: list[str]
    offline: list[str]  # the device holds no connection on this broker
    timeout: list[str]  # written, but no ack within timeout_ms
    # A group fan-out sends one message id to many devices, so an id alone cannot say which device
    # acked. A broker that fills these (the device of each entry above, in the same order) lets the
    # gateway account per device; without them it must re-send a group id it cannot attribute.
    acked_devices: list[str] = Field(default_factory=list)
    offline_devices: list[str] = Field(default_factory=list)
    timeout_devices: list[str] = Field(default_factory=list)


class Connections(_Schema):
    broker: str
    region: str
    count: int
    limit: int
    draining: bool


class ConnectionLimit(_Schema):
    """`PUT /v1/limit` on a broker: the most device connections it holds at once."""

    limit: int = Field(ge=0, le=1_000_000)


# ---- logic gateway -----------------------------------------------------------------------------
class PushBatch(_Schema):
    messages: list[Message] = Field(max_length=MAX_GROUP)


class GroupTask(_Schema):
    id: Id
    devices: list[Id] = Field(max_length=MAX_GROUP)
    sent_at: Timestamp
    payload_ref: str


class Accepted(_Schema):
    accepted: int
    # ids taken by reference whose payload the gateway could not fetch: not accepted, re-send inline
    missing: list[str] = Field(default_factory=list)


class RoutingWeights(_Schema):
    weights: dict[str, Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]] = Field(min_length=1)


class LogicLoad(_Schema):
    """`GET /v1/load` on a logic gateway: what the access tier's auto throttle reads."""

    service: str
    idc: str
    messages_per_s: float  # messages finished (acked, stored offline or dropped) per second, recent
    queued: int  # accepted, waiting to be processed
    inflight: int  # in a delivery request to a broker right now


# ---- access tier -------------------------------------------------------------------------------
class SinglePush(_Schema):
    id: Id
    device: Id
    payload: Payload
    sent_at: Timestamp


class SingleBatch(_Schema):
    messages: list[SinglePush] = Field(max_length=MAX_BATCH)


class GroupPush(_Schema):
    id: Id
    payload: Payload
    sent_at: Timestamp
    devices: list[Id] | None = Field(default=None, min_length=1, max_length=MAX_GROUP)
    region: str | None = None  # every device seen in that region

    @model_validator(mode="after")
    def _one_audience(self) -> GroupPush:
        if (self.devices is None) == (self.region is None):
            raise ValueError("give exactly one of devices or region")
        return self


class AccessResult(_Schema):
    accepted: int
    direct: int
    buffered: int
    rejected: int
    # the ids of single pushes no path took: the caller knows exactly what was refused, never guesses
    rejected_ids: list[str] = Field(default_factory=list)


class Throttle(_Schema):
    mode: Literal["off", "fixed", "auto"] = "off"
    limit_per_s: Rate | None = None
    safe_load_per_s: Annotated[float, Field(gt=0, le=MAX_RATE, allow_inf_nan=False)] = 20000.0
    threshold: float = Field(default=0.8, gt=0, le=1)


class StorageMode(_Schema):
    mode: Literal["redis", "fallback"]
    since: float
