"""`provaudit audit MODEL [--reference R ...] [--no-registry]`: best parent among references and the registry."""

from __future__ import annotations

import sys

import click

from audit.cli.emit import emit
from audit.cli.options import claim_options, model_options, output_options
from audit.cli.probe_cmd import probe_options
from audit.cli.progress import progress


@click.command("audit")
@click.argument("model")
@click.option("--reference", "-r", "references", multiple=True, help="A reference checkpoint (repeatable); NAME=PATH names it.")
@click.option("--no-registry", is_flag=True, help="Compare only with the given references, not the bundled registry.")
@click.option("--registry", "registries", multiple=True, type=click.Path(file_okay=False),
              help="An extra registry folder (repeatable); the user registry is always read.")
@click.option("--name", help="Name for the audited model in the report.")
@click.option("--probe", "probe_suites", multiple=True, metavar="SUITE",
              help="After the weight audit, run this probe suite (name or file; repeatable) on MODEL.")
@probe_options
@claim_options
@output_options
@model_options
def audit_(model: str, references: tuple[str, ...], no_registry: bool, registries: tuple[str, ...], name: str | None,
           probe_suites: tuple[str, ...], declared: tuple[str, ...], temperature: float, max_new_tokens: int,
           samples: int, batch_size: int, device: str,
           json_path: str | None, html_path: str | None, seed: int, allow_pickle: bool, quiet: bool,
           claims: tuple[str, ...], declared_license: str | None) -> None:
    """Audit MODEL against the registry of known families and any references; name the most likely parent."""
    from audit.errors import InputError
    from audit.pipeline import ProbeRequest, Request, run, split_reference
    from audit.record.models import ProbeFailure
    from audit.record.names import CommandName

    if no_registry and not references:
        raise InputError("--no-registry needs at least one --reference")
    probes = ProbeRequest(tuple(probe_suites), samples, max_new_tokens, temperature, batch_size, device,
                          tuple(declared)) if probe_suites else None
    request = Request(CommandName.AUDIT, model=model, name=name, references=tuple(split_reference(r) for r in references),
                      registries=None if no_registry else tuple(registries), probes=probes, seed=seed,
                      allow_pickle=allow_pickle, argv=tuple(sys.argv[1:]),
                      claims=tuple(claims), declared_license=declared_license)
    with progress(quiet) as bar:
        record = run(request, progress=bar, warn=lambda msg: click.echo(msg, err=True))
    if isinstance(record.probe_run, ProbeFailure):
        click.echo(f"provaudit: warning: probes not run: {record.probe_run.error}", err=True)
    emit(record, json_path, html_path, quiet)
