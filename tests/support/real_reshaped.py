"""SmolLM2-135M-Instruct reshaped, built once from realcases' `base` and cached next to it:

* width-pruned the way Minitron and Sheared-LLaMA cut models: hidden units, query heads and MLP neurons of least
  magnitude removed from every tensor consistently (no retraining: the tool must see the parent in what is left);
* moved into another architecture: the Llama weights under a Qwen2 config, with q/k/v biases added (Qwen2 has
  them, Llama does not).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from tests.support.realcases import build_cases, default_cache_dir

RECIPE = "smollm2-width-v1"
KEEP_HIDDEN = 512  # of 576
KEEP_NEURONS = 1152  # of 1536
KEEP_HEADS_PER_GROUP = 2  # of 3 query heads per key/value head (9 -> 6)
HEAD_DIM = 64


def build_width_pruned(cache_dir: Path | None = None) -> Path:
    base = build_cases(cache_dir)["base"]
    out = (cache_dir or default_cache_dir()) / RECIPE / "width_pruned"
    if (out / "model.safetensors").is_file():
        return out
    from safetensors.numpy import load_file

    w = load_file(str(base / "model.safetensors"))
    cfg = json.loads((base / "config.json").read_text())
    heads, kv = int(cfg["num_attention_heads"]), int(cfg["num_key_value_heads"])
    emb = w["model.embed_tokens.weight"]
    hidden_keep = np.sort(np.argsort(-np.linalg.norm(emb, axis=0))[:KEEP_HIDDEN])
    group = heads // kv
    new: dict[str, np.ndarray] = {}
    for name, t in w.items():
        hit = re.fullmatch(r"model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)_proj\.weight", name)
        if name == "model.embed_tokens.weight":
            new[name] = t[:, hidden_keep]
        elif t.ndim == 1:  # norms
            new[name] = t[hidden_keep]
        elif hit is None:
            new[name] = t
        else:
            layer, role = int(hit[1]), hit[3]
            p = f"model.layers.{layer}."
            if role in ("gate", "up", "down"):
                down = w[p + "mlp.down_proj.weight"]
                neurons = np.sort(np.argsort(-np.linalg.norm(down, axis=0))[:KEEP_NEURONS])
                new[name] = t[neurons][:, hidden_keep] if role != "down" else t[hidden_keep][:, neurons]
            else:
                q = w[p + "self_attn.q_proj.weight"].reshape(heads, HEAD_DIM, -1)
                score = np.linalg.norm(q.reshape(heads, -1), axis=1).reshape(kv, group)
                keep = [g * group + int(h) for g in range(kv) for h in np.sort(np.argsort(-score[g])[:KEEP_HEADS_PER_GROUP])]
                rows = np.concatenate([np.arange(h * HEAD_DIM, (h + 1) * HEAD_DIM) for h in keep])
                if role == "q":
                    new[name] = t[rows][:, hidden_keep]
                elif role in ("k", "v"):
                    new[name] = t[:, hidden_keep]
                else:  # o: (hidden, heads * head_dim)
                    new[name] = t[hidden_keep][:, rows]
    cfg.update(hidden_size=KEEP_HIDDEN, intermediate_size=KEEP_NEURONS, num_attention_heads=kv * KEEP_HEADS_PER_GROUP,
               head_dim=HEAD_DIM)
    return _write(out, base, new, cfg)


def build_qwen2_graft(cache_dir: Path | None = None) -> Path:
    base = build_cases(cache_dir)["base"]
    out = (cache_dir or default_cache_dir()) / RECIPE / "qwen2_graft"
    if (out / "model.safetensors").is_file():
        return out
    from safetensors.numpy import load_file

    w = load_file(str(base / "model.safetensors"))
    cfg = json.loads((base / "config.json").read_text())
    rng = np.random.default_rng(7)
    new = dict(w)
    for name, t in w.items():
        hit = re.fullmatch(r"(model\.layers\.\d+\.self_attn\.[qkv]_proj)\.weight", name)
        if hit:
            new[hit[1] + ".bias"] = (0.01 * rng.standard_normal(t.shape[0])).astype(np.float32)
    cfg.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"], use_sliding_window=False)
    return _write(out, base, new, cfg)


def _write(out: Path, base: Path, tensors: dict[str, np.ndarray], cfg: dict) -> Path:
    """An HF folder (weights, config, the base's tokenizer files), written beside and renamed into place."""
    from safetensors.numpy import save_file

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / "model.safetensors"))
    (tmp / "config.json").write_text(json.dumps(cfg, indent=1))
    for f in base.iterdir():
        if f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", "chat_template.jinja"):
            shutil.copy(f, tmp / f.name)
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out
