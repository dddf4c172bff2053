"""Run a white-box audit of one candidate against one or more references and build its record."""

from __future__ import annotations

from typing import Any

from audit.checkpoint import open_checkpoint
from audit.checkpoint.hashing import BackgroundHasher
from audit.lineage.compare import compare_views
from audit.lineage.verdict import flags as verdict_flags
from audit.lineage.verdict import judge, overall
from audit.lineage.view import ModelView
from audit.reporting.record import build_record, comparison_block, model_block


def run_lineage(
    candidate: str,
    references: list[tuple[str, str | None]],
    *,
    command: str,
    argv: list[str],
    allow_pickle: bool = False,
    seed: int = 0,
    name: str | None = None,
    progress=None,
) -> dict[str, Any]:
    """Compare `candidate` with each (path, name) reference; return the full record."""
    cand = ModelView(open_checkpoint(candidate, allow_pickle=allow_pickle, name=name))
    refs = [ModelView(open_checkpoint(path, allow_pickle=allow_pickle, name=ref_name)) for path, ref_name in references]
    _dedupe_names(refs)
    hashers = {id(v): BackgroundHasher(v.ckpt.files) for v in [cand, *refs]}
    comparisons, verdicts, blocks = [], [], []
    for ref in refs:
        if progress:
            progress.start(f"{cand.name} vs {ref.name}", _work(cand) + _work(ref))
        cmp = compare_views(cand, ref, seed=seed, progress=progress)
        v = judge(cmp)
        comparisons.append(cmp)
        verdicts.append(v)
        blocks.append(comparison_block(cmp, v, len(ref.roles.layers())))
    final = overall(verdicts, comparisons)
    return build_record(
        command, argv, seed,
        model_block(cand, hashers[id(cand)].result()),
        [model_block(r, hashers[id(r)].result()) for r in refs],
        blocks, final, verdict_flags(final, comparisons),
    )


def _work(view: ModelView) -> int:
    return sum(len(view.layer_weights(layer)) for layer in view.roles.layers())


def _dedupe_names(views: list[ModelView]) -> None:
    seen: dict[str, int] = {}
    for v in views:
        if v.ckpt.name in seen:
            seen[v.ckpt.name] += 1
            v.ckpt.name = f"{v.ckpt.name}#{seen[v.ckpt.name]}"
        else:
            seen[v.ckpt.name] = 1
