"""Every HTTP operation each kind of push service serves: what it takes and every answer it gives.

The OpenAPI documents (`pushctl.contract.openapi`) are rendered from this table, and a unit test
holds it to the routes the reference stack's services register. Statuses follow from the shared
plumbing as well as from each handler: an operation with a JSON body also answers 400 (invalid),
413 (too large) and 415 (not JSON); one that needs the token also answers 401.

    for op in OPERATIONS[ServiceKind.BROKER]:
        print(op.method, op.path, op.statuses)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from pushctl.contract import api
from pushctl.contract.topology import ServiceKind

# what an answer carries: a JSON model, raw bytes, Prometheus text, or nothing
Body = type[BaseModel] | Literal["bytes", "text"] | None
Param = Literal["id", "key", "device", "region"]

BODY_ERRORS = {
    400: "The body is not valid JSON or breaks the schema's rules",
    413: f"The body is over {api.MAX_BODY} bytes, or a payload over {api.MAX_PAYLOAD} characters",
    415: "The body is not `application/json`",
}
UNAUTHORIZED = "The bearer token is missing or wrong"


@dataclass(frozen=True)
class Operation:
    """One method on one path of one kind of service."""

    method: Literal["get", "put", "post", "delete"]
    path: str
    summary: str
    ok: int
    reply: Body = None
    request: Body = None
    token: bool = True
    # statuses the handler itself answers (besides ok and the shared ones), each with why
    errors: dict[int, str] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    # an error status whose body is not `api.Error`: the models it may carry instead
    error_bodies: dict[int, tuple[type[BaseModel], ...]] = field(default_factory=dict)

    @property
    def statuses(self) -> dict[int, str]:
        """Every status this operation answers, with why (the ok one first)."""
        out = {self.ok: self.summary}
        if self.token:
            out[401] = UNAUTHORIZED
        if self.request is not None and self.request != "bytes":
            out.update(BODY_ERRORS)
        out.update(self.errors)
        return out


def _common() -> list[Operation]:
    return [
        Operation("get", "/healthz", "Liveness, and whether the service is degraded", 200, api.Health, token=False),
        Operation("get", "/metrics", "Prometheus metrics (text exposition format)", 200, "text", token=False),
    ]


_FOLLOWER = [
    Operation(
        "post",
        "/v1/policies",
        "The scheduler pushes its policy set; answers the set now held (the newer of the two)",
        200,
        api.PolicySet,
        api.PolicySet,
        errors={409: "The version is more than 60 s ahead of this service's clock"},
    ),
    Operation("get", "/v1/policies", "The policy set this service follows", 200, api.PolicySet),
]

OPERATIONS: dict[ServiceKind, list[Operation]] = {
    ServiceKind.DISPATCHER: [
        *_common(),
        Operation(
            "get",
            "/v1/endpoints",
            "Broker addresses for a device, nearest region first",
            200,
            api.Endpoints,
            token=False,
            errors={400: "No device, or an unknown region"},
            params=("device", "region"),
        ),
        *_FOLLOWER,
    ],
    ServiceKind.SCHEDULER: [
        *_common(),
        Operation("get", "/v1/policies", "Policies in force and region health", 200, api.PolicySet),
        Operation(
            "post",
            "/v1/policies",
            "Drain a region",
            201,
            api.Policy,
            api.PolicyIn,
            errors={
                400: "Invalid body, or an unknown region",
                409: "The region is drained already, or it is the last healthy undrained region",
            },
        ),
        Operation("delete", "/v1/policies", "Withdraw every policy", 204),
        Operation(
            "delete", "/v1/policies/{id}", "Withdraw one policy", 204, errors={404: "No such policy"}, params=("id",)
        ),
        Operation("get", "/v1/auto", "Whether the scheduler drains failed regions itself", 200, api.AutoMode),
        Operation("put", "/v1/auto", "Switch automatic drains on or off", 200, api.AutoMode, api.AutoMode),
    ],
    ServiceKind.BROKER: [
        *_common(),
        Operation(
            "post",
            "/v1/deliver",
            "Write pushes to devices, wait for their acks",
            200,
            api.DeliverResult,
            api.DeliverRequest,
        ),
        Operation("get", "/v1/connections", "Connections, limit, draining", 200, api.Connections),
        Operation("put", "/v1/limit", "Set the connection limit", 200, api.Connections, api.ConnectionLimit),
        *_FOLLOWER,
    ],
    ServiceKind.DISKKV: [
        *_common(),
        Operation(
            "put",
            "/v1/kv/{key}",
            "Store one value (the request body's bytes, empty allowed); fsynced before the answer",
            204,
            request="bytes",
            errors={503: "The disk KV is not open, or the write failed"},
            params=("key",),
        ),
        Operation(
            "post",
            "/v1/kv",
            "Store many values in one fsynced transaction",
            200,
            api.KVStored,
            api.KVBatch,
            errors={503: "The disk KV is not open, or the write failed"},
        ),
        Operation(
            "get",
            "/v1/kv/{key}",
            "The stored value's bytes",
            200,
            "bytes",
            errors={404: "No such key", 503: "The disk KV is not open"},
            params=("key",),
        ),
    ],
    ServiceKind.LOGIC: [
        *_common(),
        Operation(
            "post",
            "/v1/push",
            "Accept single pushes",
            202,
            api.Accepted,
            api.PushBatch,
            errors={503: "The queue is full, or the journal failed: retry later or elsewhere"},
        ),
        Operation(
            "post",
            "/v1/group",
            "Accept a group fan-out",
            202,
            api.Accepted,
            api.GroupTask,
            errors={503: "The queue is full, or the journal failed: retry later or elsewhere"},
        ),
        Operation("get", "/v1/routing", "Routing weights between IDCs", 200, api.RoutingWeights),
        Operation(
            "put",
            "/v1/routing",
            "Set routing weights",
            200,
            api.RoutingWeights,
            api.RoutingWeights,
            errors={
                400: "Invalid body, an unknown IDC, or no positive weight",
                503: "The store is unreachable: weights not changed",
            },
        ),
        Operation("get", "/v1/load", "Load figures for the access tier's throttle", 200, api.LogicLoad),
    ],
    ServiceKind.ACCESS: [
        *_common(),
        Operation(
            "post",
            "/v1/push/single",
            "One single push",
            200,
            api.AccessResult,
            api.SinglePush,
            errors={503: "No path took the push (body says so)"},
            error_bodies={503: (api.AccessResult,)},
        ),
        Operation(
            "post",
            "/v1/push/batch",
            "Many single pushes",
            200,
            api.AccessResult,
            api.SingleBatch,
            errors={503: "No path took any push (body says which)"},
            error_bodies={503: (api.AccessResult,)},
        ),
        Operation(
            "post",
            "/v1/push/group",
            "A group push, to named devices or to every device seen in a region",
            200,
            api.AccessResult,
            api.GroupPush,
            errors={
                400: "Invalid body, or an unknown region",
                503: "No path took the push, or the store (region members) is unreachable",
            },
            error_bodies={503: (api.AccessResult, api.Error)},
        ),
        Operation("get", "/v1/storage", "Storage mode (redis or fallback)", 200, api.StorageMode),
        Operation("get", "/v1/throttle", "Throttle setting", 200, api.Throttle),
        Operation(
            "put",
            "/v1/throttle",
            "Set the throttle",
            200,
            api.Throttle,
            api.Throttle,
            errors={400: "Invalid body, or mode fixed without limit_per_s"},
        ),
    ],
    ServiceKind.KVWRITER: _common(),
    ServiceKind.BYPASS: _common(),
}
