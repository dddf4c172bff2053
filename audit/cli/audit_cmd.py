"""`provaudit audit MODEL [--reference R ...] [--no-registry]`: best parent among references and the registry."""

from __future__ import annotations

import sys

import click

from audit.cli.emit import emit
from audit.cli.options import model_options, output_options
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
@output_options
@model_options
def audit_(model: str, references: tuple[str, ...], no_registry: bool, registries: tuple[str, ...], name: str | None,
           probe_suites: tuple[str, ...], declared: tuple[str, ...], temperature: float, max_new_tokens: int,
           samples: int, batch_size: int, device: str,
           json_path: str | None, html_path: str | None, seed: int, allow_pickle: bool, quiet: bool) -> None:
    """Audit MODEL against the registry of known families and any references; name the most likely parent."""
    from pathlib import Path

    from audit.errors import InputError
    from audit.lineage.run import run_lineage

    if no_registry and not references:
        raise InputError("--no-registry needs at least one --reference")
    suites = []
    if probe_suites:  # a bad suite stops here, before the weight audit
        from audit.probing.suite import resolve_suites

        suites = resolve_suites(probe_suites)
    registry = None
    if not no_registry:
        from audit.registry import load_registry

        registry = load_registry(extra=[Path(r) for r in registries])
        for entry, problem in registry.errors:
            click.echo(f"provaudit: warning: skipping registry entry {entry}: {problem}", err=True)
    with progress(quiet) as bar:
        record = run_lineage(model, [_split(r) for r in references], command="audit", argv=sys.argv[1:],
                             allow_pickle=allow_pickle, seed=seed, name=name, progress=bar, registry=registry)
        if suites:
            from audit.probing.runner import ProbeSettings

            settings = ProbeSettings(samples, max_new_tokens, temperature, seed, batch_size, tuple(declared))
            _probe(record, model, suites, settings, device, bar)
    emit(record, json_path, html_path, quiet)


def _probe(record: dict, model: str, suites: list, settings, device: str, bar) -> None:
    """Run the probes on the audited model; a failure is recorded and warned about, the audit stands."""
    from audit.errors import InputError
    from audit.probing import session

    try:
        backend = session.local_backend(model, device, settings.batch_size)
    except Exception as exc:  # noqa: BLE001 - the weight audit's record still stands
        message = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        click.echo(f"provaudit: warning: probes not run: {message}", err=True)
        session.attach_error(record, suites, message)
        return
    inherited = session.inherited_vendors(record)
    if inherited:
        settings.declared = tuple(dict.fromkeys([*settings.declared, *inherited]))
    session.attach(record, session.probe(backend, suites, settings, progress=bar))
    record["probe_run"]["declared"]["inherited"] = inherited


def _split(spec: str) -> tuple[str, str | None]:
    """'name=path' -> (path, name); a plain path -> (path, None)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        if name and "/" not in name:
            return path, name
    return spec, None
