"""Audits against the bundled registry alone (no --reference), on real models."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.real.conftest import RealCli

pytestmark = pytest.mark.real


def test_renamed_retyped_smollm2_copy_is_derived_from_the_registry_entry(real_cases: dict[str, Path], real_cli: RealCli):
    rec = real_cli("audit", real_cases["renamed"])
    v = rec["verdict"]
    assert (v["label"], v["parent"]) == ("derived", "smollm2-135m-instruct"), v
    assert v["operations"] == ["exact-copy"], v  # base's weights within BF16 rounding ...
    assert {"renamed-tensors", "dtype-conversion"} <= set(v["packaging"]), v  # ... repackaged


def test_registry_fine_tune_in_another_format_is_fine_tuned(real_cases: dict[str, Path], real_cli: RealCli):
    """The registry entry was built from the GGUF; a fine-tune in HF format is still "fine-tuned": the label
    follows the weights, and the format change is reported as packaging."""
    rec = real_cli("audit", real_cases["finetuned"])
    v = rec["verdict"]
    assert (v["label"], v["parent"]) == ("fine-tuned", "smollm2-135m-instruct"), v
    assert v["operations"] == [] and "format-conversion" in v["packaging"], v
    reg = rec["registry"]
    assert reg["tokenizer"][0]["family"] == "smollm"
    assert reg["architecture"][0]["family"] == "smollm"


def test_gemma3_is_identified_as_gemma_not_smollm2(real_cases: dict[str, Path], real_cli: RealCli):
    rec = real_cli("audit", real_cases["gemma3"])
    v = rec["verdict"]
    assert v["parent"] != "smollm2-135m-instruct"
    assert rec["registry"]["tokenizer"][0]["family"] == "gemma"
    assert rec["registry"]["architecture"][0]["family"] == "gemma"
    smol = next(w for w in rec["registry"]["weights"] if w["reference"] == "smollm2-135m-instruct")
    assert smol["label"] == "original"


def test_independent_model_gets_no_parent_but_borrowed_flags(real_cases: dict[str, Path], real_cli: RealCli):
    rec = real_cli("audit", real_cases["independent"])
    assert rec["verdict"]["parent"] is None
    assert rec["verdict"]["label"] == "original"
    kinds = {f["kind"] for f in rec["flags"]}
    assert {"architecture-borrowed", "tokenizer-borrowed"} <= kinds
