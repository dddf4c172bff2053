"""A real PEFT LoRA on SmolLM2 audited as what it is (an adapter for its base), and the same LoRA merged into the
weights: fine-tuned, with a low-rank update."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.real_adapters import build_adapter_cases

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def adapters() -> dict[str, Path]:
    return build_adapter_cases()


def test_lora_adapter_is_audited_against_its_base(adapters, real_cases, real_cli):
    rec = real_cli("compare", adapters["lora"], real_cases["base"], "--reference-name", "base")
    v, a = rec["verdict"], rec["adapter"]
    assert rec["subject"]["format"] == "adapter" and rec["comparisons"] == []
    assert (v["label"], v["parent"]) == ("fine-tuned", "base") and "relation: adapter" in v["summary"]
    assert (a["relation"], a["rank"], a["shapes_fit"]) == ("adapter", 8, True)
    assert sorted(a["target_modules"]) == ["down_proj", "o_proj", "q_proj", "v_proj"]
    assert a["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_lora_adapter_without_its_base_says_what_would_check_it(adapters, real_cli):
    rec = real_cli("audit", adapters["lora"])
    v = rec["verdict"]
    assert v["label"] == "inconclusive" and "hf:HuggingFaceTB/SmolLM2-135M-Instruct" in v["summary"]
    assert rec["adapter"]["shapes_fit"] is None


def test_merged_lora_is_fine_tuned_with_a_low_rank_update(adapters, real_cases, real_cli):
    rec = real_cli("compare", adapters["lora_merged"], real_cases["base"], "--reference-name", "base")
    v, update = rec["verdict"], rec["comparisons"][0]["update"]
    assert (v["label"], v["parent"]) == ("fine-tuned", "base")
    assert update["low_rank"] and set(update["rank99"]) == {"q", "v", "o", "down"}
    assert max(update["rank99"].values()) <= 8 and {"k", "gate", "up"} <= set(update["unchanged"])
    assert "low-rank" in v["summary"]


def test_full_fine_tune_is_not_called_low_rank(real_cases, real_cli):
    rec = real_cli("compare", real_cases["finetuned"], real_cases["base"], "--reference-name", "base")
    update = rec["comparisons"][0]["update"]
    assert update is not None and not update["low_rank"], update
    assert "low-rank" not in rec["verdict"]["summary"]
