"""Read records of every schema version written so far, and publish the JSON Schema of the current one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from audit.datafiles import error_lines
from audit.errors import InputError
from audit.record.models import SCHEMA, Record

SCHEMA_V1 = "provaudit.record/1"
KNOWN_SCHEMAS = (SCHEMA, SCHEMA_V1)
SCHEMA_ID = "https://provaudit.dev/schema/record-2.json"
MAX_RECORD_BYTES = 16 * 1024 * 1024  # ~250x the largest record seen (a probe run: ~60 KB); parsed: < 1 GB


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `provaudit.record/2`, generated from the models."""
    schema = Record.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A `provaudit.record/1` object in the shape of `/2` (what changed is listed in docs/record.md)."""
    out = dict(data)
    out["schema"] = SCHEMA
    out["flags"] = [_upgrade_flag(f) for f in data.get("flags") or []]
    out["comparisons"] = [_upgrade_comparison(c) for c in data.get("comparisons") or []]
    if isinstance(data.get("verdict"), dict):
        out["verdict"] = _split_packaging(data["verdict"])
    return out


def _split_packaging(verdict: dict[str, Any]) -> dict[str, Any]:
    """/1 listed packaging (format, dtype, quantization, renaming) among the operations; /2 keeps them apart."""
    from audit.record.names import PACKAGING

    packaging = {p.value for p in PACKAGING}
    ops = [o for o in verdict.get("operations") or [] if isinstance(o, str)]
    return {**verdict, "operations": [o for o in ops if o not in packaging],
            "packaging": [o for o in ops if o in packaging]}


def _upgrade_comparison(comp: Any) -> Any:
    """/1 p-values came from a normal curve fitted to the permutation draws (or a Poisson limit): say so."""
    if not isinstance(comp, dict):
        return comp
    stats = []
    for stat in comp.get("statistics") or []:
        if isinstance(stat, dict) and isinstance(stat.get("null"), dict):
            kind = str(stat["null"].get("kind", ""))
            method = "analytic" if "Poisson" in kind else "normal-fit"
            stat = {**stat, "null": {**stat["null"], "method": method}}
        stats.append(stat)
    out = {**comp, "statistics": stats}
    if isinstance(comp.get("verdict"), dict):
        out["verdict"] = _split_packaging(comp["verdict"])
    if isinstance(comp.get("layer_null"), dict):
        out["layer_null"] = {**comp["layer_null"], "method": "normal-fit"}
    return out


def _upgrade_flag(flag: Any) -> Any:
    """/1 stored borrowed-architecture/tokenizer evidence in two shapes; /2 names both parts."""
    if not isinstance(flag, dict) or not isinstance(flag.get("evidence"), dict):
        return flag
    kind, ev = flag.get("kind"), flag["evidence"]
    if kind == "architecture-borrowed" and "references" not in ev:
        return {**flag, "evidence": {"references": [], "registry": ev}}
    if kind == "tokenizer-borrowed":
        if "score" in ev and "name" in ev:
            return {**flag, "evidence": {"references": {}, "registry": ev}}
        if "references" not in ev and "registry" not in ev:
            return {**flag, "evidence": {"references": ev}}
    return flag


def parse_record(data: Any, source: str = "record") -> Record:
    """A Record from decoded JSON of any known schema; InputError (exit 2) with one line when it is not one."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: not a provaudit record (a JSON {type(data).__name__}, expected an object)")
    schema = data.get("schema")
    if schema not in KNOWN_SCHEMAS:
        raise InputError(f"{source}: unknown record schema {str(schema)[:80]!r} (this provaudit reads "
                         f"{', '.join(KNOWN_SCHEMAS)})")
    if schema == SCHEMA_V1:
        try:
            data = upgrade_v1(data)
        except (TypeError, AttributeError, ValueError) as exc:  # a field of the wrong type for /1
            raise InputError(f"{source}: malformed record: a /1 field of the wrong type ({exc})") from None
    try:
        return Record.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{source}: malformed record: {error_lines(exc, Record)[0]} "
                         f"({exc.error_count()} problem{'s' if exc.error_count() != 1 else ''})") from None


def load_record(path: str) -> Record:
    """Read a record file ('-' for stdin): a regular file of at most 512 MiB, JSON at most 64 levels deep, no
    number beyond 2^63 (the record's counts and sizes all fit), then validated against the models."""
    import sys

    from audit.safeio import display_path, loads_json, read_bytes

    if path == "-":
        data = sys.stdin.buffer.read(MAX_RECORD_BYTES + 1)
        if len(data) > MAX_RECORD_BYTES:
            raise InputError(f"-: larger than {MAX_RECORD_BYTES >> 20} MiB; not a provaudit record")
    else:
        data = read_bytes(Path(path), MAX_RECORD_BYTES, "file")
    try:
        decoded = loads_json(data, path)
    except InputError as exc:  # the wording record errors have always had
        raise InputError(str(exc).replace(": not valid JSON (", ": not JSON (", 1)) from None
    where = display_path(path)
    _check_ints(decoded, where)
    return parse_record(decoded, where)


MAX_INT = 1 << 63


def _check_ints(data: Any, where: str) -> None:
    """InputError for an integer no count, size or seed of a record can reach (|n| >= 2^63): rendering it
    as a float would overflow."""
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) >= MAX_INT:
            raise InputError(f"{where}: malformed record: the number {str(node)[:20]}... ({len(str(abs(node)))} "
                             "digits) is larger than any count or size a record holds")
