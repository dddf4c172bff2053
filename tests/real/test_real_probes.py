"""Black-box probes on real SmolLM2 checkpoints (transformers backend, CPU unless CUDA is present).

`identity_openai` is SmolLM2-135M-Instruct fine-tuned for a few steps on identity answers claiming to be
ChatGPT by OpenAI (tests/support/realcases.py): the self-identity suite must flag OpenAI with evidence,
and `audit --probe` must put that flag beside a fine-tuned verdict. The untouched `base` says it is
SmolLM by Hugging Face (its own vendor, declared) and must get no flag for any other vendor.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.real.conftest import RealCli

pytestmark = pytest.mark.real

# Small on purpose: 26 prompts x 2 samples x <= 40 new tokens, all 26 prompts in one left-padded batch
# (2 x 40 decoding steps in all): ~20-30 s per run on two quiet CPU cores (sampled at the default
# temperature 0.7, seeds 0 and 1).
PROBE_ARGS = ("--suite", "self-identity", "--samples", "2", "--max-new-tokens", "40", "--batch-size", "26")
OPENAI_TEXT = re.compile(r"ChatGPT|OpenAI|GPT-?\d", re.IGNORECASE)


def _leaks(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in record["flags"] if f["kind"] == "distillation-leak"]


def _vendor_table(record: dict[str, Any]) -> str:
    return "; ".join(f"{t['vendor']} {t['count']}/{t['of']} p={t['p_value']:.2g} ({t['reason']})"
                     for t in record["probe_run"]["vendor_tests"]) or "no claims"


def _check_openai_leak(record: dict[str, Any]) -> dict[str, Any]:
    """The record has exactly one distillation-leak flag, for OpenAI, with evidence that holds up."""
    leaks = _leaks(record)
    assert [f["evidence"]["vendor"] for f in leaks] == ["openai"], _vendor_table(record)
    flag = leaks[0]
    ev = flag["evidence"]
    rule = record["probe_run"]["flag_rule"]
    assert "OpenAI" in flag["detail"] and ev["vendor_name"] == "OpenAI"
    assert ev["count"] >= rule["min_count"] and ev["prompts"] >= rule["min_prompts"]
    assert ev["share"] >= rule["min_share"] and ev["of"] == 52  # 26 prompts x 2 samples, none failed
    assert ev["p_value"] < rule["alpha"]
    assert "ChatGPT" in ev["models"]
    assert ev["languages"]["en"]["count"] > 0 and ev["languages"]["zh"]["count"] > 0
    assert ev["examples"]
    for ex in ev["examples"]:
        assert ex["prompt"] and OPENAI_TEXT.search(ex["response"]), ex
        assert ex["claims"] and all(c["vendor"] == "openai" for c in ex["claims"])
    # the evidence is traceable to the recorded exchanges
    responses = {(b["suite"], r["probe"], r["sample"]): r["text"] for b in record["probes"] for r in b["responses"]}
    for ex in ev["examples"]:
        assert responses[(ex["suite"], ex["probe"], ex["sample"])].startswith(ex["response"].rstrip("…"))
    return flag


def test_identity_finetune_gets_an_openai_distillation_leak_flag(real_cases: dict[str, Path], real_cli: RealCli):
    rec = real_cli("probe", real_cases["identity_openai"], *PROBE_ARGS)
    flag = _check_openai_leak(rec)
    run = rec["probe_run"]
    assert run["backend"]["kind"] == "transformers" and run["errors"] == 0
    assert rec["verdict"]["label"] == "inconclusive" and rec["verdict"]["parent"] is None  # no weights compared
    assert "OpenAI" in rec["verdict"]["summary"]
    print(f"identity_openai: {flag['detail']}")


def test_untouched_base_gets_no_foreign_vendor_flag(real_cases: dict[str, Path], real_cli: RealCli):
    rec = real_cli("probe", real_cases["base"], *PROBE_ARGS, "--declared", "Hugging Face")
    assert rec["probe_run"]["declared"]["vendors"] == ["huggingface"]
    assert rec["probe_run"]["errors"] == 0
    assert _leaks(rec) == [], _vendor_table(rec)
    foreign = [t for t in rec["probe_run"]["vendor_tests"] if not t["declared"]]
    assert not any(t["flagged"] for t in foreign), _vendor_table(rec)
    print(f"base: {_vendor_table(rec)}")


def test_audit_with_probe_gives_fine_tuned_verdict_and_leak_flag(real_cases: dict[str, Path], real_cli: RealCli):
    """Weights and behaviour in one record: fine-tuned from base, and a distillation leak from OpenAI."""
    rec = real_cli("audit", real_cases["identity_openai"], "--reference", f"base={real_cases['base']}",
                   "--no-registry", "--probe", "self-identity", *PROBE_ARGS[2:])
    v = rec["verdict"]
    assert (v["label"], v["parent"]) == ("fine-tuned", "base"), v
    _check_openai_leak(rec)
    assert [b["suite"] for b in rec["probes"]] == ["self-identity"]
    assert rec["probe_run"]["errors"] == 0


def test_registry_audit_names_the_smollm2_entry_as_parent(real_cases: dict[str, Path], real_cli: RealCli):
    """Against the bundled registry alone (weights only, seconds) the parent is the smollm2 entry.

    The entry was fingerprinted from the GGUF release: the HF-folder fine-tune is "fine-tuned", with the format
    conversion reported as packaging (the label follows the weights).
    """
    rec = real_cli("audit", real_cases["identity_openai"])
    v = rec["verdict"]
    assert (v["label"], v["parent"]) == ("fine-tuned", "smollm2-135m-instruct"), v
    assert "format-conversion" in v["packaging"], v
