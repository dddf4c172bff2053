"""Merges on tiny checkpoints: each parent named with its mixing weight or share of layers; fine-tunes are not merges."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.checkpoint.locate import open_checkpoint
from audit.fingerprinting.view import ModelView
from audit.lineage.compare import compare_views
from audit.lineage.merges import find_merge
from tests.support.real_merges import linear, slerp, ties
from tests.support.tiny import TinyModel, finetune, make_llama, permute_hidden, save_hf


@pytest.fixture(scope="module")
def family() -> dict[str, TinyModel]:
    base = make_llama(21)
    return {"base": base, "a": finetune(base, scale=0.05, seed=2), "b": finetune(base, scale=0.05, seed=3),
            "other": make_llama(22)}


def _view(m: TinyModel, folder: Path, name: str, dtype: str = "F32") -> ModelView:
    return ModelView(open_checkpoint(save_hf(m, folder / name, dtype=dtype), name=name))


def _merge(models: list[TinyModel], recipe) -> TinyModel:
    first = models[0]
    return first.replace(tensors={k: recipe(k, [m.tensors[k] for m in models]) for k in first.tensors})


def _weights(finding) -> dict[str, float]:
    return dict(finding.parents)


def test_linear_merge_names_both_parents_with_their_weights(family, tmp_path):
    merged = _merge([family["a"], family["b"]], lambda _, ts: linear(ts, [0.7, 0.3]))
    cand = _view(merged, tmp_path, "merged")
    found = find_merge(cand, [(_view(family["a"], tmp_path, "a"), None), (_view(family["b"], tmp_path, "b"), None)])
    assert found is not None and found.kind == "linear"
    assert _weights(found) == pytest.approx({"a": 0.7, "b": 0.3}, abs=0.01)
    assert max(found.spread.values()) < 0.01 and found.residual < 0.01
    assert "a 0.70" in found.detail and "b 0.30" in found.detail


def test_merge_weights_use_the_comparisons_layer_map_and_alignment(family, tmp_path):
    """A parent given with its hidden units permuted is aligned before its rows are fitted."""
    merged = _merge([family["a"], family["b"]], lambda _, ts: linear(ts, [0.4, 0.6]))
    cand = _view(merged, tmp_path, "merged")
    pa, pb = _view(family["a"], tmp_path, "a"), _view(permute_hidden(family["b"], seed=5), tmp_path, "b_perm")
    found = find_merge(cand, [(pa, compare_views(cand, pa)), (pb, compare_views(cand, pb))])
    assert found is not None and found.kind == "linear"
    assert _weights(found) == pytest.approx({"a": 0.4, "b_perm": 0.6}, abs=0.02)


def test_slerp_at_a_wide_angle_is_told_from_linear(family, tmp_path):
    a, b = finetune(family["base"], scale=0.6, seed=4), finetune(family["base"], scale=0.6, seed=5)
    merged = _merge([a, b], lambda _, ts: slerp(0.3, ts[0], ts[1]))
    cand = _view(merged, tmp_path, "slerped")
    found = find_merge(cand, [(_view(a, tmp_path, "a"), None), (_view(b, tmp_path, "b"), None)])
    assert found is not None and found.kind == "slerp-like"
    assert _weights(found) == pytest.approx({"a": 0.7, "b": 0.3}, abs=0.05)
    lerped = _view(_merge([a, b], lambda _, ts: linear(ts, [0.7, 0.3])), tmp_path, "lerped")
    found = find_merge(lerped, [(_view(a, tmp_path, "a"), None), (_view(b, tmp_path, "b"), None)])
    assert found is not None and found.kind == "linear"
    assert _weights(found) == pytest.approx({"a": 0.7, "b": 0.3}, abs=0.01)


def test_ties_merge_names_both_parents(family, tmp_path):
    base = family["base"]
    merged = _merge([base, family["a"], family["b"]], lambda _, ts: ties(ts[0], ts[1:], [1.0, 1.0], 0.5))
    cand = _view(merged, tmp_path, "ties")
    found = find_merge(cand, [(_view(family["a"], tmp_path, "a"), None), (_view(family["b"], tmp_path, "b"), None)])
    assert found is not None and found.kind == "ties-like"
    assert set(_weights(found)) == {"a", "b"} and min(_weights(found).values()) > 0.3


def test_passthrough_names_each_parent_with_its_layers(family, tmp_path):
    a, other = family["base"], family["other"]
    tensors = {k: (other.tensors[k] if k.startswith(("model.layers.3.", "model.layers.4.", "model.layers.5."))
                   else a.tensors[k]) for k in a.tensors}
    cand = _view(a.replace(tensors=tensors), tmp_path, "franken")
    pa, po = _view(a, tmp_path, "base"), _view(other, tmp_path, "other")
    for given in ([(pa, None), (po, None)], [(pa, compare_views(cand, pa)), (po, compare_views(cand, po))]):
        found = find_merge(cand, given)
        assert found is not None and found.kind == "passthrough"
        assert _weights(found) == {"base": 0.5, "other": 0.5}
        assert found.layers == {"base": [0, 1, 2], "other": [3, 4, 5]}
        assert "base: layers 0-2" in found.detail


def test_a_fine_tune_is_not_a_merge(family, tmp_path):
    cand = _view(family["a"], tmp_path, "a")
    parents = [(_view(family["base"], tmp_path, "base"), None), (_view(family["b"], tmp_path, "b"), None)]
    assert find_merge(cand, parents) is None
    # a third sibling sits near the parents' midpoint (their base) but carries its own update: not a merge
    sibling = _view(finetune(family["base"], scale=0.05, seed=6), tmp_path, "sibling")
    siblings = [(_view(family["a"], tmp_path, "a"), None), (_view(family["b"], tmp_path, "b"), None)]
    assert find_merge(sibling, siblings) is None


def test_a_copy_of_one_parent_or_a_single_parent_is_not_a_merge(family, tmp_path):
    cand = _view(family["a"], tmp_path, "cand")
    pa, pb = _view(family["a"], tmp_path, "a"), _view(family["b"], tmp_path, "b")
    assert find_merge(cand, [(pa, None), (pb, None)]) is None
    assert find_merge(cand, [(pa, None)]) is None


def test_merges_stored_in_bf16_are_found_and_bf16_fine_tunes_are_not_merges(family, tmp_path):
    """Merges usually ship in BF16: the rounding of the candidate's storage is not mistaken for a residual."""
    pa, pb = _view(family["a"], tmp_path, "a"), _view(family["b"], tmp_path, "b")
    merged = _merge([family["a"], family["b"]], lambda _, ts: linear(ts, [0.7, 0.3]))
    found = find_merge(_view(merged, tmp_path, "merged", dtype="BF16"), [(pa, None), (pb, None)])
    assert found is not None and found.kind == "linear"
    assert _weights(found) == pytest.approx({"a": 0.7, "b": 0.3}, abs=0.02)
    tied = _merge([family["base"], family["a"], family["b"]], lambda _, ts: ties(ts[0], ts[1:], [1.0, 1.0], 0.5))
    found = find_merge(_view(tied, tmp_path, "ties", dtype="BF16"), [(pa, None), (pb, None)])
    assert found is not None and found.kind == "ties-like"
    tuned = _view(family["a"], tmp_path, "a_bf16", dtype="BF16")
    assert find_merge(tuned, [(_view(family["base"], tmp_path, "base"), None), (pb, None)]) is None
