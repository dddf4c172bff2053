"""`provaudit batch` over real SmolLM2-derived checkpoints with a broken file in the middle: killed, resumed,
and the index is the same as an uninterrupted run's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.batch.conftest import index_rows, stable

pytestmark = pytest.mark.real
REPO = Path(__file__).resolve().parents[2]
# model -> (verdict, parent); "broken" is a truncated copy of `renamed`
EXPECTED = {"finetuned": ("fine-tuned", "base"), "permuted": ("derived", "base"), "broken": (None, None),
            "pruned": ("derived", "base"), "renamed": ("derived", "base"), "independent": ("original", None)}


def _manifest(real_cases: dict[str, Path], folder: Path) -> Path:
    broken = folder / "broken"
    broken.mkdir()
    for f in real_cases["renamed"].iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, broken / f.name)
    with (real_cases["renamed"] / "model.safetensors").open("rb") as src:
        (broken / "model.safetensors").write_bytes(src.read(4 << 20))  # header intact, tensors cut short
    paths = {**{m: real_cases[m] for m in EXPECTED if m != "broken"}, "broken": broken}
    manifest = folder / "real.yaml"
    manifest.write_text("".join(f"- model: {paths[m]}\n  references: [base={real_cases['base']}]\n" for m in EXPECTED),
                        encoding="utf-8")
    return manifest


def _main(*args: str) -> None:
    from audit.cli import main

    try:
        main([*map(str, args)])
    except SystemExit as exc:
        assert exc.code in (0, None)


def test_real_batch_killed_and_resumed(real_cases: dict[str, Path], tmp_path: Path) -> None:
    manifest = _manifest(real_cases, tmp_path)
    whole = tmp_path / "whole"
    _main("batch", manifest, "--out", whole, "--no-registry", "--workers", "2", "-q")
    rows = index_rows(whole)
    assert [(r["verdict"], r["parent"]) for r in rows] == list(EXPECTED.values())
    assert rows[2]["status"] == "error" and "truncated or corrupt" in rows[2]["error"]

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "audit", "batch", str(manifest), "--out", str(killed),
                             "--no-registry", "--workers", "2", "-q"], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not list((killed / "records").glob("*.json")) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (killed / "index.jsonl").exists(), "the batch finished before it could be killed"
    _main("batch", manifest, "--out", killed, "--no-registry", "--workers", "2", "-q")
    summary = json.loads((killed / "batch.json").read_text(encoding="utf-8"))
    assert summary["from_cache"] >= 1 and summary["audited"] < len(EXPECTED)
    assert stable(index_rows(killed)) == stable(rows)
