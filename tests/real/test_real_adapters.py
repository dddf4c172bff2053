"""Real PEFT adapters (LoRA and DoRA trained on SmolLM2-135M-Instruct with peft) read, checked against bases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audit.checkpoint.locate import open_adapter, open_checkpoint
from audit.fingerprinting.view import ModelView
from audit.lineage.adapters import adapter_findings, merged_rows
from tests.support.real_adapters import ALPHA, BASE_ID, RANK, TARGETS, build_adapter_cases
from tests.support.realcases import default_cache_dir

pytestmark = pytest.mark.real
LAYERS = 30  # SmolLM2-135M


@pytest.fixture(scope="module")
def cases(real_cases: dict[str, Path]) -> dict[str, Path]:
    return {**real_cases, **build_adapter_cases(default_cache_dir())}


@pytest.mark.parametrize("case,kind", [("lora", "LoRA"), ("dora", "DoRA")])
def test_a_real_adapter_is_read_as_what_it_is(cases: dict[str, Path], case: str, kind: str) -> None:
    a = open_adapter(cases[case])
    assert (a.kind, a.rank, a.alpha, a.base_model) == (kind, RANK, ALPHA, BASE_ID)
    assert a.targets() == sorted(TARGETS) and len(a.modules) == LAYERS * len(TARGETS)
    assert all((m.magnitude is not None) == (kind == "DoRA") for m in a.modules.values())
    # trained: the update is not the zero it starts from
    assert float(np.abs(a.delta("model.layers.10.mlp.down_proj")).max()) > 1e-4


def test_real_adapter_fits_its_base_as_folder_and_as_gguf(cases: dict[str, Path]) -> None:
    a = open_adapter(cases["lora"])
    for base in (cases["base"], cases["quantized"], cases["renamed"]):
        found = adapter_findings(a, ModelView(open_checkpoint(base)))
        assert found.shapes_fit is True, found.summary()
        assert found.matched == LAYERS * len(TARGETS)
    line = found.summary()
    assert line.startswith(f"a LoRA adapter (rank {RANK}, 4 target modules") and "its shapes fit the base" in line


def test_real_adapter_does_not_fit_an_unrelated_model(cases: dict[str, Path]) -> None:
    found = adapter_findings(open_adapter(cases["lora"]), ModelView(open_checkpoint(cases["gemma3"])))
    assert found.shapes_fit is False
    record = found.to_record()
    assert record.mismatches and record.modules_matched == 0
    first = record.mismatches[0]
    assert first.base_tensor is not None and first.base_shape != first.adapter_shape
    assert "do NOT fit" in record.summary and "gemma" in record.summary


def test_real_merge_is_base_plus_a_rank_r_update(cases: dict[str, Path]) -> None:
    """peft's merge_and_unload is reproduced row by row, and the merged model's weight difference has rank r."""
    a = open_adapter(cases["lora"])
    base = ModelView(open_checkpoint(cases["base"]))
    merged = ModelView(open_checkpoint(cases["lora_merged"]))
    mod = "model.layers.7.self_attn.q_proj"
    rows = np.arange(0, 576, 17)
    np.testing.assert_allclose(merged_rows(base, a, mod, rows), merged.stored_rows(f"{mod}.weight", rows),
                               rtol=0, atol=1e-6)
    diff = merged.matrix(f"{mod}.weight") - base.matrix(f"{mod}.weight")
    s = np.linalg.svd(diff, compute_uv=False)
    assert int((s > s[0] * 1e-3).sum()) == RANK
