"""Tensor names -> roles and layer indices, for every naming scheme in roles.yaml and the structural fallback.

Each scheme is exercised with the tensor names real checkpoints of that family carry (written out here by
hand, not generated from the YAML patterns), over 12 blocks so two-digit block numbers are covered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
import pytest
import yaml

import audit.fingerprinting.roles as roles_mod
from audit.checkpoint import open_checkpoint
from audit.checkpoint.model import TensorInfo
from audit.fingerprinting.roles import Role, assign_roles
from audit.fingerprinting.view import ModelView
from tests.support import tiny

N_LAYERS = 12
H = 64
YAML = yaml.safe_load((Path(roles_mod.__file__).parent / "roles.yaml").read_text(encoding="utf-8"))


@dataclass
class Case:
    """One family's names: tensors outside blocks, per-block templates ({i}); role None = must stay unmatched."""

    scheme: str
    label: str
    top: dict[str, str | None]
    block: dict[str, str | None]
    transposed: set[str] = field(default_factory=set)  # roles stored (in, out), Conv1D-style
    xfail: str | None = None


def _wb(stem: str, role: str, bias: bool = True) -> dict[str, str]:
    """stem.weight -> role, and stem.bias -> role_bias."""
    out = {f"{stem}.weight": role}
    if bias:
        out[f"{stem}.bias"] = f"{role}_bias"
    return out


HF_LLAMA_BLOCK = {
    "model.layers.{i}.self_attn.q_proj.weight": "q", "model.layers.{i}.self_attn.k_proj.weight": "k",
    "model.layers.{i}.self_attn.v_proj.weight": "v", "model.layers.{i}.self_attn.o_proj.weight": "o",
    "model.layers.{i}.mlp.gate_proj.weight": "gate", "model.layers.{i}.mlp.up_proj.weight": "up",
    "model.layers.{i}.mlp.down_proj.weight": "down", "model.layers.{i}.input_layernorm.weight": "attn_norm",
    "model.layers.{i}.post_attention_layernorm.weight": "mlp_norm",
}
HF_LLAMA_TOP = {"model.embed_tokens.weight": "embed", "model.norm.weight": "final_norm", "lm_head.weight": "lm_head"}

CASES = [
    # ---- hf-llama: Llama/Mistral, Qwen2 (q/k/v biases), Qwen3 (q/k norms), Phi-3 (fused), Gemma-2/3, LLaVA
    # ---- hf-moe (MoE upcycling, issue 15): Mixtral experts w1/w2/w3 + router; Qwen-MoE experts, shared expert,
    # dense MLPs of mlp_only_layers blocks. Experts never take the dense MLP roles.
    Case("hf-moe", "mixtral", HF_LLAMA_TOP,
         {**{k: v for k, v in HF_LLAMA_BLOCK.items() if ".mlp." not in k},
          **{f"model.layers.{{i}}.block_sparse_moe.experts.{e}.{w}.weight": r for e in range(3)
             for w, r in (("w1", "expert_gate"), ("w2", "expert_down"), ("w3", "expert_up"))},
          "model.layers.{i}.block_sparse_moe.gate.weight": "router"}),
    Case("hf-moe", "qwen3_moe", HF_LLAMA_TOP,
         {**HF_LLAMA_BLOCK, "model.layers.{i}.self_attn.q_norm.weight": "q_norm",
          "model.layers.{i}.self_attn.k_norm.weight": "k_norm",
          **{f"model.layers.{{i}}.mlp.{x}.{r}_proj.weight": f"expert_{r}" for x in ("experts.0", "experts.11",
                                                                                  "shared_expert")
             for r in ("gate", "up", "down")},
          "model.layers.{i}.mlp.gate.weight": "router", "model.layers.{i}.mlp.shared_expert_gate.weight": "router"}),
    Case("hf-llama", "llama", HF_LLAMA_TOP,
         {**HF_LLAMA_BLOCK, "model.layers.{i}.self_attn.rotary_emb.inv_freq": None}),
    Case("hf-llama", "qwen2", HF_LLAMA_TOP,
         {**HF_LLAMA_BLOCK, **{f"model.layers.{{i}}.self_attn.{r}_proj.bias": f"{r}_bias" for r in "qkv"}}),
    Case("hf-llama", "qwen3", HF_LLAMA_TOP,
         {**HF_LLAMA_BLOCK, "model.layers.{i}.self_attn.q_norm.weight": "q_norm",
          "model.layers.{i}.self_attn.k_norm.weight": "k_norm"}),
    Case("hf-llama", "phi3", HF_LLAMA_TOP,
         {"model.layers.{i}.self_attn.qkv_proj.weight": "qkv", "model.layers.{i}.self_attn.o_proj.weight": "o",
          "model.layers.{i}.mlp.gate_up_proj.weight": "gate_up", "model.layers.{i}.mlp.down_proj.weight": "down",
          "model.layers.{i}.input_layernorm.weight": "attn_norm",
          "model.layers.{i}.post_attention_layernorm.weight": "mlp_norm"}),
    Case("hf-llama", "gemma2", {"model.embed_tokens.weight": "embed", "model.norm.weight": "final_norm"},
         {**{k: v for k, v in HF_LLAMA_BLOCK.items() if "post_attention" not in k},
          "model.layers.{i}.post_attention_layernorm.weight": "post_attn_norm",
          "model.layers.{i}.pre_feedforward_layernorm.weight": "mlp_norm",
          "model.layers.{i}.post_feedforward_layernorm.weight": "post_mlp_norm"},
         xfail="roles.yaml maps Gemma-2/3 'post_attention_layernorm' to mlp_norm, but in Gemma-2/3 it normalises "
               "the attention output (llama.cpp: blk.N.post_attention_norm -> post_attn_norm; the MLP input norm "
               "is pre_feedforward_layernorm): each block gets two mlp_norm tensors and disagrees with its GGUF"),
    Case("hf-llama", "llava", {"language_model." + k: v for k, v in HF_LLAMA_TOP.items()},
         {"language_model." + k: v for k, v in HF_LLAMA_BLOCK.items()}),
    # ---- gguf (llama.cpp names)
    Case("gguf", "llama", {"token_embd.weight": "embed", "output_norm.weight": "final_norm", "output.weight": "lm_head"},
         {"blk.{i}.attn_q.weight": "q", "blk.{i}.attn_k.weight": "k", "blk.{i}.attn_v.weight": "v",
          "blk.{i}.attn_output.weight": "o", "blk.{i}.ffn_gate.weight": "gate", "blk.{i}.ffn_up.weight": "up",
          "blk.{i}.ffn_down.weight": "down", "blk.{i}.attn_norm.weight": "attn_norm",
          "blk.{i}.ffn_norm.weight": "mlp_norm"}),
    Case("gguf", "qwen3-gemma", {"token_embd.weight": "embed", "output_norm.weight": "final_norm"},
         {"blk.{i}.attn_q.weight": "q", "blk.{i}.attn_k.weight": "k", "blk.{i}.attn_v.weight": "v",
          "blk.{i}.attn_q.bias": "q_bias", "blk.{i}.attn_output.weight": "o",
          "blk.{i}.attn_q_norm.weight": "q_norm", "blk.{i}.attn_k_norm.weight": "k_norm",
          "blk.{i}.ffn_gate.weight": "gate", "blk.{i}.ffn_up.weight": "up", "blk.{i}.ffn_down.weight": "down",
          "blk.{i}.attn_norm.weight": "attn_norm", "blk.{i}.post_attention_norm.weight": "post_attn_norm",
          "blk.{i}.ffn_norm.weight": "mlp_norm", "blk.{i}.post_ffw_norm.weight": "post_mlp_norm"}),
    # (llama.cpp also writes output_norm.bias for these; see test_hf_and_gguf_names_of_one_tensor_get_one_role)
    Case("gguf", "gpt2", {"token_embd.weight": "embed", "output_norm.weight": "final_norm"},
         {**_wb("blk.{i}.attn_qkv", "qkv"), **_wb("blk.{i}.attn_output", "o"), **_wb("blk.{i}.ffn_up", "up"),
          **_wb("blk.{i}.ffn_down", "down"), **_wb("blk.{i}.attn_norm", "attn_norm"),
          **_wb("blk.{i}.ffn_norm", "mlp_norm")}),
    # ---- meta-llama (consolidated.*.pth)
    Case("meta-llama", "llama", {"tok_embeddings.weight": "embed", "norm.weight": "final_norm", "output.weight": "lm_head"},
         {"layers.{i}.attention.wq.weight": "q", "layers.{i}.attention.wk.weight": "k",
          "layers.{i}.attention.wv.weight": "v", "layers.{i}.attention.wo.weight": "o",
          "layers.{i}.feed_forward.w1.weight": "gate", "layers.{i}.feed_forward.w3.weight": "up",
          "layers.{i}.feed_forward.w2.weight": "down", "layers.{i}.attention_norm.weight": "attn_norm",
          "layers.{i}.ffn_norm.weight": "mlp_norm"}),
    # ---- gpt2: GPT2Model (bare) and GPT2LMHeadModel ("transformer." prefix); Conv1D weights are (in, out)
    *[Case("gpt2", label, {f"{p}wte.weight": "embed", f"{p}wpe.weight": "pos_embed", **_wb(f"{p}ln_f", "final_norm"),
                           **({"lm_head.weight": "lm_head"} if p else {})},
           {**_wb(p + "h.{i}.attn.c_attn", "qkv"), **_wb(p + "h.{i}.attn.c_proj", "o"),
            **_wb(p + "h.{i}.mlp.c_fc", "up"), **_wb(p + "h.{i}.mlp.c_proj", "down"),
            **_wb(p + "h.{i}.ln_1", "attn_norm"), **_wb(p + "h.{i}.ln_2", "mlp_norm"), p + "h.{i}.attn.bias": None},
           transposed={"qkv", "o", "up", "down"})
      for label, p in (("gpt2-bare", ""), ("gpt2-lmhead", "transformer."))],
    # ---- gpt-neox (Pythia)
    Case("gpt-neox", "pythia",
         {"gpt_neox.embed_in.weight": "embed", **_wb("gpt_neox.final_layer_norm", "final_norm"),
          "embed_out.weight": "lm_head"},
         {**_wb("gpt_neox.layers.{i}.attention.query_key_value", "qkv"),
          **_wb("gpt_neox.layers.{i}.attention.dense", "o"), **_wb("gpt_neox.layers.{i}.mlp.dense_h_to_4h", "up"),
          **_wb("gpt_neox.layers.{i}.mlp.dense_4h_to_h", "down"),
          **_wb("gpt_neox.layers.{i}.input_layernorm", "attn_norm"),
          **_wb("gpt_neox.layers.{i}.post_attention_layernorm", "mlp_norm"),
          "gpt_neox.layers.{i}.attention.rotary_emb.inv_freq": None}),
    # ---- falcon: 7B (one norm, parallel attention) and 40B (ln_attn / ln_mlp)
    Case("falcon", "falcon-7b",
         {"transformer.word_embeddings.weight": "embed", **_wb("transformer.ln_f", "final_norm"), "lm_head.weight": "lm_head"},
         {"transformer.h.{i}.self_attention.query_key_value.weight": "qkv",
          "transformer.h.{i}.self_attention.dense.weight": "o", "transformer.h.{i}.mlp.dense_h_to_4h.weight": "up",
          "transformer.h.{i}.mlp.dense_4h_to_h.weight": "down", **_wb("transformer.h.{i}.input_layernorm", "attn_norm")}),
    Case("falcon", "falcon-40b",
         {"transformer.word_embeddings.weight": "embed", **_wb("transformer.ln_f", "final_norm"), "lm_head.weight": "lm_head"},
         {"transformer.h.{i}.self_attention.query_key_value.weight": "qkv",
          "transformer.h.{i}.self_attention.dense.weight": "o", "transformer.h.{i}.mlp.dense_h_to_4h.weight": "up",
          "transformer.h.{i}.mlp.dense_4h_to_h.weight": "down", **_wb("transformer.h.{i}.ln_attn", "attn_norm"),
          **_wb("transformer.h.{i}.ln_mlp", "mlp_norm")}),
    # ---- bert: BertModel (bare), BertForMaskedLM ("bert." prefix), RoBERTa ("roberta." prefix)
    *[Case("bert", label,
           {f"{p}embeddings.word_embeddings.weight": "embed", f"{p}embeddings.position_embeddings.weight": "pos_embed",
            f"{p}embeddings.token_type_embeddings.weight": "type_embed", **_wb(f"{p}embeddings.LayerNorm", "embed_norm"),
            f"{p}pooler.dense.weight": None},
           {**{f"{p}encoder.layer.{{i}}.attention.self.{n}.weight": r for n, r in (("query", "q"), ("key", "k"), ("value", "v"))},
            **{f"{p}encoder.layer.{{i}}.attention.self.{n}.bias": f"{r}_bias" for n, r in (("query", "q"), ("key", "k"), ("value", "v"))},
            **_wb(p + "encoder.layer.{i}.attention.output.dense", "o"),
            **_wb(p + "encoder.layer.{i}.attention.output.LayerNorm", "attn_norm"),
            **_wb(p + "encoder.layer.{i}.intermediate.dense", "up"), **_wb(p + "encoder.layer.{i}.output.dense", "down"),
            **_wb(p + "encoder.layer.{i}.output.LayerNorm", "mlp_norm")})
      for label, p in (("bert-bare", ""), ("bert-mlm", "bert."), ("roberta", "roberta."))],
    # ---- phi (Phi-1/1.5/2)
    Case("phi", "phi-2",
         {"model.embed_tokens.weight": "embed", **_wb("model.final_layernorm", "final_norm"), **_wb("lm_head", "lm_head")},
         {**_wb("model.layers.{i}.self_attn.q_proj", "q"), **_wb("model.layers.{i}.self_attn.k_proj", "k"),
          **_wb("model.layers.{i}.self_attn.v_proj", "v"), **_wb("model.layers.{i}.self_attn.dense", "o"),
          **_wb("model.layers.{i}.mlp.fc1", "up"), **_wb("model.layers.{i}.mlp.fc2", "down"),
          **_wb("model.layers.{i}.input_layernorm", "attn_norm")}),
    # ---- chatglm (ChatGLM2/3)
    Case("chatglm", "chatglm3",
         {"transformer.embedding.word_embeddings.weight": "embed", "transformer.encoder.final_layernorm.weight": "final_norm",
          "transformer.output_layer.weight": "lm_head", "transformer.rotary_pos_emb.inv_freq": None},
         {**_wb("transformer.encoder.layers.{i}.self_attention.query_key_value", "qkv"),
          "transformer.encoder.layers.{i}.self_attention.dense.weight": "o",
          "transformer.encoder.layers.{i}.mlp.dense_h_to_4h.weight": "gate_up",
          "transformer.encoder.layers.{i}.mlp.dense_4h_to_h.weight": "down",
          "transformer.encoder.layers.{i}.input_layernorm.weight": "attn_norm",
          "transformer.encoder.layers.{i}.post_attention_layernorm.weight": "mlp_norm"}),
    # ---- baichuan (W_pack)
    Case("baichuan", "baichuan2", HF_LLAMA_TOP,
         {"model.layers.{i}.self_attn.W_pack.weight": "qkv", "model.layers.{i}.self_attn.o_proj.weight": "o",
          **{k: v for k, v in HF_LLAMA_BLOCK.items() if "_proj" not in k or "mlp" in k}}),
    # ---- onnx-export: BERT-family ONNX exports under a wrapper prefix (names the ONNX reader recovers)
    *[Case("onnx-export", label,
           {f"{p}embeddings.word_embeddings.weight": "embed", f"{p}embeddings.position_embeddings.weight": "pos_embed",
            f"{p}embeddings.token_type_embeddings.weight": "type_embed", **_wb(f"{p}embeddings.LayerNorm", "embed_norm")},
           {**{f"{p}encoder.layer.{{i}}.attention.self.{n}.weight": r for n, r in (("query", "q"), ("key", "k"), ("value", "v"))},
            **{f"{p}encoder.layer.{{i}}.attention.self.{n}.bias": f"{r}_bias" for n, r in (("query", "q"), ("key", "k"), ("value", "v"))},
            **_wb(p + "encoder.layer.{i}.attention.output.dense", "o"),
            **_wb(p + "encoder.layer.{i}.attention.output.LayerNorm", "attn_norm"),
            **_wb(p + "encoder.layer.{i}.intermediate.dense", "up"), **_wb(p + "encoder.layer.{i}.output.dense", "down"),
            **_wb(p + "encoder.layer.{i}.output.LayerNorm", "mlp_norm")})
      for label, p in (("sentence-transformers", "model.0.auto_model."), ("dynamo-wrapper", "inner."))],
]


def _shape(name: str, role: str | None) -> tuple[int, ...]:
    if name.endswith("inv_freq"):
        return (H // 8,)
    if name.endswith("attn.bias"):  # GPT-2's causal-mask buffer
        return (1, 1, 128, 128)
    if name.endswith(".bias") or (role or "").endswith("norm"):
        return (3 * H,) if role == "qkv_bias" else (H,)
    if role in ("embed", "lm_head"):
        return (512, H)
    if role == "gate_up":  # [gate; up]: twice the MLP width
        return (8 * H, H)
    return (4 * H, H) if role in ("up", "qkv", "gate") else (H, 4 * H) if role == "down" else (H, H)


def _expected(case: Case) -> dict[str, tuple[str | None, int | None]]:
    out: dict[str, tuple[str | None, int | None]] = {name: (role, None) for name, role in case.top.items()}
    for i in range(N_LAYERS):
        for tmpl, role in case.block.items():
            out[tmpl.format(i=i)] = (role, i if role is not None else None)
    return out


def _tensors(names: dict[str, tuple[str | None, int | None]]) -> dict[str, TensorInfo]:
    return {n: TensorInfo(n, _shape(n, r), "F32", Path("x.safetensors")) for n, (r, _) in names.items()}


def _case(scheme: str, label: str) -> Case:
    return next(c for c in CASES if c.scheme == scheme and c.label == label)


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=f"{case.scheme}:{case.label}", marks=marks)


def test_every_yaml_scheme_and_role_is_covered() -> None:
    assert {c.scheme for c in CASES} == set(YAML["schemes"])
    for scheme, roles in YAML["schemes"].items():
        tested = {r.removesuffix("_bias") for c in CASES if c.scheme == scheme
                  for r in (*c.top.values(), *c.block.values()) if r}
        assert set(roles) <= tested, f"{scheme}: roles without a test case: {sorted(set(roles) - tested)}"


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_scheme_maps_each_tensor_to_role_and_layer(case: Case) -> None:
    expected = _expected(case)
    rm = assign_roles(_tensors(expected))
    assert rm.scheme == case.scheme
    got = {n: (r.role, r.layer) for n, r in rm.roles.items()}
    want = {n: rl for n, rl in expected.items() if rl[0] is not None}
    assert got == want
    assert sorted(rm.unmatched) == sorted(n for n, (r, _) in expected.items() if r is None)
    assert rm.layers() == list(range(N_LAYERS))
    for n, r in rm.roles.items():
        if not n.endswith(".bias"):
            assert r.transpose == (r.role in case.transposed), n


# ------------------------------------------------------------ HF names and their llama.cpp (GGUF) names agree

_GEMMA_NORM = ("Gemma-2/3 'post_attention_layernorm' is mlp_norm under hf-llama but its llama.cpp name "
               "blk.N.post_attention_norm is post_attn_norm under gguf")
_GPT2_POS = ("the gguf scheme has no role for llama.cpp's position_embd.weight (GPT-2 wpe, pos_embed under gpt2) "
             "nor for output_norm.bias (ln_f.bias, final_norm_bias under gpt2), though it accepts attn_norm.bias "
             "and ffn_norm.bias")


def _role_layer(r: Role | None) -> tuple[str, int | None] | None:
    return (r.role, r.layer) if r is not None else None


@pytest.mark.parametrize(("arch", "names", "why"), [
    ("LLAMA", [*HF_LLAMA_TOP, *HF_LLAMA_BLOCK], None),
    ("QWEN2", [*HF_LLAMA_TOP, *HF_LLAMA_BLOCK, "model.layers.{i}.self_attn.q_proj.bias"], None),
    ("QWEN3", [*HF_LLAMA_TOP, *HF_LLAMA_BLOCK, "model.layers.{i}.self_attn.q_norm.weight",
               "model.layers.{i}.self_attn.k_norm.weight"], None),
    ("GEMMA2", [*_case("hf-llama", "gemma2").top, *_case("hf-llama", "gemma2").block], _GEMMA_NORM),
    ("PHI3", [*HF_LLAMA_TOP, *_case("hf-llama", "phi3").block], None),
    ("GPT2", [n for n, r in (*_case("gpt2", "gpt2-lmhead").top.items(), *_case("gpt2", "gpt2-lmhead").block.items())
              if r is not None and r != "lm_head"], _GPT2_POS),
], ids=["llama", "qwen2", "qwen3", "gemma2", "phi3", "gpt2"])
def test_hf_and_gguf_names_of_one_tensor_get_one_role(arch: str, names: list[str], why: str | None, request) -> None:
    """Converting to GGUF renames tensors; the role (what compare_views matches layers by) must not change."""
    if why:
        request.applymarker(pytest.mark.xfail(strict=True, reason=why))
    tmap = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch), N_LAYERS)
    hf_names = {t.format(i=i) for t in names for i in (range(N_LAYERS) if "{i}" in t else [0])}
    to_gguf = {}
    for n in hf_names:
        g = tmap.get_name(n, try_suffixes=(".weight", ".bias"))
        assert g is not None, n
        to_gguf[n] = g
    # a conversion keeps each tensor's shape: shapes follow the HF role (llama.cpp stores Phi-3's gate_up_proj
    # as blk.N.ffn_up, told from a plain up projection by being twice as wide as ffn_down's input)
    hf_role = {t.format(i=i): r for c in CASES for t, r in (*c.top.items(), *c.block.items())
               for i in (range(N_LAYERS) if "{i}" in t else [0])}
    hf_tensors = _tensors({n: (hf_role.get(n), None) for n in hf_names})
    hf_roles = assign_roles(hf_tensors)
    gg_roles = assign_roles({g: TensorInfo(g, hf_tensors[n].shape, "F32", Path("x.gguf")) for n, g in to_gguf.items()})
    assert gg_roles.scheme == "gguf"
    pairs = {n: (_role_layer(hf_roles.roles.get(n)), _role_layer(gg_roles.roles.get(g))) for n, g in to_gguf.items()}
    assert {n: p for n, p in pairs.items() if p[0] != p[1]} == {}


# ------------------------------------------------------------ checkpoints on disk, and the structural fallback


def _save(m: tiny.TinyModel, kind: str, folder: Path) -> Path:
    if kind == "gguf":
        return tiny.save_gguf(m, folder / "m.gguf", quant="F32")
    if kind == "file":
        return tiny.save_safetensors_file(m, folder / "m.safetensors")
    return tiny.save_hf(m, folder / "m")


@pytest.mark.parametrize(("make", "kind", "scheme"), [
    (lambda: tiny.make_llama(0), "hf", "hf-llama"),
    (lambda: tiny.rename_tensors(tiny.make_llama(0), "meta"), "file", "meta-llama"),
    (lambda: tiny.make_llama(0), "gguf", "gguf"),
    (lambda: tiny.make_gpt2(0), "hf", "gpt2"),
    (lambda: tiny.make_bert(0), "hf", "bert"),
], ids=["hf-llama", "meta-llama", "gguf", "gpt2", "bert"])
def test_checkpoints_on_disk_open_with_their_scheme(make, kind, scheme, tmp_path) -> None:
    m = make()
    view = ModelView(open_checkpoint(_save(m, kind, tmp_path)))
    assert view.roles.scheme == scheme
    assert view.roles.layers() == list(range(tiny.layer_count(m)))
    assert view.hidden == H
    assert view.vocab_rows() == len(m.tokens)
    assert view.embedding_rows(np.arange(3)).shape == (3, H)
    for layer in view.roles.layers():
        weights = view.layer_weights(layer)
        assert weights, layer
        for role, name, sides in weights:
            w = view.matrix(name)  # (out, in)
            if role in ("q", "k", "v", "qkv", "gate", "up"):
                assert sides == ["in"] and w.shape[1] == H, name
            if role in ("o", "down"):
                assert sides == ["out"] and w.shape[0] == H, name


def _opaque(m: tiny.TinyModel) -> tiny.TinyModel:
    """HF llama names -> names with no hint a regex could use (roles only from block numbers and shapes)."""
    table = {"embed_tokens": "lookup.table", "norm": "gain_final", "lm_head": "readout.matrix"}
    block = {"self_attn.q_proj": "mix_a", "self_attn.k_proj": "mix_b", "self_attn.v_proj": "mix_c",
             "self_attn.o_proj": "mix_d", "mlp.gate_proj": "ff_a", "mlp.up_proj": "ff_b", "mlp.down_proj": "ff_c",
             "input_layernorm": "gain_a", "post_attention_layernorm": "gain_b"}
    out = {}
    for name, w in m.tensors.items():
        parts = name.removeprefix("model.").removesuffix(".weight")
        if parts.startswith("layers."):
            _, i, rest = parts.split(".", 2)
            out[f"backbone.cells.{i}.{block[rest]}.kernel"] = w.copy()
        else:
            out[f"backbone.{table[parts]}.kernel"] = w.copy()
    return m.replace(tensors=out, config={**m.config, "model_type": "acme-lm"})


@pytest.fixture(scope="module")
def madeup_views(tmp_path_factory) -> tuple[ModelView, ModelView]:
    base = tiny.make_llama(0)
    d = tmp_path_factory.mktemp("roles")
    ref = ModelView(open_checkpoint(tiny.save_hf(base, d / "hf")))
    view = ModelView(open_checkpoint(tiny.save_hf(tiny.rename_tensors(base, "madeup"), d / "madeup")))
    return view, ref


def test_made_up_names_fall_back_to_structure(madeup_views) -> None:
    view, ref = madeup_views
    names = tiny.LLAMA_SCHEMES["madeup"]
    assert view.roles.scheme == "structural"
    assert view.roles.layers() == ref.roles.layers()
    assert view.hidden == ref.hidden
    assert view.embed_name() == names["embed"]
    assert view.roles.find("lm_head") == names["lm_head"]
    assert view.roles.find("final_norm") == names["final_norm"]
    np.testing.assert_array_equal(view.embedding_rows(np.arange(10)), ref.embedding_rows(np.arange(10)))
    for layer in ref.roles.layers():
        assert len(view.layer_weights(layer)) == len(ref.layer_weights(layer))
        assert [r for r, _ in view.layer_norms(layer)] == ["attn_norm", "mlp_norm"]


@pytest.mark.parametrize("role", [r for r, t in tiny.LLAMA_SCHEMES["madeup"].items() if "{i}" in t])
def test_made_up_block_names_get_their_hinted_role(madeup_views, role) -> None:
    """madeup names carry hints (wq, wk, wv, wo, w_gate, w_in, w_out, norm_attn, norm_ffn)."""
    view, _ = madeup_views
    tmpl = tiny.LLAMA_SCHEMES["madeup"][role]
    got = [(view.roles.roles[tmpl.format(i=i)].role, view.roles.roles[tmpl.format(i=i)].layer)
           for i in view.roles.layers()]
    assert got == [(role, i) for i in view.roles.layers()]


def test_opaque_names_still_find_layers_and_embedding(tmp_path) -> None:
    base = tiny.make_llama(0)
    ref = ModelView(open_checkpoint(tiny.save_hf(base, tmp_path / "hf")))
    view = ModelView(open_checkpoint(tiny.save_hf(_opaque(base), tmp_path / "opaque")))
    assert view.roles.scheme == "structural"
    assert view.roles.layers() == ref.roles.layers()
    assert view.hidden == ref.hidden
    assert view.vocab_rows() == ref.vocab_rows()
    np.testing.assert_array_equal(view.embedding_rows(np.arange(10)), ref.embedding_rows(np.arange(10)))
    assert view.roles.find("final_norm") == "backbone.gain_final.kernel"
    for layer in ref.roles.layers():
        # every 2-D block weight is kept (square ones are ambiguous without names, so sides are not pinned)
        assert len(view.layer_weights(layer)) == len(ref.layer_weights(layer)) == 7
        assert all(sides for _, _, sides in view.layer_weights(layer))
        assert [r for r, _ in view.layer_norms(layer)] == ["attn_norm", "mlp_norm"]
