"""Verdicts on tiny checkpoints for every derivation the issue lists, through the real CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.conftest import compare_record
from tests.support import tiny
from tests.support.evidence import inside_independent_null, strong_weight_evidence

BASE_SEED = 0


@pytest.fixture(scope="module")
def llama_cases(tiny_dir: Path) -> dict[str, Path]:
    base = tiny.make_llama(BASE_SEED)
    ft = tiny.finetune(base, scale=0.05, seed=3)
    d = tiny_dir / "llama"
    cases = {
        "base": tiny.save_hf(base, d / "base"),
        "finetuned": tiny.save_hf(ft, d / "finetuned"),
        "independent": tiny.save_hf(tiny.make_llama(7), d / "independent"),
        "permuted": tiny.save_hf(tiny.permute_heads(tiny.permute_neurons(tiny.permute_hidden(ft, 1), 2), 3), d / "permuted"),
        "pruned": tiny.save_hf(tiny.prune_layers(ft, [2, 3]), d / "pruned"),
        "duplicated": tiny.save_hf(tiny.duplicate_layers(ft, [1, 4]), d / "duplicated"),
        "renamed_meta": tiny.save_safetensors_file(tiny.rename_tensors(ft, "meta"), d / "meta.safetensors"),
        "renamed_madeup": tiny.save_hf(tiny.rename_tensors(ft, "madeup"), d / "madeup", dtype="BF16"),
        "vocab_extended": tiny.save_hf(tiny.extend_vocab(ft, 64, seed=4), d / "vocab_ext"),
        "bf16_sharded": tiny.save_hf(base, d / "bf16", dtype="BF16", shards=3),
        "gguf_q8": tiny.save_gguf(ft, d / "ft.gguf", quant="Q8_0"),
        "gguf_q8_copy": tiny.save_gguf(base, d / "base.gguf", quant="Q8_0"),
        "scaled": tiny.save_hf(tiny.scale_invariant(ft, 5), d / "scaled"),
    }
    return cases


def _ops(rec: dict) -> set[str]:
    return set(rec["verdict"]["operations"])


def test_finetuned_copy_is_fine_tuned(run_cli, llama_cases):
    rec = compare_record(run_cli, llama_cases["finetuned"], llama_cases["base"])
    assert rec["verdict"]["label"] == "fine-tuned"
    assert rec["verdict"]["parent"] == "parent"
    stats = {s["name"]: s for s in rec["comparisons"][0]["statistics"]}
    gram = stats["layer-gram-similarity"]
    # the permutation null supports p >= 1/(n+1) only: at that floor, with the effect size saying how far out
    assert gram["log10_p"] == pytest.approx(-math.log10(gram["null"]["n"] + 1), abs=1e-3)
    assert gram["effect"] > 10 and gram["value"] > gram["null"]["mean"] + 10 * gram["null"]["sd"]
    # weights in place: the exact tests give tiny p-values under their stated assumption
    for name in ("hidden-alignment-identity", "mlp-neuron-identity"):
        assert stats[name]["null"]["method"] == "exact" and stats[name]["null"]["assumption"]
        assert stats[name]["log10_p"] < -6, stats[name]
    assert strong_weight_evidence(rec["comparisons"][0])
    assert [r for _, r, _ in rec["comparisons"][0]["layer_map"]] == list(range(6))


def test_independent_same_config_is_original_with_borrowed_flags(run_cli, llama_cases):
    rec = compare_record(run_cli, llama_cases["independent"], llama_cases["base"])
    assert rec["verdict"]["label"] == "original"
    assert rec["verdict"]["parent"] is None
    kinds = {f["kind"] for f in rec["flags"]}
    assert {"architecture-borrowed", "tokenizer-borrowed"} <= kinds
    assert inside_independent_null(rec["comparisons"][0])
    assert not strong_weight_evidence(rec["comparisons"][0])


@pytest.mark.parametrize(
    ("case", "label", "ops", "packaging"),
    [
        ("permuted", "derived", {"permutation"}, set()),
        ("pruned", "derived", {"layer-pruning"}, set()),
        ("duplicated", "derived", {"layer-duplication"}, set()),
        ("vocab_extended", "derived", {"vocab-extension"}, set()),
        # the label follows the weights: a fine-tune stays fine-tuned however it is repackaged ...
        ("renamed_meta", "fine-tuned", set(), {"renamed-tensors"}),
        ("renamed_madeup", "fine-tuned", set(), {"renamed-tensors", "dtype-conversion"}),
        ("gguf_q8", "fine-tuned", set(), {"format-conversion", "quantization"}),
        # ... and an unchanged copy is a copy, bit for bit or within the rounding of its storage type
        ("bf16_sharded", "derived", {"exact-copy"}, {"dtype-conversion"}),
        ("gguf_q8_copy", "derived", {"exact-copy"}, {"format-conversion", "quantization"}),
    ],
)
def test_label_follows_the_weights_and_packaging_is_reported_apart(run_cli, llama_cases, case, label, ops, packaging):
    rec = compare_record(run_cli, llama_cases[case], llama_cases["base"])
    v = rec["verdict"]
    assert (v["label"], v["parent"]) == (label, "parent"), v
    assert set(v["operations"]) == ops, v
    assert packaging <= set(v["packaging"]), v
    assert not set(v["operations"]) & {"format-conversion", "quantization", "dtype-conversion", "renamed-tensors"}
    assert strong_weight_evidence(rec["comparisons"][0])


def test_pruned_layer_map_skips_the_dropped_layers(run_cli, llama_cases):
    rec = compare_record(run_cli, llama_cases["pruned"], llama_cases["base"])
    assert [r for _, r, _ in rec["comparisons"][0]["layer_map"]] == [0, 1, 4, 5]


def test_function_preserving_rescale_still_matches(run_cli, llama_cases):
    rec = compare_record(run_cli, llama_cases["scaled"], llama_cases["base"])
    assert rec["verdict"]["label"] in ("fine-tuned", "derived")
    assert rec["verdict"]["parent"] == "parent"


def test_audit_picks_the_right_parent_among_references(run_cli, llama_cases, tiny_dir):
    res = run_cli("audit", llama_cases["permuted"], "-r", f"indep={llama_cases['independent']}",
                  "-r", f"base={llama_cases['base']}", "--json", "-", "-q")
    assert res.code == 0, res.err
    rec = res.record()
    assert rec["verdict"]["parent"] == "base"
    assert rec["verdict"]["references_checked"] == 2
    labels = {c["reference"]: c["verdict"]["label"] for c in rec["comparisons"]}
    assert labels == {"indep": "original", "base": "derived"}


@pytest.mark.parametrize("maker", [tiny.make_gpt2, tiny.make_bert])
def test_other_architectures(run_cli, tiny_dir, maker):
    name = maker.__name__
    base = maker(0)
    ref = tiny.save_hf(base, tiny_dir / name / "base")
    ft = tiny.save_hf(tiny.finetune(base, 0.05, seed=2), tiny_dir / name / "ft")
    perm = tiny.save_hf(tiny.permute_neurons(tiny.permute_hidden(tiny.finetune(base, 0.05, 2), 1), 2), tiny_dir / name / "perm")
    other = tiny.save_hf(maker(9), tiny_dir / name / "other")
    assert compare_record(run_cli, ft, ref)["verdict"]["label"] == "fine-tuned"
    rec = compare_record(run_cli, perm, ref)
    assert rec["verdict"]["label"] == "derived" and "permutation" in _ops(rec)
    assert compare_record(run_cli, other, ref)["verdict"]["label"] == "original"


def test_record_carries_hashes_and_provenance(run_cli, llama_cases):
    rec = compare_record(run_cli, llama_cases["finetuned"], llama_cases["base"])
    assert rec["schema"] == "provaudit.record/2"
    files = rec["subject"]["files"]
    assert files and all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in files)
    import hashlib

    f0 = files[0]
    assert hashlib.sha256(Path(f0["path"]).read_bytes()).hexdigest() == f0["sha256"]
    assert rec["command"]["seed"] == 0 and rec["tool"]["name"] == "provaudit"
