"""Load and validate probe data files (suites, the vendor lexicon, boilerplate phrases) from probes/."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from audit.errors import InputError
from audit.paths import data_dir

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


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return _read_yaml(probes_dir() / "schema.yaml")


def read_data_file(path: Path, kind: str | None = None) -> dict[str, Any]:
    """Read one probe data file and check it against the schema; SuiteError with one line otherwise."""
    from audit.probing.schema import validate

    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    errors = validate(data, schema())
    if errors:
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise SuiteError(f"{path}: schema error at {errors[0]}{more}")
    if kind is not None and data.get("kind") != kind:
        raise SuiteError(f"{path}: is a {data.get('kind')} file, not a {kind}")
    return data


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SuiteError(f"{path}: not valid YAML{where}: {problem}") from None


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def suite_from_data(data: dict[str, Any], source: str, sha256: str) -> Suite:
    """Build a Suite from validated data; checks what the schema cannot (unique ids, prompt xor messages)."""
    default = tuple(data.get("detectors") or ())
    probes, seen = [], set()
    for i, raw in enumerate(data["probes"]):
        where = f"{source}: probes[{i}] ({raw['id']})"
        if raw["id"] in seen:
            raise SuiteError(f"{where}: duplicate probe id")
        seen.add(raw["id"])
        if ("prompt" in raw) == ("messages" in raw):
            raise SuiteError(f"{where}: give exactly one of 'prompt' or 'messages'")
        if "messages" in raw:
            if "system" in raw:
                raise SuiteError(f"{where}: 'system' goes with 'prompt'; put a system message in 'messages'")
            msgs = tuple((m["role"], m["content"]) for m in raw["messages"])
        else:
            msgs = ((("system", raw["system"]),) if "system" in raw else ()) + (("user", raw["prompt"]),)
        if msgs[-1][0] != "user":
            raise SuiteError(f"{where}: the last message must be from the user")
        detectors = tuple(raw.get("detectors") or default)
        if not detectors:
            raise SuiteError(f"{where}: no detectors (set 'detectors' on the probe or the suite)")
        probes.append(Probe(raw["id"], raw["language"], msgs, detectors, raw.get("category")))
    languages = tuple(sorted({p.language for p in probes}))
    return Suite(data["suite"], data["description"].strip(), tuple(probes), source, sha256,
                 int(data.get("version", 1)), languages)


def load_suite_file(path: Path, source: str | None = None) -> Suite:
    """Load a suite from a file (bundled or the user's own)."""
    path = Path(path)
    data = read_data_file(path, kind="suite")
    return suite_from_data(data, source or str(path), _sha256(path))


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
