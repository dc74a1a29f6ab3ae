"""The checked-in OpenAPI document is the contract's, and it describes exactly what the services serve."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from pushstack.run import SERVICE_CLASSES

from pushctl.contract.openapi import ROUTES, document
from pushctl.contract.topology import load_inventory

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_checked_in_document_equals_the_generated_one() -> None:
    assert json.loads(DOC.read_text()) == json.loads(json.dumps(document())), (
        "docs/openapi.json is stale: python -m pushctl.contract.openapi > docs/openapi.json"
    )


def test_every_route_a_service_serves_is_documented_and_no_other() -> None:
    inv = load_inventory()
    documented: dict[str, set[tuple[str, str]]] = {}
    for tag, method, path, *_ in ROUTES:
        documented.setdefault(tag, set()).add((method, path))
    for name, svc in inv.services.items():
        target = SERVICE_CLASSES.get(svc.kind)
        if target is None:
            continue
        module, _, cls = target.partition(":")
        app = getattr(importlib.import_module(module), cls)(inv, name).app
        served = {
            (r.method.lower(), r.resource.canonical)
            for r in app.router.routes()
            if r.method != "HEAD" and r.resource is not None and r.resource.canonical not in ("/metrics", "/healthz")
        }
        assert served == documented.get(svc.kind.value, set()), name
