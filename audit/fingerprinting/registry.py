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

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from audit.paths import data_dir


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
                except Exception as exc:  # a broken entry is reported and skipped
                    errors.append((str(path), f"{type(exc).__name__}: {exc}"))
    return Registry(entries, errors)


def _architecture_entry(path: Path, origin: str) -> Entry:
    from audit.fingerprinting.arch_schema import validate_architectures

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems = validate_architectures(data)
    if problems:
        raise ValueError("; ".join(problems[:3]))
    models = data["models"]
    return Entry(data["family"], data["family"], "architecture", path,
                 f"{len(models)} published configs", origin, data)


def _tokenizer_entry(path: Path, origin: str) -> Entry:
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != "provaudit.tokenizer/1" or "sketch" not in data:
        raise ValueError(f"schema {data.get('schema')!r}, expected provaudit.tokenizer/1 with a sketch")
    src = data.get("source") or {}
    source = src.get("package") or src.get("model") or str(src)[:60] if isinstance(src, dict) else str(src)
    return Entry(data["name"], data.get("family", data["name"]), "tokenizer", path, str(source), origin, data)


def _weights_entry(path: Path, origin: str) -> Entry:
    from audit.fingerprinting.reference import load_weight_fingerprint

    ref = load_weight_fingerprint(path)
    meta = ref.stored
    return Entry(meta.get("name", path.stem), meta.get("family", "unknown"), "weights", path,
                 str(meta.get("source", "")), origin, {"reference": ref})
