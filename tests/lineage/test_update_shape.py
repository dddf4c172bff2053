"""A merged LoRA is a fine-tune whose weight difference has low rank; the comparison measures that rank on whole
rows and says so, while a full fine-tune's difference is full-rank."""

from __future__ import annotations

import re

import numpy as np
import pytest

from audit.checkpoint import open_checkpoint
from audit.fingerprinting.view import ModelView
from audit.lineage.compare import compare_views
from audit.lineage.verdict import judge
from audit.record.names import Label
from tests.support import tiny

RANK = 4
TARGETS = ("q", "v", "o", "down")


def merged_lora(m: tiny.TinyModel, rank: int, seed: int, scale: float = 0.3) -> tiny.TinyModel:
    """W + B A on the target projections (B: out x r, A: r x in), the update a merged LoRA adapter leaves."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, w in m.tensors.items():
        hit = re.fullmatch(r"model\.layers\.\d+\.(self_attn|mlp)\.(\w+)_proj\.weight", name)
        if hit and hit[2] in TARGETS:
            a = rng.standard_normal((rank, w.shape[1]))
            b = rng.standard_normal((w.shape[0], rank))
            delta = b @ a
            delta *= scale * np.linalg.norm(w) / np.linalg.norm(delta)
            out[name] = (w + delta).astype(np.float32)
        else:
            out[name] = w.copy()
    return m.replace(tensors=out)


@pytest.fixture(scope="module")
def views(tiny_dir):
    base = tiny.make_llama(0)
    d = tiny_dir / "update_shape"

    def view(m: tiny.TinyModel, name: str) -> ModelView:
        return ModelView(open_checkpoint(tiny.save_hf(m, d / name)))

    return {"base": view(base, "base"), "lora": view(merged_lora(base, RANK, 1), "lora"),
            "full": view(tiny.finetune(base, scale=0.05, seed=3), "full")}


def test_merged_lora_is_fine_tuned_with_a_low_rank_update(views):
    cmp = compare_views(views["lora"], views["base"])
    v = judge(cmp)
    assert v.label == Label.FINE_TUNED
    assert cmp.update is not None and cmp.update.low_rank
    assert set(cmp.update.rank99) == set(TARGETS) and max(cmp.update.rank99.values()) <= RANK
    assert {"k", "gate", "up"} <= set(cmp.update.unchanged)
    assert "low-rank" in v.summary and "LoRA" in v.summary


def test_full_fine_tune_update_is_full_rank(views):
    cmp = compare_views(views["full"], views["base"])
    assert judge(cmp).label == Label.FINE_TUNED
    assert cmp.update is not None and not cmp.update.low_rank
    assert all(r > cmp.update.full_rank[k] // 4 for k, r in cmp.update.rank99.items())
    assert "low-rank" not in judge(cmp).summary
