"""The reference lineage registry: known families' architectures, tokenizers and weight fingerprints.

Bundled entries live in `fingerprints/` (shipped in the wheel); users add their own to a user registry
(default `~/.local/share/provaudit/registry`, or `$PROVAUDIT_REGISTRY`, or `--registry DIR`) with the same
layout:
  architectures/<family>.yaml   published sizes of a family (provaudit.architectures/1)
  tokenizers/<name>.json        compact tokenizer fingerprint (provaudit.tokenizer/1)
  weights/<name>.safetensors    compact weight fingerprint (provaudit.weights/1)
A corrupt entry is reported by name and skipped; it never stops an audit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import InputError
from audit.paths import data_dir
from audit.safeio import MiB, display_path, load_json_object, load_yaml, loads_json, regular_file


@dataclass
class Entry:
    name: str
    family: str
    kind: str  # architecture | tokenizer | weights
    path: Path
    source: str
    origin: str  # bundled | user
    data: dict[str, Any] = field(default_factory=dict)  # architecture models or tokenizer fingerprint


@dataclass
class Registry:
    entries: list[Entry]
    errors: list[tuple[str, str]]  # (entry path, problem)

    def of_kind(self, kind: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == kind]

    def find(self, name: str) -> list[Entry]:
        return [e for e in self.entries if e.name == name or e.family == name]


def user_registry_dir() -> Path:
    env = os.environ.get("PROVAUDIT_REGISTRY")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "provaudit" / "registry"


def load_registry(extra: list[Path] | None = None, bundled: bool = True, user: bool = True) -> Registry:
    """Load every entry; collect problems per entry instead of failing."""
    roots: list[tuple[Path, str]] = []
    if bundled:
        roots.append((data_dir("fingerprints"), "bundled"))
    if user and user_registry_dir().is_dir():
        roots.append((user_registry_dir(), "user"))
    roots += [(Path(p), "user") for p in extra or []]
    entries: list[Entry] = []
    errors: list[tuple[str, str]] = []
    loaders = (("architectures", "*.yaml", _architecture_entry), ("tokenizers", "*.json", _tokenizer_entry),
               ("weights", "*.safetensors", _weights_entry))
    for root, origin in roots:
        for sub, pattern, loader in loaders:
            for path in sorted((root / sub).glob(pattern)):
                try:
                    entries.append(loader(path, origin))
                except Exception as exc:  # noqa: BLE001 - a broken entry is reported and skipped
                    errors.append((display_path(path), f"{type(exc).__name__}: {str(exc)[:300]}"))
    return Registry(entries, errors)


#: Caps on registry entries, checked before anything is parsed (the bundled ones: a few KB, ~90 KB, ~6 MB).
MAX_ARCH_BYTES = 4 * MiB
MAX_TOKENIZER_FP_BYTES = 32 * MiB
MAX_WEIGHTS_FP_BYTES = 256 * MiB
MAX_STORED_UNITS = 4096  # units a weight fingerprint may hold (128 are stored); Grams are units x units


def _architecture_entry(path: Path, origin: str) -> Entry:
    from audit.fingerprinting.arch_schema import validate_architectures

    data = load_yaml(path, MAX_ARCH_BYTES, "architecture entry")
    problems = validate_architectures(data)
    if problems:
        raise ValueError("; ".join(problems[:3]))
    models = data["models"]
    return Entry(data["family"], data["family"], "architecture", path,
                 f"{len(models)} published configs", origin, data)


def _tokenizer_entry(path: Path, origin: str) -> Entry:
    from audit.fingerprinting.tokenizer_sketch import validate_fingerprint

    data = load_json_object(path, MAX_TOKENIZER_FP_BYTES, "tokenizer entry")
    if data.get("schema") != "provaudit.tokenizer/1" or "sketch" not in data:
        raise ValueError(f"schema {str(data.get('schema'))[:60]!r}, expected provaudit.tokenizer/1 with a sketch")
    problems = validate_fingerprint(data)
    if problems:
        raise ValueError("; ".join(problems[:3]))
    src = data.get("source") or {}
    source = src.get("package") or src.get("model") or str(src)[:60] if isinstance(src, dict) else str(src)
    return Entry(data["name"], data.get("family", data["name"]), "tokenizer", path, str(source)[:200], origin, data)


def _weights_entry(path: Path, origin: str) -> Entry:
    from audit.fingerprinting.reference import load_weight_fingerprint

    check_weights_entry(path)
    ref = load_weight_fingerprint(path)
    meta = ref.stored
    name, family = meta.get("name", path.stem), meta.get("family", "unknown")
    if not isinstance(name, str) or not isinstance(family, str):
        raise ValueError("name and family must be strings")
    return Entry(name, family, "weights", path, str(meta.get("source", ""))[:200], origin, {"reference": ref})


def check_weights_entry(path: Path) -> None:
    """Refuse a stored weight fingerprint that is not a regular file, is too large, or holds more units than
    any fingerprint stores (its Grams would be units x units floats), before its arrays are loaded."""
    from safetensors import safe_open

    st = regular_file(path, "weight fingerprint")
    if st.st_size > MAX_WEIGHTS_FP_BYTES:
        raise InputError(f"{display_path(path)}: {st.st_size:,} bytes, more than a weight fingerprint may have")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            shape = fh.get_slice("units").get_shape() if "units" in fh.keys() else []
            meta = (fh.metadata() or {}).get("provaudit", "")
    except Exception as exc:  # noqa: BLE001 - a corrupt header, whatever the library raises
        raise InputError(f"{display_path(path)}: unreadable weight fingerprint ({type(exc).__name__})") from None
    if len(shape) != 1 or not 0 < shape[0] <= MAX_STORED_UNITS:
        raise InputError(f"{display_path(path)}: units of shape {list(shape)[:4]}, expected at most "
                         f"{MAX_STORED_UNITS} unit ids")
    loads_json(meta or "{}", path)  # the metadata: bounded depth and numbers
