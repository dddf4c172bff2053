"""Real SmolLM2 derivations that change the shape or the architecture: width pruning (hidden units, heads, MLP
neurons) and the Llama weights moved into a Qwen2 config with biases added."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.real_reshaped import KEEP_HIDDEN, KEEP_NEURONS, build_qwen2_graft, build_width_pruned

pytestmark = pytest.mark.real


def test_width_pruned_model_is_derived_with_the_share_of_units_kept(real_cases: dict[str, Path], real_cli):
    rec = real_cli("compare", build_width_pruned(), real_cases["base"], "--reference-name", "base")
    v = rec["verdict"]
    assert (v["label"], v["parent"]) == ("derived", "base"), v["summary"]
    assert "width-pruning" in v["operations"]
    detail = next(o["detail"] for o in rec["comparisons"][0]["operations"] if o["name"] == "width-pruning")
    assert f"hidden units 576 -> {KEEP_HIDDEN} ({KEEP_HIDDEN / 576:.0%} kept)" in detail
    assert f"MLP neurons 1536 -> {KEEP_NEURONS} ({KEEP_NEURONS / 1536:.0%} kept)" in detail
    assert "attention heads 9 -> 6" in detail
    assert all(r is not None for _, r, _ in rec["comparisons"][0]["layer_map"])


def test_llama_weights_in_a_qwen2_config_report_every_matched_layer(real_cases: dict[str, Path], real_cli):
    rec = real_cli("compare", build_qwen2_graft(), real_cases["base"], "--reference-name", "base")
    v = rec["verdict"]
    assert rec["subject"]["architecture"]["model_type"] == "qwen2"
    assert (v["label"], v["parent"]) == ("derived", "base"), v["summary"]
    assert re.search(r"\b30 of 30 layers carry base's weights", v["summary"])
    renamed = next(o["detail"] for o in rec["comparisons"][0]["operations"] if o["name"] == "renamed-tensors")
    assert "model_type 'llama' -> 'qwen2'" in renamed and "q_proj.bias" in renamed


def test_upcycled_moe_is_derived_by_upcycling_through_the_cli(real_cases: dict[str, Path], real_cli):
    from tests.support.real_moe import build_moe_cases

    rec = real_cli("compare", build_moe_cases()["mixtral_upcycled"], real_cases["base"], "--reference-name", "base")
    v = rec["verdict"]
    assert (v["label"], v["parent"]) == ("derived", "base") and v["operations"] == ["upcycling"], v
    detail = rec["comparisons"][0]["operations"][0]["detail"]
    assert "120 of 120 experts" in detail and "router weights are new" in detail
    rec = real_cli("compare", build_moe_cases()["mixtral_upcycled"], real_cases["independent"])
    assert rec["verdict"]["label"] in ("original", "inconclusive") and "upcycling" not in rec["verdict"]["operations"]


def test_merges_name_every_parent_through_the_cli(real_cases: dict[str, Path], real_cli):
    from tests.support.real_merges import build_merges

    merges = build_merges()
    rec = real_cli("audit", merges["linear_70_30"], "-r", f"finetuned={real_cases['finetuned']}",
                   "-r", f"identity={real_cases['identity_openai']}", "--no-registry")
    v, m = rec["verdict"], rec["merge"]
    assert (v["label"], v["parent"]) == ("derived", "finetuned") and v["operations"][0] == "merge"
    weights = {p["reference"]: p["weight"] for p in m["parents"]}
    assert weights["finetuned"] == pytest.approx(0.7, abs=0.1) and weights["identity"] == pytest.approx(0.3, abs=0.1)
    rec = real_cli("audit", merges["passthrough"], "-r", f"base={real_cases['base']}",
                   "-r", f"independent={real_cases['independent']}", "--no-registry")
    m = rec["merge"]
    assert m["kind"] == "passthrough" and rec["verdict"]["operations"][0] == "merge"
    layers = {p["reference"]: p["layers"] for p in m["parents"]}
    assert layers == {"base": list(range(15)), "independent": list(range(15, 30))}
    rec = real_cli("audit", real_cases["finetuned"], "-r", f"base={real_cases['base']}",
                   "-r", f"identity={real_cases['identity_openai']}", "--no-registry")
    assert rec["merge"] is None and "merge" not in rec["verdict"]["operations"]
