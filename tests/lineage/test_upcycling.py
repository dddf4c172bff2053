"""MoE upcycling on tiny checkpoints: experts copied from a dense parent's MLPs are named, routers are new."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from audit.checkpoint.locate import open_checkpoint
from audit.fingerprinting.view import ModelView
from audit.lineage.align import align_hidden
from audit.lineage.compare import compare_views
from audit.lineage.upcycling import find_upcycling
from audit.record.names import Operation
from tests.support.tiny import TinyModel, make_llama, permute_hidden, save_hf

N_EXPERTS = 4


def upcycle(dense: TinyModel, style: str = "mixtral", noise: float = 0.05, seed: int = 7,
            shuffle_neurons: bool = False) -> TinyModel:
    """A Mixtral- or Qwen2-MoE-style model whose experts are the dense MLP of their layer plus noise."""
    rng = np.random.default_rng(seed)
    t = {k: v for k, v in dense.tensors.items() if ".mlp." not in k}
    layers, hidden = dense.config["num_hidden_layers"], dense.config["hidden_size"]
    for i in range(layers):
        mlp = {r: dense.tensors[f"model.layers.{i}.mlp.{r}_proj.weight"] for r in ("gate", "up", "down")}
        for e in range(N_EXPERTS):
            w = {r: x + noise * x.std() * rng.standard_normal(x.shape).astype(np.float32) for r, x in mlp.items()}
            if shuffle_neurons:
                p = rng.permutation(w["down"].shape[1])
                w = {"gate": w["gate"][p], "up": w["up"][p], "down": w["down"][:, p]}
            if style == "mixtral":
                base = f"model.layers.{i}.block_sparse_moe.experts.{e}."
                t[base + "w1.weight"], t[base + "w3.weight"], t[base + "w2.weight"] = w["gate"], w["up"], w["down"]
            else:
                base = f"model.layers.{i}.mlp.experts.{e}."
                for r in ("gate", "up", "down"):
                    t[base + f"{r}_proj.weight"] = w[r]
        if style == "qwen2_moe":  # a shared expert beside the routed ones, with its own scalar gate
            for r, x in mlp.items():
                t[f"model.layers.{i}.mlp.shared_expert.{r}_proj.weight"] = \
                    x + noise * x.std() * rng.standard_normal(x.shape).astype(np.float32)
            t[f"model.layers.{i}.mlp.shared_expert_gate.weight"] = \
                (0.02 * rng.standard_normal((1, hidden))).astype(np.float32)
        router = (0.02 * rng.standard_normal((N_EXPERTS, hidden))).astype(np.float32)
        t[f"model.layers.{i}." + ("block_sparse_moe.gate.weight" if style == "mixtral" else "mlp.gate.weight")] = router
    config = dict(dense.config)
    if style == "mixtral":
        config.update(architectures=["MixtralForCausalLM"], model_type="mixtral", num_local_experts=N_EXPERTS,
                      num_experts_per_tok=2)
    else:
        config.update(architectures=["Qwen2MoeForCausalLM"], model_type="qwen2_moe", num_experts=N_EXPERTS,
                      num_experts_per_tok=2, moe_intermediate_size=config["intermediate_size"],
                      shared_expert_intermediate_size=config["intermediate_size"])
    return dense.replace(tensors=t, config=config)


def _expected(style: str) -> dict[tuple[int, str], int | None]:
    """Every expert (and Qwen's shared expert) of layer i copies the parent's MLP of layer i."""
    labels = [str(e) for e in range(N_EXPERTS)] + (["shared"] if style == "qwen2_moe" else [])
    return {(i, label): i for i in range(4) for label in labels}


def _view(m: TinyModel, folder: Path) -> ModelView:
    return ModelView(open_checkpoint(save_hf(m, folder)))


@pytest.fixture(scope="module")
def dense() -> TinyModel:
    return make_llama(11, layers=4)


@pytest.mark.parametrize("style", ["mixtral", "qwen2_moe"])
def test_upcycled_experts_are_named_with_their_parent_layer(dense: TinyModel, tmp_path: Path, style: str) -> None:
    cand = _view(upcycle(dense, style), tmp_path / "moe")
    parent = _view(dense, tmp_path / "dense")
    roles = {r.role for r in cand.roles.roles.values()}
    assert {"expert_down", "expert_gate", "expert_up", "router"} <= roles
    assert not roles & {"down", "gate", "up"}  # experts never take the dense MLP roles

    found = find_upcycling(cand, parent, align_hidden(cand, parent))
    assert found is not None and found.operation is Operation.UPCYCLING
    assert found.expert_map() == _expected(style)
    assert all(e.neuron_hits == e.neurons_tested for e in found.experts)
    assert found.log10_p < -6
    assert found.routers_new and len(found.routers) == (4 if style == "mixtral" else 8)
    n = len(_expected(style))
    assert f"{n} of {n} experts in 4 MoE layers" in found.detail and "router weights are new" in found.detail


def test_permuted_expert_neurons_still_found_by_the_gram(dense: TinyModel, tmp_path: Path) -> None:
    cand = _view(upcycle(dense, shuffle_neurons=True), tmp_path / "moe")
    parent = _view(dense, tmp_path / "dense")
    found = find_upcycling(cand, parent, align_hidden(cand, parent))
    assert found is not None
    assert found.expert_map() == _expected("mixtral")
    # neuron order is shuffled: the exact neuron test finds (almost) nothing, the Gram route carries the match
    assert all((e.neuron_hits or 0) <= 3 and e.gram_log10_p <= -2 for e in found.experts)


def _flip_hidden_signs(m: TinyModel, seed: int) -> TinyModel:
    """Negate a random half of the hidden units in every weight that touches them (norm weights stay)."""
    s = np.where(np.random.default_rng(seed).random(m.config["hidden_size"]) < 0.5, -1.0, 1.0).astype(np.float32)
    t = {}
    for name, w in m.tensors.items():
        if w.ndim == 1:
            t[name] = w.copy()
        elif re.search(r"(embed_tokens|lm_head|[qkv]_proj|gate_proj|up_proj)\.weight$", name):
            t[name] = w * s[None, :]
        else:  # o_proj, down_proj: hidden units are rows
            t[name] = w * s[:, None]
    return m.replace(tensors=t)


def test_experts_found_through_permuted_and_sign_flipped_hidden_units(dense: TinyModel, tmp_path: Path) -> None:
    moved = _flip_hidden_signs(permute_hidden(dense, seed=3), seed=4)
    cand = _view(upcycle(moved, "qwen2_moe"), tmp_path / "moe")
    parent = _view(dense, tmp_path / "dense")
    align = align_hidden(cand, parent)
    assert (align.signs < 0).sum() > 10 and (align.cand_dims != align.ref_dims).any()
    found = find_upcycling(cand, parent, align)
    assert found is not None
    assert found.expert_map() == _expected("qwen2_moe")
    assert all(e.similarity > 0.9 for e in found.experts)


def test_moe_upcycled_from_another_model_is_not_matched(dense: TinyModel, tmp_path: Path) -> None:
    other = make_llama(12, layers=4)
    cand = _view(upcycle(other), tmp_path / "moe")
    parent = _view(dense, tmp_path / "dense")
    assert find_upcycling(cand, parent, align_hidden(cand, parent)) is None


def test_dense_candidate_has_no_experts(dense: TinyModel, tmp_path: Path) -> None:
    cand = _view(make_llama(12, layers=4), tmp_path / "c")
    parent = _view(dense, tmp_path / "p")
    assert find_upcycling(cand, parent, align_hidden(cand, parent)) is None


def test_comparison_still_matches_layers_on_the_shared_weights(dense: TinyModel, tmp_path: Path) -> None:
    cand = _view(upcycle(dense), tmp_path / "moe")
    parent = _view(dense, tmp_path / "dense")
    cmp = compare_views(cand, parent)
    assert [(c, r) for c, r, _, _ in cmp.layer_map] == [(i, i) for i in range(4)]
    assert cmp.global_log10_p < -6
