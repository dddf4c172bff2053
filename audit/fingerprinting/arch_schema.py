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
``unverified_fields``. Only light imports here: the registry loads on every audit.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

SCHEMA = "provaudit.architectures/1"

# the keys `architecture.architecture()` extracts from a checkpoint, plus what the registry adds
REQUIRED_INT_FIELDS = (
    "hidden_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
)
REQUIRED_BOOL_FIELDS = ("attention_bias", "mlp_bias", "tied_embeddings", "verified")
REQUIRED_STR_FIELDS = ("name", "model_type", "activation", "norm", "tokenizer_family", "source")
REQUIRED_FIELDS = (
    REQUIRED_INT_FIELDS + REQUIRED_BOOL_FIELDS + REQUIRED_STR_FIELDS + ("rope_theta", "norm_eps")
)

MOE_FIELDS = ("num_experts", "experts_per_token", "moe_intermediate_size")
OPTIONAL_INT_FIELDS = MOE_FIELDS + (
    "head_dim",
    "num_shared_experts",
    "sliding_window",
    "q_lora_rank",
    "kv_lora_rank",
)
OPTIONAL_FIELDS = OPTIONAL_INT_FIELDS + (
    "hf_id",
    "vendor",
    "position_embedding",
    "partial_rotary_factor",
    "unverified_fields",
    "evidence",
    "notes",
)
KNOWN_FIELDS = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)
# fields whose value a checkpoint can contradict; only these may be listed as unverified
NUMERIC_OR_FLAG_FIELDS = frozenset(
    REQUIRED_INT_FIELDS
    + OPTIONAL_INT_FIELDS
    + ("rope_theta", "norm_eps", "partial_rotary_factor")
    + (
        "attention_bias",
        "mlp_bias",
        "tied_embeddings",
        "model_type",
        "activation",
        "norm",
        "position_embedding",
    )
)

NORMS = frozenset({"rmsnorm", "layernorm"})
POSITION_EMBEDDINGS = frozenset({"rope", "alibi", "learned"})
SOURCE_RE = re.compile(
    r"^https://huggingface\.co/[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+/(blob|resolve)/[^/\s]+/config\.json$"
)
FAMILY_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _check_model(model: Any, where: str) -> list[str]:
    if not isinstance(model, dict):
        return [f"{where}: must be a mapping, got {type(model).__name__}"]
    problems: list[str] = []
    for key in model:
        if key not in KNOWN_FIELDS:
            problems.append(f"{where}: unknown field {key!r}")
    for key in REQUIRED_FIELDS:
        if key not in model:
            problems.append(f"{where}: missing field {key!r}")

    for key in REQUIRED_INT_FIELDS + OPTIONAL_INT_FIELDS:
        if key in model and model[key] is not None and not (_is_int(model[key]) and model[key] > 0):
            problems.append(f"{where}: {key} must be a positive integer, got {model[key]!r}")
    for key in REQUIRED_INT_FIELDS:
        if key in model and model[key] is None:
            problems.append(f"{where}: {key} must not be null")
    for key in REQUIRED_BOOL_FIELDS:
        if key in model and not isinstance(model[key], bool):
            problems.append(f"{where}: {key} must be true or false, got {model[key]!r}")
    for key in REQUIRED_STR_FIELDS:
        if key in model and not (isinstance(model[key], str) and model[key].strip()):
            problems.append(f"{where}: {key} must be a non-empty string")

    rope = model.get("rope_theta")
    if "rope_theta" in model and rope is not None and not (_is_number(rope) and rope > 0):
        problems.append(f"{where}: rope_theta must be a positive number or null, got {rope!r}")
    eps = model.get("norm_eps")
    if "norm_eps" in model and not (_is_number(eps) and 0 < eps < 1):
        problems.append(f"{where}: norm_eps must be a number in (0, 1), got {eps!r}")
    if "norm" in model and model["norm"] not in NORMS:
        problems.append(f"{where}: norm must be one of {sorted(NORMS)}, got {model['norm']!r}")
    pos = model.get("position_embedding")
    if pos is not None and pos not in POSITION_EMBEDDINGS:
        problems.append(
            f"{where}: position_embedding must be one of {sorted(POSITION_EMBEDDINGS)}, got {pos!r}"
        )
    if pos == "rope" and "rope_theta" in model and rope is None:
        problems.append(f"{where}: position_embedding is rope but rope_theta is null")
    if pos in ("alibi", "learned") and rope is not None:
        problems.append(f"{where}: position_embedding is {pos} but rope_theta is set")
    prf = model.get("partial_rotary_factor")
    if prf is not None and not (_is_number(prf) and 0 < prf <= 1):
        problems.append(f"{where}: partial_rotary_factor must be in (0, 1], got {prf!r}")

    source = model.get("source")
    if isinstance(source, str) and not SOURCE_RE.match(source):
        problems.append(
            f"{where}: source must be a huggingface.co .../blob/<rev>/config.json URL, got {source!r}"
        )
    hf_id = model.get("hf_id")
    if hf_id is not None and isinstance(source, str) and f"huggingface.co/{hf_id}/" not in source:
        problems.append(f"{where}: hf_id {hf_id!r} does not match source {source!r}")

    # structural invariants
    hidden, heads, kv = model.get("hidden_size"), model.get("num_heads"), model.get("num_kv_heads")
    head_dim = model.get("head_dim")
    if _is_int(heads) and _is_int(kv) and heads > 0 and kv > 0 and heads % kv:
        problems.append(f"{where}: num_kv_heads {kv} does not divide num_heads {heads}")
    if _is_int(hidden) and _is_int(heads) and heads > 0 and head_dim is None and hidden % heads:
        problems.append(
            f"{where}: num_heads {heads} does not divide hidden_size {hidden} and no head_dim is given"
        )
    vocab = model.get("vocab_size")
    if _is_int(vocab) and vocab <= 1000:
        problems.append(f"{where}: vocab_size {vocab} is implausibly small")

    present = [k for k in MOE_FIELDS if model.get(k) is not None]
    if present and len(present) != len(MOE_FIELDS):
        missing = sorted(set(MOE_FIELDS) - set(present))
        problems.append(f"{where}: MoE entry is missing {', '.join(missing)}")
    n_exp, k_exp = model.get("num_experts"), model.get("experts_per_token")
    if _is_int(n_exp) and _is_int(k_exp) and k_exp > n_exp:
        problems.append(f"{where}: experts_per_token {k_exp} exceeds num_experts {n_exp}")

    # provenance of the numbers
    unverified = model.get("unverified_fields")
    if unverified is not None:
        if not (isinstance(unverified, list) and all(isinstance(f, str) for f in unverified)):
            problems.append(f"{where}: unverified_fields must be a list of field names")
            unverified = None
        else:
            for field in unverified:
                if field not in NUMERIC_OR_FLAG_FIELDS:
                    problems.append(f"{where}: unverified_fields names {field!r}, not a checkable field")
    if model.get("verified") is True and unverified:
        problems.append(f"{where}: verified is true but unverified_fields is not empty")
    if model.get("verified") is False and not unverified:
        problems.append(f"{where}: verified is false but unverified_fields does not say which fields")
    evidence = model.get("evidence")
    if evidence is not None and not (
        isinstance(evidence, list) and all(isinstance(e, str) and e for e in evidence)
    ):
        problems.append(f"{where}: evidence must be a list of non-empty strings")
    for key in ("notes", "hf_id", "vendor"):
        if model.get(key) is not None and not isinstance(model[key], str):
            problems.append(f"{where}: {key} must be a string")
    return problems


def validate_architectures(data: dict) -> list[str]:
    """Return the problems found in one family file (empty when it is valid)."""
    if not isinstance(data, dict):
        return [f"top level must be a mapping, got {type(data).__name__}"]
    problems: list[str] = []
    for key in data:
        if key not in ("schema", "family", "vendor", "models", "notes"):
            problems.append(f"unknown top-level field {key!r}")
    if data.get("schema") != SCHEMA:
        problems.append(f"schema must be {SCHEMA!r}, got {data.get('schema')!r}")
    family = data.get("family")
    if not (isinstance(family, str) and FAMILY_RE.match(family)):
        problems.append(f"family must be a lower-case identifier, got {family!r}")
    if not (isinstance(data.get("vendor"), str) and data["vendor"].strip()):
        problems.append("vendor must be a non-empty string")
    models = data.get("models")
    if not (isinstance(models, list) and models):
        problems.append("models must be a non-empty list")
        return problems
    seen: set[str] = set()
    for i, model in enumerate(models):
        name = model.get("name") if isinstance(model, dict) else None
        where = f"models[{i}]" + (f" ({name})" if isinstance(name, str) else "")
        problems.extend(_check_model(model, where))
        if isinstance(name, str):
            if name in seen:
                problems.append(f"{where}: duplicate model name")
            seen.add(name)
    return problems


def default_architectures_folder() -> Path:
    """The bundled signatures: ``audit/_bundled/fingerprints/architectures`` installed, else the checkout's."""
    package_root = Path(__file__).resolve().parent.parent
    bundled = package_root / "_bundled" / "fingerprints" / "architectures"
    if bundled.is_dir():
        return bundled
    return package_root.parent / "fingerprints" / "architectures"


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
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            if errors is not None:
                errors.append(f"{path.name}: unreadable ({exc.__class__.__name__}: {exc})")
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
