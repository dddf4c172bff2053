"""`provaudit audit MODEL --reference R ...`: the best parent among several references."""

from __future__ import annotations

import sys

import click

from audit.cli.emit import emit
from audit.cli.options import model_options, output_options
from audit.cli.progress import progress


@click.command("audit")
@click.argument("model")
@click.option("--reference", "-r", "references", multiple=True, help="A reference checkpoint (repeatable); NAME=PATH names it.")
@click.option("--name", help="Name for the audited model in the report.")
@output_options
@model_options
def audit_(model: str, references: tuple[str, ...], name: str | None, json_path: str | None, html_path: str | None,
           seed: int, allow_pickle: bool, quiet: bool) -> None:
    """Audit MODEL against the given references and name the most likely parent, if any."""
    from audit.errors import InputError
    from audit.lineage.run import run_lineage

    if not references:
        raise InputError("give at least one --reference (the bundled registry of known families is not available yet)")
    refs = [_split(r) for r in references]
    with progress(quiet) as bar:
        record = run_lineage(model, refs, command="audit", argv=sys.argv[1:], allow_pickle=allow_pickle,
                             seed=seed, name=name, progress=bar)
    emit(record, json_path, html_path, quiet)


def _split(spec: str) -> tuple[str, str | None]:
    """'name=path' -> (path, name); a plain path -> (path, None)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        if name and "/" not in name:
            return path, name
    return spec, None
