"""fingerprint, hub ids from the local cache, HTML output and python -m entry point."""

from __future__ import annotations

import json
import shutil

from tests.conftest import compare_record
from tests.support import tiny


def test_fingerprint_writes_architecture_tokenizer_and_weights(run_cli, tmp_path):
    model = tiny.save_hf(tiny.make_llama(0, layers=3), tmp_path / "m", dtype="BF16", shards=2)
    out = tmp_path / "fp.json"
    res = run_cli("fingerprint", model, "-o", out, "-q")
    assert res.code == 0, res.err
    fp = json.loads(out.read_text())
    assert fp["schema"] == "provaudit.fingerprint/1"
    arch = fp["model"]["architecture"]
    assert (arch["hidden_size"], arch["num_layers"], arch["num_heads"], arch["num_kv_heads"]) == (64, 3, 4, 2)
    assert arch["naming_scheme"] == "hf-llama" and arch["storage_dtypes"] == ["BF16"]
    assert len(fp["model"]["files"]) == 2 and fp["model"]["tokenizer"]["vocab_size"] == 512
    w = fp["weights"]["model.layers.0.mlp.up_proj.weight"]
    assert w["role"] == "up" and w["layer"] == 0 and w["shape"] == [160, 64] and w["std"] > 0


def test_hub_id_resolves_from_local_cache_only(run_cli, tmp_path, monkeypatch):
    base = tiny.make_llama(0, layers=3)
    snap = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "abc123"
    tiny.save_hf(base, snap)
    (tmp_path / "hub" / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    ref = tiny.save_hf(base, tmp_path / "ref")
    rec = compare_record(run_cli, "acme/tiny", ref)
    assert rec["subject"]["name"] == "acme/tiny"
    assert rec["verdict"]["label"] == "derived" and "exact-copy" in rec["verdict"]["operations"]
    missing = run_cli("compare", "acme/not-cached", ref, "-q")
    assert missing.code == 2 and "local Hugging Face cache" in missing.err


def test_html_report_is_written_and_escaped(run_cli, tmp_path):
    base = tiny.make_llama(0, layers=3)
    ref = tiny.save_hf(base, tmp_path / "ref")
    odd = tmp_path / "<b>odd&name"
    shutil.copytree(tiny.save_hf(tiny.finetune(base, 0.05), tmp_path / "ft"), odd)
    html = tmp_path / "report.html"
    res = run_cli("compare", odd, ref, "--html", html, "-q")
    assert res.code == 0, res.err
    text = html.read_text()
    assert "fine-tuned" in text and "&lt;b&gt;odd&amp;name" in text and "<b>odd" not in text
