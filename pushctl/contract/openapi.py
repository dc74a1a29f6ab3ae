"""One OpenAPI document per kind of push service, generated from the contract's models and an inventory.

    python -m pushctl.contract.openapi            # writes docs/openapi/<kind>.json (reference inventory)
    python -m pushctl.contract.openapi OUT_DIR --inventory my-topology.toml

Each document has the kind's real paths at the address its services listen on (`servers`), every
status its operations answer, and the request rules the services enforce: a request valid by the
document is accepted, an invalid one refused. Rules that depend on the inventory (region and IDC
names) are taken from it. A unit test keeps the checked-in docs/openapi/ equal to what this produces.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from pushctl.contract import api
from pushctl.contract.operations import OPERATIONS, Body, Operation, Param
from pushctl.contract.resources import resource
from pushctl.contract.topology import Inventory, Service, ServiceKind, load_inventory

DOCS_DIR = resource("docs/openapi")
JSON = "application/json"
WWW_AUTHENTICATE = "Bearer"  # what every 401 carries in WWW-Authenticate (RFC 6750)


def control_port(svc: Service) -> int:
    """The port a service answers its HTTP API on: a broker's devices have its main port."""
    return svc.internal_port if svc.kind == ServiceKind.BROKER and svc.internal_port else svc.port


def _models(ops: list[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = {(api.Error, "serialization")}
    for op in ops:
        if isinstance(op.request, type):
            wanted.add((op.request, "validation"))
        if isinstance(op.reply, type):
            wanted.add((op.reply, "serialization"))
        wanted.update((m, "serialization") for models in op.error_bodies.values() for m in models)
    return sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1]))


def _narrow(defs: dict[str, Any], inv: Inventory) -> None:
    """Rules the models cannot know: the names this inventory gives its regions and IDCs."""
    regions = sorted(inv.regions)
    idcs = sorted({s.idc for s in inv.services_of(ServiceKind.LOGIC).values() if s.idc})
    for name, schema in defs.items():
        base = name.split("-")[0]
        props = schema.get("properties", {})
        if base == "PolicyIn":
            props["region"]["enum"] = regions
            # only the scheduler makes auto drains (and withdraws them by itself): a client posts operator ones
            props["origin"]["enum"] = ["operator"]
            props["origin"]["description"] = "always `operator`: the scheduler makes and withdraws auto drains itself"
        elif base == "GroupPush":
            props["region"]["anyOf"][0]["enum"] = regions
        elif base == "RoutingWeights":
            weights = props["weights"]
            weights["propertyNames"] = {"enum": idcs}
            # at least one weight positive: the logic gateway refuses an all-zero split
            weights["anyOf"] = [{"required": [idc], "properties": {idc: {"exclusiveMinimum": 0}}} for idc in idcs]


def _content(body: Body, refs: dict[tuple[type[BaseModel], JsonSchemaMode], Any], mode: JsonSchemaMode) -> Any:
    if body == "bytes":
        return {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    if body == "text":
        return {"text/plain": {"schema": {"type": "string"}}}
    assert isinstance(body, type)  # noqa: S101 - None has no content; callers skip it
    return {JSON: {"schema": refs[(body, mode)]}}


# path and query parameters: where each goes, whether it is required, what it is
_PARAMETERS: dict[str, tuple[str, bool, str]] = {
    "id": ("path", True, "a policy's id"),
    "key": ("path", True, "the value's key"),
    "device": ("query", True, "the device's id"),
    "region": ("query", False, "the device's home region (default: a stable hash of its id over the regions' weights)"),
}


def _parameter(param: Param, inv: Inventory) -> dict[str, Any]:
    where, required, description = _PARAMETERS[param]
    schema: dict[str, Any] = (
        {"type": "string", "enum": sorted(inv.regions)} if param == "region" else {"type": "string", "minLength": 1}
    )
    return {"name": param, "in": where, "required": required, "description": description, "schema": schema}


def _operation(kind: ServiceKind, op: Operation, inv: Inventory, refs: dict[Any, Any]) -> dict[str, Any]:
    slug = op.path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
    responses: dict[str, Any] = {}
    for status, why in op.statuses.items():
        answer: dict[str, Any] = {"description": why}
        if status == op.ok:
            if op.reply is not None:
                answer["content"] = _content(op.reply, refs, "serialization")
        else:
            bodies = op.error_bodies.get(status, (api.Error,))
            schemas = [refs[(m, "serialization")] for m in bodies]
            answer["content"] = {JSON: {"schema": schemas[0] if len(schemas) == 1 else {"oneOf": schemas}}}
        if status == 401:
            answer["headers"] = {
                "WWW-Authenticate": {
                    "description": "the scheme to authenticate with",
                    "required": True,
                    "schema": {"type": "string", "const": WWW_AUTHENTICATE},
                }
            }
        responses[str(status)] = answer
    out: dict[str, Any] = {
        "tags": [kind.value],
        "summary": op.summary,
        "operationId": f"{kind.value}_{op.method}_{slug}",
        "responses": responses,
    }
    if op.params:
        out["parameters"] = [_parameter(p, inv) for p in op.params]
    if op.request == "bytes":
        out["requestBody"] = {"required": False, "content": _content(op.request, refs, "validation")}
    elif op.request is not None:
        out["requestBody"] = {"required": True, "content": _content(op.request, refs, "validation")}
    out["security"] = [{"bearer": []}] if op.token else []
    return out


def document(kind: ServiceKind, inv: Inventory | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of one kind of service, at the addresses `inv` gives it."""
    inv = inv or load_inventory()
    ops = OPERATIONS[kind]
    refs, defs = models_json_schema(_models(ops), ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = defs.get("$defs", {})
    _narrow(schemas, inv)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method] = _operation(kind, op, inv, refs)
    servers = [
        {
            "url": f"http://{svc.host}:{{port}}",
            "description": name,
            "variables": {"port": {"default": str(control_port(svc))}},
        }
        for name, svc in sorted(inv.services_of(kind).items())
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{kind.value}: push service control API",
            "version": "1",
            "description": (
                f"The HTTP API every `{kind.value}` of a platform pushctl drives implements; the servers "
                f"are those of inventory `{inv.name}`. Control operations need `Authorization: Bearer "
                "<inventory token>`; limits are in docs/protocol.md, section 9."
            ),
        },
        "servers": servers,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def documents(inv: Inventory | None = None) -> dict[ServiceKind, dict[str, Any]]:
    """Every kind's document, keyed by kind."""
    inv = inv or load_inventory()
    return {kind: document(kind, inv) for kind in OPERATIONS}


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pushctl.contract.openapi", description=__doc__)
    parser.add_argument("out", nargs="?", default=str(DOCS_DIR), help="directory for <kind>.json")
    parser.add_argument("--inventory", default=None)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for kind, doc in documents(load_inventory(args.inventory)).items():
        (out / f"{kind.value}.json").write_text(render(doc))
        sys.stdout.write(f"{out / kind.value}.json\n")


if __name__ == "__main__":
    main()
