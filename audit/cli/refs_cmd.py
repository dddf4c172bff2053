"""`provaudit refs list | show NAME | add MODEL --name N | verify | build --catalog`: the reference registry.

`list` and `build` measure the registry against the base-model catalog (fingerprints/catalog.yaml, loaded by
audit.fingerprinting.catalog): which catalog models it can check by weights, and building what is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from audit.fingerprinting.registry import Registry

_registry_opt = click.option("--registry", "registries", multiple=True, type=click.Path(file_okay=False),
                             help="An extra registry folder to read (repeatable).")


def _load(registries: tuple[str, ...]) -> Registry:
    from audit.fingerprinting.registry import load_registry

    return load_registry(extra=[Path(r) for r in registries])


@click.group("refs")
def refs() -> None:
    """List, show, add, verify and build reference fingerprints of known model families."""


@refs.command("list")
@click.option("--all", "--catalog", "per_entry", is_flag=True,
              help="One row per catalog model instead of one per family.")
@click.option("--only", "pattern", default=None, metavar="PATTERN",
              help="Only catalog models whose hub id, name or family matches (glob, or a substring).")
@_registry_opt
def list_(per_entry: bool, pattern: str | None, registries: tuple[str, ...]) -> None:
    """Which catalog models the registry can check by weights, by tokenizer only, or not at all.

    Counts first; then one row per catalog family (or per model with --all); then the registry's weight
    fingerprints that belong to no catalog model (your own references).
    """
    from rich.console import Console

    from audit.errors import InputError
    from audit.fingerprinting.catalog import coverage, load_catalog, weight_owner

    reg = _load(registries)
    catalog = load_catalog()
    rows = coverage(catalog, reg)
    if pattern:
        keep = {e.hub_id for e in catalog.select(pattern)}
        rows = [r for r in rows if r.entry.hub_id in keep]
        if not rows:
            raise InputError(f"--only {pattern!r} matches no catalog model")
    console = Console(highlight=False)
    n = {s: sum(1 for r in rows if r.status == s) for s in ("weights", "tokenizer", "none")}
    families = {r.entry.family for r in rows}
    console.print(f"Catalog: {len(rows)} models in {len(families)} {'family' if len(families) == 1 else 'families'}"
                  + (f" matching {pattern!r}" if pattern else ""))
    console.print(f"  weight fingerprint: {n['weights']}    tokenizer fingerprint only: {n['tokenizer']}    "
                  f"none: {n['none']}")
    kinds = {k: len(reg.of_kind(k)) for k in ("weights", "tokenizer", "architecture")}
    console.print(f"Registry: {kinds['weights']} weight fingerprints, {kinds['tokenizer']} tokenizer fingerprints, "
                  f"{kinds['architecture']} architecture families")
    console.print(_entry_table(rows, console.width) if per_entry else _family_table(rows))
    own = [e for e in reg.of_kind("weights") if weight_owner(e.data["reference"].stored, e.name, catalog) is None]
    if own and not pattern:
        console.print(_own_table(own))
    if n["weights"] < len(rows) and not pattern:
        console.print("Build the missing weight fingerprints from the Hub: provaudit refs build --catalog [--only PATTERN]")
    for entry, problem in reg.errors:
        click.echo(f"provaudit: warning: broken registry entry {entry}: {problem}", err=True)


def _params(n: float) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"


def _family_table(rows: list[Any]) -> Any:
    from rich import box
    from rich.table import Table

    fams: dict[str, list[Any]] = {}
    for r in rows:
        fams.setdefault(r.entry.family, []).append(r)
    table = Table(title="Per family: models with a weight fingerprint, with only a tokenizer fingerprint, with none",
                  title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("family", no_wrap=True)
    for col in ("models", "weights", "tok only", "none"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("weight fingerprints", overflow="fold")
    for fam, rs in fams.items():
        count = {s: sum(1 for r in rs if r.status == s) for s in ("weights", "tokenizer", "none")}
        names = [n for r in rs for n in r.weights]
        style = "green" if count["weights"] else ("yellow" if count["tokenizer"] else "red")
        table.add_row(fam, str(len(rs)), str(count["weights"] or "-"), str(count["tokenizer"] or "-"),
                      str(count["none"] or "-"),
                      ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else ""), style=style)
    return table


def _entry_table(rows: list[Any], width: int) -> Any:
    """One row per model; narrow terminals drop the kind, licence and release columns, never the evidence."""
    from rich import box
    from rich.table import Table

    table = Table(title="Per model: weights (fingerprint name) | tokenizer (only its tokenizer's) | none",
                  title_justify="left", box=box.SIMPLE_HEAD)
    cols = ["kind", "params", "released", "licence"] if width >= 110 else (["params", "released"] if width >= 90
                                                                          else [])
    table.add_column("hub id", no_wrap=True)
    for col in cols:
        table.add_column(col, justify="right" if col == "params" else "left", no_wrap=True)
    table.add_column("evidence", overflow="fold")
    previous = None
    for r in rows:
        e = r.entry
        evidence = {"weights": f"weights: {', '.join(r.weights)}", "tokenizer": f"tokenizer: {e.tokenizer}",
                    "none": "none"}[r.status]
        style = {"weights": "green", "tokenizer": "yellow", "none": "red"}[r.status]
        if previous is not None and e.family != previous:
            table.add_section()
        previous = e.family
        values = {"kind": e.kind, "params": _params(e.params), "released": e.released[:7], "licence": e.license}
        table.add_row(e.hub_id, *(values[c] for c in cols), evidence, style=style)
    return table


def _own_table(entries: list[Any]) -> Any:
    from rich.table import Table

    table = Table(title="Weight fingerprints outside the catalog", title_justify="left")
    for col in ("name", "family", "origin", "source"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(e.name, e.family, e.origin, e.source[:60])
    return table


@refs.command("show")
@click.argument("name")
@_registry_opt
def show(name: str, registries: tuple[str, ...]) -> None:
    """Everything the registry holds under NAME (an entry or a family), or a catalog model (hub id or name)."""
    import json

    from audit.errors import InputError
    from audit.fingerprinting.catalog import coverage, load_catalog

    reg = _load(registries)
    found = reg.find(name)
    if not found:
        catalog = load_catalog()
        entry = catalog.get(name) or next((e for e in catalog.entries if e.name == name.lower()), None)
        if entry is None:
            raise InputError(f"no registry entry, family or catalog model named {name!r} (see `provaudit refs list`)")
        cov = next(c for c in coverage(catalog, reg) if c.entry is entry)
        click.echo(json.dumps({"catalog": entry.model_dump(), "registry": cov.status, "weights": list(cov.weights)},
                              indent=2, ensure_ascii=False))
        return
    for e in found:
        out: dict[str, Any] = {"name": e.name, "family": e.family, "kind": e.kind, "origin": e.origin, "path": str(e.path), "source": e.source}
        if e.kind == "architecture":
            out["models"] = e.data.get("models")
        elif e.kind == "tokenizer":
            out["tokenizer"] = {k: v for k, v in e.data.items() if k != "sketch"}
        else:
            meta = e.data["reference"].stored
            out["weights"] = {k: meta.get(k) for k in ("architecture", "naming_scheme", "format", "layers", "source")}
            out["weights"]["anchor_tokens"] = len(meta.get("anchor_tokens", []))
            out["weights"]["bytes"] = e.path.stat().st_size
        click.echo(json.dumps(out, indent=2, ensure_ascii=False, default=str))


@refs.command("add")
@click.argument("model")
@click.option("--name", required=True, help="Name of the new reference.")
@click.option("--family", default=None, help="Family it belongs to (default: the name).")
@click.option("--registry", "registry_dir", type=click.Path(file_okay=False), default=None,
              help="Registry folder to add to (default: the user registry).")
@click.option("--allow-pickle", is_flag=True, help="Load pickled .bin/.pt weights (torch.load, weights_only=True).")
def add(model: str, name: str, family: str | None, registry_dir: str | None, allow_pickle: bool) -> None:
    """Fingerprint MODEL and add it to a registry as reference NAME."""
    import re

    from audit.checkpoint import open_checkpoint
    from audit.errors import InputError
    from audit.fingerprinting.reference import build_weight_fingerprint
    from audit.fingerprinting.registry import user_registry_dir
    from audit.fingerprinting.view import ModelView

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise InputError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    view = ModelView(open_checkpoint(model, allow_pickle=allow_pickle, name=name))
    if not view.roles.layers() or not view.hidden or not view.embed_name():
        raise InputError(f"{model}: no transformer blocks or embeddings found; nothing to fingerprint")
    root = Path(registry_dir) if registry_dir else user_registry_dir()
    path = root / "weights" / f"{name}.safetensors"
    build_weight_fingerprint(view, path, {"name": name, "family": family or name, "source": f"local: {view.ckpt.path}"})
    click.echo(f"added {name} ({family or name}) to {root} ({path.stat().st_size / 1e6:.1f} MB)")


@refs.command("verify")
@_registry_opt
def verify(registries: tuple[str, ...]) -> None:
    """Load and validate every registry entry; exit 1 if any is broken."""
    import sys

    reg = _load(registries)
    for e in reg.entries:
        click.echo(f"ok      {e.kind:<12} {e.name} ({e.origin})")
    for entry, problem in reg.errors:
        click.echo(f"BROKEN  {entry}: {problem}")
    click.echo(f"{len(reg.entries)} entries ok, {len(reg.errors)} broken")
    if reg.errors:
        sys.exit(1)


@refs.command("build")
@click.option("--catalog", "use_catalog", is_flag=True,
              help="Build the weight fingerprints the registry lacks for the base-model catalog.")
@click.option("--only", "pattern", default=None, metavar="PATTERN",
              help="Only catalog models whose hub id, name or family matches (glob, or a substring).")
@click.option("--registry", "registry_dir", type=click.Path(file_okay=False), default=None,
              help="Registry folder to write to (default: the user registry).")
@click.option("--max", "max_entries", type=click.IntRange(min=1), default=None,
              help="Attempt at most N models this run (a rerun goes on with the next ones).")
@click.option("--dry-run", is_flag=True, help="List what would be built; fetch nothing.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def build(use_catalog: bool, pattern: str | None, registry_dir: str | None, max_entries: int | None,
          dry_run: bool, quiet: bool) -> None:
    """Fingerprint catalog models from the Hugging Face Hub (range reads; HF_ENDPOINT, HF_TOKEN honoured).

    Models that already have a weight fingerprint (bundled, in the user registry or in --registry) are
    skipped, so rerunning the command resumes where it stopped. A model that fails (gated, missing,
    unsupported) is one warning line and the next one goes on. Exit status 0 when something was built or
    nothing was missing; 2 when nothing could be built (every model attempted failed, e.g. the Hub is
    unreachable: building stops after the first 3 models fail that way) or --only matches nothing.
    """
    import time

    from audit.errors import InputError
    from audit.fingerprinting.catalog import build_entry, coverage, load_catalog
    from audit.fingerprinting.registry import load_registry, user_registry_dir

    if not use_catalog:
        raise InputError("refs build needs --catalog (build the missing weight fingerprints of the base-model catalog)")
    root = Path(registry_dir) if registry_dir else user_registry_dir()
    catalog = load_catalog()
    selected = catalog.select(pattern)
    if not selected:
        raise InputError(f"--only {pattern!r} matches no catalog model")
    extra = [root] if root.resolve() != user_registry_dir().resolve() else []
    registry = load_registry(extra=extra)
    status = {c.entry.hub_id: c for c in coverage(catalog, registry)}
    present = [e for e in selected if status[e.hub_id].status == "weights"]
    todo = [e for e in selected if status[e.hub_id].status != "weights"]
    later = todo[max_entries:] if max_entries is not None else []
    todo = todo[:max_entries] if max_entries is not None else todo
    if dry_run:
        for e in todo:
            click.echo(f"would build  {e.hub_id} -> {root / 'weights' / (e.name + '.safetensors')}")
        click.echo(f"{len(todo)} to build, {len(present)} already present, {len(later)} left for later runs "
                   f"(of {len(selected)} selected)")
        return
    built: list[str] = []
    failed: list[tuple[str, str]] = []
    unreachable = 0
    started = time.monotonic()
    with _BuildProgress(len(todo), enabled=not quiet) as bar:
        for e in todo:
            bar.next_model(e.hub_id)
            try:
                path = build_entry(e, root, progress=bar)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one model failing never stops the others
                message = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
                message = " ".join(message.split())
                failed.append((e.hub_id, message))
                bar.warn(f"provaudit: warning: {'' if e.hub_id in message else e.hub_id + ': '}{message}; skipped")
                unreachable = unreachable + 1 if _looks_unreachable(exc) else 0
                if not built and unreachable >= _UNREACHABLE_STOP:
                    bar.warn(f"provaudit: warning: the Hub looks unreachable ({unreachable} models in a row); "
                             "stopping")
                    break
                continue
            unreachable = 0
            built.append(e.hub_id)
            bar.log(f"built {e.hub_id} -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    not_tried = len(todo) - len(built) - len(failed) + len(later)
    click.echo(f"refs build: {len(built)} built, {len(present)} already present, {len(failed)} failed"
               + (f", {not_tried} not attempted" if not_tried else "")
               + f" (of {len(selected)} selected) in {time.monotonic() - started:.0f} s -> {root}")
    if failed and not built:
        raise InputError(f"no weight fingerprint could be built ({len(failed)} failed; first: {failed[0][0]}: "
                         f"{failed[0][1]})")


_UNREACHABLE_STOP = 3
_UNREACHABLE_WORDS = ("unreachable", "cannot reach", "could not connect", "connection", "timed out", "timeout",
                      "offline", "name resolution")


def _looks_unreachable(exc: BaseException) -> bool:
    """A failure that says the Hub could not be reached at all (rather than one repo being gated or odd)."""
    seen: BaseException | None = exc
    for _ in range(5):  # the error and what caused it
        if seen is None:
            break
        kind = type(seen).__name__.lower()
        if any(w in kind for w in ("connect", "timeout", "offline")) or \
                any(w in str(seen).lower() for w in _UNREACHABLE_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _BuildProgress:
    """Two bars on stderr: models done out of the run's, and the current model's weights read and reduced."""

    def __init__(self, total: int, enabled: bool) -> None:
        import sys

        self._bar: Any = None
        self._overall: Any = None
        self._model: Any = None
        self._total = total
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=Console(stderr=True), transient=True)

    def __enter__(self) -> _BuildProgress:
        if self._bar is not None:
            self._bar.__enter__()
            self._overall = self._bar.add_task("catalog models", total=self._total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def next_model(self, hub_id: str) -> None:
        if self._bar is None:
            return
        if self._model is not None:
            self._bar.remove_task(self._model)
            self._bar.advance(self._overall)
        self._model = self._bar.add_task(f"  {hub_id}", total=None)

    def log(self, line: str) -> None:
        """A progress note: shown above the bars, dropped without them (the summary line says it all)."""
        if self._bar is not None:
            self._bar.console.print(line, highlight=False, markup=False)

    def warn(self, line: str) -> None:
        """A warning on stderr, above the bars when they are drawn."""
        if self._bar is not None:
            self._bar.console.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
            click.echo(line, err=True)

    # audit.checkpoint.progress.Progress: what build_entry reports while it reads and reduces one model
    def start(self, description: str, total: int) -> None:
        if self._bar is not None and self._model is not None:
            self._bar.update(self._model, total=total, completed=0)

    def tick(self) -> None:
        if self._bar is not None and self._model is not None:
            self._bar.advance(self._model)
