"""Rank the registry's families for a model: architecture, tokenizer and weights, each with its null."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit.fingerprinting.arch_match import rank_architectures
from audit.fingerprinting.registry import Registry
from audit.fingerprinting.view import ModelView
from audit.lineage.compare import Comparison
from audit.lineage.verdict import judge
from audit.record.models import (
    ArchitectureBorrowedEvidence,
    ArchitectureBorrowedFlag,
    ArchitectureMatch,
    CatalogCoverage,
    FamilyCoverage,
    RegistryProblem,
    RegistrySection,
    SkippedReference,
    TokenizerBorrowedEvidence,
    TokenizerBorrowedFlag,
    TokenizerMatch,
    WeightMatch,
)


def registry_section(cand: ModelView, registry: Registry, comparisons: list[Comparison],
                     skipped: list[SkippedReference]) -> RegistrySection:
    families = [e.data for e in registry.of_kind("architecture")]
    arch = rank_architectures(cand.arch, families) if families else []
    tok_rows: list[dict[str, Any]] = []
    fps: list[Mapping[str, Any]] = [e.data for e in registry.of_kind("tokenizer")]
    fps += [e.data["reference"].tokenizer_fp for e in registry.of_kind("weights") if e.data["reference"].tokenizer_fp]
    if cand.ckpt.tokenizer is not None and fps:
        from audit.fingerprinting.tokenizer_sketch import rank_families

        tok = cand.ckpt.tokenizer
        tok_rows = rank_families(tok, fps, model=tok.model, pre=tok.pre)[:5]
    weights = [WeightMatch(reference=c.reference, label=judge(c).label, similarity=round(c.mean_best_similarity, 4),
                           log10_p=round(c.global_log10_p, 2),
                           layers_matched=f"{int(round(c.matched_fraction * c.layers_compared))}/{c.layers_compared}")
               for c in comparisons]
    weights.sort(key=lambda w: -w.similarity)
    return RegistrySection(
        entries=len(registry.entries),
        architecture=[ArchitectureMatch.model_validate(a) for a in arch],
        tokenizer=[TokenizerMatch.model_validate(t) for t in tok_rows],
        weights=weights,
        skipped=skipped,
        errors=[RegistryProblem(entry=p, problem=m) for p, m in registry.errors],
        catalog=catalog_coverage(registry, {c.reference for c in comparisons}),
    )


def catalog_coverage(registry: Registry, compared: set[str]) -> CatalogCoverage | None:
    """Which catalog families the registry's weight fingerprints checked: those of `compared` (names of the
    references actually compared; a fingerprint skipped as not comparable checked nothing). None when the
    catalog cannot be read (it ships with the package, so only a broken install gets here)."""
    from audit.errors import InputError
    from audit.fingerprinting.catalog import load_catalog, weight_owner

    try:
        catalog = load_catalog()
    except InputError:
        return None
    hit: dict[str, list[str]] = {}
    for w in registry.of_kind("weights"):
        if w.name not in compared:
            continue
        owner = weight_owner(w.data["reference"].stored, w.name, catalog)
        if owner is not None and owner.hub_id not in hit.setdefault(owner.family, []):
            hit[owner.family].append(owner.hub_id)
    families = catalog.families()
    return CatalogCoverage(
        models=len(catalog.entries), families=len(families),
        checked=[FamilyCoverage(family=f, models=len(families[f]), compared=hit[f]) for f in families if f in hit],
        unchecked=[f for f in families if f not in hit],
    )


def family_flags(section: RegistrySection) -> list[ArchitectureBorrowedFlag | TokenizerBorrowedFlag]:
    """Registry-level architecture/tokenizer flags: a published family's structure, without its weights."""
    out: list[ArchitectureBorrowedFlag | TokenizerBorrowedFlag] = []
    if section.architecture and section.architecture[0].exact:
        a = section.architecture[0]
        out.append(ArchitectureBorrowedFlag(
            detail=f"architecture matches published {a.model} ({a.family} family) but no weights of that family "
                   "were found; a published architecture is not a derivation",
            evidence=ArchitectureBorrowedEvidence(registry=a)))
    if section.tokenizer and section.tokenizer[0].confident:
        t = section.tokenizer[0]
        out.append(TokenizerBorrowedFlag(
            detail=f"tokenizer identified as the {t.family} family ({t.name}); reusing a tokenizer says nothing "
                   "about the weights",
            evidence=TokenizerBorrowedEvidence(registry=t)))
    return out
