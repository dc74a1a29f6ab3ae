"""The JSON Schema of experiment files, generated from the models (editors validate YAML with it).

    pushctl experiment schema --write experiments/schema.json

A test checks that the checked-in `experiments/schema.json` equals `schema_text()`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pushctl.experiments.model import Experiment

SCHEMA_PATH = Path("experiments") / "schema.json"


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one experiment file."""
    out: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    out.update(Experiment.model_json_schema(by_alias=True, mode="validation"))
    return out


def schema_text() -> str:
    """The schema as the checked-in file holds it (stable key order, trailing newline)."""
    return json.dumps(schema(), indent=2, sort_keys=False) + "\n"
