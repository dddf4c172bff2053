"""Write a record to the outputs the user asked for, and print the terminal summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from audit.reporting.writer import write_atomic, write_json

if TYPE_CHECKING:
    from audit.record.models import Record


def emit(record: Record, json_path: str | None, html_path: str | None, quiet: bool) -> None:
    # Render everything before writing anything, so a failure leaves no half-written output.
    html = None
    if html_path:
        from audit.reporting.html import render_html

        html = render_html(record)
    if json_path:
        write_json(json_path, record.to_json_dict())
    if html is not None and html_path:
        write_atomic(Path(html_path), html)
    if not quiet and json_path != "-":
        from audit.reporting.console import print_summary

        print_summary(record)
