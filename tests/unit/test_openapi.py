"""The checked-in OpenAPI documents are the contract's, and they describe what the services serve and answer."""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from pushstack.run import SERVICE_CLASSES
from pushstack.service import PushService

from pushctl.contract.openapi import DOCS_DIR, document, documents, render
from pushctl.contract.operations import OPERATIONS
from pushctl.contract.topology import ServiceKind, load_inventory

INV = load_inventory()
TOKEN = {"Authorization": f"Bearer {INV.token}"}
pytestmark = pytest.mark.timeout(30)


def _service(name: str) -> PushService:
    module, _, cls = SERVICE_CLASSES[INV.service(name).kind].partition(":")
    svc: PushService = getattr(importlib.import_module(module), cls)(INV, name)
    return svc


def test_checked_in_documents_equal_the_generated_ones() -> None:
    docs = documents(INV)
    assert sorted(p.name for p in DOCS_DIR.glob("*.json")) == sorted(f"{k.value}.json" for k in docs)
    for kind, doc in docs.items():
        assert (DOCS_DIR / f"{kind.value}.json").read_text() == render(doc), (
            f"docs/openapi/{kind.value}.json is stale: python -m pushctl.contract.openapi"
        )


def test_every_route_a_service_serves_is_documented_and_no_other() -> None:
    for name, svc in INV.services.items():
        if svc.kind not in SERVICE_CLASSES:
            continue
        served = {
            (r.method.lower(), r.resource.canonical)
            for r in _service(name).app.router.routes()
            if r.method != "HEAD" and r.resource is not None
        }
        assert served == {(op.method, op.path) for op in OPERATIONS[svc.kind]}, name


def test_every_document_has_its_servers_and_every_field_a_description() -> None:
    for kind, doc in documents(INV).items():
        ports = {s["variables"]["port"]["default"] for s in doc["servers"]}
        assert ports and all(p.isdigit() for p in ports), kind
        for name, schema in doc["components"]["schemas"].items():
            for prop, spec in schema.get("properties", {}).items():
                assert spec.get("description"), f"{kind}: {name}.{prop} has no description"
        for path, methods in doc["paths"].items():
            for method, op in methods.items():
                for param in op.get("parameters", []):
                    assert param.get("description"), f"{kind}: {method} {path} {param['name']}"


def test_broker_documents_point_at_the_control_port_not_the_device_port() -> None:
    urls = {s["description"]: s["variables"]["port"]["default"] for s in document(ServiceKind.BROKER, INV)["servers"]}
    assert urls == {n: str(s.internal_port) for n, s in INV.services_of(ServiceKind.BROKER).items()}


# ---- answers: what a handler really returns is declared, and validates -----------------------------
def _validate(kind: ServiceKind, method: str, path: str, status: int, body: Any) -> None:
    doc = document(kind, INV)
    responses = doc["paths"][path][method]["responses"]
    assert str(status) in responses, f"{kind} {method} {path} answered undeclared {status}"
    content = responses[str(status)].get("content", {})
    if "application/json" in content:
        schema = {**content["application/json"]["schema"], "components": doc["components"]}
        Draft202012Validator(schema).validate(body)
    else:
        assert body is None or not isinstance(body, dict), f"{kind} {method} {path}: JSON not declared"


@pytest.fixture
def services() -> Iterator[dict[str, PushService]]:
    yield {name: _service(name) for name in ("scheduler", "dispatcher", "broker-south", "access", "logic-idc1")}


@pytest.fixture
async def clients(services: dict[str, PushService]) -> AsyncIterator[dict[str, TestClient[Any, Any]]]:
    out: dict[str, TestClient[Any, Any]] = {}
    try:
        for name, svc in services.items():
            out[name] = TestClient(TestServer(svc.app))
            await out[name].start_server()
        yield out
    finally:
        for client in out.values():
            await client.close()


# (service, method, path, json body or None): requests a service answers without its dependencies
CASES: list[tuple[str, str, str, Any]] = [
    ("scheduler", "get", "/v1/policies", None),
    ("scheduler", "post", "/v1/policies", {"region": "south", "spread_s": 1}),
    ("scheduler", "post", "/v1/policies", {"region": "south"}),  # 409: drained already
    ("scheduler", "post", "/v1/policies", {"region": "atlantis"}),  # 400
    ("scheduler", "post", "/v1/policies", {"region": "north", "origin": "auto"}),  # 400: the scheduler's own
    ("scheduler", "delete", "/v1/policies/nope", None),  # 404
    ("scheduler", "delete", "/v1/policies", None),
    ("scheduler", "get", "/v1/auto", None),
    ("scheduler", "put", "/v1/auto", {"enabled": False}),
    ("scheduler", "put", "/v1/auto", {"enabled": "false"}),  # 400: strict types
    ("dispatcher", "get", "/v1/endpoints?device=d1", None),
    ("dispatcher", "get", "/v1/endpoints?device=d1&region=atlantis", None),
    ("dispatcher", "get", "/v1/policies", None),
    ("dispatcher", "post", "/v1/policies", {"version": 1, "policies": []}),
    ("broker-south", "get", "/v1/connections", None),
    ("broker-south", "put", "/v1/limit", {"limit": 0}),
    ("broker-south", "put", "/v1/limit", {"limit": -1}),
    ("broker-south", "post", "/v1/policies", {"version": 9_000_000_000_000_000, "policies": []}),  # 409
    ("broker-south", "get", "/healthz", None),
    ("access", "get", "/v1/throttle", None),
    ("access", "put", "/v1/throttle", {"mode": "fixed", "limit_per_s": 100}),
    ("access", "put", "/v1/throttle", {"mode": "fixed"}),  # 400
    ("access", "get", "/v1/storage", None),
]


async def test_what_handlers_answer_is_declared_and_matches_the_declared_schema(
    clients: dict[str, TestClient[Any, Any]],
) -> None:
    for name, method, target, body in CASES:
        kind = INV.service(name).kind
        path = target.split("?")[0]
        path = "/v1/policies/{id}" if path.startswith("/v1/policies/") else path
        resp = await clients[name].request(method.upper(), target, json=body, headers=TOKEN)
        answer = await resp.json() if resp.content_type == "application/json" else None
        _validate(kind, method, path, resp.status, answer)


async def test_every_control_operation_answers_401_with_www_authenticate_and_json_bodies_415(
    clients: dict[str, TestClient[Any, Any]],
) -> None:
    for name, client in clients.items():
        kind = INV.service(name).kind
        for op in OPERATIONS[kind]:
            if not op.token or "{" in op.path:
                continue
            resp = await client.request(op.method.upper(), op.path)
            assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer", (name, op.path)
            _validate(kind, op.method, op.path, 401, await resp.json())
            if isinstance(op.request, type):
                resp = await client.request(op.method.upper(), op.path, data="{}", headers=TOKEN)
                assert resp.status == 415, (name, op.path)
                _validate(kind, op.method, op.path, 415, await resp.json())
                resp = await client.request(
                    op.method.upper(), op.path, data="{", headers={**TOKEN, "Content-Type": "application/json"}
                )
                assert resp.status == 400, (name, op.path)
                _validate(kind, op.method, op.path, 400, await resp.json())


def test_the_documents_are_valid_json() -> None:
    for path in DOCS_DIR.glob("*.json"):
        assert json.loads(path.read_text())["openapi"] == "3.1.0"


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


def test_bounds_are_json_schema_keywords_not_pydantic_leftovers() -> None:
    """A bound pydantic cannot translate lands as a raw `ge`: tools ignore it and send what it forbids."""
    for kind, doc in documents(INV).items():
        leftovers = set(_keys(doc["components"]["schemas"])) & {"ge", "le", "gt", "lt", "min_length", "max_length"}
        assert not leftovers, (kind, leftovers)


async def test_only_the_scheduler_makes_auto_drains(clients: dict[str, TestClient[Any, Any]]) -> None:
    """An auto drain is withdrawn by the scheduler as soon as the region is healthy: one posted from
    outside would vanish under its author (schemathesis found the created policy gone)."""
    resp = await clients["scheduler"].post("/v1/policies", json={"region": "north", "origin": "auto"}, headers=TOKEN)
    assert resp.status == 400 and "operator" in (await resp.json())["error"]
