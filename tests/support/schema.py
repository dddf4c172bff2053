"""Validate records against the published JSON Schema (docs/record.schema.json is checked to equal it)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonschema

from audit.record.io import json_schema


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json_schema())


def schema_problems(record: Any) -> list[str]:
    """Where `record` breaks the schema: 'path: message' lines, empty when it is valid."""
    errors = sorted(_validator().iter_errors(record), key=lambda e: list(e.path))
    return [f"{list(e.path)}: {e.message[:200]}" for e in errors]
