"""compute_grams / descriptors: invariant to what derivers do without changing the weights' content
(neuron and head order, per-unit scales, rotations of the non-hidden side), sensitive to new content.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from audit.checkpoint import open_checkpoint
from audit.fingerprinting.grams import LayerGrams, compute_grams, descriptors
from audit.fingerprinting.view import ModelView
from audit.lineage.compare import EFFECT_FLOOR
from tests.support import tiny
from tests.unit.test_alignment import transform_hidden

HIDDEN = 64
LAYERS = 6
IN_SIDE = ("q", "k", "v", "gate", "up")
OUT_SIDE = ("o", "down")
_HF = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
       "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


def _name(layer: int, role: str) -> str:
    return f"model.layers.{layer}.{_HF[role]}.weight"


def _view(m: tiny.TinyModel, folder: Path) -> ModelView:
    return ModelView(open_checkpoint(tiny.save_hf(m, folder)))


@pytest.fixture(scope="module")
def base() -> tiny.TinyModel:
    return tiny.make_llama(0, hidden=HIDDEN, layers=LAYERS)


@pytest.fixture(scope="module")
def dims() -> np.ndarray:
    """A subset of hidden units, in an arbitrary (unsorted) order."""
    return np.random.default_rng(4).choice(HIDDEN, 40, replace=False)


@pytest.fixture(scope="module")
def base_grams(base, dims, tmp_path_factory) -> LayerGrams:
    return compute_grams(_view(base, tmp_path_factory.mktemp("grams") / "base"), dims, None)


def _grams(m: tiny.TinyModel, folder: Path, dims: np.ndarray, signs: np.ndarray | None = None) -> LayerGrams:
    return compute_grams(_view(m, folder), dims, signs)


def _assert_same_grams(a: LayerGrams, b: LayerGrams) -> None:
    assert a.keys == b.keys
    np.testing.assert_allclose(a.grams, b.grams, atol=2e-5)
    np.testing.assert_allclose(descriptors(a.grams), descriptors(b.grams), atol=5e-4)


def _desc_corr(a: LayerGrams, b: LayerGrams) -> np.ndarray:
    """Per (layer, kind) correlation of descriptors, as compare_views computes it (rows are z-scored)."""
    assert a.keys == b.keys
    return (descriptors(a.grams) * descriptors(b.grams)).mean(axis=1)


def _map(m: tiny.TinyModel, fn) -> tiny.TinyModel:
    """Apply fn(layer, role, w) -> w to every 2-D block weight."""
    out = {}
    for name, w in m.tensors.items():
        hit = re.fullmatch(r"model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)_proj\.weight", name)
        out[name] = fn(int(hit[1]), hit[3], w).astype(np.float32) if hit else w.copy()
    return m.replace(tensors=out)


def test_grams_cover_every_row_readable_weight_and_norm(base, base_grams, dims) -> None:
    """(out, in) storage: the weights whose stored rows are hidden units are o and down; q/k/v/gate/up would
    need whole columns (every byte of the tensor) and are left out."""
    m = len(dims)
    expected = [(layer, f"{role}:out") for layer in range(LAYERS) for role in OUT_SIDE]
    assert sorted(base_grams.keys) == sorted(expected)
    assert base_grams.grams.shape == (len(expected), m, m)
    np.testing.assert_allclose(np.diagonal(base_grams.grams, axis1=1, axis2=2), 1.0, atol=1e-5)
    np.testing.assert_allclose(base_grams.grams, base_grams.grams.transpose(0, 2, 1), atol=1e-6)
    # an entry is the cosine of two hidden units' weight vectors, computed here from scratch
    k = base_grams.keys.index((4, "down:out"))
    w = base.tensors[_name(4, "down")][dims, :].astype(np.float64)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    np.testing.assert_allclose(base_grams.grams[k], w @ w.T, atol=1e-5)
    assert sorted(base_grams.norms) == list(range(LAYERS))
    for layer, stacked in base_grams.norms.items():
        want = [base.tensors[f"model.layers.{layer}.{n}.weight"][dims]
                for n in ("input_layernorm", "post_attention_layernorm")]
        np.testing.assert_array_equal(stacked, np.stack(want))


def test_invariant_to_mlp_neuron_permutation(base, base_grams, dims, tmp_path) -> None:
    moved = tiny.permute_neurons(base, seed=2)
    assert not np.array_equal(moved.tensors[_name(0, "up")], base.tensors[_name(0, "up")])
    g = _grams(moved, tmp_path / "m", dims)
    _assert_same_grams(g, base_grams)
    assert all(np.array_equal(g.norms[k], base_grams.norms[k]) for k in base_grams.norms)


def test_invariant_to_attention_head_permutation(base, base_grams, dims, tmp_path) -> None:
    moved = tiny.permute_heads(base, seed=3)
    assert not np.array_equal(moved.tensors[_name(0, "q")], base.tensors[_name(0, "q")])
    _assert_same_grams(_grams(moved, tmp_path / "m", dims), base_grams)


def test_invariant_to_per_unit_rescaling(base, base_grams, dims, tmp_path) -> None:
    """Each hidden unit rescaled by its own positive factor, independently in every matrix: input
    columns of q/k/v/gate/up, output rows of o/down. Cosines cancel the factors."""
    rng = np.random.default_rng(6)

    def scale(_layer: int, role: str, w: np.ndarray) -> np.ndarray:
        c = np.exp(rng.normal(0.0, 0.7, HIDDEN))
        return w * c[None, :] if role in IN_SIDE else w * c[:, None]

    _assert_same_grams(_grams(_map(base, scale), tmp_path / "m", dims), base_grams)


def test_invariant_to_norm_weights_folded_into_next_matrix(base, base_grams, dims, tmp_path) -> None:
    """Function-preserving: RMSNorm weight times c, the input columns of the matrices it feeds divided by c.
    The Grams stay; the norm weights (kept separately) move by exactly c."""
    rng = np.random.default_rng(8)
    t = {k: v.astype(np.float64) for k, v in base.tensors.items()}
    factors = {}
    for layer in range(LAYERS):
        for norm, fed in (("input_layernorm", ("q", "k", "v")), ("post_attention_layernorm", ("gate", "up"))):
            c = np.exp(rng.normal(0.0, 0.5, HIDDEN))
            factors[layer, norm] = c
            t[f"model.layers.{layer}.{norm}.weight"] *= c
            for role in fed:
                t[_name(layer, role)] /= c[None, :]
    folded = base.replace(tensors={k: v.astype(np.float32) for k, v in t.items()})
    ids = [5, 9, 100, 3, 77]
    np.testing.assert_allclose(tiny.llama_forward(folded, ids), tiny.llama_forward(base, ids), rtol=1e-4, atol=1e-5)
    g = _grams(folded, tmp_path / "m", dims)
    _assert_same_grams(g, base_grams)
    np.testing.assert_allclose(g.norms[3][0], base_grams.norms[3][0] * factors[3, "input_layernorm"][dims], rtol=1e-6)


def test_invariant_to_rotation_of_the_non_hidden_side(base, base_grams, dims, tmp_path) -> None:
    """WᵀW is unchanged by any orthogonal mix of W's rows (WWᵀ of o/down by a mix of their columns)."""
    rng = np.random.default_rng(9)

    def rotate(_layer: int, role: str, w: np.ndarray) -> np.ndarray:
        n = w.shape[0] if role in IN_SIDE else w.shape[1]
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        return q @ w.astype(np.float64) if role in IN_SIDE else w.astype(np.float64) @ q

    _assert_same_grams(_grams(_map(base, rotate), tmp_path / "m", dims), base_grams)


def test_function_preserving_row_rescaling_changes_only_the_scaled_kinds(base, base_grams, dims, tmp_path) -> None:
    """tiny.scale_invariant rescales rows of q/k/v/up and columns of o/down (not a per-hidden-unit scale, so
    not cancelled by cosines) while gate_proj only has its hidden columns divided: gate Grams stay exactly,
    the others move but keep every layer well above the effect floor (the derivative stays detectable)."""
    c = _desc_corr(_grams(tiny.scale_invariant(base, 5), tmp_path / "m", dims), base_grams)
    gate = np.array([key == "gate:in" for _, key in base_grams.keys])
    np.testing.assert_allclose(c[gate], 1.0, atol=1e-5)
    assert (c[~gate] < 0.999).all()
    assert c.min() > EFFECT_FLOOR  # still a match


def test_signed_candidate_units_reproduce_reference_grams(base, base_grams, dims, tmp_path) -> None:
    """Candidate unit j = signs[j] * reference unit perm[j]: reading the candidate at the corresponding
    units with their signs gives the reference's Grams; ignoring the signs does not."""
    rng = np.random.default_rng(12)
    perm = rng.permutation(HIDDEN)
    signs = np.where(rng.random(HIDDEN) < 0.5, -1.0, 1.0).astype(np.float32)
    cand = _view(transform_hidden(base, perm, signs), tmp_path / "cand")
    inv = np.argsort(perm)  # reference unit r lives at candidate unit inv[r]
    _assert_same_grams(compute_grams(cand, inv[dims], signs[inv[dims]]), base_grams)
    unsigned = compute_grams(cand, inv[dims], None)
    flipped = signs[inv[dims]] < 0
    mixed = np.outer(flipped, ~flipped) | np.outer(~flipped, flipped)
    assert mixed.any()
    np.testing.assert_allclose(unsigned.grams[:, mixed], -base_grams.grams[:, mixed], atol=2e-5)


def test_descriptors_with_permutation_equal_grams_of_permuted_units(base, base_grams, dims, tmp_path) -> None:
    perm = np.random.default_rng(13).permutation(len(dims))
    assert (perm != np.arange(len(dims))).any()
    direct = compute_grams(_view(base, tmp_path / "b"), dims[perm], None)
    np.testing.assert_allclose(descriptors(base_grams.grams, perm), descriptors(direct.grams), atol=5e-4)
    # and the permutation really matters: unpermuted descriptors do not match the permuted units
    assert _desc_corr(base_grams, direct).mean() < 0.5


def test_descriptors_are_zscored_upper_triangles(base_grams, dims) -> None:
    d = descriptors(base_grams.grams)
    m = len(dims)
    assert d.shape == (len(base_grams.keys), m * (m - 1) // 2)
    np.testing.assert_allclose(d.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(d.std(axis=1), 1.0, atol=1e-4)
    iu = np.triu_indices(m, k=1)
    v = base_grams.grams[0][iu]
    np.testing.assert_allclose(d[0], (v - v.mean()) / v.std(), atol=1e-4)


def test_new_or_perturbed_weights_change_the_descriptors(base, base_grams, dims, tmp_path) -> None:
    """Same structure, different content: correlation falls with the size of the change, and an
    independently drawn model sits below the effect floor compare_views uses to call a layer matched."""
    identical = _desc_corr(_grams(base, tmp_path / "same", dims), base_grams)
    light = _desc_corr(_grams(tiny.finetune(base, scale=0.02, seed=1), tmp_path / "light", dims), base_grams)
    heavy = _desc_corr(_grams(tiny.finetune(base, scale=1.0, seed=1), tmp_path / "heavy", dims), base_grams)
    other = _desc_corr(_grams(tiny.make_llama(7, hidden=HIDDEN, layers=LAYERS), tmp_path / "other", dims),
                       base_grams)
    np.testing.assert_allclose(identical, 1.0, atol=1e-5)
    assert (light < 1.0 - 1e-6).all() and light.min() > 0.95
    assert heavy.max() < 0.95
    assert (heavy > other).mean() > 0.9
    assert abs(other.mean()) < EFFECT_FLOOR and other.max() < 2 * EFFECT_FLOOR
