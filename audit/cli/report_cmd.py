"""`provaudit report RECORD.json [--html OUT] [--json FILE|-]`: re-render a saved record."""

from __future__ import annotations

import click

from audit.cli.options import output_options


@click.command("report")
@click.argument("record_path", metavar="RECORD.json")
@output_options
@click.option("--quiet", "-q", is_flag=True, help="No terminal summary.")
def report(record_path: str, json_path: str | None, html_path: str | None, quiet: bool) -> None:
    """Re-render RECORD.json (written by compare, audit, probe or batch; any schema version): HTML, JSON, terminal."""
    from audit.cli.emit import emit
    from audit.record.io import load_record

    emit(load_record(record_path), json_path, html_path, quiet)
