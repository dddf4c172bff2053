"""Tiny synthetic checkpoints for fast tests, and the transformations model derivers apply.

Dependency-light on purpose: numpy, safetensors and gguf only (torch is imported lazily by
`save_pickle` alone). A model lives in memory as a `TinyModel` with HF tensor names and HF
orientation (Linear weights are (out, in); GPT-2's Conv1D weights are (in, out) as HF stores them).

Builders (`make_llama`, `make_gpt2`, `make_bert`) are deterministic in `seed`; different seeds give
statistically independent weights but share the default vocabulary (same tokenizer, independent
weights). Weights are "trained-ish": low-rank structure plus noise, with per-hidden-unit and
per-neuron scales that are consistent across a model's layers, and norm weights scattered around 1.
Every transformation returns a new `TinyModel` and never mutates its input.

Function-preserving transformations are checked against the numpy reference forward passes
`llama_forward`, `gpt2_forward` and `bert_forward` (which match transformers to float precision).
"""

from __future__ import annotations

import copy
import json
import math
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LLAMA_SCHEMES",
    "TinyModel",
    "bert_forward",
    "default_tokens",
    "duplicate_layers",
    "extend_vocab",
    "finetune",
    "forward",
    "from_bf16_bits",
    "gpt2_forward",
    "layer_count",
    "llama_forward",
    "llama_naming",
    "load_hf",
    "load_safetensors",
    "make_bert",
    "make_gpt2",
    "make_llama",
    "permute_heads",
    "permute_hidden",
    "permute_neurons",
    "prune_layers",
    "rename_tensors",
    "save_gguf",
    "save_hf",
    "save_pickle",
    "save_safetensors_file",
    "scale_invariant",
    "to_bf16_bits",
]


@dataclass
class TinyModel:
    """A model in memory: architecture family, HF-style config, tensors (HF orientation), vocabulary."""

    arch: str  # "llama" | "gpt2" | "bert"
    config: dict[str, Any]
    tensors: dict[str, np.ndarray]
    tokens: list[str] = field(default_factory=list)

    def copy(self) -> TinyModel:
        """Deep copy (arrays included)."""
        return TinyModel(self.arch, copy.deepcopy(self.config), {k: v.copy() for k, v in self.tensors.items()},
                         list(self.tokens))

    def replace(self, tensors: dict[str, np.ndarray] | None = None, config: dict[str, Any] | None = None,
                tokens: list[str] | None = None) -> TinyModel:
        """New model with some parts swapped (the rest deep-copied)."""
        base = self.copy()
        return TinyModel(self.arch, config if config is not None else base.config,
                         tensors if tensors is not None else base.tensors,
                         tokens if tokens is not None else base.tokens)


# --------------------------------------------------------------------------------------------------
# Vocabulary

_WORDS = [
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on",
    "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they",
    "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when",
    "will", "would", "who", "so", "no", "model", "language", "data", "weight", "layer", "token", "train",
]
_PIECES = ["ing", "ed", "er", "es", "ly", "tion", "al", "re", "en", "an", "on", "at", "or", "ic", "is", "ent"]


def default_tokens(n: int, style: str = "bpe") -> list[str]:
    """Deterministic vocabulary of `n` unique strings, the same for every seed.

    style "bpe": byte-level-BPE-looking ("<unk>", "<s>", "</s>", "Ġthe", "ing", ...); "wordpiece":
    BERT-looking ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "##ing", ...). Padded with "tok{i}".
    """
    if style == "wordpiece":
        base = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + _WORDS + [f"##{p}" for p in _PIECES]
        base += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    elif style == "bpe":
        base = ["<unk>", "<s>", "</s>"] + [f"Ġ{w}" for w in _WORDS] + _PIECES
        base += [chr(c) for c in range(ord("a"), ord("z") + 1)] + [f"Ġ{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    else:
        raise ValueError(f"unknown token style {style!r}")
    out = list(dict.fromkeys(base))[:n]
    out += [f"tok{i}" for i in range(len(out), n)]
    return out


# --------------------------------------------------------------------------------------------------
# Weight generation


def _lognormal(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    return np.exp(rng.normal(0.0, sigma, size=n))


def _matrix(rng: np.random.Generator, out_dim: int, in_dim: int, *, row_scale: np.ndarray | None = None,
            col_scale: np.ndarray | None = None, std: float | None = None, rank: int = 8) -> np.ndarray:
    """(out, in) float32 matrix: decaying-spectrum low-rank part + iid noise, times row/column scales."""
    r = max(1, min(rank, out_dim, in_dim))
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(r))
    low = (rng.normal(size=(out_dim, r)) * spectrum) @ rng.normal(size=(r, in_dim))
    low /= np.sqrt(np.sum(spectrum**2))
    w = 0.7 * low + 0.7 * rng.normal(size=(out_dim, in_dim))
    if row_scale is not None:
        w *= row_scale[:, None]
    if col_scale is not None:
        w *= col_scale[None, :]
    target = std if std is not None else 1.0 / math.sqrt(in_dim)
    w *= target / (w.std() + 1e-12)
    return w.astype(np.float32)


def _norm_vec(rng: np.random.Generator, unit_profile: np.ndarray, mean: float) -> np.ndarray:
    """Norm weights around `mean` with a model-level per-unit profile and per-layer jitter."""
    return (mean * unit_profile * _lognormal(rng, unit_profile.size, 0.08)).astype(np.float32)


def _bias(rng: np.random.Generator, n: int, std: float = 0.02) -> np.ndarray:
    return rng.normal(0.0, std, size=n).astype(np.float32)


def _vocab(tokens: list[str] | None, vocab: int, style: str) -> list[str]:
    toks = list(tokens) if tokens is not None else default_tokens(vocab, style)
    if len(set(toks)) != len(toks):
        raise ValueError("tokens must be unique")
    return toks


def make_llama(seed: int, hidden: int = 64, layers: int = 6, heads: int = 4, kv_heads: int = 2, ff: int = 160,
               vocab: int = 512, tokens: list[str] | None = None) -> TinyModel:
    """Tiny Llama (GQA, SwiGLU, RMSNorm, untied lm_head) with HF names; `tokens` overrides `vocab`."""
    if hidden % heads or heads % kv_heads or (hidden // heads) % 2:
        raise ValueError("hidden must split into heads of even size, heads into kv_heads groups")
    toks = _vocab(tokens, vocab, "bpe")
    vocab = len(toks)
    hd = hidden // heads
    rng = np.random.default_rng(seed)
    unit = _lognormal(rng, hidden, 0.35)  # per-hidden-unit scale, consistent across the whole model
    norm_profile = _lognormal(rng, hidden, 0.12)
    t: dict[str, np.ndarray] = {}
    t["model.embed_tokens.weight"] = _matrix(rng, vocab, hidden, col_scale=unit, std=0.05, rank=16)
    for i in range(layers):
        p = f"model.layers.{i}."
        depth = 1.0 + 0.15 * i / max(1, layers - 1)  # std grows gently with depth (shared by all seeds)
        attn_mean, mlp_mean = rng.uniform(0.5, 1.3), rng.uniform(0.6, 1.4)
        t[p + "input_layernorm.weight"] = _norm_vec(rng, norm_profile, attn_mean)
        t[p + "post_attention_layernorm.weight"] = _norm_vec(rng, norm_profile, mlp_mean)
        head_scale = np.repeat(_lognormal(rng, heads, 0.2), hd)
        kv_scale = np.repeat(_lognormal(rng, kv_heads, 0.2), hd)
        s = depth / math.sqrt(hidden)
        t[p + "self_attn.q_proj.weight"] = _matrix(rng, heads * hd, hidden, row_scale=head_scale, col_scale=unit, std=s)
        t[p + "self_attn.k_proj.weight"] = _matrix(rng, kv_heads * hd, hidden, row_scale=kv_scale, col_scale=unit, std=s)
        t[p + "self_attn.v_proj.weight"] = _matrix(rng, kv_heads * hd, hidden, row_scale=kv_scale, col_scale=unit, std=s)
        t[p + "self_attn.o_proj.weight"] = _matrix(rng, hidden, heads * hd, row_scale=1 / np.sqrt(unit),
                                                   std=depth / math.sqrt(heads * hd))
        neuron = _lognormal(rng, ff, 0.3)  # per-neuron scale shared by gate/up rows and down columns
        t[p + "mlp.gate_proj.weight"] = _matrix(rng, ff, hidden, row_scale=neuron, col_scale=unit, std=s)
        t[p + "mlp.up_proj.weight"] = _matrix(rng, ff, hidden, row_scale=neuron, col_scale=unit, std=s)
        t[p + "mlp.down_proj.weight"] = _matrix(rng, hidden, ff, row_scale=1 / np.sqrt(unit), col_scale=neuron,
                                                std=depth / math.sqrt(ff))
    t["model.norm.weight"] = _norm_vec(rng, norm_profile, rng.uniform(0.8, 2.0))
    t["lm_head.weight"] = _matrix(rng, vocab, hidden, col_scale=unit, std=1 / math.sqrt(hidden), rank=16)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": ff, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": hd, "vocab_size": vocab, "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
        "attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    }
    return TinyModel("llama", config, t, toks)


def make_gpt2(seed: int, hidden: int = 64, layers: int = 4, heads: int = 4, vocab: int = 512,
              tokens: list[str] | None = None, positions: int = 128) -> TinyModel:
    """Tiny GPT-2 (Conv1D (in, out) weights, LayerNorm with bias, tied lm_head) with HF names."""
    toks = _vocab(tokens, vocab, "bpe")
    vocab = len(toks)
    rng = np.random.default_rng(seed)
    unit = _lognormal(rng, hidden, 0.35)
    norm_profile = _lognormal(rng, hidden, 0.12)
    ff = 4 * hidden
    t: dict[str, np.ndarray] = {}
    t["transformer.wte.weight"] = _matrix(rng, vocab, hidden, col_scale=unit, std=0.1, rank=16)
    t["transformer.wpe.weight"] = _matrix(rng, positions, hidden, col_scale=unit, std=0.02, rank=4)
    for i in range(layers):
        p = f"transformer.h.{i}."
        s = 1 / math.sqrt(hidden)
        for ln in ("ln_1", "ln_2"):
            t[p + f"{ln}.weight"] = _norm_vec(rng, norm_profile, rng.uniform(0.5, 1.3))
            t[p + f"{ln}.bias"] = _bias(rng, hidden)
        qkv = np.concatenate([_matrix(rng, hidden, hidden, col_scale=unit, std=s) for _ in range(3)], axis=0)
        t[p + "attn.c_attn.weight"] = np.ascontiguousarray(qkv.T)  # Conv1D: (in, out)
        t[p + "attn.c_attn.bias"] = _bias(rng, 3 * hidden)
        t[p + "attn.c_proj.weight"] = np.ascontiguousarray(_matrix(rng, hidden, hidden, row_scale=1 / np.sqrt(unit)).T)
        t[p + "attn.c_proj.bias"] = _bias(rng, hidden)
        neuron = _lognormal(rng, ff, 0.3)
        t[p + "mlp.c_fc.weight"] = np.ascontiguousarray(_matrix(rng, ff, hidden, row_scale=neuron, col_scale=unit).T)
        t[p + "mlp.c_fc.bias"] = _bias(rng, ff)
        t[p + "mlp.c_proj.weight"] = np.ascontiguousarray(
            _matrix(rng, hidden, ff, row_scale=1 / np.sqrt(unit), col_scale=neuron).T)
        t[p + "mlp.c_proj.bias"] = _bias(rng, hidden)
    t["transformer.ln_f.weight"] = _norm_vec(rng, norm_profile, rng.uniform(0.8, 1.6))
    t["transformer.ln_f.bias"] = _bias(rng, hidden)
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": hidden, "n_layer": layers,
        "n_head": heads, "n_positions": positions, "n_ctx": positions, "n_inner": None, "vocab_size": vocab,
        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "bos_token_id": 1, "eos_token_id": 2,
        "tie_word_embeddings": True, "torch_dtype": "float32",
    }
    return TinyModel("gpt2", config, t, toks)


def make_bert(seed: int, hidden: int = 64, layers: int = 4, heads: int = 4, ff: int = 128, vocab: int = 512,
              tokens: list[str] | None = None, positions: int = 128) -> TinyModel:
    """Tiny BERT encoder (post-LN, with pooler) with HF BertModel names (no "bert." prefix)."""
    toks = _vocab(tokens, vocab, "wordpiece")
    vocab = len(toks)
    rng = np.random.default_rng(seed)
    unit = _lognormal(rng, hidden, 0.35)
    norm_profile = _lognormal(rng, hidden, 0.12)
    t: dict[str, np.ndarray] = {}
    t["embeddings.word_embeddings.weight"] = _matrix(rng, vocab, hidden, col_scale=unit, std=0.05, rank=16)
    t["embeddings.position_embeddings.weight"] = _matrix(rng, positions, hidden, col_scale=unit, std=0.02, rank=4)
    t["embeddings.token_type_embeddings.weight"] = _matrix(rng, 2, hidden, col_scale=unit, std=0.02, rank=2)
    t["embeddings.LayerNorm.weight"] = _norm_vec(rng, norm_profile, rng.uniform(0.7, 1.1))
    t["embeddings.LayerNorm.bias"] = _bias(rng, hidden)
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            t[p + f"attention.self.{name}.weight"] = _matrix(rng, hidden, hidden, col_scale=unit)
            t[p + f"attention.self.{name}.bias"] = _bias(rng, hidden)
        t[p + "attention.output.dense.weight"] = _matrix(rng, hidden, hidden, row_scale=1 / np.sqrt(unit))
        t[p + "attention.output.dense.bias"] = _bias(rng, hidden)
        t[p + "attention.output.LayerNorm.weight"] = _norm_vec(rng, norm_profile, rng.uniform(0.6, 1.2))
        t[p + "attention.output.LayerNorm.bias"] = _bias(rng, hidden)
        neuron = _lognormal(rng, ff, 0.3)
        t[p + "intermediate.dense.weight"] = _matrix(rng, ff, hidden, row_scale=neuron, col_scale=unit)
        t[p + "intermediate.dense.bias"] = _bias(rng, ff)
        t[p + "output.dense.weight"] = _matrix(rng, hidden, ff, row_scale=1 / np.sqrt(unit), col_scale=neuron)
        t[p + "output.dense.bias"] = _bias(rng, hidden)
        t[p + "output.LayerNorm.weight"] = _norm_vec(rng, norm_profile, rng.uniform(0.6, 1.2))
        t[p + "output.LayerNorm.bias"] = _bias(rng, hidden)
    t["pooler.dense.weight"] = _matrix(rng, hidden, hidden, col_scale=unit)
    t["pooler.dense.bias"] = _bias(rng, hidden)
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads, "intermediate_size": ff, "vocab_size": vocab, "hidden_act": "gelu",
        "max_position_embeddings": positions, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
        "position_embedding_type": "absolute", "torch_dtype": "float32",
    }
    return TinyModel("bert", config, t, toks)


# --------------------------------------------------------------------------------------------------
# Llama naming schemes

LLAMA_SCHEMES: dict[str, dict[str, str]] = {
    "hf": {
        "embed": "model.embed_tokens.weight", "final_norm": "model.norm.weight", "lm_head": "lm_head.weight",
        "q": "model.layers.{i}.self_attn.q_proj.weight", "k": "model.layers.{i}.self_attn.k_proj.weight",
        "v": "model.layers.{i}.self_attn.v_proj.weight", "o": "model.layers.{i}.self_attn.o_proj.weight",
        "gate": "model.layers.{i}.mlp.gate_proj.weight", "up": "model.layers.{i}.mlp.up_proj.weight",
        "down": "model.layers.{i}.mlp.down_proj.weight", "attn_norm": "model.layers.{i}.input_layernorm.weight",
        "mlp_norm": "model.layers.{i}.post_attention_layernorm.weight",
    },
    "meta": {
        "embed": "tok_embeddings.weight", "final_norm": "norm.weight", "lm_head": "output.weight",
        "q": "layers.{i}.attention.wq.weight", "k": "layers.{i}.attention.wk.weight",
        "v": "layers.{i}.attention.wv.weight", "o": "layers.{i}.attention.wo.weight",
        "gate": "layers.{i}.feed_forward.w1.weight", "up": "layers.{i}.feed_forward.w3.weight",
        "down": "layers.{i}.feed_forward.w2.weight", "attn_norm": "layers.{i}.attention_norm.weight",
        "mlp_norm": "layers.{i}.ffn_norm.weight",
    },
    "madeup": {
        "embed": "transformer.token_table.weight", "final_norm": "transformer.norm_out.scale",
        "lm_head": "transformer.unembed.weight",
        "q": "transformer.blocks.{i}.attention.wq.weight", "k": "transformer.blocks.{i}.attention.wk.weight",
        "v": "transformer.blocks.{i}.attention.wv.weight", "o": "transformer.blocks.{i}.attention.wo.weight",
        "gate": "transformer.blocks.{i}.ffn.w_gate.weight", "up": "transformer.blocks.{i}.ffn.w_in.weight",
        "down": "transformer.blocks.{i}.ffn.w_out.weight", "attn_norm": "transformer.blocks.{i}.norm_attn.scale",
        "mlp_norm": "transformer.blocks.{i}.norm_ffn.scale",
    },
    "gguf": {
        "embed": "token_embd.weight", "final_norm": "output_norm.weight", "lm_head": "output.weight",
        "q": "blk.{i}.attn_q.weight", "k": "blk.{i}.attn_k.weight", "v": "blk.{i}.attn_v.weight",
        "o": "blk.{i}.attn_output.weight", "gate": "blk.{i}.ffn_gate.weight", "up": "blk.{i}.ffn_up.weight",
        "down": "blk.{i}.ffn_down.weight", "attn_norm": "blk.{i}.attn_norm.weight",
        "mlp_norm": "blk.{i}.ffn_norm.weight",
    },
}
_MADEUP_CONFIG = {"model_type": "acme-lm", "architectures": ["AcmeForCausalLM"]}


def layer_count(m: TinyModel) -> int:
    """Number of blocks per the config."""
    return int(m.config["n_layer" if m.arch == "gpt2" else "num_hidden_layers"])


def llama_naming(m: TinyModel) -> str:
    """Which LLAMA_SCHEMES entry a llama-arch model's tensor names follow."""
    for scheme, names in LLAMA_SCHEMES.items():
        if names["embed"] in m.tensors:
            return scheme
    raise ValueError("tensor names follow no known llama naming scheme")


def _rename_dict(tensors: dict[str, np.ndarray], n_layers: int, src: str, dst: str) -> dict[str, np.ndarray]:
    mapping: dict[str, str] = {}
    for role, tmpl in LLAMA_SCHEMES[src].items():
        for i in range(n_layers) if "{i}" in tmpl else [0]:
            mapping[tmpl.format(i=i)] = LLAMA_SCHEMES[dst][role].format(i=i)
    unknown = set(tensors) - set(mapping)
    if unknown:
        raise ValueError(f"cannot rename tensors outside the {src!r} scheme: {sorted(unknown)[:5]}")
    return {mapping[k]: v.copy() for k, v in tensors.items()}


def _via_hf(m: TinyModel, fn: Callable[[TinyModel], TinyModel]) -> TinyModel:
    """Apply `fn` (written for HF llama names) to a llama model in any naming, keeping its naming."""
    scheme = llama_naming(m)
    if scheme == "hf":
        return fn(m)
    hf = m.replace(tensors=_rename_dict(m.tensors, layer_count(m), scheme, "hf"))
    out = fn(hf)
    return out.replace(tensors=_rename_dict(out.tensors, layer_count(out), "hf", scheme))


def rename_tensors(m: TinyModel, scheme: str = "meta") -> TinyModel:
    """Rename a llama-arch model's tensors to another naming scheme (values untouched).

    "meta": Meta's original names (tok_embeddings, layers.N.attention.wq, feed_forward.w1/w2/w3 =
    gate/down/up, attention_norm, ffn_norm, norm, output); q/k rows stay in HF rotary layout.
    "madeup": transformer.blocks.N.attention.wq.weight, transformer.blocks.N.ffn.w_in.weight, ... and
    config model_type "acme-lm". "hf" and "gguf" (llama.cpp names, no q/k interleave) also work.
    """
    if m.arch != "llama":
        raise NotImplementedError("rename_tensors supports llama-arch models only")
    if scheme not in LLAMA_SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose from {sorted(LLAMA_SCHEMES)}")
    config = copy.deepcopy(m.config)
    if scheme == "madeup":
        config.update(copy.deepcopy(_MADEUP_CONFIG))
    return m.replace(tensors=_rename_dict(m.tensors, layer_count(m), llama_naming(m), scheme), config=config)


# --------------------------------------------------------------------------------------------------
# Transformations


def finetune(m: TinyModel, scale: float = 0.02, seed: int = 1) -> TinyModel:
    """Add iid noise of `scale` times each tensor's RMS to every tensor (fine-tuning drift)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in sorted(m.tensors):
        w = m.tensors[name]
        rms = float(np.sqrt(np.mean(np.square(w, dtype=np.float64)))) or 1.0
        out[name] = (w + scale * rms * rng.normal(size=w.shape)).astype(w.dtype)
    return m.replace(tensors=out)


# (regex on HF name, axis) pairs: which axes of which tensors index the residual stream
_HIDDEN_AXES: dict[str, list[tuple[str, int]]] = {
    "llama": [
        (r"model\.embed_tokens\.weight|lm_head\.weight", 1),
        (r"model\.layers\.\d+\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)\.weight", 1),
        (r"model\.layers\.\d+\.(self_attn\.o_proj|mlp\.down_proj)\.weight", 0),
        (r"model\.layers\.\d+\.(input_layernorm|post_attention_layernorm)\.weight|model\.norm\.weight", 0),
    ],
    "gpt2": [
        (r"transformer\.(wte|wpe)\.weight", 1),
        (r"transformer\.(h\.\d+\.ln_[12]|ln_f)\.(weight|bias)", 0),
        (r"transformer\.h\.\d+\.(attn\.c_attn|mlp\.c_fc)\.weight", 0),
        (r"transformer\.h\.\d+\.(attn|mlp)\.c_proj\.weight", 1),
        (r"transformer\.h\.\d+\.(attn|mlp)\.c_proj\.bias", 0),
    ],
    "bert": [
        (r"embeddings\.(word|position|token_type)_embeddings\.weight", 1),
        (r"embeddings\.LayerNorm\.(weight|bias)", 0),
        (r"encoder\.layer\.\d+\.(attention\.output|output)\.LayerNorm\.(weight|bias)", 0),
        (r"encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|intermediate\.dense)\.weight", 1),
        (r"encoder\.layer\.\d+\.(attention\.output|output)\.dense\.weight", 0),
        (r"encoder\.layer\.\d+\.(attention\.output|output)\.dense\.bias", 0),
        (r"pooler\.dense\.weight", 1),
    ],
}

# MLP neuron axes; the layer index is the first \d+ in the name
_NEURON_AXES: dict[str, list[tuple[str, int]]] = {
    "llama": [(r"model\.layers\.\d+\.mlp\.(gate|up)_proj\.weight", 0), (r"model\.layers\.\d+\.mlp\.down_proj\.weight", 1)],
    "gpt2": [(r"transformer\.h\.\d+\.mlp\.c_fc\.weight", 1), (r"transformer\.h\.\d+\.mlp\.c_fc\.bias", 0),
             (r"transformer\.h\.\d+\.mlp\.c_proj\.weight", 0)],
    "bert": [(r"encoder\.layer\.\d+\.intermediate\.dense\.(weight|bias)", 0),
             (r"encoder\.layer\.\d+\.output\.dense\.weight", 1)],
}


def _apply_axes(tensors: dict[str, np.ndarray], rules: list[tuple[str, int]],
                index_for: Callable[[str], np.ndarray | None]) -> dict[str, np.ndarray]:
    out = {}
    for name, w in tensors.items():
        axis = next((ax for pat, ax in rules if re.fullmatch(pat, name)), None)
        idx = index_for(name) if axis is not None else None
        out[name] = np.ascontiguousarray(np.take(w, idx, axis=axis)) if idx is not None else w.copy()
    return out


def _layer_index(name: str) -> int:
    return int(re.search(r"\.(\d+)\.", name).group(1))  # type: ignore[union-attr]


def _hidden_size(m: TinyModel) -> int:
    return int(m.config["n_embd" if m.arch == "gpt2" else "hidden_size"])


def permute_hidden(m: TinyModel, seed: int) -> TinyModel:
    """Permute residual-stream units everywhere (embeddings, input columns, output rows, norms, lm_head).

    Function-preserving: RMSNorm/LayerNorm statistics are permutation-invariant and elementwise.
    """
    def run(mm: TinyModel) -> TinyModel:
        perm = np.random.default_rng(seed).permutation(_hidden_size(mm))
        return mm.replace(tensors=_apply_axes(mm.tensors, _HIDDEN_AXES[mm.arch], lambda _n: perm))
    return _via_hf(m, run) if m.arch == "llama" else run(m)


def permute_neurons(m: TinyModel, seed: int) -> TinyModel:
    """Per layer, permute MLP neurons (rows of gate/up, columns of down). Function-preserving."""
    def run(mm: TinyModel) -> TinyModel:
        rng = np.random.default_rng(seed)
        ff = int(mm.config.get("intermediate_size") or mm.config.get("n_inner") or 4 * _hidden_size(mm))
        perms = [rng.permutation(ff) for _ in range(layer_count(mm))]
        return mm.replace(tensors=_apply_axes(mm.tensors, _NEURON_AXES[mm.arch], lambda n: perms[_layer_index(n)]))
    return _via_hf(m, run) if m.arch == "llama" else run(m)


def _heads(m: TinyModel) -> tuple[int, int, int]:
    if m.arch == "gpt2":
        h = int(m.config["n_head"])
        return h, h, _hidden_size(m) // h
    h = int(m.config["num_attention_heads"])
    kv = int(m.config.get("num_key_value_heads") or h)
    return h, kv, int(m.config.get("head_dim") or _hidden_size(m) // h)


def permute_heads(m: TinyModel, seed: int) -> TinyModel:
    """Per layer, permute attention heads; function-preserving.

    GQA-aware for llama: kv heads are permuted in k/v rows, and each group of query heads moves with
    its kv head (q rows, o columns); query heads are also shuffled within their group. For gpt2/bert
    (plain multi-head attention) q, k, v rows/biases and output-projection inputs move together.
    """
    def run(mm: TinyModel) -> TinyModel:
        rng = np.random.default_rng(seed)
        nh, nkv, hd = _heads(mm)
        g = nh // nkv
        q_idx, kv_idx = [], []
        for _ in range(layer_count(mm)):
            kv_perm = rng.permutation(nkv)
            q_heads = np.concatenate([kv * g + rng.permutation(g) for kv in kv_perm])
            q_idx.append((q_heads[:, None] * hd + np.arange(hd)).ravel())
            kv_idx.append((kv_perm[:, None] * hd + np.arange(hd)).ravel())
        t = {k: v.copy() for k, v in mm.tensors.items()}
        for i in range(layer_count(mm)):
            qi, ki = q_idx[i], kv_idx[i]
            if mm.arch == "llama":
                p = f"model.layers.{i}.self_attn."
                t[p + "q_proj.weight"] = t[p + "q_proj.weight"][qi]
                t[p + "k_proj.weight"] = t[p + "k_proj.weight"][ki]
                t[p + "v_proj.weight"] = t[p + "v_proj.weight"][ki]
                t[p + "o_proj.weight"] = np.ascontiguousarray(t[p + "o_proj.weight"][:, qi])
            elif mm.arch == "gpt2":
                p, hidden = f"transformer.h.{i}.attn.", nh * hd
                cols = np.concatenate([qi, qi + hidden, qi + 2 * hidden])
                t[p + "c_attn.weight"] = np.ascontiguousarray(t[p + "c_attn.weight"][:, cols])
                t[p + "c_attn.bias"] = t[p + "c_attn.bias"][cols]
                t[p + "c_proj.weight"] = t[p + "c_proj.weight"][qi]
            else:
                p = f"encoder.layer.{i}.attention."
                for name in ("query", "key", "value"):
                    t[p + f"self.{name}.weight"] = t[p + f"self.{name}.weight"][qi]
                    t[p + f"self.{name}.bias"] = t[p + f"self.{name}.bias"][qi]
                t[p + "output.dense.weight"] = np.ascontiguousarray(t[p + "output.dense.weight"][:, qi])
        return mm.replace(tensors=t)
    return _via_hf(m, run) if m.arch == "llama" else run(m)


def scale_invariant(m: TinyModel, seed: int, spread: float = 0.5) -> TinyModel:
    """Function-preserving rescaling of a llama model by random positive per-unit factors c.

    Exact identities used (each holds with rotary embeddings, GQA and SwiGLU):
      * every RMSNorm weight (per unit) times c, the input columns of the matrices it feeds divided by c
        (input_layernorm -> q/k/v, post_attention_layernorm -> gate/up, model.norm -> lm_head);
      * up_proj rows times c, down_proj columns divided by c (SwiGLU is linear in the up branch;
        gate_proj is NOT scalable this way because SiLU is not homogeneous);
      * v_proj rows times c, o_proj columns of every query head in that kv group divided by c;
      * q_proj rows times c, k_proj rows divided by c, with c equal on rotary pairs (d, d + head_dim/2),
        so the rotation commutes and q.k is unchanged.
    """
    if m.arch != "llama":
        raise NotImplementedError("scale_invariant supports llama-arch models only")

    def run(mm: TinyModel) -> TinyModel:
        rng = np.random.default_rng(seed)
        nh, nkv, hd = _heads(mm)
        g = nh // nkv
        hidden, ff = _hidden_size(mm), int(mm.config["intermediate_size"])
        t = {k: v.astype(np.float64) for k, v in mm.tensors.items()}

        def c(n: int) -> np.ndarray:
            return np.exp(rng.normal(0.0, spread, size=n))

        for i in range(layer_count(mm)):
            p = f"model.layers.{i}."
            a = c(hidden)
            t[p + "input_layernorm.weight"] *= a
            for k in ("q", "k", "v"):
                t[p + f"self_attn.{k}_proj.weight"] /= a[None, :]
            b = c(hidden)
            t[p + "post_attention_layernorm.weight"] *= b
            for k in ("gate", "up"):
                t[p + f"mlp.{k}_proj.weight"] /= b[None, :]
            u = c(ff)
            t[p + "mlp.up_proj.weight"] *= u[:, None]
            t[p + "mlp.down_proj.weight"] /= u[None, :]
            v = c(nkv * hd)
            t[p + "self_attn.v_proj.weight"] *= v[:, None]
            t[p + "self_attn.o_proj.weight"] /= np.repeat(v.reshape(nkv, 1, hd), g, axis=1).reshape(-1)[None, :]
            half = c(nkv * hd // 2).reshape(nkv, hd // 2)
            qk = np.concatenate([half, half], axis=1)  # equal on rotary pairs (d, d + hd/2)
            t[p + "self_attn.k_proj.weight"] /= qk.reshape(-1)[:, None]
            t[p + "self_attn.q_proj.weight"] *= np.repeat(qk[:, None, :], g, axis=1).reshape(-1)[:, None]
        f = c(hidden)
        t["model.norm.weight"] *= f
        t["lm_head.weight"] /= f[None, :]
        return mm.replace(tensors={k: v.astype(mm.tensors[k].dtype) for k, v in t.items()})
    return _via_hf(m, run)


_LAYER_RE = re.compile(r"^(?P<pre>(?:.*\.)?(?:layers|layer|h|blocks|blk))\.(?P<i>\d+)\.(?P<rest>.+)$")


def _relayer(m: TinyModel, order: list[int]) -> TinyModel:
    """New model whose block j is the old block order[j]."""
    by_layer: dict[int, list[tuple[str, str]]] = {}
    t: dict[str, np.ndarray] = {}
    for name, w in m.tensors.items():
        mt = _LAYER_RE.match(name)
        if mt:
            by_layer.setdefault(int(mt["i"]), []).append((mt["pre"], mt["rest"]))
        else:
            t[name] = w.copy()
    for j, old in enumerate(order):
        for pre, rest in by_layer[old]:
            t[f"{pre}.{j}.{rest}"] = m.tensors[f"{pre}.{old}.{rest}"].copy()
    config = copy.deepcopy(m.config)
    config["n_layer" if m.arch == "gpt2" else "num_hidden_layers"] = len(order)
    return m.replace(tensors=t, config=config)


def prune_layers(m: TinyModel, drop: Iterable[int]) -> TinyModel:
    """Remove the listed blocks and renumber the rest (config updated)."""
    gone = set(drop)
    return _relayer(m, [i for i in range(layer_count(m)) if i not in gone])


def duplicate_layers(m: TinyModel, dup: Iterable[int]) -> TinyModel:
    """Insert a copy of each listed block right after it (indices refer to the input model)."""
    twice = list(dup)
    order: list[int] = []
    for i in range(layer_count(m)):
        order += [i] * (1 + twice.count(i))
    return _relayer(m, order)


def _vocab_tensors(m: TinyModel) -> list[str]:
    if m.arch == "llama":
        names = LLAMA_SCHEMES[llama_naming(m)]
        return [n for n in (names["embed"], names["lm_head"]) if n in m.tensors]
    return ["transformer.wte.weight"] if m.arch == "gpt2" else ["embeddings.word_embeddings.weight"]


def extend_vocab(m: TinyModel, n_new: int, seed: int) -> TinyModel:
    """Append `n_new` new token strings, with embedding/lm_head rows = mean of old rows + noise."""
    rng = np.random.default_rng(seed)
    new_tokens = [f"Ġnewword{seed}_{i}" for i in range(n_new)]
    clash = set(new_tokens) & set(m.tokens)
    if clash:
        raise ValueError(f"new tokens already in the vocabulary: {sorted(clash)[:3]}")
    t = {k: v.copy() for k, v in m.tensors.items()}
    for name in _vocab_tensors(m):
        w = t[name]
        rows = w.mean(axis=0) + 0.5 * w.std(axis=0) * rng.normal(size=(n_new, w.shape[1]))
        t[name] = np.concatenate([w, rows.astype(w.dtype)], axis=0)
    config = copy.deepcopy(m.config)
    config["vocab_size"] = len(m.tokens) + n_new
    return m.replace(tensors=t, config=config, tokens=list(m.tokens) + new_tokens)


# --------------------------------------------------------------------------------------------------
# Reference forward passes (numpy, float64)


def _rmsnorm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _layernorm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    """q (T, nh, hd), k/v (T, nkv, hd) -> (T, nh*hd); kv head j serves query heads j*g .. j*g+g-1."""
    g = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    scores = np.einsum("thd,shd->hts", q, k) / math.sqrt(q.shape[-1])
    if causal:
        n = q.shape[0]
        scores = np.where(np.tril(np.ones((n, n), dtype=bool))[None], scores, -np.inf)
    return np.einsum("hts,shd->thd", _softmax(scores), v).reshape(q.shape[0], -1)


def _rope(x: np.ndarray, theta: float) -> np.ndarray:
    """HF rotate_half rotary embedding on (T, heads, hd)."""
    n, _, hd = x.shape
    inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    ang = np.arange(n)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1))[:, None], np.sin(np.concatenate([ang, ang], -1))[:, None]
    rot = np.concatenate([-x[..., hd // 2:], x[..., : hd // 2]], axis=-1)
    return x * cos + rot * sin


def llama_forward(m: TinyModel, token_ids: Iterable[int], rope: bool = True) -> np.ndarray:
    """Logits (T, vocab) of a llama-arch model (any naming) on one sequence; matches LlamaForCausalLM."""
    names = LLAMA_SCHEMES[llama_naming(m)]
    t = {k: v.astype(np.float64) for k, v in m.tensors.items()}
    nh, nkv, hd = _heads(m)
    eps, theta = float(m.config.get("rms_norm_eps", 1e-5)), float(m.config.get("rope_theta", 10000.0))
    ids = np.asarray(list(token_ids), dtype=np.int64)
    x = t[names["embed"]][ids]
    for i in range(layer_count(m)):
        def w(role: str, i: int = i) -> np.ndarray:
            return t[names[role].format(i=i)]
        h = _rmsnorm(x, w("attn_norm"), eps)
        q = (h @ w("q").T).reshape(len(ids), nh, hd)
        k = (h @ w("k").T).reshape(len(ids), nkv, hd)
        v = (h @ w("v").T).reshape(len(ids), nkv, hd)
        if rope:
            q, k = _rope(q, theta), _rope(k, theta)
        x = x + _attention(q, k, v, causal=True) @ w("o").T
        h = _rmsnorm(x, w("mlp_norm"), eps)
        gate = h @ w("gate").T
        x = x + ((gate / (1.0 + np.exp(-gate))) * (h @ w("up").T)) @ w("down").T
    return _rmsnorm(x, t[names["final_norm"]], eps) @ t[names["lm_head"]].T


def gpt2_forward(m: TinyModel, token_ids: Iterable[int]) -> np.ndarray:
    """Logits (T, vocab) of a tiny GPT-2 (tied lm_head, gelu_new); matches GPT2LMHeadModel."""
    t = {k: v.astype(np.float64) for k, v in m.tensors.items()}
    nh, _, hd = _heads(m)
    eps = float(m.config.get("layer_norm_epsilon", 1e-5))
    ids = np.asarray(list(token_ids), dtype=np.int64)
    n = len(ids)
    x = t["transformer.wte.weight"][ids] + t["transformer.wpe.weight"][np.arange(n)]
    for i in range(layer_count(m)):
        p = f"transformer.h.{i}."
        h = _layernorm(x, t[p + "ln_1.weight"], t[p + "ln_1.bias"], eps)
        qkv = h @ t[p + "attn.c_attn.weight"] + t[p + "attn.c_attn.bias"]
        q, k, v = (a.reshape(n, nh, hd) for a in np.split(qkv, 3, axis=-1))
        x = x + _attention(q, k, v, causal=True) @ t[p + "attn.c_proj.weight"] + t[p + "attn.c_proj.bias"]
        h = _layernorm(x, t[p + "ln_2.weight"], t[p + "ln_2.bias"], eps)
        a = h @ t[p + "mlp.c_fc.weight"] + t[p + "mlp.c_fc.bias"]
        a = 0.5 * a * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (a + 0.044715 * a**3)))
        x = x + a @ t[p + "mlp.c_proj.weight"] + t[p + "mlp.c_proj.bias"]
    x = _layernorm(x, t["transformer.ln_f.weight"], t["transformer.ln_f.bias"], eps)
    return x @ t["transformer.wte.weight"].T


_erf = np.vectorize(math.erf, otypes=[np.float64])


def bert_forward(m: TinyModel, token_ids: Iterable[int], pooled: bool = False) -> np.ndarray:
    """Last hidden states (T, hidden) of a tiny BERT (token type 0, no padding); matches BertModel.

    With `pooled`, the pooler output (hidden,) instead: unlike hidden states it does not change under
    `permute_hidden`.
    """
    t = {k: v.astype(np.float64) for k, v in m.tensors.items()}
    nh, _, hd = _heads(m)
    eps = float(m.config.get("layer_norm_eps", 1e-12))
    ids = np.asarray(list(token_ids), dtype=np.int64)
    n = len(ids)
    x = (t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][np.arange(n)]
         + t["embeddings.token_type_embeddings.weight"][0])
    x = _layernorm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
    for i in range(layer_count(m)):
        p = f"encoder.layer.{i}."

        def lin(name: str, h: np.ndarray, p: str = p) -> np.ndarray:
            return h @ t[p + name + ".weight"].T + t[p + name + ".bias"]
        q, k, v = (lin(f"attention.self.{s}", x).reshape(n, nh, hd) for s in ("query", "key", "value"))
        a = lin("attention.output.dense", _attention(q, k, v, causal=False))
        x = _layernorm(x + a, t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"], eps)
        h = lin("intermediate.dense", x)
        h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
        x = _layernorm(x + lin("output.dense", h), t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"], eps)
    if pooled:
        return np.tanh(x[0] @ t["pooler.dense.weight"].T + t["pooler.dense.bias"])
    return x


def forward(m: TinyModel, token_ids: Iterable[int]) -> np.ndarray:
    """Dispatch to the reference forward pass of `m.arch`."""
    return {"llama": llama_forward, "gpt2": gpt2_forward, "bert": bert_forward}[m.arch](m, token_ids)


# --------------------------------------------------------------------------------------------------
# Writers and readers


def to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round-to-nearest-even."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16_bits(b: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32."""
    return (np.asarray(b, dtype=np.uint32) << 16).view(np.float32)


_NP_DTYPE = {"F32": np.float32, "F16": np.float16}
_TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def _write_safetensors(tensors: dict[str, np.ndarray], path: Path, dtype: str) -> None:
    if dtype in _NP_DTYPE:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v, dtype=_NP_DTYPE[dtype]) for k, v in tensors.items()}, str(path),
                  metadata={"format": "pt"})
        return
    if dtype != "BF16":
        raise ValueError(f"unsupported dtype {dtype!r} (F32, F16, BF16)")
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        blob = to_bf16_bits(tensors[name]).tobytes()
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for blob in blobs:
            fh.write(blob)


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Read every tensor of a .safetensors file as float32 (BF16 included; parsed by hand)."""
    path = Path(path)
    np_types = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}
    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
        data = fh.read()
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        arr = np.frombuffer(data[start:end], dtype=np_types[info["dtype"]])
        arr = from_bf16_bits(arr) if info["dtype"] == "BF16" else arr.astype(np.float32)
        out[name] = arr.reshape(info["shape"])
    return out


def save_safetensors_file(m: TinyModel, path: str | Path, dtype: str = "F32") -> Path:
    """Write all tensors into one bare .safetensors file (no config, no tokenizer)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_safetensors(m.tensors, path, dtype)
    return path


def _write_tokenizer(m: TinyModel, folder: Path) -> None:
    if m.arch == "bert":
        (folder / "vocab.txt").write_text("\n".join(m.tokens) + "\n", encoding="utf-8")
        return
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
        "pre_tokenizer": None, "post_processor": None, "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": {s: i for i, s in enumerate(m.tokens)}, "merges": []},
    }
    (folder / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")


def save_hf(m: TinyModel, folder: str | Path, dtype: str = "F32", shards: int = 1) -> Path:
    """Write an HF folder: config.json, model.safetensors (or N shards + index), tokenizer.json / vocab.txt."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(m.config)
    config["torch_dtype"] = _TORCH_DTYPE[dtype]
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    _write_tokenizer(m, folder)
    if shards <= 1:
        _write_safetensors(m.tensors, folder / "model.safetensors", dtype)
        return folder
    names = list(m.tensors)
    itemsize = 4 if dtype == "F32" else 2
    total = sum(m.tensors[n].size for n in names) * itemsize
    groups: list[list[str]] = [[] for _ in range(shards)]
    done = 0
    for name in names:  # fill shards in order by bytes, as transformers does
        groups[min(shards - 1, done * shards // max(1, total))].append(name)
        done += m.tensors[name].size * itemsize
    groups = [g for g in groups if g]
    weight_map = {}
    for j, group in enumerate(groups, start=1):
        fname = f"model-{j:05d}-of-{len(groups):05d}.safetensors"
        _write_safetensors({n: m.tensors[n] for n in group}, folder / fname, dtype)
        weight_map.update(dict.fromkeys(group, fname))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    return folder


def load_hf(folder: str | Path, arch: str | None = None) -> TinyModel:
    """Read back a folder written by `save_hf` (arch guessed from config model_type unless given)."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    tensors: dict[str, np.ndarray] = {}
    for f in sorted(folder.glob("*.safetensors")):
        tensors.update(load_safetensors(f))
    if (folder / "tokenizer.json").is_file():
        vocab = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
        tokens = sorted(vocab, key=vocab.__getitem__)
    else:
        tokens = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    kind = arch or {"gpt2": "gpt2", "bert": "bert"}.get(config.get("model_type", ""), "llama")
    return TinyModel(kind, config, tensors, tokens)


def _rope_interleave(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf's q/k row permutation (HF rotate_half layout -> interleaved)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def save_gguf(m: TinyModel, path: str | Path, quant: str = "Q8_0", name: str = "tiny-llama") -> Path:
    """Write a llama-arch model as GGUF with llama.cpp names, q/k rows interleaved as llama.cpp does.

    quant is any type gguf.quants.quantize can write (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, TQ1_0, TQ2_0, MXFP4, F16,
    BF16, F32) and applies to 2-D weights; a row that does not split into whole blocks falls back to F16;
    1-D norm weights stay F32, as in llama.cpp.
    """
    import gguf
    from gguf.quants import quantize

    if m.arch != "llama":
        raise NotImplementedError("save_gguf supports llama-arch models only")
    try:
        qtype = gguf.GGMLQuantizationType[quant]
    except KeyError:
        raise ValueError(f"unsupported quant {quant!r}") from None
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    ftype = gguf.LlamaFileType.ALL_F32 if quant == "F32" else getattr(gguf.LlamaFileType, f"MOSTLY_{quant}", None)
    nh, nkv, hd = _heads(m)
    cfg = m.config
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_context_length(int(cfg.get("max_position_embeddings", 256)))
    w.add_embedding_length(_hidden_size(m))
    w.add_block_count(layer_count(m))
    w.add_feed_forward_length(int(cfg["intermediate_size"]))
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-5)))
    w.add_vocab_size(len(m.tokens))
    if ftype is not None:
        w.add_file_type(int(ftype))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(m.tokens)
    w.add_token_types([int(gguf.TokenType.NORMAL)] * len(m.tokens))
    for add, key, default in ((w.add_bos_token_id, "bos_token_id", 1), (w.add_eos_token_id, "eos_token_id", 2)):
        add(int(cfg[key]) if cfg.get(key) is not None else default)
    tensors = _rename_dict(m.tensors, layer_count(m), llama_naming(m), "gguf")
    for tname, arr in tensors.items():
        a = np.asarray(arr, dtype=np.float32)
        if tname.endswith("attn_q.weight"):
            a = _rope_interleave(a, nh)
        elif tname.endswith("attn_k.weight"):
            a = _rope_interleave(a, nkv)
        t = qtype if a.ndim >= 2 else gguf.GGMLQuantizationType.F32
        if a.ndim >= 2 and a.shape[-1] % block:
            t = gguf.GGMLQuantizationType.F16
        data = quantize(np.ascontiguousarray(a), t)
        w.add_tensor(tname, data, raw_dtype=t if data.dtype == np.uint8 else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def save_pickle(m: TinyModel, path: str | Path) -> Path:
    """torch.save a plain state dict of float32 tensors (imports torch lazily)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in m.tensors.items()}, str(path))
    return path
