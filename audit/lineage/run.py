"""Run a white-box audit of one candidate against references and/or the registry; build its record."""

from __future__ import annotations

from typing import Any

from audit.checkpoint import open_checkpoint
from audit.checkpoint.hashing import BackgroundHasher
from audit.errors import InputError, NothingComparable
from audit.lineage.compare import compare_views
from audit.lineage.reference import Reference, live_reference
from audit.lineage.verdict import flags as verdict_flags
from audit.lineage.verdict import judge, overall
from audit.lineage.view import ModelView
from audit.registry import Registry
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
    registry: Registry | None = None,
) -> dict[str, Any]:
    """Compare `candidate` with each (path, name) reference and, if given, the registry; return the record."""
    cand = ModelView(open_checkpoint(candidate, allow_pickle=allow_pickle, name=name))
    live = [ModelView(open_checkpoint(path, allow_pickle=allow_pickle, name=ref_name)) for path, ref_name in references]
    _dedupe_names(live)
    hashers = {id(v): BackgroundHasher(v.ckpt.files) for v in [cand, *live]}
    refs: list[Reference] = [live_reference(v) for v in live]
    if registry is not None:
        refs += [e.data["reference"] for e in registry.of_kind("weights")]
    comparisons, verdicts, blocks, skipped = [], [], [], []
    for ref in refs:
        if progress:
            progress.start(f"{cand.name} vs {ref.name}", _work(cand) * (2 if ref.view is not None else 1))
        try:
            cmp = compare_views(cand, ref, seed=seed, progress=progress)
        except NothingComparable as exc:
            if ref.view is not None:  # the user asked for this reference explicitly
                raise
            skipped.append({"reference": ref.name, "reason": str(exc)})
            continue
        v = judge(cmp)
        comparisons.append(cmp)
        verdicts.append(v)
        blocks.append(comparison_block(cmp, v, len(ref.layers)))
    if not comparisons and registry is None:
        raise InputError("no reference could be compared")
    final = overall(verdicts, comparisons) if comparisons else _no_weight_evidence(skipped)
    flags = verdict_flags(final, comparisons)
    record = build_record(
        command, argv, seed,
        model_block(cand, hashers[id(cand)].result()),
        [model_block(v, hashers[id(v)].result()) for v in live]
        + [{"name": r.name, "path": str(r.stored.get("path", "")), "format": "weight-fingerprint",
            "family": r.stored.get("family"), "source": r.stored.get("source")} for r in refs if r.view is None],
        blocks, final, flags,
    )
    if registry is not None:
        from audit.lineage.registry_audit import registry_section

        record["registry"] = registry_section(cand, registry, comparisons, skipped)
        record["flags"] = _merge_flags(flags, record["registry"], final)
    return record


def _no_weight_evidence(skipped: list[dict]) -> dict[str, Any]:
    return {"label": "inconclusive", "parent": None, "confidence": 0.5, "operations": [], "references_checked": 0,
            "summary": "No weight fingerprint could be compared with this model "
                       f"({len(skipped)} skipped for lack of shared tokens or layers); pass --reference with a "
                       "candidate parent checkpoint to settle it."}


def _merge_flags(flags: list[dict], section: dict, verdict: dict) -> list[dict]:
    """Add registry-level architecture/tokenizer flags (family matches without weight matches)."""
    kinds = {f["kind"] for f in flags}
    if verdict["label"] in ("derived", "fine-tuned"):
        return flags
    out = list(flags)
    arch = section.get("architecture") or []
    if arch and arch[0].get("exact") and "architecture-borrowed" not in kinds:
        out.append({"kind": "architecture-borrowed",
                    "detail": f"architecture matches published {arch[0]['model']} ({arch[0]['family']} family) "
                              "but no weights of that family were found; a published architecture is not a derivation",
                    "evidence": arch[0]})
    tok = section.get("tokenizer") or []
    if tok and tok[0].get("confident") and "tokenizer-borrowed" not in kinds:
        out.append({"kind": "tokenizer-borrowed",
                    "detail": f"tokenizer identified as the {tok[0]['family']} family ({tok[0]['name']}); "
                              "reusing a tokenizer says nothing about the weights",
                    "evidence": tok[0]})
    return out


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
