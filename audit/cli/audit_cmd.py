"""`provaudit audit MODEL [--reference R ...] [--no-registry]`: best parent among references and the registry."""

from __future__ import annotations

import sys

import click

from audit.cli.emit import emit
from audit.cli.options import model_options, output_options
from audit.cli.progress import progress


@click.command("audit")
@click.argument("model")
@click.option("--reference", "-r", "references", multiple=True, help="A reference checkpoint (repeatable); NAME=PATH names it.")
@click.option("--no-registry", is_flag=True, help="Compare only with the given references, not the bundled registry.")
@click.option("--registry", "registries", multiple=True, type=click.Path(file_okay=False),
              help="An extra registry folder (repeatable); the user registry is always read.")
@click.option("--name", help="Name for the audited model in the report.")
@output_options
@model_options
def audit_(model: str, references: tuple[str, ...], no_registry: bool, registries: tuple[str, ...], name: str | None,
           json_path: str | None, html_path: str | None, seed: int, allow_pickle: bool, quiet: bool) -> None:
    """Audit MODEL against the registry of known families and any references; name the most likely parent."""
    from pathlib import Path

    from audit.errors import InputError
    from audit.lineage.run import run_lineage

    if no_registry and not references:
        raise InputError("--no-registry needs at least one --reference")
    registry = None
    if not no_registry:
        from audit.registry import load_registry

        registry = load_registry(extra=[Path(r) for r in registries])
        for entry, problem in registry.errors:
            click.echo(f"provaudit: warning: skipping registry entry {entry}: {problem}", err=True)
    with progress(quiet) as bar:
        record = run_lineage(model, [_split(r) for r in references], command="audit", argv=sys.argv[1:],
                             allow_pickle=allow_pickle, seed=seed, name=name, progress=bar, registry=registry)
    emit(record, json_path, html_path, quiet)


def _split(spec: str) -> tuple[str, str | None]:
    """'name=path' -> (path, name); a plain path -> (path, None)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        if name and "/" not in name:
            return path, name
    return spec, None
