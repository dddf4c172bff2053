"""Fused projections (Phi-3 qkv_proj / gate_up_proj, GPT-2 c_attn, GPT-NeoX / Falcon / ChatGLM query_key_value)
are split into virtual q/k/v and gate/up tensors, so a fused checkpoint compares role by role with an unfused one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audit.checkpoint import open_checkpoint
from audit.checkpoint.model import TensorInfo
from audit.fingerprinting.roles import assign_roles, fused_parts, fused_summary
from audit.fingerprinting.view import ModelView
from tests.conftest import compare_record
from tests.support import tiny
from tests.support.real_fused import fuse_llama, phi3_config, unfuse_gpt2, unfuse_phi3

PACKAGING_ONLY = {"renamed-tensors", "format-conversion", "exact-copy"}


@pytest.fixture(scope="module")
def models(tiny_dir: Path) -> dict[str, Path]:
    base = tiny.make_llama(0)  # 4 heads, 2 kv heads (GQA): q, k, v blocks of unequal size
    ft = tiny.finetune(base, scale=0.05, seed=3)
    gpt2 = tiny.make_gpt2(0)
    d = tiny_dir / "fused"
    return {
        "base": tiny.save_hf(base, d / "base"),
        "fused": tiny.save_hf(base.replace(tensors=fuse_llama(base.tensors), config=phi3_config(base.config)),
                              d / "fused"),
        "fused_ft": tiny.save_hf(ft.replace(tensors=fuse_llama(ft.tensors), config=phi3_config(base.config)),
                                 d / "fused_ft"),
        "independent": tiny.save_hf(tiny.make_llama(7), d / "independent"),
        "gpt2": tiny.save_hf(gpt2, d / "gpt2"),
        "gpt2_unfused": tiny.save_hf(gpt2.replace(tensors=unfuse_gpt2(gpt2.tensors, 64)), d / "gpt2_unfused"),
    }


def _view(path: Path) -> ModelView:
    return ModelView(open_checkpoint(path))


def test_conversion_helpers_round_trip() -> None:
    base = tiny.make_llama(0)
    back = unfuse_phi3(fuse_llama(base.tensors), 4, 2)
    assert back.keys() == base.tensors.keys()
    for name, w in base.tensors.items():
        np.testing.assert_array_equal(back[name], w)


def test_fused_parts_are_the_unfused_tensors(models) -> None:
    fused, base = _view(models["fused"]), _view(models["base"])
    assert fused.roles.scheme == "hf-llama"
    assert fused.roles.layers() == base.roles.layers()
    for layer in base.roles.layers():
        want = {role: name for role, name, _ in base.layer_weights(layer)}
        got = {role: name for role, name, _ in fused.layer_weights(layer)}
        assert sorted(got) == sorted(want) == ["down", "gate", "k", "o", "q", "up", "v"]
        for role in ("q", "k", "v", "gate", "up"):
            assert fused.oriented_shape(got[role]) == base.oriented_shape(want[role])
            np.testing.assert_array_equal(fused.matrix(got[role]), base.matrix(want[role]))
    assert fused_summary(fused.roles) == ("fused mlp.gate_up_proj -> gate, up and self_attn.qkv_proj -> q, k, v "
                                          f"in {len(base.roles.layers())} layers")
    assert fused_summary(base.roles) is None
    parent = "model.layers.0.self_attn.qkv_proj.weight"
    assert fused.roles.fused[parent] == [f"{parent}:{r}" for r in "qkv"]
    assert parent not in fused.roles.roles  # compared through its parts only
    assert parent in fused.ckpt.stored_tensors and f"{parent}:q" not in fused.ckpt.stored_tensors


def test_a_row_part_reads_only_its_rows(models) -> None:
    view = _view(models["fused"])
    ckpt = view.ckpt
    assert ckpt.io is not None
    name = "model.layers.2.self_attn.qkv_proj.weight:k"
    n_rows, width = ckpt.tensors[name].shape
    before = ckpt.io.bytes_read
    ckpt.read_rows(name, np.array([3]))
    assert ckpt.io.bytes_read - before == width * 4  # one F32 row, nothing else of the fused tensor
    got = ckpt.read_rows(name, np.array([3, 0]))
    np.testing.assert_array_equal(got, tiny.make_llama(0).tensors["model.layers.2.self_attn.k_proj.weight"][[3, 0]])
    np.testing.assert_array_equal(ckpt.read_rows(name, slice(1, 3)), ckpt.read(name)[1:3])


def test_gpt2_c_attn_splits_by_columns(models) -> None:
    view = _view(models["gpt2"])
    ref = tiny.load_hf(models["gpt2_unfused"], "gpt2").tensors
    for r in "qkv":
        name = f"transformer.h.1.attn.c_attn.weight:{r}"
        assert view.roles.roles[name].role == r and view.roles.roles[name].transpose
        assert view.oriented_shape(name) == (64, 64)
        np.testing.assert_array_equal(view.matrix(name), ref[f"transformer.h.1.attn.{r}_proj.weight"])
        # Conv1D rows are hidden units: a part's rows are those rows' columns of the part
        np.testing.assert_array_equal(view.hidden_rows(name, np.array([5, 7])), view.matrix(name).T[[5, 7]])


# ---------------------------------------------------------------- each family's row layout, from the head counts

def _parts_of(name: str, shape: tuple[int, int], config: dict[str, Any], others: dict[str, tuple[int, ...]]):
    tensors = {n: TensorInfo(n, s, "F32", Path("x")) for n, s in {name: shape, **others}.items()}
    rm = assign_roles(tensors)
    return {p.name.rsplit(":", 1)[1]: p.index for p in fused_parts(rm, tensors, config) if p.parent == name}


def _rows(*blocks: np.ndarray) -> np.ndarray:
    return np.concatenate(blocks)


H, HEADS, HD = 32, 4, 8
Q = np.arange(HEADS * HD)  # stand-in row ids of the unfused q, k, v (k, v offset so every id is unique)


def _expect(parts: dict[str, np.ndarray], packed: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
    """`packed[i]` is the unfused row that fused row i holds; each part must list its rows in unfused order."""
    assert sorted(parts) == ["k", "q", "v"]
    np.testing.assert_array_equal(packed[parts["q"]], Q)
    np.testing.assert_array_equal(packed[parts["k"]], k)
    np.testing.assert_array_equal(packed[parts["v"]], v)


def test_gpt_neox_interleaves_q_k_v_per_head() -> None:
    k, v = Q + 1000, Q + 2000
    # modeling_gpt_neox: qkv.view(..., heads, 3 * head_dim) then split: per head its q, k and v rows
    packed = np.stack([Q.reshape(HEADS, HD), k.reshape(HEADS, HD), v.reshape(HEADS, HD)], axis=1).ravel()
    parts = _parts_of("gpt_neox.layers.0.attention.query_key_value.weight", (3 * H, H),
                      {"num_attention_heads": HEADS, "hidden_size": H},
                      {"gpt_neox.layers.0.attention.dense.weight": (H, H)})
    _expect(parts, packed, k, v)


@pytest.mark.parametrize("kv", [1, 2])
def test_falcon_new_architecture_groups_q_heads_with_their_kv_head(kv: int) -> None:
    k, v = np.arange(kv * HD) + 1000, np.arange(kv * HD) + 2000
    g = HEADS // kv
    # modeling_falcon (new_decoder_architecture): view(kv, g + 2, head_dim): g q heads, one k, one v per group
    packed = np.concatenate([np.concatenate([Q.reshape(kv, g * HD)[j], k.reshape(kv, HD)[j], v.reshape(kv, HD)[j]])
                             for j in range(kv)])
    parts = _parts_of("transformer.h.0.self_attention.query_key_value.weight", (len(packed), H),
                      {"num_attention_heads": HEADS, "num_kv_heads": kv, "new_decoder_architecture": True,
                       "hidden_size": H}, {"transformer.h.0.self_attention.dense.weight": (H, H)})
    _expect(parts, packed, k, v)


def test_falcon_7b_multi_query_is_q_then_one_k_and_one_v_head() -> None:
    k, v = np.arange(HD) + 1000, np.arange(HD) + 2000
    parts = _parts_of("transformer.h.0.self_attention.query_key_value.weight", ((HEADS + 2) * HD, H),
                      {"num_attention_heads": HEADS, "multi_query": True, "hidden_size": H},
                      {"transformer.h.0.self_attention.dense.weight": (H, H)})
    _expect(parts, _rows(Q, k, v), k, v)


def test_chatglm_blocks_use_the_multi_query_group_count() -> None:
    k, v = np.arange(2 * HD) + 1000, np.arange(2 * HD) + 2000
    parts = _parts_of("transformer.encoder.layers.0.self_attention.query_key_value.weight", ((HEADS + 4) * HD, H),
                      {"num_attention_heads": HEADS, "multi_query_attention": True, "multi_query_group_num": 2,
                       "kv_channels": HD, "hidden_size": H},
                      {"transformer.encoder.layers.0.self_attention.dense.weight": (H, H)})
    _expect(parts, _rows(Q, k, v), k, v)


def test_head_counts_that_do_not_add_up_leave_the_weight_fused() -> None:
    name = "model.layers.0.self_attn.qkv_proj.weight"
    others = {"model.layers.0.self_attn.o_proj.weight": (H, H)}
    assert _parts_of(name, (3 * H + 8, H), {"num_attention_heads": HEADS}, others) == {}
    # no head counts at all: equal thirds, the only [q; k; v] split the shape allows
    assert [len(i) for i in _parts_of(name, (3 * H, H), {}, others).values()] == [H, H, H]


def test_gguf_ffn_up_twice_as_wide_as_ffn_down_is_a_fused_gate_up() -> None:
    """llama.cpp stores Phi-3's gate_up_proj as blk.N.ffn_up: told from GPT-2's plain ffn_up by the down width."""
    fused = assign_roles({n: TensorInfo(n, s, "F32", Path("x")) for n, s in {
        "blk.0.ffn_up.weight": (2 * 96, H), "blk.0.ffn_down.weight": (H, 96), "blk.0.attn_output.weight": (H, H)}.items()})
    plain = assign_roles({n: TensorInfo(n, s, "F32", Path("x")) for n, s in {
        "blk.0.ffn_up.weight": (4 * H, H), "blk.0.ffn_down.weight": (H, 4 * H), "blk.0.attn_output.weight": (H, H)}.items()})
    assert fused.roles["blk.0.ffn_up.weight"].role == "gate_up"
    assert plain.roles["blk.0.ffn_up.weight"].role == "up"


# ---------------------------------------------------------------- what `provaudit compare` says

def _ops(rec: dict) -> set[str]:
    return {o["name"] for o in rec["comparisons"][0]["operations"]}


@pytest.mark.parametrize(("cand", "ref"), [("fused", "base"), ("base", "fused"), ("gpt2_unfused", "gpt2"),
                                           ("gpt2", "gpt2_unfused")])
def test_a_fused_unfused_conversion_is_derived_by_packaging_only(run_cli, models, cand, ref) -> None:
    rec = compare_record(run_cli, models[cand], models[ref])
    assert rec["verdict"]["label"] == "derived"
    assert rec["verdict"]["parent"] == "parent"
    assert "renamed-tensors" in _ops(rec) and _ops(rec) <= PACKAGING_ONLY
    layout = next(o["detail"] for o in rec["comparisons"][0]["operations"] if o["name"] == "format-conversion")
    assert "fused" in layout and "compared part by part" in layout


def test_a_fused_fine_tune_is_fine_tuned_and_an_independent_model_original(run_cli, models) -> None:
    rec = compare_record(run_cli, models["fused_ft"], models["base"])
    assert rec["verdict"]["label"] in ("fine-tuned", "derived")
    assert _ops(rec) <= PACKAGING_ONLY - {"exact-copy"}
    rec = compare_record(run_cli, models["fused"], models["independent"])
    assert rec["verdict"]["label"] == "original"
