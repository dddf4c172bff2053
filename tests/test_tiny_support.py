"""Tests of the tiny-checkpoint builders and transformations in tests/support/tiny.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.support import tiny

IDS = [5, 9, 100, 3, 77, 200, 1, 12, 64, 300]


@pytest.fixture(scope="module")
def llama() -> tiny.TinyModel:
    return tiny.make_llama(0)


def _centred_cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _snapshot(m: tiny.TinyModel) -> dict[str, bytes]:
    return {k: v.tobytes() for k, v in m.tensors.items()}


def test_llama_builder_shapes_and_determinism(llama: tiny.TinyModel) -> None:
    t = llama.tensors
    assert t["model.embed_tokens.weight"].shape == (512, 64)
    assert t["lm_head.weight"].shape == (512, 64)
    assert t["model.layers.5.self_attn.q_proj.weight"].shape == (64, 64)
    assert t["model.layers.5.self_attn.k_proj.weight"].shape == (32, 64)
    assert t["model.layers.5.self_attn.o_proj.weight"].shape == (64, 64)
    assert t["model.layers.0.mlp.gate_proj.weight"].shape == (160, 64)
    assert t["model.layers.0.mlp.down_proj.weight"].shape == (64, 160)
    assert "model.layers.6.input_layernorm.weight" not in t
    assert len(t) == 2 + 1 + 6 * 9
    assert all(v.dtype == np.float32 for v in t.values())
    assert llama.config["num_key_value_heads"] == 2 and llama.config["vocab_size"] == len(llama.tokens) == 512
    again = tiny.make_llama(0)
    assert all(np.array_equal(again.tensors[k], v) for k, v in t.items())


def test_independent_seeds_share_tokens_not_weights(llama: tiny.TinyModel) -> None:
    other = tiny.make_llama(1)
    assert other.tokens == llama.tokens and len(set(llama.tokens)) == len(llama.tokens)
    for name in ("model.layers.2.self_attn.q_proj.weight", "model.layers.2.mlp.up_proj.weight",
                 "model.embed_tokens.weight"):
        assert abs(_centred_cos(llama.tensors[name], other.tensors[name])) < 0.1
        assert _centred_cos(llama.tensors[name], tiny.finetune(llama).tensors[name]) > 0.99
    norm = llama.tensors["model.layers.0.input_layernorm.weight"]
    assert 0.3 < norm.mean() < 2.0 and norm.std() > 0.05
    col_norms = np.linalg.norm(llama.tensors["model.layers.0.self_attn.q_proj.weight"], axis=0)
    assert col_norms.std() / col_norms.mean() > 0.1  # hidden units carry a signature


def test_gpt2_and_bert_builders() -> None:
    g = tiny.make_gpt2(0)
    assert g.tensors["transformer.h.3.attn.c_attn.weight"].shape == (64, 192)  # Conv1D (in, out)
    assert g.tensors["transformer.h.0.mlp.c_fc.weight"].shape == (64, 256)
    assert g.tensors["transformer.h.0.mlp.c_proj.weight"].shape == (256, 64)
    assert g.tensors["transformer.h.0.attn.c_attn.bias"].shape == (192,)
    assert g.tensors["transformer.wte.weight"].shape == (512, 64) and "transformer.ln_f.bias" in g.tensors
    b = tiny.make_bert(0)
    assert b.tensors["encoder.layer.3.attention.self.query.weight"].shape == (64, 64)
    assert b.tensors["encoder.layer.0.intermediate.dense.weight"].shape == (128, 64)
    assert b.tensors["encoder.layer.0.output.dense.weight"].shape == (64, 128)
    assert b.tensors["encoder.layer.0.output.LayerNorm.bias"].shape == (64,)
    assert b.tokens[:3] == ["[PAD]", "[UNK]", "[CLS]"]


PRESERVING: list[Callable[[tiny.TinyModel, int], tiny.TinyModel]] = [
    tiny.permute_hidden, tiny.permute_neurons, tiny.permute_heads, tiny.scale_invariant,
]


@pytest.mark.parametrize("transform", PRESERVING, ids=lambda f: f.__name__)
def test_llama_function_preserving(llama: tiny.TinyModel, transform: Callable) -> None:
    before = _snapshot(llama)
    out = transform(llama, 3)
    assert _snapshot(llama) == before  # input untouched
    changed = [k for k in out.tensors if not np.array_equal(out.tensors[k], llama.tensors[k])]
    assert len(changed) >= 3 * tiny.layer_count(llama)
    np.testing.assert_allclose(tiny.llama_forward(out, IDS), tiny.llama_forward(llama, IDS), atol=1e-4, rtol=0)


def test_finetune_changes_function(llama: tiny.TinyModel) -> None:
    diff = np.abs(tiny.llama_forward(tiny.finetune(llama, 0.02), IDS) - tiny.llama_forward(llama, IDS)).max()
    assert diff > 1e-2


@pytest.mark.parametrize("transform", PRESERVING[:3], ids=lambda f: f.__name__)
@pytest.mark.parametrize("make", [tiny.make_gpt2, tiny.make_bert], ids=["gpt2", "bert"])
def test_gpt2_bert_function_preserving(make: Callable, transform: Callable) -> None:
    m = make(0)
    out = transform(m, 4)
    if m.arch == "bert":
        before, after = tiny.bert_forward(m, IDS, pooled=True), tiny.bert_forward(out, IDS, pooled=True)
    else:
        before, after = tiny.gpt2_forward(m, IDS), tiny.gpt2_forward(out, IDS)
    np.testing.assert_allclose(after, before, atol=1e-4, rtol=0)


@pytest.mark.parametrize("scheme", ["meta", "madeup"])
def test_rename_and_transform_renamed(llama: tiny.TinyModel, scheme: str) -> None:
    r = tiny.rename_tensors(llama, scheme)
    assert tiny.llama_naming(r) == scheme
    if scheme == "meta":
        assert {"tok_embeddings.weight", "layers.0.feed_forward.w1.weight", "layers.5.ffn_norm.weight",
                "norm.weight", "output.weight"} <= set(r.tensors)
        np.testing.assert_array_equal(r.tensors["layers.1.feed_forward.w3.weight"],
                                      llama.tensors["model.layers.1.mlp.up_proj.weight"])
    else:
        assert "transformer.blocks.0.attention.wq.weight" in r.tensors
        assert "transformer.blocks.0.ffn.w_in.weight" in r.tensors
        assert r.config["model_type"] == "acme-lm" and llama.config["model_type"] == "llama"
    assert len(r.tensors) == len(llama.tensors)
    out = tiny.permute_heads(tiny.permute_hidden(tiny.scale_invariant(r, 1), 2), 3)
    assert tiny.llama_naming(out) == scheme
    np.testing.assert_allclose(tiny.llama_forward(out, IDS), tiny.llama_forward(llama, IDS), atol=1e-4, rtol=0)


def test_prune_and_duplicate_layers(llama: tiny.TinyModel) -> None:
    pruned = tiny.prune_layers(llama, drop=[1, 4])
    assert pruned.config["num_hidden_layers"] == 4 and tiny.layer_count(llama) == 6
    np.testing.assert_array_equal(pruned.tensors["model.layers.1.self_attn.q_proj.weight"],
                                  llama.tensors["model.layers.2.self_attn.q_proj.weight"])
    assert "model.layers.4.mlp.up_proj.weight" not in pruned.tensors
    dup = tiny.duplicate_layers(llama, dup=[2])
    assert dup.config["num_hidden_layers"] == 7 and len(dup.tensors) == len(llama.tensors) + 9
    for j in (2, 3):
        np.testing.assert_array_equal(dup.tensors[f"model.layers.{j}.mlp.down_proj.weight"],
                                      llama.tensors["model.layers.2.mlp.down_proj.weight"])
    np.testing.assert_array_equal(dup.tensors["model.layers.6.mlp.down_proj.weight"],
                                  llama.tensors["model.layers.5.mlp.down_proj.weight"])
    g = tiny.prune_layers(tiny.make_gpt2(0), drop=[0])
    assert g.config["n_layer"] == 3 and "transformer.h.3.ln_1.weight" not in g.tensors


def test_extend_vocab(llama: tiny.TinyModel) -> None:
    ext = tiny.extend_vocab(llama, 40, seed=7)
    assert ext.config["vocab_size"] == len(ext.tokens) == 552 and ext.tokens[:512] == llama.tokens
    assert len(set(ext.tokens)) == 552
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert ext.tensors[name].shape == (552, 64)
        np.testing.assert_array_equal(ext.tensors[name][:512], llama.tensors[name])
    logits = tiny.llama_forward(ext, IDS)
    np.testing.assert_allclose(logits[:, :512], tiny.llama_forward(llama, IDS), atol=1e-9)
    bert = tiny.extend_vocab(tiny.make_bert(0), 8, seed=1)
    assert bert.tensors["embeddings.word_embeddings.weight"].shape == (520, 64)


@pytest.mark.parametrize("dtype,tol", [("F32", 0.0), ("F16", 1e-3), ("BF16", 1e-2)])
def test_save_hf_roundtrip(tmp_path: Path, llama: tiny.TinyModel, dtype: str, tol: float) -> None:
    folder = tiny.save_hf(llama, tmp_path / "m", dtype=dtype)
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}
    back = tiny.load_safetensors(folder / "model.safetensors")
    assert set(back) == set(llama.tensors)
    for k, v in llama.tensors.items():
        np.testing.assert_allclose(back[k], v, rtol=tol, atol=tol * 1e-2)
    if dtype != "BF16":  # the safetensors package's numpy backend cannot read bfloat16
        from safetensors.numpy import load_file

        assert all(np.array_equal(a, back[k]) for k, a in load_file(str(folder / "model.safetensors")).items())
    tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    assert tok["model"]["type"] == "BPE" and tok["model"]["vocab"]["Ġthe"] == llama.tokens.index("Ġthe")
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert cfg["num_hidden_layers"] == 6 and cfg["model_type"] == "llama"
    loaded = tiny.load_hf(folder)
    assert loaded.tokens == llama.tokens and loaded.arch == "llama"


def test_save_hf_sharded_and_bert(tmp_path: Path, llama: tiny.TinyModel) -> None:
    folder = tiny.save_hf(llama, tmp_path / "sharded", shards=3)
    index = json.loads((folder / "model.safetensors.index.json").read_text(encoding="utf-8"))
    files = sorted(set(index["weight_map"].values()))
    assert files == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert set(index["weight_map"]) == set(llama.tensors)
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in llama.tensors.values())
    for f in files:
        part = tiny.load_safetensors(folder / f)
        assert {k for k, v in index["weight_map"].items() if v == f} == set(part)
    bert = tiny.make_bert(0)
    bf = tiny.save_hf(bert, tmp_path / "bert")
    assert (bf / "vocab.txt").read_text(encoding="utf-8").splitlines() == bert.tokens
    assert not (bf / "tokenizer.json").exists()
    bare = tiny.save_safetensors_file(tiny.make_gpt2(0), tmp_path / "x" / "gpt2.safetensors")
    assert set(tiny.load_safetensors(bare)) == set(tiny.make_gpt2(0).tensors)


@pytest.mark.parametrize("quant", ["Q8_0", "F16", "F32"])
def test_save_gguf(tmp_path: Path, llama: tiny.TinyModel, quant: str) -> None:
    import gguf
    from gguf.quants import dequantize

    path = tiny.save_gguf(llama, tmp_path / "m.gguf", quant=quant)
    reader = gguf.GGUFReader(str(path))
    names = {t.name for t in reader.tensors}
    expected = {"token_embd.weight", "output_norm.weight", "output.weight"} | {
        f"blk.{i}.{r}.weight" for i in range(6) for r in
        ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "attn_norm", "ffn_norm")}
    assert names == expected
    fields = reader.fields
    assert fields["general.architecture"].contents() == "llama"
    assert fields["llama.attention.head_count_kv"].contents() == 2
    assert fields["llama.block_count"].contents() == 6
    assert fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert fields["tokenizer.ggml.tokens"].contents()[:4] == llama.tokens[:4]
    by_name = {t.name: t for t in reader.tensors}
    assert by_name["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert by_name["blk.0.ffn_down.weight"].tensor_type.name == quant
    tol = {"Q8_0": 1e-2, "F16": 1e-3, "F32": 1e-7}[quant]
    for gname, hname, heads in (("blk.2.attn_q.weight", "model.layers.2.self_attn.q_proj.weight", 4),
                                ("blk.2.attn_k.weight", "model.layers.2.self_attn.k_proj.weight", 2),
                                ("blk.2.ffn_down.weight", "model.layers.2.mlp.down_proj.weight", 0)):
        t = by_name[gname]
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(tuple(reversed(t.shape.tolist())))
        if heads:  # undo llama.cpp's rotary interleave
            w = w.reshape(heads, w.shape[0] // heads // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)
        ref = llama.tensors[hname]
        assert np.abs(w - ref).max() <= tol * np.abs(ref).max()


def test_save_pickle(tmp_path: Path, llama: tiny.TinyModel) -> None:
    torch = pytest.importorskip("torch")
    path = tiny.save_pickle(llama, tmp_path / "pytorch_model.bin")
    sd = torch.load(str(path), weights_only=True)
    assert set(sd) == set(llama.tensors)
    np.testing.assert_array_equal(sd["lm_head.weight"].numpy(), llama.tensors["lm_head.weight"])


def test_llama_forward_matches_transformers(tmp_path: Path, llama: tiny.TinyModel) -> None:
    """The numpy reference forward pass (and so the HF tensor layout) agrees with transformers."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = tiny.save_hf(llama, tmp_path / "m")
    model = transformers.LlamaForCausalLM.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        logits = model(torch.tensor([IDS])).logits[0].numpy()
    np.testing.assert_allclose(logits, tiny.llama_forward(llama, IDS), atol=1e-4, rtol=0)


def test_bf16_bits_round_to_nearest_even() -> None:
    x = np.array([1.0, -2.5, 3.14159, 1e-3, 65504.0], dtype=np.float32)
    back = tiny.from_bf16_bits(tiny.to_bf16_bits(x))
    assert np.all(np.abs(back - x) <= np.abs(x) * 2**-8)
    tie = np.array([1.0 + 2**-8], dtype=np.float32)  # exactly halfway between two bf16 values -> even (1.0)
    assert tiny.from_bf16_bits(tiny.to_bf16_bits(tie))[0] == 1.0
