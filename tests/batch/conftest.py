"""Tiny checkpoints and manifests for the batch tests (built once per session)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import tiny

# manifest rows: (model folder, verdict expected); "broken" has a corrupt weight file and fails
ROWS = (("ft", "fine-tuned"), ("perm", "derived"), ("broken", None), ("indep", "original"), ("ft2", "fine-tuned"),
        ("pruned", "derived"))
STABLE = ("line", "model", "name", "status", "verdict", "parent", "confidence", "operations", "flags", "claims",
          "references_checked", "probes", "summary", "error", "report", "record", "key")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with base (the reference) and the models of ROWS."""
    root = tmp_path_factory.mktemp("batch-models")
    base = tiny.make_llama(0, layers=4)
    tiny.save_hf(base, root / "base")
    tiny.save_hf(tiny.finetune(base, 0.05), root / "ft")
    tiny.save_hf(tiny.permute_hidden(tiny.finetune(base, 0.02, seed=2), 3), root / "perm")
    broken = tiny.save_hf(tiny.finetune(base, 0.05, seed=4), root / "broken")
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)  # header length 0: corrupt
    tiny.save_hf(tiny.make_llama(7, layers=4), root / "indep")
    tiny.save_hf(tiny.finetune(base, 0.02, seed=9), root / "ft2")
    tiny.save_hf(tiny.prune_layers(base, [1]), root / "pruned")
    return root


def write_manifest(folder: Path, rows: tuple[tuple[str, str | None], ...] = ROWS, name: str = "models.csv") -> Path:
    """A CSV manifest in `folder` listing `rows` (relative paths), each with base as its reference."""
    path = folder / name
    path.write_text("model,references\n" + "".join(f"{m},base\n" for m, _ in rows), encoding="utf-8")
    return path


def index_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "index.jsonl").read_text(encoding="utf-8").splitlines()]


def stable(rows: list[dict]) -> list[dict]:
    """Index rows without the fields that differ between a first run and a rerun (source, seconds)."""
    return [{k: r[k] for k in STABLE} for r in rows]


@pytest.fixture(scope="session")
def first_run(models: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An uninterrupted batch over ROWS with 2 workers: (manifest, out)."""
    from audit.cli import main

    manifest = write_manifest(models)
    out = tmp_path_factory.mktemp("batch") / "out"
    with pytest.raises(SystemExit) as info:
        main(["batch", str(manifest), "--out", str(out), "--no-registry", "--workers", "2", "-q"])
    assert info.value.code == 0
    return manifest, out
