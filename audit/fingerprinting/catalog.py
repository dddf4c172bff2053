"""The base-model catalog (``fingerprints/catalog.yaml``): the open models a derivative most likely comes from.

The file groups models by family; each family gives defaults (vendor, released, license, architecture,
tokenizer) that a model may override. `load_catalog` validates it (strict types, unique hub ids and registry
names, known licence ids and kinds, sane dates and sizes, bases that exist and are not younger than the models
built on them) and returns flat `CatalogEntry` rows. A bad file is one `InputError` line naming the entry.

`coverage` tells, for each entry, what the registry holds for it: a weight fingerprint (`weights`), only a
fingerprint of its tokenizer (`tokenizer`), or nothing (`none`). A registry weight fingerprint belongs to an
entry when its stored `hub_id` is the entry's, or (fingerprints built before hub ids were stored) when its
name is the entry's registry name. `build_entry` fingerprints one entry from the Hub (`hf:<hub_id>`).
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from audit.datafiles import FileModel, Text, error_lines, loc_text
from audit.errors import InputError
from audit.paths import data_dir

if TYPE_CHECKING:
    from audit.checkpoint.progress import Progress
    from audit.fingerprinting.registry import Entry, Registry

SCHEMA = "provaudit.catalog/1"
MAX_BYTES = 2 << 20  # the catalog is a few dozen KB; refuse anything absurd before parsing it
MAX_ENTRIES = 5000

# Licence ids: short and stable (a later release turns them into licence data). Meaning of each id.
LICENCES: dict[str, str] = {
    "apache-2.0": "Apache License 2.0",
    "mit": "MIT License",
    "llama1": "LLaMA 1 non-commercial research licence (weights by request from Meta)",
    "llama2": "Llama 2 Community License Agreement",
    "llama3": "Meta Llama 3 Community License Agreement",
    "llama3.1": "Llama 3.1 Community License Agreement",
    "llama3.2": "Llama 3.2 Community License Agreement",
    "llama3.3": "Llama 3.3 Community License Agreement",
    "llama4": "Llama 4 Community License Agreement",
    "gemma": "Gemma Terms of Use",
    "qwen": "Tongyi Qianwen License Agreement",
    "qwen-research": "Tongyi Qianwen Research License Agreement (non-commercial)",
    "deepseek": "DeepSeek License Agreement (model licence)",
    "yi": "Yi Series Models Community License Agreement",
    "mistral-research": "Mistral AI Research License (non-commercial)",
    "mnpl": "Mistral AI Non-Production License",
    "falcon": "TII Falcon License (Falcon 2 / Falcon 3)",
    "falcon-180b": "Falcon-180B TII License",
    "chatglm": "ChatGLM-6B Model License",
    "glm-4": "GLM-4 Model License",
    "baichuan": "Baichuan Community License Agreement",
    "minicpm": "MiniCPM Model License",
    "opt": "OPT-175B License Agreement (non-commercial)",
    "openrail": "BigScience OpenRAIL",
    "bigscience-openrail-m": "BigScience OpenRAIL-M",
    "bigscience-bloom-rail-1.0": "BigScience BLOOM RAIL 1.0",
    "cc-by-nc-4.0": "Creative Commons Attribution-NonCommercial 4.0",
    "other": "another licence: see the model card",
}
Kind = Literal["base", "instruct", "chat", "code", "code-instruct", "math", "reasoning", "embedding"]
Status = Literal["weights", "tokenizer", "none"]

_HUB_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$"  # what `refs add --name` accepts
_DATE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")
FIRST_RELEASE = _dt.date(2018, 1, 1)


def _date_text(value: Any) -> Any:
    """YAML reads 2024-06-07 as a date and 2024-06 as a string: accept both, keep text."""
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    return value


def _check_date(value: str) -> str:
    m = _DATE.match(value)
    if not m:
        raise ValueError(f"release date must be YYYY-MM or YYYY-MM-DD, got {value!r}")
    try:
        day = _dt.date(int(m[1]), int(m[2]), int(m[3] or 1))
    except ValueError:
        raise ValueError(f"no such date {value!r}") from None
    if not FIRST_RELEASE <= day <= _dt.date.today():
        raise ValueError(f"release date {value!r} is before 2018 or in the future")
    return value


def _number(value: Any) -> Any:
    """Parameter counts are written 7.24e9; PyYAML reads that as a string (YAML 1.1 wants 7.24e+9)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"must be a number such as 7.24e9, got {value!r}") from None
    if isinstance(value, int):
        return float(value)
    return value


def _licence(value: str) -> str:
    if value not in LICENCES:
        raise ValueError(f"unknown licence id {value!r} (known: {', '.join(sorted(LICENCES))})")
    return value


HubId = Annotated[str, StringConstraints(pattern=_HUB_ID)]
ReleaseDate = Annotated[str, BeforeValidator(_date_text), StringConstraints(pattern=r"^\d{4}-\d{2}(-\d{2})?$")]
Params = Annotated[float, BeforeValidator(_number), Field(ge=1e6, le=5e12, allow_inf_nan=False)]
LicenceId = Annotated[str, BeforeValidator(lambda v: v if not isinstance(v, str) else _licence(v))]
ModelType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
TokenizerName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._\-]*$")]
FamilyName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._\-]*$")]


class _ModelSpec(FileModel):
    hub_id: HubId
    kind: Kind
    params: Params
    name: Annotated[str, StringConstraints(pattern=_NAME)] | None = None
    vendor: Text | None = None
    released: ReleaseDate | None = None
    license: LicenceId | None = None
    architecture: ModelType | None = None
    tokenizer: TokenizerName | None = None
    base: HubId | None = None
    notes: str | None = None


class _FamilySpec(FileModel):
    vendor: Text
    registry_family: FamilyName | None = None
    released: ReleaseDate | None = None
    license: LicenceId | None = None
    architecture: ModelType | None = None
    tokenizer: TokenizerName | None = None
    notes: str | None = None
    models: Annotated[list[_ModelSpec], Field(min_length=1, max_length=MAX_ENTRIES)]


class _CatalogFile(FileModel):
    schema_: Literal["provaudit.catalog/1"] = Field(alias="schema")
    families: Annotated[dict[FamilyName, _FamilySpec], Field(min_length=1)]


class CatalogEntry(BaseModel):
    """One model of the catalog, family defaults applied."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hub_id: str
    name: str  # registry name of its weight fingerprint
    family: str
    registry_family: str  # the registry's (coarser) family name: fingerprints/architectures/<name>.yaml
    vendor: str
    released: str
    params: float
    license: str
    kind: Kind
    architecture: str
    base: str | None = None
    tokenizer: str | None = None
    notes: str | None = None


def entry_name(hub_id: str) -> str:
    """Default registry name of a hub id's weight fingerprint: the repo name in lower case."""
    return hub_id.split("/", 1)[1].lower()


@dataclass(frozen=True)
class Catalog:
    entries: tuple[CatalogEntry, ...]
    path: Path

    def families(self) -> dict[str, list[CatalogEntry]]:
        """Entries per family, in file order."""
        out: dict[str, list[CatalogEntry]] = {}
        for e in self.entries:
            out.setdefault(e.family, []).append(e)
        return out

    def get(self, hub_id: str) -> CatalogEntry | None:
        key = hub_id.lower()
        return next((e for e in self.entries if e.hub_id.lower() == key), None)

    def select(self, pattern: str | None) -> list[CatalogEntry]:
        """Entries whose hub id, registry name or family matches PATTERN (a glob when it has * ? [, else a
        case-insensitive substring)."""
        if not pattern:
            return list(self.entries)
        pat = pattern.lower()
        glob = any(c in pat for c in "*?[")

        def hit(text: str) -> bool:
            return fnmatch.fnmatchcase(text.lower(), pat) if glob else pat in text.lower()

        return [e for e in self.entries if hit(e.hub_id) or hit(e.name) or hit(e.family)]


def default_catalog_path() -> Path:
    return data_dir("fingerprints") / "catalog.yaml"


_CACHE: dict[tuple[str, int, int], Catalog] = {}


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate the catalog; InputError (one line) for anything wrong with it.

    A catalog read once is kept (keyed by path, size and modification time): audits in one process share it.
    """
    from audit.safeio import load_checked_yaml

    path = Path(path) if path is not None else default_catalog_path()
    return load_checked_yaml(path, "catalog", MAX_BYTES, validate_catalog,
                             lambda entries: Catalog(tuple(entries), path), _CACHE)


def validate_catalog(data: Any) -> tuple[list[str], list[CatalogEntry]]:
    """(problems as 'where: what' lines, entries); entries are only meaningful without problems."""
    if not isinstance(data, dict):
        return [f"top level must be a mapping, got {type(data).__name__}"], []
    families = data.get("families")
    try:
        spec = _CatalogFile.model_validate(data)
    except ValidationError as exc:

        def where(loc: Sequence[int | str]) -> str:
            """'families.llama-2.models[3] (meta-llama/Llama-2-7b-hf).params': entries named by hub id."""
            if len(loc) >= 4 and loc[0] == "families" and loc[2] == "models" and isinstance(loc[3], int):
                fam = families.get(loc[1]) if isinstance(families, dict) else None
                models = fam.get("models") if isinstance(fam, dict) else None
                item = models[loc[3]] if isinstance(models, list) and loc[3] < len(models) else None
                hub = item.get("hub_id") if isinstance(item, dict) else None
                head = f"families.{loc[1]}.models[{loc[3]}]" + (f" ({hub})" if isinstance(hub, str) else "")
                return head + (f".{loc_text(loc[4:])}" if len(loc) > 4 else "")
            return loc_text(loc)

        return error_lines(exc, _CatalogFile, where=where), []
    return _flatten(spec)


def _flatten(spec: _CatalogFile) -> tuple[list[str], list[CatalogEntry]]:
    problems: list[str] = []
    entries: list[CatalogEntry] = []
    for fam_name, fam in spec.families.items():
        for i, m in enumerate(fam.models):
            where = f"families.{fam_name}.models[{i}] ({m.hub_id})"
            released = m.released or fam.released
            licence = m.license or fam.license
            arch = m.architecture or fam.architecture
            tokenizer = m.tokenizer if "tokenizer" in m.model_fields_set else fam.tokenizer
            missing = [k for k, v in (("released", released), ("license", licence), ("architecture", arch)) if v is None]
            if missing:
                problems.append(f"{where}: no {', '.join(missing)} (neither the model nor its family gives one)")
                continue
            assert released is not None and licence is not None and arch is not None
            try:
                _check_date(released)
            except ValueError as exc:
                problems.append(f"{where}.released: {exc}")
                continue
            entries.append(CatalogEntry(
                hub_id=m.hub_id, name=m.name or entry_name(m.hub_id), family=fam_name,
                registry_family=fam.registry_family or fam_name, vendor=m.vendor or fam.vendor,
                released=released, params=m.params, license=licence, kind=m.kind, architecture=arch,
                base=m.base, tokenizer=tokenizer, notes=m.notes))
    if len(entries) > MAX_ENTRIES:
        problems.append(f"more than {MAX_ENTRIES} entries")
    problems += _cross_checks(entries)
    return problems, entries


def _cross_checks(entries: list[CatalogEntry]) -> list[str]:
    problems: list[str] = []
    by_id: dict[str, CatalogEntry] = {}
    names: dict[str, str] = {}
    for e in entries:
        key = e.hub_id.lower()  # the Hub treats repo ids case-insensitively
        if key in by_id:
            problems.append(f"{e.hub_id}: duplicate hub id (also in family {by_id[key].family})")
        by_id.setdefault(key, e)
        if e.name in names and names[e.name] != e.hub_id:
            problems.append(f"{e.hub_id}: registry name {e.name!r} is also {names[e.name]}'s (give one a `name`)")
        names.setdefault(e.name, e.hub_id)
    for e in entries:
        if e.base is None:
            continue
        parent = by_id.get(e.base.lower())
        if parent is None:
            problems.append(f"{e.hub_id}: base {e.base} is not in the catalog")
        elif parent.hub_id == e.hub_id:
            problems.append(f"{e.hub_id}: base is the model itself")
        elif parent.released[:7] > e.released[:7]:
            problems.append(f"{e.hub_id}: released {e.released}, before its base {e.base} ({parent.released})")
    return problems


# ---------------------------------------------------------------- what the registry holds for each entry


@dataclass(frozen=True)
class EntryCoverage:
    entry: CatalogEntry
    status: Status
    weights: tuple[str, ...]  # registry names of the weight fingerprints that belong to it


def weight_owner(stored: dict[str, Any], name: str, catalog: Catalog) -> CatalogEntry | None:
    """The catalog entry a stored weight fingerprint belongs to (by stored hub_id, else by registry name)."""
    hub = stored.get("hub_id")
    if isinstance(hub, str):
        return catalog.get(hub)
    return next((e for e in catalog.entries if e.name == name), None)


def weight_owners(catalog: Catalog, weight_entries: Iterable[Entry]) -> dict[str, list[str]]:
    """hub id -> registry names of the weight fingerprints that belong to it."""
    out: dict[str, list[str]] = {}
    for w in weight_entries:
        owner = weight_owner(w.data["reference"].stored, w.name, catalog)
        if owner is not None:
            out.setdefault(owner.hub_id, []).append(w.name)
    return out


def coverage(catalog: Catalog, registry: Registry) -> list[EntryCoverage]:
    """Per entry, in catalog order: a weight fingerprint, only its tokenizer's, or nothing."""
    owners = weight_owners(catalog, registry.of_kind("weights"))
    tokenizers = {e.name for e in registry.of_kind("tokenizer")}
    out = []
    for e in catalog.entries:
        names = tuple(owners.get(e.hub_id, ()))
        status: Status = "weights" if names else ("tokenizer" if e.tokenizer in tokenizers else "none")
        out.append(EntryCoverage(e, status, names))
    return out


# ---------------------------------------------------------------- building a fingerprint from the Hub


def fingerprint_meta(entry: CatalogEntry, source: str) -> dict[str, Any]:
    """What a catalog fingerprint stores about where it came from (ties it to its catalog entry)."""
    return {"name": entry.name, "family": entry.registry_family, "source": source, "hub_id": entry.hub_id,
            "catalog": {"family": entry.family, "vendor": entry.vendor, "released": entry.released,
                        "params": entry.params,
                        "license": entry.license, "kind": entry.kind, "base": entry.base}}


def build_entry(entry: CatalogEntry, root: Path, *, model: str | None = None, source: str | None = None,
                progress: Progress | None = None) -> Path:
    """Fingerprint `entry` (from `hf:<hub_id>` unless `model` names a copy of it) into `root`/weights/.

    `source`: where the weights came from, as stored in the fingerprint (default: the model spec).

    The fingerprint is written atomically (`build_weight_fingerprint` writes a .partial file and renames it);
    a partial file left by a failure is removed. Raises InputError for a model that cannot be fingerprinted.
    """
    from audit.checkpoint.locate import open_checkpoint
    from audit.fingerprinting.reference import build_weight_fingerprint
    from audit.fingerprinting.view import ModelView

    spec = model or f"hf:{entry.hub_id}"
    path = Path(root) / "weights" / f"{entry.name}.safetensors"
    partial = path.with_name(path.name + ".partial")
    try:
        view = ModelView(open_checkpoint(spec, name=entry.name))
        if not view.roles.layers() or not view.hidden or not view.embed_name():
            raise InputError(f"{spec}: no transformer blocks or embeddings found; nothing to fingerprint")
        tick: Callable[[], None] | None = None
        if progress is not None:
            progress.start(entry.hub_id, sum(len(view.row_weights(layer)) for layer in view.roles.layers()))
            tick = progress.tick
        return build_weight_fingerprint(view, path, fingerprint_meta(entry, source or spec), tick=tick)
    finally:
        if partial.exists():
            partial.unlink()
