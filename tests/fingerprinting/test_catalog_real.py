"""The shipped Qwen2.5-Coder fingerprints on the real GGUF files they were built from (PyPI assets, ~1.6 GB)."""

from __future__ import annotations

import pytest

from audit import assets

pytestmark = pytest.mark.real


@pytest.mark.parametrize(("asset", "own", "sibling"), [
    ("qwen-coder-0.5b", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"),
    ("qwen-coder-1.5b", "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct"),
])
def test_registry_only_audit_names_the_shipped_qwen_fingerprint_and_only_it(run_cli, tmp_path, monkeypatch,
                                                                           asset, own, sibling):
    monkeypatch.setenv("PROVAUDIT_REGISTRY", str(tmp_path / "no-user-registry"))
    res = run_cli("audit", assets.fetch(asset), "--json", "-", "-q")
    assert res.code == 0, res.err
    rec = res.record()
    assert rec["verdict"]["parent"] == own and rec["verdict"]["label"] in ("derived", "fine-tuned")
    weights = {w["reference"]: w for w in rec["registry"]["weights"]}
    assert weights[sibling]["label"] == "original"  # same family and tokenizer, different weights
    cov = rec["registry"]["catalog"]
    coder = next(c for c in cov["checked"] if c["family"] == "qwen2.5-coder")
    assert sorted(coder["compared"]) == ["Qwen/Qwen2.5-Coder-0.5B-Instruct", "Qwen/Qwen2.5-Coder-1.5B-Instruct"]
    assert "qwen2.5" in cov["unchecked"] and "qwen3" in cov["unchecked"]  # Qwen bases: no fingerprint shipped
