"""Turn comparisons into verdicts (original | derived | fine-tuned | inconclusive) and flags.

Thresholds, and why:
- DERIVED_LOG10_P: the layer-Gram statistic must sit beyond p < 1e-6 of its permutation null.
- EFFECT_FLOOR (compare.py): and the mean best-layer similarity must exceed 0.2. Unrelated real models measured here
  (SmolLM2-135M vs Gemma-3-270M, both directions) scored 0.004 against a null of 0.004 +- 0.0004; fine-tuned
  copies score > 0.9. The floor guards against a tiny but "significant" overlap being called a derivation.
- ORIGINAL_LOG10_P: "original" needs the statistic inside its null (p > 0.01) and no single layer matched,
  over at least MIN_LAYERS layers, so the test had power.
"""

from __future__ import annotations

from audit.lineage.compare import EFFECT_FLOOR, Comparison
from audit.record.models import (
    ArchitectureBorrowedEvidence,
    ArchitectureBorrowedFlag,
    TokenizerBorrowedEvidence,
    TokenizerBorrowedFlag,
    TokenizerComparison,
    Verdict,
)
from audit.record.names import STRUCTURAL, Label, Operation

DERIVED_LOG10_P = -6.0
ORIGINAL_LOG10_P = -2.0
MIN_LAYERS = 2
TOKENIZER_BORROWED_JACCARD = 0.9


def judge(cmp: Comparison) -> Verdict:
    """The verdict for one candidate/reference pair."""
    ops = list(dict.fromkeys(o.name for o in cmp.operations))
    matched = sum(1 for _, r, _, _ in cmp.layer_map if r is not None)
    n = cmp.layers_compared
    p_text = _p_text(cmp.global_log10_p)
    if cmp.global_log10_p < DERIVED_LOG10_P and cmp.mean_best_similarity >= EFFECT_FLOOR and matched >= 1:
        structural = [o for o in ops if o in STRUCTURAL]
        label = Label.DERIVED if structural or cmp.matched_fraction < 0.5 else Label.FINE_TUNED
        if cmp.matched_fraction < 0.5:
            ops.append(Operation.PARTIAL_REUSE)
        confidence = round(min(0.99, 0.5 + 0.49 * cmp.matched_fraction), 2)
        how = f" ({', '.join(ops)})" if ops else ""
        summary = (f"{matched} of {n} layers carry {cmp.reference}'s weights (layer similarity "
                   f"{cmp.mean_best_similarity:.2f}, p {p_text}): {label} from {cmp.reference}{how}.")
        return Verdict(label=label, parent=cmp.reference, confidence=confidence, operations=ops, summary=summary)
    if cmp.global_log10_p > ORIGINAL_LOG10_P and matched == 0 and n >= MIN_LAYERS:
        confidence = round(min(0.95, 0.5 + 0.05 * n), 2)
        summary = (f"No layer of the {n} compared carries {cmp.reference}'s weights (layer similarity "
                   f"{cmp.mean_best_similarity:.3f}, p {p_text}, inside the independent-model null).")
        return Verdict(label=Label.ORIGINAL, confidence=confidence, summary=summary)
    summary = (f"Mixed evidence against {cmp.reference}: {matched} of {n} layers matched, layer similarity "
               f"{cmp.mean_best_similarity:.3f}, p {p_text}. A reference closer to the candidate (an earlier "
               "checkpoint of the same family) or more comparable layers would settle it.")
    return Verdict(label=Label.INCONCLUSIVE, confidence=0.5, operations=ops, summary=summary)


def overall(verdicts: list[Verdict], comparisons: list[Comparison]) -> Verdict:
    """Pick the best parent among several references; 'original' means none of the N checked."""
    n = len(verdicts)
    positive = [(c, v) for c, v in zip(comparisons, verdicts, strict=True)
                if v.label in (Label.DERIVED, Label.FINE_TUNED)]
    if positive:
        cmp, v = max(positive, key=lambda cv: (cv[0].mean_best_similarity, -cv[0].global_log10_p))
        summary = v.summary
        if n > 1:
            others = [c.reference for c, _ in positive if c is not cmp]
            extra = f" Also related: {', '.join(others)} (likely ancestors or siblings)." if others else ""
            summary += f" Best parent of {n} references checked.{extra}"
        return v.model_copy(update={"summary": summary, "references_checked": n})
    if verdicts and all(v.label == Label.ORIGINAL for v in verdicts):
        return Verdict(label=Label.ORIGINAL, confidence=min(v.confidence or 0.0 for v in verdicts),
                       summary=f"No derivation from any of the {n} reference(s) checked "
                               f"({', '.join(c.reference for c in comparisons)}) was found in the weights.",
                       references_checked=n)
    ops = sorted({o for v in verdicts for o in v.operations}, key=str)
    return Verdict(label=Label.INCONCLUSIVE, confidence=0.5, operations=ops,
                   summary=" ".join(v.summary for v in verdicts if v.label == Label.INCONCLUSIVE),
                   references_checked=n)


def no_weight_evidence(skipped: int) -> Verdict:
    """No stored fingerprint could be compared (registry-only audit of an unrelated vocabulary)."""
    return Verdict(label=Label.INCONCLUSIVE, confidence=0.5, references_checked=0,
                   summary="No weight fingerprint could be compared with this model "
                           f"({skipped} skipped for lack of shared tokens or layers); pass --reference with a "
                           "candidate parent checkpoint to settle it.")


def flags(verdict: Verdict, comparisons: list[Comparison]) -> list[ArchitectureBorrowedFlag | TokenizerBorrowedFlag]:
    """Architecture/tokenizer borrowing: a match of structure without a match of weights."""
    if verdict.label in (Label.DERIVED, Label.FINE_TUNED):
        return []
    out: list[ArchitectureBorrowedFlag | TokenizerBorrowedFlag] = []
    arch = [c.reference for c in comparisons if c.architecture_match]
    if arch:
        out.append(ArchitectureBorrowedFlag(
            detail=f"same architecture as {', '.join(arch)} (sizes, depth, heads, vocabulary), "
                   "but not the same weights; using a published architecture is not a derivation",
            evidence=ArchitectureBorrowedEvidence(references=arch)))
    tok = [(c.reference, c.tokenizer) for c in comparisons
           if c.tokenizer and c.tokenizer["jaccard"] >= TOKENIZER_BORROWED_JACCARD]
    if tok:
        out.append(TokenizerBorrowedFlag(
            detail=f"tokenizer shares {tok[0][1]['jaccard']:.0%} of its vocabulary with {tok[0][0]}; "
                   "reusing a tokenizer is common and says nothing about the weights",
            evidence=TokenizerBorrowedEvidence(
                references={r: TokenizerComparison.model_validate(t) for r, t in tok})))
    return out


def _p_text(log10_p: float) -> str:
    if log10_p <= -300:
        return "< 1e-300"
    if log10_p < -3:
        return f"= 1e{log10_p:.0f}"
    return f"= {10 ** log10_p:.2g}"
