"""Schema and loader for the architecture signatures in ``fingerprints/architectures/*.yaml``.

Each file describes one model family::

    schema: provaudit.architectures/1
    family: qwen
    vendor: Alibaba Cloud (Qwen team)
    models:
      - name: Qwen2.5-7B
        hidden_size: 3584
        ...
        source: https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json
        verified: true

The numbers are copied from the public ``config.json`` named in ``source``. ``verified: true``
means every number in the entry was checked against a public copy of that config (or of the
weights); ``verified: false`` entries list the fields that could not be checked in
``unverified_fields``. The format is the pydantic models below (strict: PyYAML's ``1e-5``, a string,
is not a number; ``true`` is not an integer); the files' data flows on as the plain mappings read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from audit.datafiles import FileModel, Text, error_lines, named_items
from audit.errors import InputError
from audit.paths import data_dir
from audit.safeio import MiB, load_yaml

#: Largest architecture family file read (the bundled ones are a few KB).
MAX_FAMILY_BYTES = 4 * MiB

SCHEMA = "provaudit.architectures/1"

MOE_FIELDS = ("num_experts", "experts_per_token", "moe_intermediate_size")
# fields whose value a checkpoint can contradict; only these may be listed as unverified
CHECKABLE_FIELDS = frozenset({
    "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size",
    "max_position_embeddings", *MOE_FIELDS, "head_dim", "num_shared_experts", "sliding_window", "q_lora_rank",
    "kv_lora_rank", "rope_theta", "norm_eps", "partial_rotary_factor", "attention_bias", "mlp_bias",
    "tied_embeddings", "model_type", "activation", "norm", "position_embedding",
})
SOURCE_RE = re.compile(
    r"^https://huggingface\.co/[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+/(blob|resolve)/[^/\s]+/config\.json$"
)


def _config_url(value: str) -> str:
    if not SOURCE_RE.match(value):
        raise ValueError(f"must be a huggingface.co .../blob/<rev>/config.json URL, got {value!r}")
    return value


def _checkable(value: str) -> str:
    if value not in CHECKABLE_FIELDS:
        raise ValueError(f"{value!r} is not a checkable field")
    return value


Count = Annotated[int, Field(gt=0, le=1 << 40)]  # bounded: a 10^400 size is an error, not a float overflow later
Positive = Annotated[float, Field(gt=0, le=1e15, allow_inf_nan=False)]


class ArchitectureEntry(FileModel):
    """One published model's config: the keys `architecture.architecture()` extracts, plus provenance."""

    name: Text
    hf_id: str | None = None
    vendor: str | None = None
    model_type: Text
    hidden_size: Count
    num_layers: Count
    num_heads: Count
    num_kv_heads: Count
    head_dim: Count | None = None
    intermediate_size: Count
    vocab_size: Annotated[int, Field(gt=1000)]  # smaller is implausible for a language model
    max_position_embeddings: Count
    position_embedding: Literal["rope", "alibi", "learned"] | None = None
    rope_theta: Positive | None  # required; null when positions are not rotary
    partial_rotary_factor: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    sliding_window: Count | None = None
    norm: Literal["rmsnorm", "layernorm"]
    norm_eps: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
    attention_bias: bool
    mlp_bias: bool
    tied_embeddings: bool
    activation: Text
    tokenizer_family: Text
    num_experts: Count | None = None
    experts_per_token: Count | None = None
    moe_intermediate_size: Count | None = None
    num_shared_experts: Count | None = None
    q_lora_rank: Count | None = None
    kv_lora_rank: Count | None = None
    source: Annotated[str, AfterValidator(_config_url)]
    verified: bool
    unverified_fields: list[Annotated[str, AfterValidator(_checkable)]] | None = None
    evidence: list[Annotated[str, Field(min_length=1)]] | None = None
    notes: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ArchitectureEntry:
        """Invariants between fields; every one broken is reported, in one message."""
        problems = []
        pos, rope = self.position_embedding, self.rope_theta
        if pos == "rope" and rope is None:
            problems.append("position_embedding is rope but rope_theta is null")
        if pos in ("alibi", "learned") and rope is not None:
            problems.append(f"position_embedding is {pos} but rope_theta is set")
        if self.hf_id is not None and f"huggingface.co/{self.hf_id}/" not in self.source:
            problems.append(f"hf_id {self.hf_id!r} does not match source {self.source!r}")
        if self.num_heads % self.num_kv_heads:
            problems.append(f"num_kv_heads {self.num_kv_heads} does not divide num_heads {self.num_heads}")
        if self.head_dim is None and self.hidden_size % self.num_heads:
            problems.append(f"num_heads {self.num_heads} does not divide hidden_size {self.hidden_size} "
                            "and no head_dim is given")
        missing = [k for k in MOE_FIELDS if getattr(self, k) is None]
        if missing and len(missing) != len(MOE_FIELDS):
            problems.append(f"MoE entry is missing {', '.join(sorted(missing))}")
        if self.num_experts is not None and self.experts_per_token is not None \
                and self.experts_per_token > self.num_experts:
            problems.append(f"experts_per_token {self.experts_per_token} exceeds num_experts "
                            f"{self.num_experts}")
        if self.verified and self.unverified_fields:
            problems.append("verified is true but unverified_fields is not empty")
        if not self.verified and not self.unverified_fields:
            problems.append("verified is false but unverified_fields does not say which fields")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ArchitectureFamily(FileModel):
    """One family file."""

    schema_: Literal["provaudit.architectures/1"] = Field(alias="schema")
    family: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]*$")]
    vendor: Text
    models: Annotated[list[ArchitectureEntry], Field(min_length=1)]
    notes: str | None = None

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ArchitectureEntry]) -> list[ArchitectureEntry]:
        seen: set[str] = set()
        for i, model in enumerate(models):
            if model.name in seen:
                raise ValueError(f"duplicate model name {model.name!r} (models[{i}])")
            seen.add(model.name)
        return models


def validate_architectures(data: Any) -> list[str]:
    """Return the problems found in one family file (empty when it is valid), as 'where: what' strings."""
    if not isinstance(data, dict):
        return [f"top level must be a mapping, got {type(data).__name__}"]
    try:
        ArchitectureFamily.model_validate(data)
    except ValidationError as exc:  # 'models[3] (Qwen2-7B).num_heads': list items named by their `name`
        return error_lines(exc, ArchitectureFamily, where=named_items(data, "models", "name"))
    return []


def default_architectures_folder() -> Path:
    """The bundled signatures: ``audit/_bundled/fingerprints/architectures`` installed, else the checkout's."""
    return data_dir("fingerprints") / "architectures"


def load_architecture_families(folder: Path, *, errors: list[str] | None = None) -> list[dict]:
    """Load and validate every ``*.yaml`` family file in ``folder``, sorted by file name.

    A file that cannot be read or does not validate is skipped, never fatal: its problems are
    appended to ``errors`` (when given) prefixed with the file name. A file whose ``family`` does
    not match its stem is also reported and skipped.
    """
    families: list[dict] = []
    folder = Path(folder)
    if not folder.is_dir():
        if errors is not None:
            errors.append(f"{folder}: not a folder")
        return families
    for path in sorted(folder.glob("*.yaml")):
        try:
            data = load_yaml(path, MAX_FAMILY_BYTES, "architecture file")
        except InputError as exc:
            if errors is not None:
                errors.append(f"{path.name}: unreadable ({exc})")
            continue
        problems = validate_architectures(data)
        if not problems and data.get("family") != path.stem:
            problems = [f"family {data.get('family')!r} does not match the file name"]
        if problems:
            if errors is not None:
                errors.extend(f"{path.name}: {p}" for p in problems)
            continue
        families.append(data)
    return families


def iter_signatures(families: list[dict]) -> list[dict[str, Any]]:
    """Flatten families into one list of model entries, each with ``family`` and ``vendor`` filled in."""
    out: list[dict[str, Any]] = []
    for fam in families:
        for model in fam.get("models", []):
            entry = dict(model)
            entry.setdefault("vendor", fam.get("vendor"))
            entry["family"] = fam.get("family")
            out.append(entry)
    return out
