"""Fused-projection layouts: convert checkpoints between fused and unfused q/k/v and gate/up tensors.

Numpy conversions on HF tensor dicts (no torch):
  fuse_llama      Llama q/k/v -> Phi-3 qkv_proj = cat(q, k, v), gate/up -> gate_up_proj = cat(gate, up)
  unfuse_phi3     the reverse
  unfuse_gpt2     GPT-2 Conv1D c_attn (in, 3*hidden) -> BERT-style nn.Linear query/key/value (out, in)

`build_fused_cases()` writes, once, real cases from SmolLM2-135M-Instruct (tests.support.realcases "base"),
cached under <realcases cache>/RECIPE, each written into a temporary folder and renamed into place:
  fused           base in the Phi-3 layout (model_type phi3, qkv_proj, gate_up_proj): same weights
  fused_unfused   fused converted back to the Llama layout
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

RECIPE = "smollm2-fused-v1"
_LLAMA_ATTN = re.compile(r"(?P<p>.*\.self_attn\.)q_proj\.weight")
_LLAMA_MLP = re.compile(r"(?P<p>.*\.mlp\.)gate_proj\.weight")


def fuse_llama(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """HF Llama tensors -> Phi-3 names: qkv_proj = cat(q, k, v), gate_up_proj = cat(gate, up) along outputs."""
    out: dict[str, np.ndarray] = {}
    for name, w in tensors.items():
        if (m := _LLAMA_ATTN.fullmatch(name)) is not None:
            p = m["p"]
            out[p + "qkv_proj.weight"] = np.concatenate([tensors[p + f"{r}_proj.weight"] for r in "qkv"], axis=0)
        elif (m := _LLAMA_MLP.fullmatch(name)) is not None:
            p = m["p"]
            out[p + "gate_up_proj.weight"] = np.concatenate([w, tensors[p + "up_proj.weight"]], axis=0)
        elif not re.search(r"\.(k_proj|v_proj|up_proj)\.weight$", name):
            out[name] = w
    return out


def unfuse_phi3(tensors: dict[str, np.ndarray], heads: int, kv_heads: int) -> dict[str, np.ndarray]:
    """Phi-3 names -> HF Llama: split qkv_proj by head counts and gate_up_proj in halves."""
    out: dict[str, np.ndarray] = {}
    for name, w in tensors.items():
        if name.endswith(".self_attn.qkv_proj.weight"):
            p = name.removesuffix("qkv_proj.weight")
            hd = w.shape[1] // heads
            q, k = heads * hd, kv_heads * hd
            out[p + "q_proj.weight"], out[p + "k_proj.weight"], out[p + "v_proj.weight"] = w[:q], w[q:q + k], w[q + k:]
        elif name.endswith(".mlp.gate_up_proj.weight"):
            p = name.removesuffix("gate_up_proj.weight")
            half = w.shape[0] // 2
            out[p + "gate_proj.weight"], out[p + "up_proj.weight"] = w[:half], w[half:]
        else:
            out[name] = w
    return {n: np.ascontiguousarray(w) for n, w in out.items()}


def phi3_config(config: dict[str, Any]) -> dict[str, Any]:
    """A Llama config relabelled as Phi-3 (same sizes; Phi-3 has the same keys)."""
    return {**config, "model_type": "phi3", "architectures": ["Phi3ForCausalLM"]}


def unfuse_gpt2(tensors: dict[str, np.ndarray], hidden: int) -> dict[str, np.ndarray]:
    """GPT-2 c_attn (Conv1D, (in, 3*hidden) and bias) -> nn.Linear (out, in) attn.{q,k,v}_proj weights and biases."""
    out: dict[str, np.ndarray] = {}
    for name, w in tensors.items():
        if ".attn.c_attn." in name:
            p = name.split(".attn.c_attn.")[0] + ".attn."
            kind = name.rsplit(".", 1)[1]
            for i, r in enumerate("qkv"):
                part = w[..., i * hidden:(i + 1) * hidden]
                out[f"{p}{r}_proj.{kind}"] = np.ascontiguousarray(part.T if kind == "weight" else part)
        else:
            out[name] = w
    return out


def build_fused_cases(cache_dir: Path | None = None) -> dict[str, Path]:
    """Build (once) the fused cases from the real SmolLM2 base and return {case: path}."""
    from tests.support import realcases, tiny

    base = realcases.build_cases(cache_dir)["base"]
    root = (cache_dir or realcases.default_cache_dir()) / RECIPE
    root.mkdir(parents=True, exist_ok=True)
    model = tiny.load_hf(base, "llama")
    cfg = model.config
    todo = {
        "fused": lambda: (fuse_llama(model.tensors), phi3_config(cfg)),
        "fused_unfused": lambda: (
            unfuse_phi3(fuse_llama(model.tensors), cfg["num_attention_heads"], cfg["num_key_value_heads"]), cfg),
    }
    out = {}
    for case, make in todo.items():
        target = root / case
        if not target.exists():
            tmp = root / f".{case}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            tensors, config = make()
            tiny._write_safetensors(tensors, tmp / "model.safetensors", "F32")
            (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
            for f in base.iterdir():
                if f.is_file() and f.name not in ("config.json", "model.safetensors") and f.suffix != ".safetensors":
                    shutil.copy2(f, tmp / f.name)
            tmp.rename(target)
        out[case] = target
    return out
