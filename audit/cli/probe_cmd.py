"""`provaudit probe (MODEL | --endpoint URL --model NAME)`: black-box probes of a local model or an endpoint."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from audit.cli.emit import emit
from audit.cli.options import output_options
from audit.cli.progress import progress

if TYPE_CHECKING:
    from audit.probing.suite import Suite

F = TypeVar("F", bound=Callable[..., Any])


def probe_options(f: F) -> F:
    """Sampling options shared by `probe` and `audit --probe`."""
    f = click.option("--declared", multiple=True, metavar="NAME",
                     help="The model's own name or vendor (repeatable); claims of it never count.")(f)
    f = click.option("--temperature", type=click.FloatRange(0.0, 2.0), default=0.7, show_default=True,
                     help="Sampling temperature (answers vary between samples when > 0).")(f)
    f = click.option("--max-new-tokens", type=click.IntRange(1, 8192), default=160, show_default=True,
                     help="Longest answer generated per prompt.")(f)
    f = click.option("--samples", type=click.IntRange(1, 100), default=3, show_default=True,
                     help="Samples per prompt (sample j uses seed SEED+j).")(f)
    f = click.option("--batch-size", type=click.IntRange(1, 1024), default=64, show_default=True,
                     help="Most answers (prompts x samples) decoded together (local models).")(f)
    f = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="Where a local model runs (auto: CUDA with bf16 when available).")(f)
    return f


@click.command("probe")
@click.argument("model", required=False)
@click.option("--endpoint", metavar="URL", help="An OpenAI-compatible API base URL (e.g. http://host:8000/v1).")
@click.option("--model", "served_model", metavar="NAME", help="The model name to request from --endpoint.")
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the endpoint's API key.")
@click.option("--no-tokenizer-check", is_flag=True,
              help="Skip inferring the endpoint's tokenizer from billed token counts (74 extra requests).")
@click.option("--suite", "suites", multiple=True, metavar="NAME|FILE",
              help="A bundled suite or a suite file (repeatable; default: all bundled suites).")
@click.option("--list", "list_", is_flag=True, help="List the bundled suites and exit.")
@click.option("--timeout", type=click.FloatRange(0.1, 3600), default=60.0, show_default=True,
              help="Seconds per endpoint request.")
@click.option("--max-requests", type=click.IntRange(1), default=2000, show_default=True,
              help="Most requests sent to the endpoint, retries included.")
@click.option("--name", help="Name for the probed model in the report.")
@click.option("--fake", "fake_rules", hidden=True, type=click.Path(dir_okay=False),
              help="Answer from scripted [pattern, reply] rules (tests and demos).")
@probe_options
@output_options
@click.option("--seed", type=int, default=0, show_default=True, help="Base seed for sampling.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no terminal summary.")
def probe(model: str | None, endpoint: str | None, served_model: str | None, api_key_env: str | None,
          no_tokenizer_check: bool, suites: tuple[str, ...], list_: bool, timeout: float, max_requests: int, name: str | None,
          fake_rules: str | None, declared: tuple[str, ...], temperature: float, max_new_tokens: int,
          samples: int, batch_size: int, device: str, json_path: str | None, html_path: str | None, seed: int,
          quiet: bool) -> None:
    """Ask MODEL (or an endpoint) who it is, many times over; flag identity claims of other vendors.

    A self-report is a signal, not proof: a model that calls itself ChatGPT was probably trained on
    ChatGPT's outputs, which says nothing about its weights.
    """
    from audit.pipeline import Endpoint, ProbeRequest, Request, run
    from audit.probing.suite import list_suites
    from audit.record.names import CommandName

    if list_:
        _print_suites(list_suites())
        return
    sources = [x for x in (model, endpoint, fake_rules) if x]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of MODEL or --endpoint URL --model NAME")
    if endpoint and not served_model:
        raise click.UsageError("--endpoint needs --model NAME (the model to request)")
    if served_model and not endpoint:
        raise click.UsageError("--model goes with --endpoint; give a local model as the MODEL argument")
    request = Request(
        CommandName.PROBE, model=model, name=name, fake_rules=fake_rules,
        endpoint=Endpoint(endpoint, served_model or "", api_key_env, timeout, max_requests,
                          tokenizer_check=not no_tokenizer_check) if endpoint else None,
        probes=ProbeRequest(tuple(suites), samples, max_new_tokens, temperature, batch_size, device, tuple(declared)),
        seed=seed, argv=tuple(sys.argv[1:]),
    )
    with progress(quiet) as bar:
        record = run(request, progress=bar)
    emit(record, json_path, html_path, quiet)


def _print_suites(suites: list[Suite]) -> None:
    width = max((len(s.name) for s in suites), default=5)
    for s in suites:
        click.echo(f"{s.name:<{width}}  {len(s.probes):>3} probes  {','.join(s.languages):<6} "
                   f"{','.join(s.detectors()):<26} {s.description}")
