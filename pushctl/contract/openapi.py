"""The one OpenAPI document for every push service's HTTP API, generated from the contract's models.

    python -m pushctl.contract.openapi > docs/openapi.json

A unit test keeps the checked-in docs/openapi.json equal to what this produces.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from pushctl.contract import api

# (service tag, method, path, request model, response model, status, summary, needs the token)
Route = tuple[str, str, str, type[BaseModel] | None, type[BaseModel] | None, int, str, bool]

ROUTES: list[Route] = [
    ("every service", "get", "/healthz", None, api.Health, 200, "Liveness and degraded state", False),
    (
        "dispatcher",
        "get",
        "/v1/endpoints",
        None,
        api.Endpoints,
        200,
        "Broker addresses for a device, nearest first",
        False,
    ),
    ("dispatcher", "post", "/v1/policies", api.PolicySet, None, 204, "The scheduler pushes its policy set", True),
    ("dispatcher", "get", "/v1/policies", None, api.PolicySet, 200, "The policy set the dispatcher follows", True),
    ("scheduler", "get", "/v1/policies", None, api.PolicySet, 200, "Policies and region health", True),
    ("scheduler", "post", "/v1/policies", api.PolicyIn, api.Policy, 201, "Add a drain policy", True),
    ("scheduler", "delete", "/v1/policies", None, None, 204, "Withdraw every policy", True),
    ("scheduler", "delete", "/v1/policies/{id}", None, None, 204, "Withdraw one policy", True),
    (
        "scheduler",
        "get",
        "/v1/auto",
        None,
        api.AutoMode,
        200,
        "Whether the scheduler drains failed regions itself",
        True,
    ),
    ("scheduler", "put", "/v1/auto", api.AutoMode, api.AutoMode, 200, "Switch automatic drains on or off", True),
    ("broker", "post", "/v1/deliver", api.DeliverRequest, api.DeliverResult, 200, "Write pushes, wait for acks", True),
    ("broker", "get", "/v1/connections", None, api.Connections, 200, "Connections, limit, draining", True),
    ("broker", "put", "/v1/limit", api.ConnectionLimit, api.Connections, 200, "Set the connection limit", True),
    ("broker", "post", "/v1/policies", api.PolicySet, None, 204, "The scheduler pushes its policy set", True),
    ("broker", "get", "/v1/policies", None, api.PolicySet, 200, "The policy set the broker follows", True),
    ("diskkv", "put", "/v1/kv/{key}", None, None, 204, "Store one value (the request body, bytes); fsynced", True),
    ("diskkv", "post", "/v1/kv", None, None, 204, 'Store many: {"items": {key: value}}; one fsynced commit', True),
    ("diskkv", "get", "/v1/kv/{key}", None, None, 200, "The stored bytes; 404 when absent", True),
    ("logic", "post", "/v1/push", api.PushBatch, api.Accepted, 202, "Accept single pushes", True),
    ("logic", "post", "/v1/group", api.GroupTask, api.Accepted, 202, "Accept a group fan-out", True),
    ("logic", "get", "/v1/routing", None, api.RoutingWeights, 200, "Routing weights between IDCs", True),
    ("logic", "put", "/v1/routing", api.RoutingWeights, api.RoutingWeights, 200, "Set routing weights", True),
    ("logic", "get", "/v1/load", None, api.LogicLoad, 200, "Load figures for the access tier's throttle", True),
    ("access", "post", "/v1/push/single", api.SinglePush, api.AccessResult, 200, "One single push", True),
    ("access", "post", "/v1/push/batch", api.SingleBatch, api.AccessResult, 200, "Many single pushes", True),
    ("access", "post", "/v1/push/group", api.GroupPush, api.AccessResult, 200, "A group push", True),
    ("access", "get", "/v1/storage", None, api.StorageMode, 200, "Storage mode (redis or fallback)", True),
    ("access", "get", "/v1/throttle", None, api.Throttle, 200, "Throttle setting", True),
    ("access", "put", "/v1/throttle", api.Throttle, api.Throttle, 200, "Set the throttle", True),
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    models = sorted({m for r in ROUTES for m in (r[3], r[4]) if m is not None}, key=lambda m: m.__name__)
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for tag, method, path, body, reply, status, summary, token in ROUTES:
        slug = path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
        op: dict[str, Any] = {
            "tags": [tag],
            "summary": summary,
            "operationId": f"{tag.replace(' ', '_')}_{method}_{slug}",
            "responses": {str(status): {"description": "OK"}},
        }
        if reply is not None:
            op["responses"][str(status)]["content"] = {"application/json": {"schema": _ref(reply)}}
        if body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
        if token:
            op["security"] = [{"bearer": []}]
            op["responses"]["401"] = {"description": "missing or wrong bearer token"}
        for param in ("id", "key"):
            if f"{{{param}}}" in path:
                op["parameters"] = [{"name": param, "in": "path", "required": True, "schema": {"type": "string"}}]
        if path == "/v1/endpoints":
            op["parameters"] = [
                {"name": "device", "in": "query", "required": True, "schema": {"type": "string"}},
                {"name": "region", "in": "query", "required": False, "schema": {"type": "string"}},
            ]
        paths.setdefault(path if tag == "every service" else f"/{tag}{path}", {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pushctl platform control API",
            "version": "1",
            "description": (
                "The contract pushctl drives: every push service of the reference stack implements its part. "
                "Paths are prefixed with the service kind here only to keep them apart in one document; "
                "each service serves its own paths at its own address. `/metrics` (Prometheus text) "
                "is on every service too."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def main() -> None:
    sys.stdout.write(json.dumps(document(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
