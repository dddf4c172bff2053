"""PEFT adapter folders: read and validated, mapped onto a base, and hostile ones refused in one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audit.checkpoint.adapter import ADAPTER_FORMAT
from audit.checkpoint.locate import open_adapter, open_checkpoint
from audit.errors import InputError
from audit.fingerprinting.view import ModelView
from audit.lineage.adapters import adapter_findings, merged_rows
from tests.support import tiny

TARGETS = ("q_proj", "v_proj", "o_proj", "down_proj")
LAYERS = 3


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tiny.TinyModel:
    return tiny.make_llama(3, hidden=64, layers=LAYERS, ff=160)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory, base: tiny.TinyModel) -> Path:
    return tiny.save_hf(base, tmp_path_factory.mktemp("base") / "base")


def _factors(m: tiny.TinyModel, r: int, seed: int = 0, dora: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, w in m.tensors.items():
        if not name.endswith(".weight") or name.rsplit(".", 2)[-2] not in TARGETS:
            continue
        mod = "base_model.model." + name.removesuffix(".weight")
        out[f"{mod}.lora_A.weight"] = rng.normal(0, 0.1, (r, w.shape[1])).astype(np.float32)
        out[f"{mod}.lora_B.weight"] = rng.normal(0, 0.1, (w.shape[0], r)).astype(np.float32)
        if dora:
            out[f"{mod}.lora_magnitude_vector"] = rng.uniform(0.5, 1.5, w.shape[0]).astype(np.float32)
    return out


def write_adapter(folder: Path, tensors: dict[str, np.ndarray], **config: Any) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": list(TARGETS),
           "base_model_name_or_path": "org/tiny-base", "use_dora": False, **config}
    (folder / "adapter_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def test_a_lora_folder_is_read_as_an_adapter(tmp_path: Path, base: tiny.TinyModel) -> None:
    folder = write_adapter(tmp_path / "lora", _factors(base, 4))
    assert open_checkpoint(folder).format == ADAPTER_FORMAT
    a = open_adapter(folder)
    assert (a.kind, a.rank, a.alpha, a.base_model) == ("LoRA", 4, 8.0, "org/tiny-base")
    assert a.targets() == sorted(TARGETS)
    assert len(a.modules) == LAYERS * len(TARGETS)
    q = a.modules["model.layers.1.self_attn.q_proj"]
    assert q.shape == base.tensors["model.layers.1.self_attn.q_proj.weight"].shape
    assert a.scaling(q.name) == 2.0


def test_shapes_fit_the_base_by_name_and_after_renaming(tmp_path: Path, base: tiny.TinyModel, base_dir: Path) -> None:
    a = open_adapter(write_adapter(tmp_path / "lora", _factors(base, 4)))
    found = adapter_findings(a, ModelView(open_checkpoint(base_dir)))
    assert found.shapes_fit is True and found.matched == LAYERS * len(TARGETS)
    assert "its shapes fit the base" in found.summary() and "rank 4, 4 target modules" in found.summary()
    renamed = tiny.save_hf(tiny.rename_tensors(base, "meta"), tmp_path / "renamed")
    assert adapter_findings(a, ModelView(open_checkpoint(renamed))).shapes_fit is True
    record = found.to_record()
    assert record.relation == "adapter" and record.shapes_fit and record.mismatches == []


def test_shapes_do_not_fit_another_model(tmp_path: Path, base: tiny.TinyModel) -> None:
    a = open_adapter(write_adapter(tmp_path / "lora", _factors(base, 4)))
    other = tiny.save_hf(tiny.make_llama(5, hidden=32, layers=2, ff=96), tmp_path / "other")
    found = adapter_findings(a, ModelView(open_checkpoint(other)))
    assert found.shapes_fit is False
    absent = [f for f in found.mismatches if f.base_tensor is None]
    assert {f.module.split(".")[2] for f in absent} == {"2"}  # the base has no third layer
    differ = [f for f in found.mismatches if f.base_tensor is not None]
    assert len(differ) == 2 * len(TARGETS) and "do NOT fit" in found.summary()
    assert adapter_findings(a).shapes_fit is None  # nothing checked without a base


@pytest.mark.parametrize("dora", [False, True])
def test_merged_rows_are_the_base_plus_the_scaled_update(tmp_path: Path, base: tiny.TinyModel, base_dir: Path,
                                                         dora: bool) -> None:
    tensors = _factors(base, 4, dora=dora)
    a = open_adapter(write_adapter(tmp_path / "lora", tensors, use_dora=dora, lora_alpha=6))
    mod = "model.layers.2.mlp.down_proj"
    w = base.tensors[f"{mod}.weight"]
    merged = w + 1.5 * tensors[f"base_model.model.{mod}.lora_B.weight"] @ tensors[f"base_model.model.{mod}.lora_A.weight"]
    if dora:
        mag = tensors[f"base_model.model.{mod}.lora_magnitude_vector"]
        merged = merged * (mag / np.linalg.norm(merged, axis=1))[:, None]
    rows = np.array([0, 7, 63])
    np.testing.assert_allclose(merged_rows(ModelView(open_checkpoint(base_dir)), a, mod, rows), merged[rows],
                               rtol=1e-5, atol=1e-6)


def _rename(t: dict[str, np.ndarray], old: str, new: str) -> dict[str, np.ndarray]:
    return {k.replace(old, new): v for k, v in t.items()}


def _one(t: dict[str, np.ndarray], key_part: str, value: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    key = next(k for k in t if key_part in k)
    return {**t, key: value(t[key])}


HOSTILE: dict[str, tuple[dict[str, Any], Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], str]] = {
    "not lora": ({"peft_type": "IA3"}, lambda t: t, "not supported"),
    "rank not an int": ({"r": "8"}, lambda t: t, "adapter r must be"),
    "rank negative": ({"r": -4}, lambda t: t, "adapter r must be"),
    "rank huge": ({"r": 10**12}, lambda t: t, "adapter r must be"),
    "alpha infinite": ({"lora_alpha": float("inf")}, lambda t: t, "lora_alpha"),
    "alpha boolean": ({"lora_alpha": True}, lambda t: t, "lora_alpha"),
    "targets a number": ({"target_modules": 5}, lambda t: t, "target_modules"),
    "base not a string": ({"base_model_name_or_path": {"x": 1}}, lambda t: t, "base_model_name_or_path"),
    "dora flag not bool": ({"use_dora": "yes"}, lambda t: t, "use_dora"),
    "rank differs from r": ({"r": 2}, lambda t: t, "not the configured r"),
    "factors disagree": ({}, lambda t: _one(t, "q_proj.lora_B", lambda v: v[:, :3].copy()), "do not share a rank"),
    "B missing": ({}, lambda t: {k: v for k, v in t.items() if "layers.0.self_attn.v_proj.lora_B" not in k},
                  "not both lora_A and lora_B"),
    "3-D factor": ({}, lambda t: _one(t, "o_proj.lora_A", lambda v: v[None]), "must be matrices"),
    "integer factor": ({}, lambda t: _one(t, "o_proj.lora_A", lambda v: v.astype(np.int32)), "not a float type"),
    "dora without magnitude": ({"use_dora": True}, lambda t: t, "no lora_magnitude_vector"),
    "magnitude without dora": ({}, lambda t: {**t, "base_model.model.model.layers.0.self_attn.q_proj."
                                              "lora_magnitude_vector": np.ones(64, np.float32)}, "use_dora is not set"),
    "no lora tensors": ({}, lambda t: _rename(t, "lora_", "xora_"), "no lora_A / lora_B"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_adapters_give_one_line_input_errors(tmp_path: Path, base: tiny.TinyModel, case: str) -> None:
    config, mutate, words = HOSTILE[case]
    folder = write_adapter(tmp_path / "bad", mutate(_factors(base, 4)), **config)
    with pytest.raises(InputError) as err:
        open_adapter(folder)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text,words", [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object"),
                                        ('{"r": ' * 100_000, "not valid JSON"),
                                        (" " * (2 << 20), "more than an adapter config holds")])
def test_hostile_adapter_configs_are_refused_before_use(tmp_path: Path, base: tiny.TinyModel, text: str,
                                                        words: str) -> None:
    folder = write_adapter(tmp_path / "bad", _factors(base, 4))
    (folder / "adapter_config.json").write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=words):
        open_checkpoint(folder)


def test_adapter_weights_missing_or_pickled(tmp_path: Path, base: tiny.TinyModel) -> None:
    folder = write_adapter(tmp_path / "a", _factors(base, 4))
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(InputError, match="no adapter weights"):
        open_checkpoint(folder)
    import torch

    torch.save({k: torch.from_numpy(v) for k, v in _factors(base, 4).items()}, folder / "adapter_model.bin")
    with pytest.raises(InputError, match="--allow-pickle"):
        open_checkpoint(folder)
    assert open_adapter(folder, allow_pickle=True).rank == 4


def test_the_cli_refuses_a_broken_adapter_in_one_line(run_cli: Any, tmp_path: Path, base: tiny.TinyModel) -> None:
    folder = write_adapter(tmp_path / "bad", _factors(base, 4))
    (folder / "adapter_config.json").write_text("{oops", encoding="utf-8")
    res = run_cli("fingerprint", folder)
    assert res.code == 2 and res.err.strip().count("\n") == 0 and "not valid JSON" in res.err
