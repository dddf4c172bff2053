"""`provaudit compare CANDIDATE REFERENCE`."""

from __future__ import annotations

import sys

import click

from audit.cli.emit import emit
from audit.cli.options import claim_options, model_options, output_options
from audit.cli.progress import progress


@click.command("compare")
@click.argument("candidate")
@click.argument("reference")
@click.option("--name", help="Name for the candidate in the report (default: its file or folder name).")
@click.option("--reference-name", help="Name for the reference (default: its file or folder name).")
@claim_options
@output_options
@model_options
def compare(candidate: str, reference: str, name: str | None, reference_name: str | None, json_path: str | None,
            html_path: str | None, seed: int, allow_pickle: bool, quiet: bool, claims: tuple[str, ...],
            declared_license: str | None) -> None:
    """Compare CANDIDATE with REFERENCE from the weights: original, derived, fine-tuned or inconclusive."""
    from audit.pipeline import Request, run
    from audit.record.names import CommandName

    request = Request(CommandName.COMPARE, model=candidate, name=name, references=((reference, reference_name),),
                      seed=seed, allow_pickle=allow_pickle, argv=tuple(sys.argv[1:]),
                      claims=tuple(claims), declared_license=declared_license)
    with progress(quiet) as bar:
        record = run(request, progress=bar)
    emit(record, json_path, html_path, quiet)
