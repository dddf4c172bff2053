"""`provaudit refs list | show NAME | add MODEL --name N | verify`: the reference lineage registry."""

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
    """List, show, add and verify reference fingerprints of known model families."""


@refs.command("list")
@_registry_opt
def list_(registries: tuple[str, ...]) -> None:
    """One row per family: which kinds of evidence the registry holds, and where they came from."""
    from rich.console import Console
    from rich.table import Table

    reg = _load(registries)
    rows: dict[str, dict] = {}
    for e in reg.entries:
        row = rows.setdefault(e.family, {"names": [], "kinds": set(), "sources": set(), "origin": set()})
        row["names"].append(e.name)
        row["kinds"].add(e.kind)
        row["sources"].add(e.source)
        row["origin"].add(e.origin)
    table = Table(title=f"provaudit registry: {len(reg.entries)} entries")
    for col in ("family", "entries", "evidence", "source"):
        table.add_column(col, overflow="fold")
    for fam in sorted(rows):
        r = rows[fam]
        names = sorted(set(r["names"]))
        table.add_row(fam, ", ".join(names[:4]) + (" ..." if len(names) > 4 else ""),
                      ", ".join(sorted(r["kinds"])), "; ".join(sorted(r["sources"]))[:60])
    Console().print(table)
    for entry, problem in reg.errors:
        click.echo(f"provaudit: warning: broken registry entry {entry}: {problem}", err=True)


@refs.command("show")
@click.argument("name")
@_registry_opt
def show(name: str, registries: tuple[str, ...]) -> None:
    """Everything the registry holds under NAME (an entry or a family)."""
    import json

    from audit.errors import InputError

    reg = _load(registries)
    found = reg.find(name)
    if not found:
        raise InputError(f"no registry entry or family named {name!r} (see `provaudit refs list`)")
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
