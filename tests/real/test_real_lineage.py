"""Lineage verdicts on real checkpoints derived from SmolLM2-135M-Instruct (see tests/support/realcases.py).

Each case runs the real CLI in-process (`provaudit compare CASE BASE --reference-name base`) and checks
the JSON record: verdict label, parent, the operations detected, and the flags.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors import safe_open

from tests.real.conftest import RealCli
from tests.support.evidence import inside_independent_null, strong_weight_evidence
from tests.support.realcases import DUPLICATED_LAYERS, NEW_TOKENS, PRUNED_LAYERS

pytestmark = pytest.mark.real

Record = dict[str, Any]
# case -> (label, weight operations that must be reported, weight operations that were done,
#          packaging that must be reported, packaging that was done). The label follows the weights.
DERIVED: dict[str, tuple[str, set[str], set[str], set[str], set[str]]] = {
    "finetuned": ("fine-tuned", set(), set(), set(), set()),
    "permuted": ("derived", {"permutation"}, {"permutation", "sign-flip"}, set(), set()),
    "pruned": ("derived", {"layer-pruning"}, {"layer-pruning"}, set(), set()),
    "duplicated": ("derived", {"layer-duplication"}, {"layer-duplication"}, set(), set()),
    "renamed": ("derived", {"exact-copy"}, {"exact-copy"}, {"renamed-tensors", "dtype-conversion"},
                {"renamed-tensors", "dtype-conversion"}),
    "vocab_extended": ("derived", {"vocab-extension"}, {"vocab-extension"}, set(), set()),
    "quantized": ("derived", {"exact-copy"}, {"exact-copy"}, {"quantization"},
                  {"quantization", "format-conversion", "renamed-tensors"}),
}


def _stats(record: Record) -> str:
    """One line per statistic, for assertion messages."""
    return "; ".join(f"{s['name']}={s['value']:.4g} (z {s['effect']}, {s['null']['method']} null, "
                     f"log10 p {s['log10_p']:.1f})" for c in record["comparisons"] for s in c["statistics"])


def _why(record: Record) -> str:
    v = record["verdict"]
    return f"{v['label']} {v['parent']} {v['operations']} {v['packaging']}: {v['summary']} | {_stats(record)}"


@pytest.mark.parametrize("case", list(DERIVED))
def test_derived_case_names_base_as_parent(case: str, real_compare: Callable[[str], Record]) -> None:
    record = real_compare(case)
    label, expected_ops, _, expected_packaging, _ = DERIVED[case]
    v = record["verdict"]
    assert (v["label"], v["parent"]) == (label, "base"), _why(record)
    assert expected_ops <= set(v["operations"]), _why(record)
    assert expected_packaging <= set(v["packaging"]), _why(record)
    assert v["references_checked"] == 1
    assert record["flags"] == [], "borrowing flags are for non-derived verdicts only"
    assert strong_weight_evidence(record["comparisons"][0]), _why(record)


@pytest.mark.parametrize("case", list(DERIVED))
def test_no_operation_reported_that_was_not_done(case: str, real_compare: Callable[[str], Record]) -> None:
    record = real_compare(case)
    _, _, done, _, repackaged = DERIVED[case]
    v = record["verdict"]
    spurious = (set(v["operations"]) - done) | (set(v["packaging"]) - repackaged)
    assert not spurious, f"{case}: reported {sorted(spurious)} although only {sorted(done | repackaged) or 'fine-tuning'} " \
                         "was done; " + json.dumps(record["comparisons"][0]["operations"])


def test_finetuned_layers_map_in_order(real_compare: Callable[[str], Record]) -> None:
    layer_map = real_compare("finetuned")["comparisons"][0]["layer_map"]
    assert [(c, r) for c, r, _ in layer_map] == [(i, i) for i in range(30)]


def test_pruned_and_duplicated_layer_maps(real_compare: Callable[[str], Record]) -> None:
    pruned = [r for _, r, _ in real_compare("pruned")["comparisons"][0]["layer_map"]]
    assert pruned == [i for i in range(30) if i not in PRUNED_LAYERS]
    duplicated = [r for _, r, _ in real_compare("duplicated")["comparisons"][0]["layer_map"]]
    expected: list[int] = []
    for i in range(30):
        expected += [i] * (1 + DUPLICATED_LAYERS.count(i))
    assert duplicated == expected


def test_independent_same_config_is_original_with_borrowing_flags(real_compare: Callable[[str], Record]) -> None:
    record = real_compare("independent")
    v = record["verdict"]
    assert (v["label"], v["parent"], v["operations"]) == ("original", None, []), _why(record)
    kinds = {f["kind"] for f in record["flags"]}
    assert {"architecture-borrowed", "tokenizer-borrowed"} <= kinds, record["flags"]
    assert inside_independent_null(record["comparisons"][0]), _why(record)


def test_gemma3_is_original_against_smollm2(real_compare: Callable[[str], Record]) -> None:
    record = real_compare("gemma3")
    v = record["verdict"]
    assert (v["label"], v["parent"]) == ("original", None), _why(record)
    assert "architecture-borrowed" not in {f["kind"] for f in record["flags"]}
    assert inside_independent_null(record["comparisons"][0]), _why(record)


def test_audit_picks_base_over_gemma(real_cases: dict[str, Path], real_cli: RealCli) -> None:
    record = real_cli("audit", real_cases["finetuned"], "-r", f"base={real_cases['base']}",
                      "-r", f"gemma={real_cases['gemma3']}", "--no-registry")
    v = record["verdict"]
    assert (v["label"], v["parent"], v["references_checked"]) == ("fine-tuned", "base", 2), _why(record)
    per_ref = {c["reference"]: c["verdict"]["label"] for c in record["comparisons"]}
    assert per_ref == {"base": "fine-tuned", "gemma": "original"}, _why(record)


def test_audit_with_registry_still_picks_base(real_cases: dict[str, Path], real_cli: RealCli) -> None:
    record = real_cli("audit", real_cases["finetuned"], "-r", f"base={real_cases['base']}",
                      "-r", f"gemma={real_cases['gemma3']}")
    v = record["verdict"]
    assert (v["label"], v["parent"]) == ("fine-tuned", "base"), _why(record)
    assert v["references_checked"] >= 2
    per_ref = {c["reference"]: c["verdict"]["label"] for c in record["comparisons"]}
    assert per_ref["gemma"] == "original", _why(record)


# --------------------------------------------------------------------------------------------------
# The cases are what they claim to be


def _tensors(folder: Path) -> dict[str, np.ndarray]:
    with safe_open(str(folder / "model.safetensors"), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_finetune_really_changed_the_weights(real_cases: dict[str, Path]) -> None:
    base, ft = _tensors(real_cases["base"]), _tensors(real_cases["finetuned"])
    assert base.keys() == ft.keys()
    changed = [k for k in base if not np.array_equal(base[k], ft[k])]
    assert len(changed) == len(base), f"unchanged after fine-tuning: {sorted(set(base) - set(changed))[:5]}"
    rel = max(float(np.linalg.norm(ft[k] - base[k]) / np.linalg.norm(base[k])) for k in base)
    assert 0 < rel < 0.05, f"fine-tuning drift {rel:.3g} (a few small AdamW steps expected)"


def test_structural_cases_have_the_expected_shapes(real_cases: dict[str, Path]) -> None:
    def config(case: str) -> dict[str, Any]:
        return json.loads((real_cases[case] / "config.json").read_text(encoding="utf-8"))

    assert config("pruned")["num_hidden_layers"] == 30 - len(PRUNED_LAYERS)
    assert config("duplicated")["num_hidden_layers"] == 30 + len(DUPLICATED_LAYERS)
    assert config("renamed")["model_type"] == "acme-lm"
    assert config("vocab_extended")["vocab_size"] == 49152 + NEW_TOKENS
    tj = json.loads((real_cases["vocab_extended"] / "tokenizer.json").read_text(encoding="utf-8"))
    assert len(tj["model"]["vocab"]) == 49152 + NEW_TOKENS
    perm, ft = _tensors(real_cases["permuted"]), _tensors(real_cases["finetuned"])
    assert not np.array_equal(perm["model.embed_tokens.weight"], ft["model.embed_tokens.weight"])
    assert real_cases["quantized"].suffix == real_cases["gemma3"].suffix == ".gguf"
