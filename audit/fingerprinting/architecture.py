"""Architecture fingerprint: normalised config, tensor roles and shapes, parameter count."""

from __future__ import annotations

import math
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from audit.checkpoint.model import Checkpoint
from audit.errors import InputError
from audit.fingerprinting.roles import RoleMap
from audit.record.models import MAX_LAYERS
from audit.safeio import display_path

_ALIASES = {
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "num_kv_heads": ("num_key_value_heads", "multi_query_group_num", "n_kv_heads", "num_kv_heads"),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_hidden_size", "ffn_dim"),
    "rope_theta": ("rope_theta",),
    "norm_eps": ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_eps"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions", "seq_length"),
}

#: The typed model of the config fields provaudit uses: (lowest, highest) of each. The first alias present decides.
#: A value outside its range (negative, zero, 10^12 layers, 10^400) is an InputError naming the file and the field;
#: a value of another type (a string, a per-layer list as OpenELM writes, an object, a boolean) is ignored, as if
#: absent: these fields are descriptive and the tensors' shapes stand in for them.
MAX_DIM = 1 << 20
CONFIG_RANGES: dict[str, tuple[float, float]] = {
    "hidden_size": (1, MAX_DIM), "num_heads": (1, 1 << 16), "num_kv_heads": (1, 1 << 16),
    "intermediate_size": (1, MAX_DIM), "rope_theta": (1e-12, 1e15), "norm_eps": (0.0, 1.0),
    "max_position_embeddings": (1, 1 << 40), "vocab_size": (1, 1 << 22), "num_hidden_layers": (1, MAX_LAYERS),
}
_INTEGER_FIELDS = frozenset(CONFIG_RANGES) - {"rope_theta", "norm_eps"}
_EXTRA_ALIASES = {"vocab_size": ("vocab_size",),
                  "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers")}


def config_where(ckpt: Checkpoint) -> str:
    """The file a checkpoint's config came from, for error lines."""
    path = Path(ckpt.path)
    if ckpt.config.get("_source") == "gguf-metadata":
        return f"{display_path(path)} (GGUF metadata)"
    if path.is_dir():
        return display_path(path / "config.json")
    sibling = path.parent / "config.json"
    return display_path(sibling) if sibling.is_file() else f"{display_path(path)} (config)"


def config_value(cfg: dict[str, Any], key: str, where: str) -> int | float | None:
    """The typed value of one config field (under any of its aliases): None when absent or of another type;
    InputError naming the file and the field when the number is impossible."""
    names = _ALIASES.get(key) or _EXTRA_ALIASES.get(key) or (key,)
    name = next((n for n in names if cfg.get(n) is not None), None)
    if name is None:
        return None
    value = cfg[name]
    if isinstance(value, bool) or not isinstance(value, Real):
        return None  # another type: ignored (see CONFIG_RANGES)
    lo, hi = CONFIG_RANGES[key]
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    integral = isinstance(value, Integral) or (math.isfinite(number) and number.is_integer())
    if key in _INTEGER_FIELDS and not integral:
        raise InputError(f"{where}: {name} is {str(value)[:30]}, expected a whole number")
    if not math.isfinite(number) or not lo <= number <= hi:
        shown = str(value) if len(str(value)) <= 30 else f"{str(value)[:20]}... ({len(str(value))} digits)"
        span = f"{int(lo):,}..{int(hi):,}" if key in _INTEGER_FIELDS else f"{lo:g}..{hi:g}"
        raise InputError(f"{where}: {name} is {shown}, outside the possible range {span}")
    return int(number) if key in _INTEGER_FIELDS else number


def config_fields(ckpt: Checkpoint) -> dict[str, Any]:
    """Every config field provaudit uses, typed and range-checked (see CONFIG_RANGES)."""
    cfg, where = ckpt.config, config_where(ckpt)
    out: dict[str, Any] = {key: config_value(cfg, key, where) for key in CONFIG_RANGES}
    model_type = cfg.get("model_type")
    out["model_type"] = model_type[:200] if isinstance(model_type, str) and model_type else None
    archs = cfg.get("architectures")
    out["architectures"] = [a[:200] for a in archs[:16] if isinstance(a, str)] if isinstance(archs, list) else []
    tie = cfg.get("tie_word_embeddings")
    out["tie_word_embeddings"] = tie if isinstance(tie, bool) else None
    return out


# what must agree for two models to count as "the same architecture"
SIGNATURE_KEYS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size")


def architecture(ckpt: Checkpoint, roles: RoleMap) -> dict[str, Any]:
    """Describe the model's structure from its config and, where the config is silent, its tensors."""
    fields = config_fields(ckpt)
    out: dict[str, Any] = {"model_type": fields["model_type"] or "unknown"}
    for key in _ALIASES:
        out[key] = fields[key]
    by_layer = roles.by_layer()
    if len(by_layer) > MAX_LAYERS:
        raise InputError(f"{display_path(ckpt.path)}: tensors of {len(by_layer):,} layers, more than the "
                         f"{MAX_LAYERS:,} any model has")
    out["num_layers"] = len(by_layer)
    embed = roles.find("embed")
    if embed:
        shape = ckpt.tensors[embed].shape
        vocab, hidden = (shape[1], shape[0]) if roles.roles[embed].transpose else shape[:2]
        out["vocab_size"] = int(vocab)
        out["hidden_size"] = out["hidden_size"] or int(hidden)
    else:
        out["vocab_size"] = fields["vocab_size"]
    if by_layer and out["intermediate_size"] is None:
        first = by_layer[min(by_layer)]
        up = first.get("up") or first.get("gate")
        if up:
            out["intermediate_size"] = int(max(ckpt.tensors[up].shape))
    if out["num_kv_heads"] is None:
        out["num_kv_heads"] = out["num_heads"]
    out["tied_embeddings"] = roles.find("lm_head") is None
    out["parameters"] = int(sum(int(np.prod(t.shape)) for t in ckpt.tensors.values()))
    out["naming_scheme"] = roles.scheme
    out["storage_dtypes"] = ckpt.storage_dtypes
    if by_layer:
        first = by_layer[min(by_layer)]
        out["layer_roles"] = {role: list(ckpt.tensors[name].shape) for role, name in sorted(first.items())}
    return out


def same_architecture(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when the structural signature (sizes, depth, heads, vocabulary) agrees."""
    return all(a.get(k) == b.get(k) for k in SIGNATURE_KEYS if a.get(k) is not None or b.get(k) is not None)


def same_family_layout(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two models share a family's layout at different sizes: the same declared model_type, the
    same tensor roles in a block and the same vocabulary size (e.g. two sizes of one vendor's release)."""
    mt = a.get("model_type")
    return (bool(mt) and mt != "unknown" and mt == b.get("model_type")
            and set(a.get("layer_roles") or {}) == set(b.get("layer_roles") or {})
            and a.get("vocab_size") == b.get("vocab_size"))
