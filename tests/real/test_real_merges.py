"""Real merges of SmolLM2 fine-tunes (linear, SLERP, TIES) and a passthrough of two same-config models: every
parent is named with its weight or share of layers; a plain fine-tune is not called a merge."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.checkpoint.locate import open_checkpoint
from audit.fingerprinting.view import ModelView
from audit.lineage.compare import compare_views
from audit.lineage.merges import find_merge
from tests.support.real_merges import build_merges

pytestmark = pytest.mark.real

SIBLINGS = ["finetuned", "identity_openai"]


@pytest.fixture(scope="module")
def cases() -> dict[str, Path]:
    return build_merges()


@pytest.fixture(scope="module")
def views(cases):
    made: dict[str, ModelView] = {}

    def view(name: str) -> ModelView:
        if name not in made:
            made[name] = ModelView(open_checkpoint(cases[name], name=name))
        return made[name]

    return view


def _find(views, cand: str, parents: list[str], with_comparisons: bool = False):
    c = views(cand)
    return find_merge(c, [(views(p), compare_views(c, views(p)) if with_comparisons else None) for p in parents])


@pytest.mark.parametrize(("case", "truth"), [
    ("linear_50_50", {"finetuned": 0.5, "identity_openai": 0.5}),
    ("linear_70_30", {"finetuned": 0.7, "identity_openai": 0.3}),
    ("slerp_50", {"finetuned": 0.5, "identity_openai": 0.5}),
])
def test_weight_merges_of_two_fine_tunes_name_both_parents_with_their_weights(views, case, truth):
    found = _find(views, case, SIBLINGS, with_comparisons=case == "linear_70_30")
    assert found is not None and found.kind in ("linear", "slerp-like")
    assert dict(found.parents) == pytest.approx(truth, abs=0.1)
    assert found.layers_compared == 30


def test_ties_merge_names_both_parents(views):
    found = _find(views, "ties_50", SIBLINGS)
    assert found is not None and found.kind == "ties-like"
    assert {name for name, _ in found.parents} == set(SIBLINGS)


def test_passthrough_names_both_parents_with_their_layers(views):
    found = _find(views, "passthrough", ["base", "independent"], with_comparisons=True)
    assert found is not None and found.kind == "passthrough"
    assert dict(found.parents) == {"base": 0.5, "independent": 0.5}
    assert found.layers == {"base": list(range(15)), "independent": list(range(15, 30))}


def test_a_plain_fine_tune_is_not_a_merge(views):
    assert _find(views, "finetuned", ["base", "identity_openai"], with_comparisons=True) is None
    assert _find(views, "base", SIBLINGS) is None  # the two fine-tunes' common base is no merge of them
