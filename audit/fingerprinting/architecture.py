"""Architecture fingerprint: normalised config, tensor roles and shapes, parameter count."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.checkpoint.model import Checkpoint
from audit.fingerprinting.roles import RoleMap

_ALIASES = {
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "num_kv_heads": ("num_key_value_heads", "multi_query_group_num", "n_kv_heads", "num_kv_heads"),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_hidden_size", "ffn_dim"),
    "rope_theta": ("rope_theta",),
    "norm_eps": ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_eps"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions", "seq_length"),
}

# what must agree for two models to count as "the same architecture"
SIGNATURE_KEYS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size")


def architecture(ckpt: Checkpoint, roles: RoleMap) -> dict[str, Any]:
    """Describe the model's structure from its config and, where the config is silent, its tensors."""
    cfg = ckpt.config
    out: dict[str, Any] = {"model_type": cfg.get("model_type") or "unknown"}
    for key, names in _ALIASES.items():
        out[key] = next((cfg[n] for n in names if isinstance(cfg.get(n), (int, float))), None)
    by_layer = roles.by_layer()
    out["num_layers"] = len(by_layer)
    embed = roles.find("embed")
    if embed:
        shape = ckpt.tensors[embed].shape
        vocab, hidden = (shape[1], shape[0]) if roles.roles[embed].transpose else shape[:2]
        out["vocab_size"] = int(vocab)
        out["hidden_size"] = out["hidden_size"] or int(hidden)
    else:
        out["vocab_size"] = cfg.get("vocab_size")
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
