"""The provaudit click group. Commands live one per module and are imported only when invoked."""

from __future__ import annotations

import importlib
import sys

import click

from audit import __version__

# command name -> (module, attribute); imported lazily so `provaudit --help` stays instant.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "fingerprint": ("audit.cli.fingerprint_cmd", "fingerprint", "Fingerprint a model's architecture, tokenizer and weights."),
    "compare": ("audit.cli.compare_cmd", "compare", "Compare a candidate model with one reference."),
    "audit": ("audit.cli.audit_cmd", "audit_", "Audit a model against the registry and references; name the parent."),
    "demo": ("audit.cli.demo_cmd", "demo", "Run a real audit on SmolLM2-135M and copies derived from it."),
    "probe": ("audit.cli.probe_cmd", "probe", "Black-box probes of a local model or an OpenAI-compatible endpoint."),
    "trace": ("audit.cli.trace_cmd", "trace", "Black-box lineage: which reference produced a model's or an endpoint's outputs."),
    "refs": ("audit.cli.refs_cmd", "refs", "List, show, add, verify and build (from the Hub catalog) reference fingerprints."),
    "report": ("audit.cli.report_cmd", "report", "Re-render a saved record as HTML, JSON or a terminal summary."),
    "batch": ("audit.cli.batch_cmd", "batch", "Audit every model of a manifest (cached, resumable) and index them."),
    "schema": ("audit.cli.schema_cmd", "schema", "Print the JSON Schema of the record every command writes."),
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provaudit")
def cli() -> None:
    """provaudit: audit where a language model really came from, with evidence."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn errors into one line on stderr and an exit status."""
    from audit.errors import InputError

    if not _debug():
        quiet_third_party()
    try:
        cli.main(args=argv, standalone_mode=False, prog_name="provaudit")
    except click.exceptions.Abort:
        click.echo("provaudit: aborted", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as exc:  # usage errors: one line, with where to find help
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        click.echo(f"provaudit: error: {one_line(exc.format_message())}{hint}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except InputError as exc:
        # one printable line (control characters escaped); an error that lists several problems (a manifest's
        # bad rows) sets `lines` and gets one printable line per problem
        lines = getattr(exc, "lines", None) or [str(exc)]
        click.echo("\n".join(f"provaudit: error: {one_line(str(ln))}" if i == 0 else f"  {one_line(str(ln))}"
                             for i, ln in enumerate(lines)), err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("provaudit: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last-resort: one line, exit 1
        if _debug():
            raise
        click.echo(f"provaudit: internal error: {type(exc).__name__}: {one_line(str(exc))} "
                   "(set PROVAUDIT_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)
    sys.exit(0)


def one_line(text: str, limit: int = 2000) -> str:
    """`text` as one printable line: newlines, escapes and other control characters shown as \\n, \\x1b, ...;
    cut to `limit` characters."""
    from audit.safeio import display_path

    out = display_path(text.strip())
    return out if len(out) <= limit else out[: limit - 3] + "..."


#: Loggers of the libraries provaudit drives; their warnings would otherwise land on stderr beside our one line.
_QUIET_LOGGERS = ("transformers", "huggingface_hub", "tokenizers", "torch", "safetensors", "gguf", "onnx",
                  "urllib3", "httpx", "filelock", "accelerate", "datasets", "numexpr", "ray")


def quiet_third_party() -> None:
    """Keep third-party warnings and log lines off stderr: provaudit says what matters itself, in one line.

    Python warnings are ignored, library loggers only pass CRITICAL, and the libraries that read their
    verbosity from the environment are told so before they are imported (a user's own setting wins).
    PROVAUDIT_DEBUG=1 leaves all of it alone."""
    import logging
    import os
    import warnings

    warnings.filterwarnings("ignore")
    for var, value in (("TRANSFORMERS_VERBOSITY", "critical"), ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
                       ("TOKENIZERS_PARALLELISM", "false"), ("TF_CPP_MIN_LOG_LEVEL", "3"),
                       ("HF_HUB_DISABLE_TELEMETRY", "1")):
        os.environ.setdefault(var, value)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.getLogger().setLevel(logging.CRITICAL)


def _debug() -> bool:
    import os

    return os.environ.get("PROVAUDIT_DEBUG", "") not in ("", "0")
