"""`provaudit report RECORD.json [--html OUT] [--json FILE|-]`: re-render a saved record."""

from __future__ import annotations

import click

from audit.cli.options import output_options

KNOWN_SCHEMAS = ("provaudit.record/1",)


def load_record(path: str) -> dict:
    """Read a record file ('-' for stdin); InputError (exit 2) unless it is a JSON record of a known schema."""
    import json
    import sys
    from pathlib import Path

    from audit.errors import InputError

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the record ({type(exc).__name__})") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}: not a provaudit record (a JSON {type(record).__name__}, expected an object)")
    schema = record.get("schema")
    if schema not in KNOWN_SCHEMAS:
        raise InputError(f"{path}: unknown record schema {str(schema)[:80]!r} (this provaudit reads "
                         f"{', '.join(KNOWN_SCHEMAS)})")
    for key in ("verdict", "subject"):
        if not isinstance(record.get(key), dict):
            raise InputError(f"{path}: malformed record: {key!r} is missing or not an object")
    return record


@click.command("report")
@click.argument("record_path", metavar="RECORD.json")
@output_options
@click.option("--quiet", "-q", is_flag=True, help="No terminal summary.")
def report(record_path: str, json_path: str | None, html_path: str | None, quiet: bool) -> None:
    """Re-render RECORD.json (written by compare, audit, probe or batch): HTML, JSON, terminal summary."""
    from audit.cli.emit import emit
    from audit.errors import InputError

    record = load_record(record_path)
    try:
        emit(record, json_path, html_path, quiet)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a record of the right schema, wrongly shaped
        raise InputError(f"{record_path}: malformed record ({type(exc).__name__}: {exc})") from None
