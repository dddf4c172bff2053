"""Load and validate probe data files (suites, the vendor lexicon, boilerplate phrases) from probes/."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from audit.errors import InputError
from audit.paths import data_dir
from audit.probing.schema import PROBE_FILE, AnyProbeFile, SuiteFile, check
from audit.safeio import MiB, decode_utf8, display_path, loads_yaml, read_bytes

Messages = list[dict[str, str]]
SUITE_SUFFIXES = (".yaml", ".yml", ".json")


class SuiteError(InputError):
    """A probe data file that cannot be used (unreadable, not YAML, or against the schema). Exit 2."""


@dataclass(frozen=True)
class Probe:
    """One prompt (a message list) and the detectors that score its answers."""

    id: str
    language: str
    messages: tuple[tuple[str, str], ...]
    detectors: tuple[str, ...]
    category: str | None = None

    def message_list(self) -> Messages:
        """The conversation as OpenAI-style [{role, content}] dicts."""
        return [{"role": r, "content": c} for r, c in self.messages]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "language": self.language, "category": self.category,
                "messages": self.message_list(), "detectors": list(self.detectors)}


@dataclass(frozen=True)
class Suite:
    """A named list of probes, with where it came from (bundled name or a user's file) and its hash."""

    name: str
    description: str
    probes: tuple[Probe, ...]
    source: str
    sha256: str
    version: int = 1
    languages: tuple[str, ...] = field(default=())

    def detectors(self) -> list[str]:
        return sorted({d for p in self.probes for d in p.detectors})


def probes_dir() -> Path:
    return data_dir("probes")


def schema() -> TypeAdapter[AnyProbeFile]:
    """The format of every probe data file (audit.probing.schema: pydantic models picked by `kind`)."""
    return PROBE_FILE


def read_data_file(path: Path, kind: str | None = None) -> dict[str, Any]:
    """Read one probe data file and check its format; SuiteError with one line otherwise. Returns the data."""
    data, _ = _load(path, kind)
    return data


def _load(path: Path, kind: str | None, raw: bytes | None = None) -> tuple[dict[str, Any], AnyProbeFile]:
    data = _read_yaml(path, raw)
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    model, errors = check(data)
    if model is None:
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise SuiteError(f"{path}: schema error at {errors[0]}{more}")
    if kind is not None and data.get("kind") != kind:
        raise SuiteError(f"{path}: is a {data.get('kind')} file, not a {kind}")
    return data, model


#: Largest probe data file read (the bundled ones are a few KB to ~100 KB).
MAX_SUITE_BYTES = 8 * MiB


def _read_bytes(path: Path) -> bytes:
    """A bounded regular file (FIFOs, devices and folders refused)."""
    try:
        return read_bytes(Path(path), MAX_SUITE_BYTES, "file")
    except SuiteError:
        raise
    except InputError as exc:
        raise SuiteError(str(exc)) from None


def _read_yaml(path: Path, raw: bytes | None = None) -> Any:
    """Safe YAML with depth, alias and size limits (an alias bomb or 100,000 levels are one-line errors)."""
    import re

    try:
        return loads_yaml(decode_utf8(_read_bytes(path) if raw is None else raw, path), path)
    except SuiteError:
        raise
    except InputError as exc:
        syntax = re.search(r": not usable YAML \((.*) at line (\d+)\)$", str(exc))
        if syntax:  # the wording suite errors have always had
            raise SuiteError(f"{display_path(path)}: not valid YAML (line {syntax[2]}): {syntax[1]}") from None
        raise SuiteError(str(exc)) from None


def suite_from_model(spec: SuiteFile, source: str, sha256: str) -> Suite:
    """Build a Suite from a validated suite file (probes without detectors get the suite's)."""
    default = tuple(spec.detectors or ())
    probes = tuple(Probe(p.id, p.language, p.conversation(), tuple(p.detectors or default), p.category)
                   for p in spec.probes)
    languages = tuple(sorted({p.language for p in probes}))
    return Suite(spec.suite, spec.description.strip(), probes, source, sha256, spec.version, languages)


def load_suite_file(path: Path, source: str | None = None) -> Suite:
    """Load a suite from a file (bundled or the user's own)."""
    path = Path(path)
    raw = _read_bytes(path)
    _, spec = _load(path, "suite", raw)
    assert isinstance(spec, SuiteFile)  # _load checked the kind
    return suite_from_model(spec, source or str(path), hashlib.sha256(raw).hexdigest())


def bundled_suite_files() -> dict[str, Path]:
    """{suite name: file} for the suites shipped in probes/ (files whose kind is suite)."""
    out: dict[str, Path] = {}
    for path in sorted(probes_dir().iterdir()):
        if path.suffix not in SUITE_SUFFIXES or path.stem == "schema":
            continue
        data = _read_yaml(path)
        if isinstance(data, dict) and data.get("kind") == "suite":
            out[str(data.get("suite") or path.stem)] = path
    return out


def list_suites() -> list[Suite]:
    """Every bundled suite, validated."""
    return [load_suite_file(p, f"bundled:{p.name}") for p in bundled_suite_files().values()]


def resolve_suite(spec: str) -> Suite:
    """A bundled suite by name, or a user's suite file by path."""
    bundled = bundled_suite_files()
    if spec in bundled:
        return load_suite_file(bundled[spec], f"bundled:{bundled[spec].name}")
    path = Path(spec).expanduser()
    if path.is_file() or path.suffix in SUITE_SUFFIXES or "/" in spec:
        return load_suite_file(path)
    raise SuiteError(f"unknown suite {spec!r} (bundled: {', '.join(sorted(bundled))}; or give a YAML file)")


def resolve_suites(specs: list[str] | tuple[str, ...]) -> list[Suite]:
    """Suites for --suite values (all bundled suites when none are given); names must not repeat."""
    suites = [resolve_suite(s) for s in specs] if specs else list_suites()
    names = [s.name for s in suites]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SuiteError(f"suite {dupes[0]!r} given twice")
    return suites


@lru_cache(maxsize=4)
def lexicon_data(path: str | None = None) -> dict[str, Any]:
    """The vendor/model lexicon (probes/lexicon.yaml unless a path is given)."""
    return read_data_file(Path(path) if path else probes_dir() / "lexicon.yaml", kind="lexicon")


@lru_cache(maxsize=4)
def boilerplate_data(path: str | None = None) -> dict[str, Any]:
    """Teacher-style phrases (probes/boilerplate.yaml unless a path is given)."""
    return read_data_file(Path(path) if path else probes_dir() / "boilerplate.yaml", kind="boilerplate")
