"""A real Mixtral-style MoE upcycled from SmolLM2-135M-Instruct, built once and cached on disk.

`build_moe_cases(cache_dir)` returns {case: path}, built atomically like tests/support/realcases.py (same cache
root, its own recipe folder, so the realcases caches stay valid):

  mixtral_upcycled  MixtralForCausalLM with SmolLM2's dimensions, NUM_EXPERTS experts (top-TOP_K) per layer:
                    embeddings, attention, norms and lm_head copied from the base; every expert is the base's
                    dense MLP of its layer plus small Gaussian noise (its own per expert); the routers are
                    transformers' fresh random init; then TRAIN_STEPS real AdamW steps on the realcases text.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.support import realcases

RECIPE = "smollm2-moe-v1"
NUM_EXPERTS = 4
TOP_K = 2
NOISE = 0.02  # expert noise, relative to each dense weight's std
TRAIN_STEPS = 2
SEED = 4321


def build_moe_cases(cache_dir: Path | None = None) -> dict[str, Path]:
    """Build (once) the MoE case from the cached SmolLM2 base; {case: path}."""
    base = realcases.build_cases(cache_dir)["base"]
    root = Path(cache_dir or realcases.default_cache_dir()) / RECIPE
    root.mkdir(parents=True, exist_ok=True)
    target = root / "mixtral_upcycled"
    realcases._build_atomic(target, lambda out: _upcycle(base, out), root / "build-seconds.json")
    return {"mixtral_upcycled": target}


def _upcycle(base: Path, out: Path) -> None:
    import torch
    from transformers import MixtralConfig, MixtralForCausalLM

    dense = realcases._load_folder(base)
    dc = dense.config
    torch.manual_seed(SEED)
    cfg = MixtralConfig(
        vocab_size=dc.vocab_size, hidden_size=dc.hidden_size, intermediate_size=dc.intermediate_size,
        num_hidden_layers=dc.num_hidden_layers, num_attention_heads=dc.num_attention_heads,
        num_key_value_heads=dc.num_key_value_heads, head_dim=dc.head_dim, rms_norm_eps=dc.rms_norm_eps,
        max_position_embeddings=dc.max_position_embeddings, rope_parameters=dict(dc.rope_parameters),
        tie_word_embeddings=dc.tie_word_embeddings, bos_token_id=dc.bos_token_id, eos_token_id=dc.eos_token_id,
        pad_token_id=dc.pad_token_id, num_local_experts=NUM_EXPERTS, num_experts_per_tok=TOP_K,
        router_aux_loss_coef=0.0, dtype="float32",
    )
    moe = MixtralForCausalLM(cfg)
    src, dst = dense.state_dict(), moe.state_dict()
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, value in src.items():
            if ".mlp." not in name and name in dst:
                dst[name].copy_(value)
        for i in range(dc.num_hidden_layers):
            gate, up, down = (src[f"model.layers.{i}.mlp.{r}_proj.weight"] for r in ("gate", "up", "down"))
            gate_up, experts_down = dst[f"model.layers.{i}.mlp.experts.gate_up_proj"], \
                dst[f"model.layers.{i}.mlp.experts.down_proj"]
            if gate_up.shape[1:] != (2 * gate.shape[0], gate.shape[1]) or experts_down.shape[1:] != down.shape:
                raise AssertionError(f"unexpected fused expert layout {tuple(gate_up.shape)}, "
                                     f"{tuple(experts_down.shape)}")
            for e in range(NUM_EXPERTS):
                gate_up[e].copy_(torch.cat([_noisy(gate, gen), _noisy(up, gen)]))
                experts_down[e].copy_(_noisy(down, gen))
    moe.config.name_or_path = "SmolLM2-135M-Instruct-4x-upcycled"
    realcases._train(moe, realcases._load_tokenizer(base), seed=SEED + 2, steps=TRAIN_STEPS)
    realcases._save_torch(moe, None, out)
    realcases._copy_tokenizer(base, out)
    print(f"[real_moe] saved {out.name}", file=sys.stderr)


def _noisy(w: Any, gen: Any) -> Any:
    """`w` plus Gaussian noise of NOISE times its std (torch tensors)."""
    import torch

    return w + NOISE * w.std() * torch.randn(w.shape, generator=gen)
