"""align_hidden recovers a known hidden-unit correspondence (permutation and sign flips) exactly.

The candidate is built from the reference by a transform written here, so the expected answer is known
by construction: candidate unit j is `signs[j]` times reference unit `perm[j]`, in every weight, so the
model computes the same function (checked against the numpy reference forward pass).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from audit.checkpoint import open_checkpoint
from audit.fingerprinting.reference import live_reference
from audit.fingerprinting.view import ModelView
from audit.lineage.align import align_hidden
from tests.support import tiny

HIDDEN = 64
IDS = [5, 9, 100, 3, 77, 200, 1, 12, 64, 300]

# HF llama names -> which axis is the residual stream, and whether that axis carries a sign
_IN_COLS = re.compile(r"model\.embed_tokens\.weight|lm_head\.weight|"
                      r"model\.layers\.\d+\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)\.weight")
_OUT_ROWS = re.compile(r"model\.layers\.\d+\.(self_attn\.o_proj|mlp\.down_proj)\.weight")
_NORMS = re.compile(r"model\.layers\.\d+\.(input_layernorm|post_attention_layernorm)\.weight|model\.norm\.weight")


def transform_hidden(m: tiny.TinyModel, perm: np.ndarray, signs: np.ndarray) -> tiny.TinyModel:
    """New llama whose hidden unit j is signs[j] * old unit perm[j]; function-preserving.

    Embedding/lm_head columns and the input columns of q/k/v/gate/up take both the permutation and the
    sign; o/down rows (writes into the residual) too. RMSNorm statistics ignore order and sign, and its
    weight is elementwise, so norm weights are only permuted: the sign passes through the norm to the
    (sign-flipped) columns of the next matrix, and the final norm's sign is undone by lm_head's columns.
    """
    out: dict[str, np.ndarray] = {}
    for name, w in m.tensors.items():
        if _IN_COLS.fullmatch(name):
            out[name] = np.ascontiguousarray(w[:, perm] * signs[None, :]).astype(w.dtype)
        elif _OUT_ROWS.fullmatch(name):
            out[name] = np.ascontiguousarray(w[perm, :] * signs[:, None]).astype(w.dtype)
        elif _NORMS.fullmatch(name):
            out[name] = w[perm].copy()
        else:
            raise AssertionError(f"tensor {name} not covered by the transform")
    return m.replace(tensors=out)


def _open(m: tiny.TinyModel, folder: Path) -> ModelView:
    return ModelView(open_checkpoint(tiny.save_hf(m, folder)))


@pytest.fixture(scope="module")
def base() -> tiny.TinyModel:
    return tiny.make_llama(0, hidden=HIDDEN)


@pytest.fixture(scope="module")
def base_view(base: tiny.TinyModel, tmp_path_factory) -> ModelView:
    return _open(base, tmp_path_factory.mktemp("align") / "base")


def _case(kind: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    perm = rng.permutation(HIDDEN) if kind in ("perm", "both") else np.arange(HIDDEN)
    signs = np.where(rng.random(HIDDEN) < 0.5, -1.0, 1.0) if kind in ("signs", "both") else np.ones(HIDDEN)
    if kind == "signs":  # make sure the case really flips some units and keeps some
        assert 0 < (signs < 0).sum() < HIDDEN
    if kind == "perm":
        assert (perm != np.arange(HIDDEN)).sum() > HIDDEN // 2
    return perm, signs.astype(np.float32)


def test_transform_is_function_preserving(base: tiny.TinyModel) -> None:
    perm, signs = _case("both")
    moved = transform_hidden(base, perm, signs)
    np.testing.assert_allclose(tiny.llama_forward(moved, IDS), tiny.llama_forward(base, IDS), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["perm", "signs", "both"])
@pytest.mark.parametrize("drift", [0.0, 0.05])
def test_recovers_applied_permutation_and_signs(base, base_view, tmp_path, kind, drift) -> None:
    perm, signs = _case(kind)
    parent = tiny.finetune(base, scale=drift, seed=3) if drift else base
    cand = _open(transform_hidden(parent, perm, signs), tmp_path / "cand")
    ref = live_reference(base_view)

    al = align_hidden(cand, ref, seed=0)

    assert al.method == "embedding-anchors"
    assert al.shared_tokens == len(base.tokens)
    # candidate unit j <-> reference unit perm[j]; the result is listed in reference order
    np.testing.assert_array_equal(al.ref_dims, np.arange(HIDDEN))
    np.testing.assert_array_equal(al.cand_dims, np.argsort(perm))
    found = dict(zip(al.cand_dims.tolist(), al.ref_dims.tolist(), strict=True))
    assert [found[j] for j in range(HIDDEN)] == perm.tolist()
    flips = dict(zip(al.cand_dims.tolist(), al.signs.tolist(), strict=True))
    assert [flips[j] for j in range(HIDDEN)] == signs.tolist()
    assert al.fixed_points == int((perm == np.arange(HIDDEN)).sum())
    summary = al.summary(cand, ref)
    assert summary["sign_flips"] == int((signs < 0).sum())
    assert summary["matched_units"] == HIDDEN


def test_recovered_alignment_maps_embeddings_column_for_column(base, base_view, tmp_path) -> None:
    """With tiny's own permute_hidden (permutation unknown to the test), signed candidate columns taken in
    the recovered order reproduce the reference embedding and every layer's q_proj exactly."""
    cand = _open(tiny.permute_hidden(base, 5), tmp_path / "cand")
    al = align_hidden(cand, live_reference(base_view), seed=0)
    for name in ("model.embed_tokens.weight", "model.layers.3.self_attn.q_proj.weight", "lm_head.weight"):
        got = cand.ckpt.read(name)[:, al.cand_dims] * al.signs[None, :]
        np.testing.assert_array_equal(got, base_view.ckpt.read(name)[:, al.ref_dims])


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_unrelated_model_aligns_no_better_than_chance(base_view, tmp_path, seed) -> None:
    """A random permutation has Poisson(1) fixed points: P(>= 8) is about 1e-5."""
    cand = _open(tiny.make_llama(seed, hidden=HIDDEN), tmp_path / "other")
    al = align_hidden(cand, live_reference(base_view), seed=0)
    assert al.method == "embedding-anchors"
    assert sorted(al.cand_dims.tolist()) == list(range(HIDDEN))  # still a bijection
    assert al.fixed_points is not None and al.fixed_points < 8


def test_identity_copy_has_every_unit_fixed(base, base_view, tmp_path) -> None:
    cand = _open(base, tmp_path / "copy")
    al = align_hidden(cand, live_reference(base_view), seed=0)
    assert al.fixed_points == HIDDEN
    assert (al.signs == 1).all()
