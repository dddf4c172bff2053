"""Read a batch manifest (YAML or CSV) into rows; every problem is reported with its line number.

CSV: a header line naming some of the columns below, then one model per line; several references,
probes or declared names in one cell are separated by ';'. Lines whose first cell starts with '#' are
comments. YAML: a list of rows (or a mapping with a `models:` list); a row is a mapping with the columns
below (lists for references/probes/declared) or just the model path.

Columns: model (required), references, probes, declared (the model's own vendor or name), name (shown in
the report), claim (what the model is said to be: 'self-developed', 'fine-tuned from ORG/NAME'; several
allowed), declared_license (the licence it is said to be under). Claims are set beside the weights' evidence
in each record's 'Claims vs evidence'. Relative paths are resolved against the manifest's folder first, then the current folder; a hub
id is looked up in the local Hugging Face cache. Nothing runs unless every row is usable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from audit.errors import InputError
from audit.pipeline import split_reference
from audit.safeio import display_path, read_text

if TYPE_CHECKING:
    import yaml

COLUMNS = ("model", "references", "probes", "declared", "name", "claim", "declared_license")
LIST_COLUMNS = ("references", "probes", "declared", "claim")
MAX_REPORTED = 20
#: Caps on a manifest: its size, its rows, and YAML aliases (each alias is expanded once per use below).
MAX_MANIFEST_BYTES = 64 << 20
MAX_ROWS = 100_000
MAX_ALIASES = 1000


class ManifestError(InputError):
    """Unusable manifest lines: `lines` holds a heading and then one line per problem (the CLI prints each on
    its own line, so a user fixes them all at once)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n  ".join(lines))


@dataclass(frozen=True)
class Row:
    """One manifest line: the model to audit and its own references, probe suites and declared names."""

    line: int
    model: str  # as written in the manifest
    path: str  # resolved, absolute
    name: str | None = None
    references: tuple[tuple[str, str | None], ...] = ()  # (resolved path, name or None)
    probes: tuple[str, ...] = ()
    declared: tuple[str, ...] = ()
    claims: tuple[str, ...] = ()
    declared_license: str | None = None


class _Problems:
    """Collects `file:line: message` problems so the user sees them all at once."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, line: int, message: str) -> None:
        self.items.append(f"{display_path(self.source)}:{line}: {display_path(message)}")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        if len(self.items) == 1:
            raise InputError(self.items[0])
        shown = self.items[:MAX_REPORTED]
        more = len(self.items) - len(shown)
        raise ManifestError([f"manifest {display_path(self.source)}: {len(self.items)} problems"
                             + (f", the first {len(shown)}:" if more else ":"),
                             *shown, *([f"... and {more} more"] if more else [])])


def read_manifest(path: str | Path) -> list[Row]:
    """Parse and check a manifest; raise InputError naming every bad line (nothing is run)."""
    source = Path(path)
    text = read_text(source, MAX_MANIFEST_BYTES, "manifest file")  # a regular file, bounded, UTF-8
    problems = _Problems(source)
    suffix = source.suffix.lower()
    if suffix == ".csv":
        raw = _read_csv(text, problems)
    elif suffix in (".yaml", ".yml"):
        raw = _read_yaml(text, problems)
    else:
        raise InputError(f"{source}: a manifest must be .csv, .yaml or .yml")
    if len(raw) > MAX_ROWS:
        raise InputError(f"{display_path(source)}: {len(raw):,} rows, more than the {MAX_ROWS:,} a manifest may have")
    rows = [row for row in (_check_row(line, cells, source.parent, problems) for line, cells in raw) if row]
    if not rows and not problems.items:
        raise InputError(f"{source}: the manifest lists no models")
    problems.raise_if_any()
    return rows


# ------------------------------------------------------------------------------------------ CSV


def _read_csv(text: str, problems: _Problems) -> list[tuple[int, dict[str, list[str]]]]:
    import csv
    import io

    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    out: list[tuple[int, dict[str, list[str]]]] = []
    line = 0
    try:
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [c.strip().lower() for c in cells]
                for col in header:
                    if col not in COLUMNS:
                        problems.add(start, f"unknown column {col!r} (columns: {', '.join(COLUMNS)})")
                if "model" not in header:
                    problems.add(start, "the header has no 'model' column")
                dupes = sorted({c for c in header if header.count(c) > 1})
                if dupes:
                    problems.add(start, f"column {dupes[0]!r} appears twice")
                continue
            if len(cells) > len(header):
                problems.add(start, f"{len(cells)} cells but the header names {len(header)} columns")
                continue
            row: dict[str, list[str]] = {}
            for col, cell in zip(header, cells, strict=False):
                values = [v.strip() for v in cell.split(";")] if col in LIST_COLUMNS else [cell.strip()]
                row[col] = [v for v in values if v]
            out.append((start, row))
    except csv.Error as exc:
        problems.add(line + 1, f"not valid CSV ({exc})")
    if header is None:
        problems.add(1, "empty manifest (expected a header line: model,references,probes,declared)")
    return out


# ------------------------------------------------------------------------------------------ YAML


def _read_yaml(text: str, problems: _Problems) -> list[tuple[int, dict[str, list[str]]]]:
    import yaml

    try:
        aliases = sum(isinstance(t, yaml.AliasToken) for t in yaml.scan(text, Loader=yaml.SafeLoader))
        if aliases > MAX_ALIASES:
            problems.add(1, f"{aliases:,} YAML aliases, more than {MAX_ALIASES:,} (a manifest needs none)")
            return []
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except RecursionError:
        problems.add(1, "YAML nested too deeply")
        return []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.add(mark.line + 1 if mark else 1, f"not valid YAML ({getattr(exc, 'problem', None) or exc})")
        return []
    if node is None:
        problems.add(1, "empty manifest (expected a list of models)")
        return []
    if isinstance(node, yaml.MappingNode):
        items = None
        for key, value in node.value:
            if key.value == "models" and isinstance(value, yaml.SequenceNode):
                items = value
            else:
                problems.add(key.start_mark.line + 1, f"unknown key {key.value!r} (expected a 'models:' list)")
        node = items
    if not isinstance(node, yaml.SequenceNode):
        problems.add(1, "expected a list of models (or a mapping with a 'models:' list)")
        return []
    out: list[tuple[int, dict[str, list[str]]]] = []
    for item in node.value:
        line = item.start_mark.line + 1
        if isinstance(item, yaml.ScalarNode):
            out.append((line, {"model": [item.value]} if item.value else {}))
            continue
        if not isinstance(item, yaml.MappingNode):
            problems.add(line, "a row must be a mapping (model: ..., references: [...]) or a model path")
            continue
        row: dict[str, list[str]] = {}
        for key, value in item.value:
            col = str(key.value).strip().lower()
            if col not in COLUMNS:
                problems.add(key.start_mark.line + 1, f"unknown column {key.value!r} (columns: {', '.join(COLUMNS)})")
                continue
            values = _scalars(value)
            if values is None or (col not in LIST_COLUMNS and len(values) > 1):
                kind = "a string or a list of strings" if col in LIST_COLUMNS else "a string"
                problems.add(value.start_mark.line + 1, f"{col} must be {kind}")
                continue
            row[col] = [v for v in values if v]
        out.append((line, row))
    return out


def _scalars(node: yaml.Node) -> list[str] | None:
    import yaml

    if isinstance(node, yaml.ScalarNode):
        return [str(node.value).strip()] if node.tag != "tag:yaml.org,2002:null" else []
    if isinstance(node, yaml.SequenceNode) and all(isinstance(n, yaml.ScalarNode) for n in node.value):
        return [str(n.value).strip() for n in node.value]
    return None


# ------------------------------------------------------------------------------------------ rows


def _check_row(line: int, cells: dict[str, list[str]], base: Path, problems: _Problems) -> Row | None:
    model = (cells.get("model") or [""])[0]
    if not model:
        problems.add(line, "no model given")
        return None
    path = _resolve(model, base, line, problems, "model")
    refs: list[tuple[str, str | None]] = []
    for spec in cells.get("references") or []:
        ref_path, ref_name = split_reference(spec)
        resolved = _resolve(ref_path, base, line, problems, "reference")
        if resolved is not None:
            refs.append((resolved, ref_name))
    if path is None or len(refs) != len(cells.get("references") or []):
        return None
    names = cells.get("name")
    name = names[0] if names else None
    claims = tuple(cells.get("claim") or ())
    licences = cells.get("declared_license") or []
    licence = licences[0] if licences else None
    if not _claims_ok(line, claims, licence, problems):
        return None
    return Row(line, model, path, name, tuple(refs), tuple(cells.get("probes") or ()),
               tuple(cells.get("declared") or ()), claims, licence)


def _claims_ok(line: int, claims: tuple[str, ...], licence: str | None, problems: _Problems) -> bool:
    """Every claim and licence of a row can be read (checked before anything runs)."""
    from audit.claims.declared import parse_cli_claim, parse_cli_licence

    ok = True
    for text in claims:
        try:
            parse_cli_claim(text, f"manifest line {line}")
        except InputError as exc:
            problems.add(line, f"claim: {exc}")
            ok = False
    if licence:
        try:
            parse_cli_licence(licence, f"manifest line {line}")
        except InputError as exc:
            problems.add(line, f"declared_license: {exc}")
            ok = False
    return ok


def _resolve(value: str, base: Path, line: int, problems: _Problems, what: str) -> str | None:
    """A path relative to the manifest's folder, an absolute path, or a hub id in the local cache."""
    from audit.checkpoint.locate import _resolve as resolve_model

    candidate = Path(value).expanduser()
    if not candidate.is_absolute() and (base / candidate).exists():
        return str((base / candidate).resolve())
    try:
        return str(resolve_model(value))
    except InputError as exc:
        problems.add(line, f"{what} {exc}")
        return None
