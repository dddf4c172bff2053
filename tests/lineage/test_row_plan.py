"""The comparison reads whole stored rows only, reads each row once per model, and works between two stored
fingerprints (what a batch compares), permuted copies included."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from audit.checkpoint import open_checkpoint
from audit.fingerprinting.reference import fingerprint_reference, select_units
from audit.fingerprinting.view import ModelView
from audit.lineage.compare import UPDATE_LAYERS, compare_views
from audit.lineage.verdict import judge
from audit.record.names import Label
from tests.support import tiny


class _Spy:
    """Wrap a checkpoint's reader: which tensors were read whole, and how often each row was read."""

    def __init__(self, view: ModelView) -> None:
        self.whole: list[str] = []
        self.rows: Counter[tuple[str, int]] = Counter()
        ckpt = view.ckpt
        read_many = ckpt.read_rows_many

        def spy_many(requests):
            for name, rows in requests:
                n = ckpt.tensors[name].shape[0]
                ids = range(*rows.indices(n)) if isinstance(rows, slice) else np.asarray(rows).ravel()
                if isinstance(rows, slice) and len(ids) == n:  # Checkpoint.read: the whole tensor
                    self.whole.append(name)
                else:
                    self.rows.update((name, int(i)) for i in ids)
            return read_many(requests)

        ckpt.read_rows_many = spy_many  # type: ignore[method-assign]


def _view(path: Path) -> ModelView:
    return ModelView(open_checkpoint(path))


@pytest.fixture(scope="module")
def models(tiny_dir: Path) -> dict[str, Path]:
    base = tiny.make_llama(0)
    ft = tiny.finetune(base, scale=0.05, seed=3)
    d = tiny_dir / "row_plan"
    return {
        "base": tiny.save_hf(base, d / "base"),
        "finetuned": tiny.save_hf(ft, d / "finetuned"),
        "permuted": tiny.save_hf(tiny.permute_neurons(tiny.permute_hidden(ft, 1), 2), d / "permuted"),
        "independent": tiny.save_hf(tiny.make_llama(7), d / "independent"),
    }


def test_compare_reads_rows_and_one_dimensional_tensors_only(models):
    cand, ref = _view(models["finetuned"]), _view(models["base"])
    spies = [_Spy(cand), _Spy(ref)]
    cmp = compare_views(cand, ref)
    assert judge(cmp).label == Label.FINE_TUNED
    for view, spy in zip((cand, ref), spies, strict=True):
        whole_2d = [n for n in spy.whole if len(view.ckpt.tensors[n].shape) > 1]
        assert whole_2d == [], f"whole 2-D tensors read: {whole_2d}"
        assert view.ckpt.io is not None and view.ckpt.io.bytes_read < view.ckpt.io.bytes_total
        # q/k/v/gate/up are (out, hidden): their hidden units are columns, left out of the Grams; only the
        # measurement of the update's rank reads some of their rows, in the first UPDATE_LAYERS matched layers
        column_kinds = {n for n, _ in spy.rows if "q_proj" in n or "up_proj" in n}
        assert len(column_kinds) <= 2 * UPDATE_LAYERS, column_kinds
        assert any("down_proj" in n for n, _ in spy.rows) and any("embed_tokens" in n for n, _ in spy.rows)


def test_candidate_rows_are_read_once_for_many_references(models):
    cand = _view(models["permuted"])
    spy = _Spy(cand)
    for name in ("base", "finetuned", "independent", "base"):
        compare_views(cand, _view(models[name]))
    assert spy.rows and max(spy.rows.values()) == 1


@pytest.mark.parametrize(("name", "derived"), [("finetuned", True), ("permuted", True), ("independent", False)])
def test_two_stored_fingerprints_compare(models, name, derived):
    """Batches compare fingerprints, not checkpoints: permuted copies still line up (canonical units)."""
    fp_base = fingerprint_reference(_view(models["base"]))
    fp_cand = fingerprint_reference(_view(models[name]))
    cmp = compare_views(fp_cand, fp_base)
    label = judge(cmp).label
    assert (label in (Label.DERIVED, Label.FINE_TUNED)) == derived, (label, cmp.mean_best_similarity)
    if derived:
        assert cmp.matched_fraction == 1.0
    else:
        assert cmp.gram_log10_p > -2


def test_canonical_units_follow_a_hidden_permutation(tiny_dir):
    base = tiny.make_llama(0)
    perm = tiny.permute_hidden(base, 1)
    a = select_units(_view(tiny.save_hf(base, tiny_dir / "units_a")))
    b = select_units(_view(tiny.save_hf(perm, tiny_dir / "units_b")))
    # the permuted copy's hidden unit j is the base's unit p[j]; recover p from the embeddings
    e_a = base.tensors["model.embed_tokens.weight"]
    e_b = perm.tensors["model.embed_tokens.weight"]
    p = np.array([int(np.argmax(np.abs(e_a.T @ e_b[:, j]))) for j in range(e_b.shape[1])])
    canonical = len(a) // 2
    assert len(set(p[b].tolist()) & set(a.tolist())) >= canonical


def test_unrelated_layouts_without_shared_tokens_never_claim_units_in_place(tiny_dir):
    """GPT-2 (transposed Conv1D) against BERT with disjoint vocabularies: no anchor tokens, and the two storage
    layouts share no row-readable weight kind. The fallback alignment must not hand the exact fixed-point test
    an arbitrary identity assignment (that read as 'units in place, p = 1e-89' on independent models)."""
    from audit.errors import NothingComparable
    from audit.record.names import StatisticName

    gpt2 = _view(tiny.save_hf(tiny.make_gpt2(1), tiny_dir / "layout_gpt2"))
    bert = _view(tiny.save_hf(tiny.make_bert(2, tokens=[f"w{i}" for i in range(512)]), tiny_dir / "layout_bert"))
    try:
        cmp = compare_views(gpt2, bert)
    except NothingComparable:
        return
    stat = cmp.stat(StatisticName.HIDDEN_ALIGNMENT_IDENTITY)
    assert stat is None or stat.log10_p > -2, stat
    assert judge(cmp).label not in (Label.DERIVED, Label.FINE_TUNED)
