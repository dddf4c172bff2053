"""`provaudit trace (MODEL | --endpoint URL --model NAME) -r NAME=PATH ...`: black-box lineage against references."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from audit.cli.emit import emit
from audit.cli.options import output_options
from audit.cli.progress import progress

CONFIRM_ABOVE = 200  # requests; larger plans ask before sending when run interactively without --yes


def _model_spec(kind: str, spec: str) -> tuple[str, str | None]:
    """NAME=PATH (or a plain PATH) -> (path, name); a reference may be NAME=endpoint:URL#MODEL."""
    from audit.errors import InputError
    from audit.pipeline import split_reference

    path, name = split_reference(spec)
    if path.startswith("endpoint:"):
        url, _, served = path[len("endpoint:"):].partition("#")
        if kind != "reference":
            raise InputError(f"{kind} {spec!r}: controls are local checkpoints (their text is scored); give "
                             "NAME=PATH")
        if not url.startswith(("http://", "https://")) or not served:
            raise InputError(f"{kind} {spec!r}: an endpoint reference is NAME=endpoint:URL#MODEL, e.g. "
                             "vendor=endpoint:https://api.example.com/v1#model-name")
        return path, name or served
    if not path or not Path(path).expanduser().exists():
        raise InputError(f"{kind} {spec!r}: no such file or folder {path!r} (give NAME=PATH to a local checkpoint "
                         "folder or .gguf file, or NAME=endpoint:URL#MODEL)")
    return str(Path(path).expanduser()), name


@click.command("trace")
@click.argument("model", required=False)
@click.option("--endpoint", metavar="URL", help="An OpenAI-compatible API base URL (e.g. http://host:8000/v1).")
@click.option("--model", "served_model", metavar="NAME", help="The model name to request from --endpoint.")
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the endpoint's API key.")
@click.option("-r", "--reference", "references", multiple=True, metavar="NAME=PATH", required=True,
              help="A reference model: a local checkpoint folder or .gguf, or NAME=endpoint:URL#MODEL, another "
                   "OpenAI-compatible API (repeatable).")
@click.option("--reference-api-key-env", metavar="VAR",
              help="Environment variable holding the API key of the endpoint references.")
@click.option("--control", "controls", multiple=True, metavar="NAME=PATH",
              help="A control model, unrelated to the references (repeatable); other references are controls too.")
@click.option("--prompts", type=click.IntRange(2, 1000), default=12, show_default=True,
              help="Neutral prompts asked (the first N of probes/trace-prompts.yaml).")
@click.option("--samples", type=click.IntRange(1, 100), default=None,
              help="Completions per prompt when --temperature > 0 (one at temperature 0). Default: enough for "
                   "--power against --effect.")
@click.option("--power", type=click.FloatRange(0.5, 0.999), default=0.8, show_default=True,
              help="Power the same-model sample test is planned for (chooses --samples).")
@click.option("--effect", type=click.FloatRange(0.02, 0.5), default=0.05, show_default=True,
              help="Shift of the mean PIT value (0 = same model) that --power is stated against.")
@click.option("--temperature", type=click.FloatRange(0.0, 2.0), default=0.7, show_default=True,
              help="Temperature requested from the subject; the references sample at the same setting.")
@click.option("--top-p", type=click.FloatRange(0.0, 1.0, min_open=True), default=None,
              help="top_p requested from the subject and applied to the references (default: not sent).")
@click.option("--max-tokens", type=click.IntRange(1, 4096), default=48, show_default=True,
              help="Longest completion requested per prompt.")
@click.option("--max-requests", type=click.IntRange(1), default=500, show_default=True,
              help="Most requests sent to the endpoint, retries included; the trace uses what was answered.")
@click.option("--timeout", type=click.FloatRange(0.1, 3600), default=120.0, show_default=True,
              help="Seconds per endpoint request.")
@click.option("--no-logprobs", is_flag=True, help="Do not ask the endpoint for per-token logprobs.")
@click.option("--logprob-tolerance", type=click.FloatRange(0.0, 10.0), default=0.02, show_default=True,
              help="Median |logprob difference| (nats) that still counts as the same weights.")
@click.option("--alpha", type=click.FloatRange(0.0, 0.5, min_open=True), default=0.05, show_default=True,
              help="Test level, after Holm's correction over the references.")
@click.option("--no-hidden-prompt", is_flag=True, help="Skip the billing and prompt-extraction requests.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the response cache ($PROVAUDIT_CACHE).")
@click.option("--dry-run", is_flag=True, help="Print the request and token budget, send nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before sending a large plan.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where local models run.")
@click.option("--name", help="Name for the subject in the report.")
@output_options
@click.option("--seed", type=int, default=0, show_default=True, help="Base seed for sampling and permutations.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no terminal summary.")
def trace(model: str | None, endpoint: str | None, served_model: str | None, api_key_env: str | None,
          reference_api_key_env: str | None, references: tuple[str, ...], controls: tuple[str, ...], prompts: int, samples: int | None, power: float,
          effect: float, temperature: float,
          top_p: float | None, max_tokens: int, max_requests: int, timeout: float, no_logprobs: bool,
          logprob_tolerance: float, alpha: float, no_hidden_prompt: bool, no_cache: bool, dry_run: bool, yes: bool,
          device: str, name: str | None, json_path: str | None, html_path: str | None, seed: int,
          quiet: bool) -> None:
    """Which reference produced MODEL's (or an endpoint's) outputs: same-model, derived, unrelated or
    inconclusive per reference, each with its p-value and null, and a flag when a hidden system prompt is likely.

    References are local checkpoints (NAME=PATH) or other endpoints (NAME=endpoint:URL#MODEL: compared by their
    answers only); controls are local checkpoints. The command states the requests and tokens it
    will spend before sending any, stops at --max-requests, and caches answers so a rerun costs nothing.
    """
    from audit.pipeline import Endpoint, Request, TraceRequest, run
    from audit.probing.trace import TraceOptions, plan
    from audit.record.names import CommandName

    if bool(model) == bool(endpoint):
        raise click.UsageError("give exactly one of MODEL or --endpoint URL --model NAME")
    if endpoint and not served_model:
        raise click.UsageError("--endpoint needs --model NAME (the model to request)")
    if served_model and not endpoint:
        raise click.UsageError("--model goes with --endpoint; give a local model as the MODEL argument")
    refs = tuple(_model_spec("reference", r) for r in references)
    ctrls = tuple(_model_spec("control", c) for c in controls)
    options = TraceOptions(prompts=prompts, samples=samples, temperature=temperature, top_p=top_p,
                           max_tokens=max_tokens, seed=seed, logprobs=not no_logprobs, alpha=alpha,
                           logprob_tolerance=logprob_tolerance, billing=not no_hidden_prompt,
                           extraction=not no_hidden_prompt, power=power, effect=effect, references=len(refs),
                           endpoint_references=sum(p.startswith("endpoint:") for p, _ in refs))
    the_plan = plan(options)
    line = the_plan.line(max_requests if endpoint else None)
    if dry_run:
        click.echo(line)
        return
    if not quiet and json_path != "-":
        click.echo(line, err=True)
    if (endpoint and not yes and the_plan.requests > CONFIRM_ABOVE and sys.stdin.isatty()
            and not click.confirm("send these requests?", default=True, err=True)):
        raise click.exceptions.Abort()
    request = Request(
        CommandName.TRACE, model=model, name=name, references=refs,
        endpoint=Endpoint(endpoint, served_model or "", api_key_env, timeout, max_requests,
                          tokenizer_check=False) if endpoint else None,
        trace=TraceRequest(options, ctrls, cache=not no_cache, device=device,
                           reference_api_key_env=reference_api_key_env), seed=seed,
        argv=tuple(sys.argv[1:]))
    with progress(quiet) as bar:
        record = run(request, progress=bar)
    emit(record, json_path, html_path, quiet)
