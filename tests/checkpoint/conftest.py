"""Fixtures for the reader and Hub tests: a Hub environment pointing at a local test server, tiny repos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import tiny


@pytest.fixture
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fresh HF cache and range cache, no token, online, fast retries; returns the range-cache folder."""
    from audit.checkpoint import hub

    ranges = tmp_path / "ranges"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("PROVAUDIT_HUB_CACHE", str(ranges))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub, "BACKOFF", 0.01)
    return ranges


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Llama HF folder (bf16 safetensors, tokenizer, config), the same sharded in three, and a fine-tune."""
    d = tmp_path_factory.mktemp("hubmodels")
    base = tiny.make_llama(0, layers=4, hidden=128, ff=320)
    return {
        "base": tiny.save_hf(base, d / "base", dtype="BF16"),
        "sharded": tiny.save_hf(base, d / "sharded", dtype="BF16", shards=3),
        "ft": tiny.save_hf(tiny.finetune(base, 0.02), d / "ft", dtype="BF16"),
    }


def folder_files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Path]:
    p = tmp_path / "README.md"
    p.write_text("---\nlicense: apache-2.0\nbase_model: org/base\n---\n# A tiny model\n", encoding="utf-8")
    yield p
