"""Rank the registry's families for a model: architecture, tokenizer and weights, each with its null."""

from __future__ import annotations

from typing import Any

from audit.fingerprinting.arch_match import rank_architectures
from audit.lineage.compare import Comparison
from audit.lineage.view import ModelView
from audit.registry import Registry


def registry_section(cand: ModelView, registry: Registry, comparisons: list[Comparison],
                     skipped: list[dict]) -> dict[str, Any]:
    families = [e.data for e in registry.of_kind("architecture")]
    arch = rank_architectures(cand.arch, families) if families else []
    tok_rows: list[dict[str, Any]] = []
    fps = [e.data for e in registry.of_kind("tokenizer")]
    fps += [e.data["reference"].tokenizer_fp for e in registry.of_kind("weights") if e.data["reference"].tokenizer_fp]
    if cand.ckpt.tokenizer is not None and fps:
        from audit.fingerprinting.tokenizer_sketch import rank_families

        tok = cand.ckpt.tokenizer
        tok_rows = rank_families(tok, fps, model=tok.model, pre=tok.pre)[:5]
    weights = [{"reference": c.reference, "label": _label(c), "similarity": round(c.mean_best_similarity, 4),
                "log10_p": round(c.global_log10_p, 2), "layers_matched": f"{int(round(c.matched_fraction * c.layers_compared))}/{c.layers_compared}"}
               for c in comparisons]
    weights.sort(key=lambda w: -w["similarity"])
    return {
        "entries": len(registry.entries),
        "architecture": arch,
        "tokenizer": tok_rows,
        "weights": weights,
        "skipped": skipped,
        "errors": [{"entry": p, "problem": m} for p, m in registry.errors],
    }


def _label(c: Comparison) -> str:
    from audit.lineage.verdict import judge

    return judge(c)["label"]
