"""Map tensor names to roles (embed, q, k, ..., down) and layer indices, from naming schemes kept as data.

When no scheme fits, a structural fallback groups tensors by the block number in their names and
assigns roles from name hints and shapes, so renamed checkpoints stay comparable.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from audit.checkpoint.model import Checkpoint, TensorInfo, TensorPart

# Which side of a weight matrix lives in the residual ("hidden") space. For (out, in) matrices:
INPUT_HIDDEN = {"q", "k", "v", "qkv", "gate", "up", "gate_up", "router"}
OUTPUT_HIDDEN = {"o", "down"}
NORM_ROLES = {"attn_norm", "mlp_norm", "post_attn_norm", "post_mlp_norm", "final_norm", "embed_norm"}

# name hints for the structural fallback: role -> regex on the tensor name
_HINTS = [
    ("qkv", r"(qkv|query_key_value|c_attn|w_pack)"),
    ("q", r"(^|[._])(wq|q|query|q_proj|to_q)([._]|$)"),
    ("k", r"(^|[._])(wk|k|key|k_proj|to_k)([._]|$)"),
    ("v", r"(^|[._])(wv|v|value|v_proj|to_v)([._]|$)"),
    # the MLP's own names before the generic "out" of the attention output (w_out is an MLP down projection)
    ("gate", r"(^|[._])(w1|gate|gate_proj|w_gate)([._]|$)"),
    ("up", r"(^|[._])(w3|up|up_proj|w_in|fc1|c_fc|w_up)([._]|$)"),
    ("down", r"(^|[._])(w2|down|down_proj|w_out|fc2|w_down)([._]|$)"),
    ("o", r"(^|[._])(wo|o|out|o_proj|out_proj|attn_out|to_out)([._]|$)"),
]


@dataclass(frozen=True)
class Role:
    role: str
    layer: int | None
    transpose: bool = False


@dataclass
class RoleMap:
    scheme: str
    roles: dict[str, Role]  # tensor name -> role
    unmatched: list[str]
    fused: dict[str, list[str]] = field(default_factory=dict)  # fused tensor -> its parts' names (see split_fused)

    def layers(self) -> list[int]:
        return sorted({r.layer for r in self.roles.values() if r.layer is not None})

    def by_layer(self) -> dict[int, dict[str, str]]:
        out: dict[int, dict[str, str]] = defaultdict(dict)
        for name, r in self.roles.items():
            if r.layer is not None:
                out[r.layer].setdefault(r.role, name)
        return dict(out)

    def find(self, role: str) -> str | None:
        for name, r in self.roles.items():
            if r.role == role and r.layer is None:
                return name
        return None


@lru_cache(maxsize=1)
def _schemes() -> tuple[dict[str, list[tuple[str, re.Pattern, bool]]], str]:
    data = yaml.safe_load((Path(__file__).parent / "roles.yaml").read_text(encoding="utf-8"))
    prefix = "(?:" + "|".join(data.get("prefixes", [])) + ")?"
    schemes: dict[str, list[tuple[str, re.Pattern, bool]]] = {}
    for scheme, roles in data["schemes"].items():
        entries = []
        for role, spec in roles.items():
            pattern, transpose = (spec["pattern"], bool(spec.get("transpose"))) if isinstance(spec, dict) else (spec, False)
            entries.append((role, re.compile(prefix + pattern), transpose))
        schemes[scheme] = entries
    return schemes, prefix


def assign_roles(tensors: dict[str, TensorInfo]) -> RoleMap:
    """Pick the naming scheme that explains most tensors; fall back to structure when none fits."""
    schemes, _ = _schemes()
    best: RoleMap | None = None
    for scheme, entries in schemes.items():
        roles: dict[str, Role] = {}
        for name in tensors:
            for role, rx, transpose in entries:
                m = rx.fullmatch(name)
                if m:
                    layer = m.groupdict().get("layer")
                    role_name = role + "_bias" if name.endswith(".bias") else role
                    roles[name] = Role(role_name, int(layer) if layer is not None else None, transpose)
                    break
        if best is None or len(roles) > len(best.roles):
            best = RoleMap(scheme, roles, [n for n in tensors if n not in roles])
    assert best is not None
    weights = [n for n, t in tensors.items() if len(t.shape) == 2]
    covered = sum(1 for n in weights if n in best.roles)
    chosen = best if weights and covered >= 0.8 * len(weights) else structural_roles(tensors)
    _find_fused_gate_up(chosen.roles, tensors)
    return chosen


def _oriented(tensors: dict[str, TensorInfo], r: Role, name: str) -> tuple[int, ...]:
    shape = tuple(int(x) for x in tensors[name].shape)
    return shape[::-1] if r.transpose and len(shape) == 2 else shape


def _find_fused_gate_up(roles: dict[str, Role], tensors: dict[str, TensorInfo]) -> None:
    """An MLP input with no gate beside it and twice as many outputs as the down projection has inputs is a fused
    [gate; up] (llama.cpp stores Phi-3's gate_up_proj as blk.N.ffn_up): call it gate_up."""
    per_layer: dict[int, dict[str, str]] = defaultdict(dict)
    for name, r in roles.items():
        if r.layer is not None:
            per_layer[r.layer].setdefault(r.role, name)
    for layer, found in per_layer.items():
        if "up" not in found or "down" not in found or "gate" in found:
            continue
        up, down = found["up"], found["down"]
        su, sd = _oriented(tensors, roles[up], up), _oriented(tensors, roles[down], down)
        if len(su) == 2 and len(sd) == 2 and su[0] == 2 * sd[1]:
            roles[up] = Role("gate_up", layer, roles[up].transpose)
            bias = up.removesuffix(".weight") + ".bias"
            if up.endswith(".weight") and bias in roles:
                roles[bias] = Role("gate_up_bias", layer, roles[bias].transpose)


def _first(config: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _qkv_split(layout: str, n_out: int, n_in: int, config: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """Output ids of q, k and v in a fused qkv weight of n_out outputs, from the config's head counts; None when
    the counts do not add up to n_out (then the weight stays one fused qkv)."""
    heads = _first(config, "num_attention_heads", "n_head", "num_heads", "n_heads")
    kv = _first(config, "num_key_value_heads", "num_kv_heads", "n_head_kv")
    if config.get("multi_query_attention"):  # ChatGLM2/3
        kv = _first(config, "multi_query_group_num") or kv
    if layout == "falcon" and not config.get("new_decoder_architecture"):
        kv = 1 if config.get("multi_query", True) else heads
        layout = "blocks" if kv == 1 else "per-head"
    if heads is None:
        if n_out % 3 or layout != "blocks":
            return None
        heads, head_dim, kv = 1, n_out // 3, 1
    else:
        kv = kv or heads
        head_dim = _first(config, "head_dim", "kv_channels") or n_in // heads
    if heads % kv or (heads + 2 * kv) * head_dim != n_out:
        return None
    ids = np.arange(n_out, dtype=np.int64)
    if layout == "per-head":
        if kv != heads:
            return None
        cube = ids.reshape(heads, 3, head_dim)
        return {"q": cube[:, 0].ravel(), "k": cube[:, 1].ravel(), "v": cube[:, 2].ravel()}
    if layout == "falcon":  # per kv group: its q heads, then one k head, then one v head
        groups = ids.reshape(kv, heads // kv + 2, head_dim)
        return {"q": groups[:, :-2].ravel(), "k": groups[:, -2].ravel(), "v": groups[:, -1].ravel()}
    q, k = heads * head_dim, kv * head_dim
    return {"q": ids[:q], "k": ids[q:q + k], "v": ids[q + k:]}


def fused_parts(roles: RoleMap, tensors: dict[str, TensorInfo], config: dict[str, Any]) -> list[TensorPart]:
    """Virtual q/k/v and gate/up tensors for the fused qkv and gate_up weights of a role map: output rows of an
    (out, in) weight, output columns of a transposed (Conv1D) one. Named `<fused name>:<role>`."""
    layouts = yaml.safe_load((Path(__file__).parent / "roles.yaml").read_text(encoding="utf-8")).get("qkv_layout", {})
    parts: list[TensorPart] = []
    for name, r in sorted(roles.roles.items()):
        if r.role not in ("qkv", "gate_up") or len(tensors[name].shape) != 2:
            continue
        axis = 1 if r.transpose else 0
        n_out, n_in = int(tensors[name].shape[axis]), int(tensors[name].shape[1 - axis])
        if r.role == "gate_up":
            split = {"gate": np.arange(n_out // 2), "up": np.arange(n_out // 2, n_out)} if n_out % 2 == 0 else None
        else:
            split = _qkv_split(str(layouts.get(roles.scheme, "blocks")), n_out, n_in, config)
        if split:
            parts += [TensorPart(f"{name}:{role}", name, axis, idx.astype(np.int64)) for role, idx in split.items()]
    return parts


def fused_summary(roles: RoleMap) -> str | None:
    """One plain line on the fused weights a role map split, e.g. "fused self_attn.qkv_proj -> q, k, v and
    mlp.gate_up_proj -> gate, up in 30 layers"; None when nothing was fused."""
    if not roles.fused:
        return None
    kinds: dict[str, set[int]] = defaultdict(set)
    split: dict[str, str] = {}
    for parent, parts in roles.fused.items():
        stem = re.sub(r"^.*?\d+\.", "", parent).removesuffix(".weight")
        layer = roles.roles[parts[0]].layer
        kinds[stem].add(-1 if layer is None else layer)
        split[stem] = ", ".join(roles.roles[p].role for p in parts)
    layers = max(len(v) for v in kinds.values())
    return "fused " + " and ".join(f"{k} -> {split[k]}" for k in sorted(kinds)) + f" in {layers} layers"


def split_fused(ckpt: Checkpoint, roles: RoleMap) -> RoleMap:
    """The role map with each fused qkv / gate_up weight replaced by its q/k/v or gate/up parts, registered on
    the checkpoint as virtual tensors, so a fused checkpoint compares role by role with an unfused one."""
    parts = fused_parts(roles, ckpt.tensors, ckpt.config)
    if not parts:
        return roles
    ckpt.add_parts(parts)
    out = dict(roles.roles)
    fused: dict[str, list[str]] = defaultdict(list)
    for p in parts:
        parent = roles.roles[p.parent]
        out.pop(p.parent, None)
        out[p.name] = Role(p.name.rsplit(":", 1)[1], parent.layer, parent.transpose)
        fused[p.parent].append(p.name)
    return RoleMap(roles.scheme, out, list(roles.unmatched), {**roles.fused, **fused})


def structural_roles(tensors: dict[str, TensorInfo]) -> RoleMap:
    """Assign roles from block numbers, name hints and shapes, for checkpoints with unknown naming."""
    layer_of: dict[str, int] = {}
    templates: dict[str, set[int]] = defaultdict(set)
    for name in tensors:
        m = re.search(r"(?:^|\.)(\d+)(?:\.|$)", name)
        if m:
            templates[name[: m.start(1)] + "{}" + name[m.end(1):]].add(int(m.group(1)))
            layer_of[name] = int(m.group(1))
    layered = {n for n in layer_of if len(templates[_template(n)]) >= 2}
    one_d = Counter(t.shape[0] for n, t in tensors.items() if n in layered and len(t.shape) == 1)
    two_d = Counter(d for n, t in tensors.items() if len(t.shape) == 2 for d in t.shape)
    hidden = (one_d.most_common(1) or two_d.most_common(1) or [(0, 0)])[0][0]

    roles: dict[str, Role] = {}
    per_layer: dict[int, list[str]] = defaultdict(list)
    for name in sorted(tensors):
        if name in layered:
            per_layer[layer_of[name]].append(name)
    for layer, names in per_layer.items():
        norms = 0
        for name in names:
            shape = tensors[name].shape
            if name.endswith(".bias"):
                continue
            if len(shape) == 1:
                if shape[0] == hidden:
                    role = ["attn_norm", "mlp_norm", "post_attn_norm", "post_mlp_norm"][min(norms, 3)]
                    norms += 1
                    roles[name] = Role(role, layer)
                continue
            if len(shape) != 2:
                continue
            role = _hinted_role(name) or _shape_role(shape, hidden)
            transpose = shape[0] == hidden and shape[1] != hidden and role in INPUT_HIDDEN
            roles[name] = Role(role, layer, transpose)
    vocab_like = sorted(
        (n for n, t in tensors.items() if n not in layered and len(t.shape) == 2 and hidden in t.shape),
        key=lambda n: (-max(tensors[n].shape), n),
    )
    for i, name in enumerate(vocab_like[:2]):
        hint = "lm_head" if re.search(r"(lm_head|output|unembed|head)", name) else ("embed" if i == 0 else "lm_head")
        roles[name] = Role(hint, None, tensors[name].shape[0] == hidden)
    for name, t in tensors.items():
        if name not in roles and name not in layered and len(t.shape) == 1 and t.shape[0] == hidden:
            roles[name] = Role("final_norm", None)
    return RoleMap("structural", roles, [n for n in tensors if n not in roles])


def _template(name: str) -> str:
    m = re.search(r"(?:^|\.)(\d+)(?:\.|$)", name)
    return name[: m.start(1)] + "{}" + name[m.end(1):] if m else name


def _hinted_role(name: str) -> str | None:
    lowered = name.lower()
    for role, rx in _HINTS:
        if re.search(rx, lowered):
            return role
    return None


def _shape_role(shape: tuple[int, ...], hidden: int) -> str:
    out, inp = shape
    if inp == hidden and out > hidden:
        return "up"
    if out == hidden and inp > hidden:
        return "down"
    if inp == hidden:
        return "q"
    if out == hidden:
        return "o"
    return "other"


def hidden_sides(role: str, shape: tuple[int, ...], hidden: int) -> list[str]:
    """Which axes of an (out, in) matrix are in the residual space: 'in', 'out', or both when unknown."""
    if role in INPUT_HIDDEN:
        return ["in"]
    if role in OUTPUT_HIDDEN:
        return ["out"]
    return [side for side, dim in (("in", shape[1]), ("out", shape[0])) if dim == hidden]
