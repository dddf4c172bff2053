"""`provaudit batch MANIFEST`: audit many models (one per manifest row), cached, resumable, with an index."""

from __future__ import annotations

import sys

import click

from audit.cli.probe_cmd import probe_options


@click.command("batch")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--out", "-o", "out", type=click.Path(file_okay=False),
              help="Output folder (default ./provaudit-runs/batch-<manifest name>); rerun to resume.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
              help="Result cache folder, shareable between batches (default OUT/cache).")
@click.option("--workers", "-j", type=click.IntRange(1, 1024), default=None,
              help="Audits run at once (local default 1; ray default: the cluster's CPUs).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: tasks on a Ray cluster "
                   "(pip install 'provaudit[ray]').")
@click.option("--ray-address", metavar="ADDR",
              help="Ray cluster to join (e.g. auto, ray://head:10001); default: start a local one.")
@click.option("--reference", "-r", "references", multiple=True,
              help="A reference for every row (repeatable); NAME=PATH names it.")
@click.option("--no-registry", is_flag=True, help="Compare only with the references, not the registry.")
@click.option("--registry", "registries", multiple=True, type=click.Path(file_okay=False),
              help="An extra registry folder (repeatable).")
@click.option("--probe", "probe_suites", multiple=True, metavar="SUITE",
              help="Run this probe suite on every model after its weight audit (repeatable).")
@probe_options
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and null permutations.")
@click.option("--allow-pickle", is_flag=True, help="Load pickled .bin/.pt weights (torch.load, weights_only=True).")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def batch(manifest: str, out: str | None, cache_dir: str | None, workers: int | None, executor: str,
          ray_address: str | None, references: tuple[str, ...], no_registry: bool, registries: tuple[str, ...],
          probe_suites: tuple[str, ...], declared: tuple[str, ...], temperature: float, max_new_tokens: int,
          samples: int, batch_size: int, device: str, seed: int, allow_pickle: bool, quiet: bool) -> None:
    """Audit every model listed in MANIFEST (CSV or YAML; columns model, references, probes, declared, name).

    Each model's record and report go to OUT/records/; OUT/index.html, index.csv and index.jsonl list
    them all. Results are cached by the SHA-256 of the files and the options, so a rerun (or an
    interrupted batch, resumed by running it again) audits only what is new. A model that fails is
    listed with its error and the batch goes on.
    """
    from pathlib import Path

    from audit.batch.runner import BatchOptions, run_batch
    from audit.checkpoint.locate import _resolve
    from audit.errors import InputError
    from audit.pipeline import split_reference

    if executor == "local" and ray_address:
        raise click.UsageError("--ray-address goes with --executor ray")
    refs = []
    for spec in references:
        path, name = split_reference(spec)
        try:
            refs.append((str(_resolve(path)), name))
        except InputError as exc:
            raise InputError(f"--reference {exc}") from None
    target = Path(out) if out else Path("provaudit-runs") / f"batch-{Path(manifest).stem}"
    opts = BatchOptions(
        out=target, cache_dir=Path(cache_dir) if cache_dir else None, workers=workers, executor=executor,
        ray_address=ray_address, no_registry=no_registry, registries=tuple(registries), references=tuple(refs),
        suites=tuple(probe_suites), declared=tuple(declared), seed=seed, allow_pickle=allow_pickle,
        probe={"samples": samples, "max_new_tokens": max_new_tokens, "temperature": temperature,
               "batch_size": batch_size, "device": device},
        argv=sys.argv[1:],
    )
    echo = None if quiet else (lambda msg: click.echo(msg, err=True))
    summary = run_batch(manifest, opts, echo=echo)
    s = summary.as_dict()
    click.echo(f"{s['rows']} models: {s['ok']} ok, {s['failed']} failed; {s['audited']} audited, "
               f"{s['from_cache']} from the cache ({s['seconds']:.1f} s)")
    if summary.lineage is not None:
        click.echo(summary.lineage.summary_line())
    click.echo(f"index: {target / 'index.html'}")
