"""MoE upcycling on real weights: a Mixtral built from SmolLM2-135M-Instruct's dense MLPs and trained 2 steps
(tests/support/real_moe.py) names every expert of every layer as a copy of the base's MLP of that layer, with
new routers; an independently trained model of the same config is no parent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from audit.checkpoint.locate import open_checkpoint
from audit.fingerprinting.view import ModelView
from audit.lineage.align import align_hidden
from audit.lineage.upcycling import UpcyclingFinding, find_upcycling
from audit.record.names import Operation
from tests.support.real_moe import NUM_EXPERTS, build_moe_cases

pytestmark = pytest.mark.real

LAYERS = 30  # SmolLM2-135M


@pytest.fixture(scope="module")
def moe() -> Path:
    return build_moe_cases()["mixtral_upcycled"]


def _find(cand: Path, parent: Path) -> UpcyclingFinding | None:
    c, p = ModelView(open_checkpoint(cand)), ModelView(open_checkpoint(parent))
    return find_upcycling(c, p, align_hidden(c, p))


def test_fixture_experts_were_trained_away_from_the_dense_mlp(moe: Path, real_cases: dict[str, Path]) -> None:
    # the case is what it claims: each saved expert is close to, but not equal to, the base MLP of its layer
    with safe_open(moe / "model.safetensors", "np") as f, \
            safe_open(real_cases["base"] / "model.safetensors", "np") as g:
        w1 = f.get_tensor("model.layers.5.block_sparse_moe.experts.2.w1.weight")
        gate = g.get_tensor("model.layers.5.mlp.gate_proj.weight")
    assert w1.shape == gate.shape and not np.array_equal(w1, gate)
    assert np.corrcoef(w1.ravel(), gate.ravel())[0, 1] > 0.99


def test_every_expert_is_named_as_a_copy_of_its_layers_mlp(moe: Path, real_cases: dict[str, Path]) -> None:
    found = _find(moe, real_cases["base"])
    assert found is not None and found.operation is Operation.UPCYCLING
    assert found.expert_map() == {(i, str(e)): i for i in range(LAYERS) for e in range(NUM_EXPERTS)}
    assert found.log10_p < -100
    assert found.routers_new and len(found.routers) == LAYERS
    assert f"{LAYERS * NUM_EXPERTS} of {LAYERS * NUM_EXPERTS} experts in {LAYERS} MoE layers" in found.detail


def test_an_independent_model_is_not_the_parent(moe: Path, real_cases: dict[str, Path]) -> None:
    assert _find(moe, real_cases["independent"]) is None
