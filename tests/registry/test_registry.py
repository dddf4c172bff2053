"""The user registry: refs add round trip, list/show/verify, corrupt entries, audits against the registry alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import tiny


@pytest.fixture
def user_registry(tmp_path, monkeypatch) -> Path:
    reg = tmp_path / "registry"
    monkeypatch.setenv("PROVAUDIT_REGISTRY", str(reg))
    return reg


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("reg-models")
    base = tiny.make_llama(11, hidden=96, layers=4, vocab=1024)
    return {
        "base": tiny.save_hf(base, d / "base"),
        "copy": tiny.save_hf(tiny.permute_hidden(tiny.rename_tensors(tiny.finetune(base, 0.03), "madeup"), 3), d / "copy", dtype="BF16"),
        "other": tiny.save_hf(tiny.make_llama(12, hidden=96, layers=4, vocab=1024), d / "other"),
    }


def test_add_then_show_list_verify(run_cli, user_registry, models):
    res = run_cli("refs", "add", models["base"], "--name", "tiny-base", "--family", "tinyfam")
    assert res.code == 0, res.err
    path = user_registry / "weights" / "tiny-base.safetensors"
    assert path.is_file() and path.stat().st_size < 2_000_000
    shown = run_cli("refs", "show", "tiny-base")
    assert shown.code == 0 and '"family": "tinyfam"' in shown.out
    listed = run_cli("refs", "list")
    assert listed.code == 0 and "tinyfam" in listed.out
    ver = run_cli("refs", "verify")
    assert ver.code == 0, ver.out
    assert "tiny-base" in ver.out


def test_audit_against_registry_alone_finds_the_parent(run_cli, user_registry, models):
    assert run_cli("refs", "add", models["base"], "--name", "tiny-base", "--family", "tinyfam").code == 0
    res = run_cli("audit", models["copy"], "--json", "-", "-q")
    assert res.code == 0, res.err
    rec = res.record()
    assert rec["verdict"]["label"] == "derived"
    assert rec["verdict"]["parent"] == "tiny-base"
    assert "permutation" in rec["verdict"]["operations"]  # what was done to the weights ...
    assert "renamed-tensors" in rec["verdict"]["packaging"]  # ... apart from how the files were repackaged
    assert any(w["reference"] == "tiny-base" for w in rec["registry"]["weights"])


def test_audit_of_an_unrelated_model_names_no_parent(run_cli, user_registry, models):
    assert run_cli("refs", "add", models["base"], "--name", "tiny-base").code == 0
    rec = run_cli("audit", models["other"], "--json", "-", "-q").record()
    assert rec["verdict"]["parent"] is None
    assert rec["verdict"]["label"] in ("original", "inconclusive")
    row = next(w for w in rec["registry"]["weights"] if w["reference"] == "tiny-base")
    assert row["label"] == "original"


def test_corrupt_entry_is_named_and_skipped(run_cli, user_registry, models):
    assert run_cli("refs", "add", models["base"], "--name", "tiny-base").code == 0
    broken = user_registry / "weights" / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    ver = run_cli("refs", "verify")
    assert ver.code == 1 and "broken.safetensors" in ver.out
    res = run_cli("audit", models["copy"], "--json", "-", "-q")
    assert res.code == 0
    assert "broken.safetensors" in res.err  # warned by name ...
    assert res.record()["verdict"]["parent"] == "tiny-base"  # ... and the audit went on


def test_add_rejects_bad_names_and_inputs(run_cli, user_registry, models, tmp_path):
    assert run_cli("refs", "add", models["base"], "--name", "../evil").code == 2
    assert run_cli("refs", "add", tmp_path / "missing", "--name", "x").code == 2
    assert run_cli("refs", "show", "no-such-entry").code == 2
