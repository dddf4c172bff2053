"""Fused projections on real weights: SmolLM2-135M-Instruct (Llama layout) converted to Phi-3's fused layout
(qkv_proj = cat(q, k, v), gate_up_proj = cat(gate, up), model_type phi3) and back (tests/support/real_fused.py).

A conversion between fused and unfused layouts changes the packaging only: `provaudit compare` must say
"derived" from the other side with packaging operations and no weight operation, in both directions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audit.checkpoint import open_checkpoint
from audit.fingerprinting.view import ModelView
from tests.real.conftest import RealCli
from tests.support.real_fused import build_fused_cases
from tests.support.realcases import default_cache_dir

pytestmark = pytest.mark.real

PACKAGING = {"renamed-tensors", "format-conversion", "dtype-conversion"}


@pytest.fixture(scope="module")
def fused_cases(real_cases: dict[str, Path]) -> dict[str, Path]:
    return {**real_cases, **build_fused_cases(default_cache_dir())}


def _ops(rec: dict) -> set[str]:
    return {o["name"] for o in rec["comparisons"][0]["operations"]}


@pytest.mark.parametrize(("cand", "ref"), [("fused", "base"), ("base", "fused"), ("fused_unfused", "fused")])
def test_layout_conversion_is_derived_by_packaging_only(real_cli: RealCli, fused_cases, cand: str, ref: str) -> None:
    rec = real_cli("compare", fused_cases[cand], fused_cases[ref], "--reference-name", ref)
    assert rec["verdict"]["label"] == "derived"
    assert rec["verdict"]["parent"] == ref
    ops = _ops(rec)
    assert ops & PACKAGING, ops
    assert ops <= PACKAGING | {"exact-copy"}, f"weight operations reported: {ops - PACKAGING - {'exact-copy'}}"


def test_fused_fine_tune_relation_is_kept(real_cli: RealCli, fused_cases) -> None:
    """finetuned vs the fused base: the fine-tune is found through the fused layout, no weight operation."""
    rec = real_cli("compare", fused_cases["finetuned"], fused_cases["fused"], "--reference-name", "fused")
    assert rec["verdict"]["label"] in ("fine-tuned", "derived")
    assert rec["verdict"]["parent"] == "fused"
    assert _ops(rec) <= PACKAGING


def test_fused_is_not_mistaken_for_the_independent_model(real_cli: RealCli, fused_cases) -> None:
    rec = real_cli("compare", fused_cases["fused"], fused_cases["independent"], "--reference-name", "independent")
    assert rec["verdict"]["label"] == "original"


def test_real_fused_parts_equal_the_unfused_weights(fused_cases) -> None:
    fused, base = ModelView(open_checkpoint(fused_cases["fused"])), ModelView(open_checkpoint(fused_cases["base"]))
    layer = base.roles.layers()[-1]
    want = {role: name for role, name, _ in base.layer_weights(layer)}
    got = {role: name for role, name, _ in fused.layer_weights(layer)}
    assert sorted(got) == sorted(want)
    for role in ("q", "k", "v", "gate", "up"):
        assert got[role] != want[role]  # a virtual part of qkv_proj / gate_up_proj
        np.testing.assert_array_equal(fused.matrix(got[role]), base.matrix(want[role]))
