"""What a batch's cache key covers: a model file's card and licence beside it change its claims, so they count."""

from __future__ import annotations

from pathlib import Path

from audit.batch.hashcache import model_files


def test_a_single_weight_file_counts_its_card_and_licence(tmp_path: Path) -> None:
    model = tmp_path / "nova-1.gguf"
    model.write_bytes(b"GGUF")
    assert model_files(model) == [model]
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\ntrained from scratch\n", encoding="utf-8")
    (tmp_path / "LICENSE").write_text("MIT License\n", encoding="utf-8")
    (tmp_path / "other.gguf").write_bytes(b"GGUF")  # another model in the same folder is not part of this one
    assert model_files(model) == [model, tmp_path / "README.md", tmp_path / "LICENSE"]


def test_a_folder_counts_every_top_level_small_file(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"x")
    (tmp_path / "README.md").write_text("card", encoding="utf-8")
    assert model_files(tmp_path) == [tmp_path / "README.md", tmp_path / "model.safetensors"]
