"""The large-checkpoint generator of benchmarks/bench_large.py, at a toy size: files, shards, and the disguise."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.large_synth import (
    SCHEMES,
    SIZES,
    SafetensorsFolder,
    Shape,
    derivative_permutations,
    from_bf16,
    llama_vocab_gguf,
    shard_plan,
    tensor_name,
    write_base,
    write_derivative,
    write_tokenizer,
)
from tests.conftest import compare_record

# 128 hidden units: the weight fingerprint works over 128 units, so a narrower toy has too little to go on
TOY = Shape("toy", hidden=128, layers=2, intermediate=256, heads=4, kv_heads=2, vocab=512)
SHARD = 150_000  # bytes: the toy model (0.85 MB) spreads over several shards, as a 7B one does at 2 GB


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("large-synth")
    base = write_base(root / "base", TOY, seed=0, shard_bytes=SHARD, tokenizer="synthetic")
    return {
        "base": base,
        "derivative": write_derivative(base, root / "derivative", seed=1, noise=0.05, shard_bytes=SHARD),
        "independent": write_base(root / "independent", TOY, seed=1000, shard_bytes=SHARD, tokenizer="synthetic"),
    }


def _weights(folder: Path) -> dict[str, np.ndarray]:
    src = SafetensorsFolder(folder)
    return {name: from_bf16(src.bits(name)) for name in src.where}


def test_sizes_are_the_llama_shapes_the_benchmark_promises():
    assert SIZES["7b"].params == 6_738_415_616  # Llama-2-7B
    assert 13.4e9 < SIZES["7b"].nbytes < 13.6e9 and len(shard_plan(SIZES["7b"])) == 7
    assert 1.0e9 < SIZES["1b"].params < 1.2e9 and 3.0e9 < SIZES["3b"].params < 3.6e9


def test_base_is_a_sharded_hf_folder_with_the_declared_shapes(models):
    base = models["base"]
    config = json.loads((base / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["hidden_size"] == TOY.hidden
    index = json.loads((base / "model.safetensors.index.json").read_text())
    shards = sorted(base.glob("model-*-of-*.safetensors"))
    assert len(shards) == len(shard_plan(TOY, SHARD)) > 2
    assert {p.name for p in shards} == set(index["weight_map"].values())
    expected = {tensor_name("hf", role, layer): shape for role, layer, shape in TOY.tensors()}
    assert set(index["weight_map"]) == set(expected)
    data_bytes = 0
    for shard in shards:
        n = int.from_bytes(shard.read_bytes()[:8], "little")
        header = json.loads(shard.read_bytes()[8:8 + n])
        header.pop("__metadata__")
        assert all(index["weight_map"][name] == shard.name for name in header)
        size = sum(2 * math.prod(info["shape"]) for info in header.values())
        assert shard.stat().st_size == 8 + n + size  # complete, nothing after the last tensor
        assert size <= SHARD or len(header) == 1
        data_bytes += size
        for name, info in header.items():
            assert info["dtype"] == "BF16" and tuple(info["shape"]) == expected[name]
    assert index["metadata"]["total_size"] == data_bytes == TOY.nbytes
    tok = json.loads((base / "tokenizer.json").read_text())
    assert len(tok["model"]["vocab"]) == TOY.vocab
    assert not list(base.parent.glob("*.partial"))


def test_files_open_with_safetensors_itself(models):
    torch = pytest.importorskip("torch")
    from safetensors import safe_open

    for shard in sorted(models["derivative"].glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as fh:
            for name in fh.keys():  # noqa: SIM118 (safe_open has no __iter__)
                t = fh.get_tensor(name)
                assert t.dtype == torch.bfloat16 and bool(torch.isfinite(t).all())


def test_same_seed_same_bytes(models, tmp_path):
    again = write_base(tmp_path / "again", TOY, seed=0, shard_bytes=SHARD, tokenizer="synthetic")

    def digest(folder: Path) -> list[str]:
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.safetensors"))]

    assert digest(again) == digest(models["base"])
    assert digest(models["independent"]) != digest(models["base"])


def test_derivative_is_the_base_renamed_permuted_and_slightly_noised(models):
    base, deriv = _weights(models["base"]), _weights(models["derivative"])
    config = json.loads((models["derivative"] / "config.json").read_text())
    assert config["model_type"] == "acme-lm" and config["architectures"] == ["AcmeForCausalLM"]
    assert set(deriv) == {SCHEMES["madeup"][r].format(i=i) for r, i, _ in TOY.tensors()}
    hidden, neurons = derivative_permutations(TOY, seed=1)
    assert not np.array_equal(hidden, np.arange(TOY.hidden))
    undo = np.argsort(hidden)
    for role, layer, _ in TOY.tensors():
        b = base[tensor_name("hf", role, layer)]
        d = deriv[tensor_name("madeup", role, layer)]
        # put the derivative back in the base's order: hidden units everywhere, MLP neurons per layer
        if role in ("embed", "lm_head", "q", "k", "v"):
            d = d[:, undo]
        elif role in ("o", "down"):
            d = d[undo]
        elif d.ndim == 1:
            d = d[undo]
        if role in ("gate", "up"):
            d = d[np.argsort(neurons[layer])][:, undo]
        elif role == "down":
            d = d[:, np.argsort(neurons[layer])]
        rel = np.sqrt(np.mean((d - b) ** 2) / np.mean(b**2))
        assert 0.02 < rel < 0.1, (role, layer, rel)  # the 5% "fine-tune" noise, nothing else
        if d.ndim == 2:
            assert not np.allclose(deriv[tensor_name("madeup", role, layer)], b)  # the disguise moved weights


def test_independent_model_shares_nothing_but_the_shape(models):
    base, indep = _weights(models["base"]), _weights(models["independent"])
    for name in ("model.layers.1.mlp.up_proj.weight", "model.embed_tokens.weight"):
        r = np.corrcoef(base[name].ravel(), indep[name].ravel())[0, 1]
        assert abs(r) < 0.1, (name, r)


def test_weights_have_structure_beyond_iid_noise(models):
    w = _weights(models["base"])
    up = w["model.layers.0.mlp.up_proj.weight"]
    s = np.linalg.svd(up / np.linalg.norm(up), compute_uv=False)
    flat = np.linalg.svd(np.random.default_rng(0).standard_normal(up.shape), compute_uv=False)
    assert s[0] / s[8] > 1.5 * flat[0] / flat[8]  # the shared low-rank part
    norms = w["model.layers.0.input_layernorm.weight"], w["model.layers.1.input_layernorm.weight"]
    assert np.corrcoef(np.log(norms[0]), np.log(norms[1]))[0, 1] > 0.5  # a per-unit profile across layers


def test_the_tool_calls_the_derivative_derived_and_the_independent_model_not(models, run_cli):
    rec = compare_record(run_cli, models["derivative"], models["base"], ref_name="base")
    assert rec["verdict"]["label"] == "derived" and rec["verdict"]["parent"] == "base"
    rec = compare_record(run_cli, models["independent"], models["base"], ref_name="base")
    assert rec["verdict"]["label"] not in ("derived", "fine-tuned")


def test_llama_tokenizer_is_the_real_llama_2_vocabulary(tmp_path):
    pytest.importorskip("transformers")
    if llama_vocab_gguf(download=True) is None:  # fetched from the package index with pip when not cached
        pytest.skip("llama-cpp-python sdist vocabulary not obtainable here (no package index)")
    source = write_tokenizer(tmp_path, 32000, "llama")
    assert "Llama-2" in source
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert tok.get_vocab_size() == 32000
    assert tok.encode("Hello world").tokens == ["\u2581Hello", "\u2581world"]
