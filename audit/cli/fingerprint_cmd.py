"""`provaudit fingerprint MODEL -o FILE`."""

from __future__ import annotations

import sys

import click

from audit.cli.progress import progress


@click.command("fingerprint")
@click.argument("model")
@click.option("-o", "--output", default="-", show_default=True, help="Where to write the fingerprint JSON ('-' for stdout).")
@click.option("--allow-pickle", is_flag=True, help="Load pickled .bin/.pt weights (torch.load, weights_only=True).")
@click.option("--hash/--no-hash", "hash_files", default=None,
              help="SHA-256 every file (a full read). Default: only for models up to 2 GiB.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def fingerprint(model: str, output: str, allow_pickle: bool, hash_files: bool | None, quiet: bool) -> None:
    """Fingerprint MODEL's architecture, tokenizer and weight statistics (from sampled whole rows)."""
    from audit.checkpoint import open_checkpoint
    from audit.fingerprinting.fingerprint import build_fingerprint
    from audit.reporting.writer import write_json

    view_ckpt = open_checkpoint(model, allow_pickle=allow_pickle)
    with progress(quiet) as bar:
        fp = build_fingerprint(view_ckpt, argv=sys.argv[1:], progress=bar, hash_files=hash_files)
    write_json(output, fp)
    if output != "-" and not quiet:
        click.echo(f"fingerprint of {fp['model']['name']} written to {output}", err=True)
