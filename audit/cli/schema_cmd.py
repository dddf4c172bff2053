"""`provaudit schema`: print the JSON Schema of the record every command writes."""

from __future__ import annotations

import click


@click.command("schema")
@click.option("-o", "--output", default="-", show_default=True, help="Where to write the schema ('-' for stdout).")
def schema(output: str) -> None:
    """Print the JSON Schema (draft 2020-12) of provaudit.record/2, generated from the record's models."""
    from pathlib import Path

    from audit.record.io import json_schema_text
    from audit.reporting.writer import write_atomic

    text = json_schema_text()
    if output == "-":
        click.echo(text, nl=False)
    else:
        write_atomic(Path(output), text)
