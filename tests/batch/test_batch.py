"""`provaudit batch`: a broken model in the middle, the result cache, corrupted entries, kill and resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit.batch.cache import ResultCache
from tests.batch.conftest import ROWS, index_rows, stable

REPO = Path(__file__).resolve().parents[2]


def _batch(run_cli, manifest: Path, out: Path, *extra: str) -> dict:
    res = run_cli("batch", manifest, "--out", out, "--no-registry", "-q", *extra)
    assert res.code == 0, res.err
    return json.loads((out / "batch.json").read_text(encoding="utf-8"))


def test_broken_model_in_the_middle_is_an_error_row(first_run: tuple[Path, Path]) -> None:
    manifest, out = first_run
    rows = index_rows(out)
    assert [r["model"] for r in rows] == [m for m, _ in ROWS]
    assert [r["verdict"] for r in rows] == [v for _, v in ROWS]
    broken = rows[2]
    assert broken["status"] == "error" and "corrupt safetensors header" in broken["error"]
    assert broken["report"] is None and not (out / "records" / "broken.json").exists()
    for r in rows[:2] + rows[3:]:
        assert r["status"] == "ok" and r["error"] is None and r["source"] == "audit"
        record = json.loads((out / r["record"]).read_text(encoding="utf-8"))
        assert record["schema"] == "provaudit.record/2" and record["verdict"]["label"] == r["verdict"]
        assert record["batch"]["line"] == r["line"] and record["batch"]["cache_key"] == r["key"]
        assert record["command"]["argv"][:2] == ["audit", str((manifest.parent / r["model"]).resolve())]
        assert r["verdict"] in (out / r["report"]).read_text(encoding="utf-8")
    assert rows[0]["parent"] == "base" and "permutation" in rows[1]["operations"]
    assert "layer-pruning" in rows[5]["operations"]
    summary = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert (summary["rows"], summary["ok"], summary["failed"], summary["audited"]) == (6, 5, 1, 6)
    with (out / "index.csv").open(encoding="utf-8", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [t["verdict"] for t in table] == [v or "" for _, v in ROWS] and table[1]["operations"] == "permutation"
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="records/ft.html"' in page and "corrupt safetensors header" in page and "<script" not in page


def test_rerun_and_second_batch_come_from_the_cache(run_cli, first_run: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, out = first_run
    before = index_rows(out)
    summary = _batch(run_cli, manifest, out)
    assert (summary["audited"], summary["from_cache"]) == (0, 6)
    again = index_rows(out)
    assert all(r["source"] == "cache" for r in again)
    assert stable(again) == stable(before)
    # a second batch elsewhere, sharing the cache: nothing audited, its own records written
    other = tmp_path / "other"
    summary = _batch(run_cli, manifest, other, "--cache", str(out / "cache"))
    assert (summary["audited"], summary["from_cache"]) == (0, 6)
    assert stable(index_rows(other)) == stable(before) and (other / "records" / "ft.html").is_file()
    # a changed option is another key: audited again
    summary = _batch(run_cli, manifest, tmp_path / "seed1", "--cache", str(out / "cache"), "--seed", "1",
                     "--workers", "2")
    assert summary["audited"] == 6


def test_corrupted_cache_entries_are_rebuilt(run_cli, first_run: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, out = first_run
    before = stable(index_rows(out))
    cache = ResultCache(out / "cache")
    keys = {r["model"]: r["key"] for r in before}
    cache.entry_path(keys["ft"]).write_text('{"schema": "provaudit.batch-cache/1", "key', encoding="utf-8")
    tampered = json.loads(cache.entry_path(keys["perm"]).read_text(encoding="utf-8"))
    tampered["record"]["verdict"]["label"] = "original"  # no longer matches its SHA-256
    cache.entry_path(keys["perm"]).write_text(json.dumps(tampered), encoding="utf-8")
    wrong = json.loads(cache.entry_path(keys["indep"]).read_text(encoding="utf-8"))
    wrong["record"]["schema"] = "provaudit.record/0"
    cache.entry_path(keys["indep"]).write_text(json.dumps(wrong), encoding="utf-8")
    res = run_cli("batch", manifest, "--out", out, "--no-registry")
    assert res.code == 0, res.err
    assert "ft: fine-tuned" in res.err and "cache entry rebuilt (not valid JSON" in res.err
    assert "does not match its SHA-256" in res.err and "another schema" in res.err
    rows = index_rows(out)
    assert {r["model"] for r in rows if r["source"] == "audit"} == {"ft", "perm", "indep"}
    assert stable(rows) == before
    for model in ("ft", "perm", "indep"):
        assert cache.get(keys[model]).status == "hit"


def test_killed_batch_resumes_with_the_same_index(run_cli, first_run: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, reference_out = first_run
    out = tmp_path / "killed"
    code = ("import sys; import audit.batch.executors as e; from tests.batch import slow_task; "
            "e.run_task = slow_task.slow_run_task; from audit.cli import main; main(sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", code, "batch", str(manifest), "--out", str(out), "--no-registry",
                             "--workers", "1", "-q"], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list((out / "records").glob("*.json")):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no record appeared"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the batch and its worker processes
        proc.wait()
    assert not (out / "index.jsonl").exists()  # it was really interrupted
    done_before = len(list((out / "records").glob("*.json")))
    assert 1 <= done_before < 5
    summary = _batch(run_cli, manifest, out)
    assert summary["from_cache"] >= done_before and summary["audited"] <= 6 - done_before
    assert stable(index_rows(out)) == stable(index_rows(reference_out))
    assert sorted(p.name for p in (out / "records").glob("*.html")) == sorted(
        p.name for p in (reference_out / "records").glob("*.html"))


def test_index_escapes_names(run_cli, models: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "evil.csv"
    manifest.write_text(f'model,references,name\n{models / "ft"},{models / "base"},"<script>alert(1)</script>&"\n',
                        encoding="utf-8")
    out = tmp_path / "out"
    _batch(run_cli, manifest, out)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in page
    row = index_rows(out)[0]
    assert row["name"] == "<script>alert(1)</script>&" and row["report"] == "records/script-alert-1-script.html"
    assert "<script>" not in (out / row["report"]).read_text(encoding="utf-8")


def test_row_probes_run_after_the_weight_audit(run_cli, models: Path, tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="probing a local model needs the ml extra")
    manifest = tmp_path / "probes.yaml"
    manifest.write_text(f"- model: {models / 'ft'}\n  references: [{models / 'base'}]\n  probes: [self-identity]\n"
                        "  declared: Acme AI\n", encoding="utf-8")
    out = tmp_path / "out"
    extra = ("--samples", "1", "--max-new-tokens", "4", "--device", "cpu")
    assert _batch(run_cli, manifest, out, *extra)["audited"] == 1
    row = index_rows(out)[0]
    assert row["verdict"] == "fine-tuned" and row["probes"] == ["self-identity"]
    record = json.loads((out / row["record"]).read_text(encoding="utf-8"))
    assert record["probe_run"]["settings"]["declared"][0] == "Acme AI" and record["probes"][0]["responses"]
    assert _batch(run_cli, manifest, out, *extra)["from_cache"] == 1
    assert _batch(run_cli, manifest, out, "--samples", "2", "--max-new-tokens", "4", "--device", "cpu")["audited"] == 1


def test_copies_elsewhere_reuse_the_cache_with_their_own_paths(run_cli, first_run: tuple[Path, Path],
                                                                tmp_path: Path) -> None:
    import shutil

    manifest, out = first_run
    for name in ("ft", "base"):
        shutil.copytree(manifest.parent / name, tmp_path / name)
    copy = tmp_path / "copy.csv"
    copy.write_text("model,references\nft,base\n", encoding="utf-8")
    summary = _batch(run_cli, copy, tmp_path / "out", "--cache", str(out / "cache"))
    assert (summary["audited"], summary["from_cache"]) == (0, 1)
    record = json.loads((tmp_path / "out" / "records" / "ft.json").read_text(encoding="utf-8"))
    assert record["subject"]["path"] == str((tmp_path / "ft").resolve())
    assert record["references"][0]["files"][0]["path"].startswith(str((tmp_path / "base").resolve()))
