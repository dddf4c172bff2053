"""A small validator for the JSON-Schema subset used by probes/schema.yaml (no jsonschema dependency).

Supported: type, const, enum, required, properties, additionalProperties (bool or schema), items,
minItems, minLength, pattern, oneOf (branches told apart by a `const` property such as `kind`), and
$ref to #/definitions/NAME. Errors come back as 'path: message' strings, first problem first.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def validate(data: Any, schema: dict[str, Any]) -> list[str]:
    """Every violation of `schema` by `data`, as 'where: what' strings (empty when valid)."""
    errors: list[str] = []
    _check(data, schema, "", schema.get("definitions", {}), errors)
    return errors


def _where(path: str) -> str:
    return path or "(top level)"


def _type_ok(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[name])


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/definitions/") or ref.split("/")[-1] not in defs:
            raise ValueError(f"schema: unknown $ref {ref}")
        schema = defs[ref.split("/")[-1]]
    return schema


def _check(value: Any, schema: dict[str, Any], path: str, defs: dict[str, Any], errors: list[str]) -> None:
    schema = _resolve(schema, defs)
    if "oneOf" in schema:
        _one_of(value, schema["oneOf"], path, defs, errors)
        return
    if "const" in schema and value != schema["const"]:
        errors.append(f"{_where(path)}: must be {schema['const']!r}, not {value!r}")
        return
    if "type" in schema and not _type_ok(value, schema["type"]):
        errors.append(f"{_where(path)}: expected {schema['type']}, got {type(value).__name__} {_short(value)}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{_where(path)}: {value!r} is not one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        if len(value.strip()) < schema.get("minLength", 0):
            errors.append(f"{_where(path)}: must not be empty")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{_where(path)}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{_where(path)}: needs at least {schema['minItems']} item(s)")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{path}[{i}]", defs, errors)
    if isinstance(value, dict):
        _object(value, schema, path, defs, errors)


def _object(value: dict, schema: dict[str, Any], path: str, defs: dict[str, Any], errors: list[str]) -> None:
    for key in schema.get("required", []):
        if key not in value:
            errors.append(f"{_where(path)}: missing required field {key!r}")
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        sub = f"{path}.{key}" if path else str(key)
        if key in props:
            _check(item, props[key], sub, defs, errors)
        elif extra is False:
            errors.append(f"{_where(path)}: unknown field {key!r} (allowed: {', '.join(props)})")
        elif isinstance(extra, dict):
            _check(item, extra, sub, defs, errors)


def _one_of(value: Any, branches: list[dict], path: str, defs: dict[str, Any], errors: list[str]) -> None:
    resolved = [_resolve(b, defs) for b in branches]
    # Tell branches apart by a const-valued property (e.g. kind: suite) when the value names one.
    if isinstance(value, dict):
        for branch in resolved:
            consts = {k: p["const"] for k, p in branch.get("properties", {}).items() if "const" in p}
            if consts and all(value.get(k) == c for k, c in consts.items()):
                _check(value, branch, path, defs, errors)
                return
        keys = sorted({k for b in resolved for k, p in b.get("properties", {}).items() if "const" in p})
        if keys:
            allowed = sorted({str(p["const"]) for b in resolved for k, p in b.get("properties", {}).items()
                              if "const" in p})
            errors.append(f"{_where(path)}: field {keys[0]!r} must be one of {', '.join(allowed)}"
                          f" (got {value.get(keys[0])!r})")
            return
    matches = 0
    for branch in resolved:
        trial: list[str] = []
        _check(value, branch, path, defs, trial)
        matches += not trial
    if matches != 1:
        errors.append(f"{_where(path)}: matches {matches} of the {len(branches)} allowed shapes (need exactly one)")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
