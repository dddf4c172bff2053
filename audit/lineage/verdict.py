"""Turn comparisons into verdicts (original | derived | fine-tuned | inconclusive) and flags.

The label follows the weights; packaging (format, dtype, quantization, renaming) is reported beside it and
never decides it. Weights count as carried over when at least one layer matched and either
- an exact test puts them in place: hidden units or MLP neurons at the reference's indices, p < 1e-6
  (DERIVED_LOG10_P; exact under the exchangeability assumption the record names), with the best layers'
  similarity at least EXACT_SIM_FLOOR, or
- the permutation-robust layer-Gram similarity is at least EFFECT_FLOOR and beats every one of its N_PERM
  permutation draws (the smallest p-value N_PERM draws can give) by an effect size of at least Z_MIN.
The floors come from benchmarks/bench_calibration.py (docs/statistics.md has the table).
"original" needs the exact tests inside their null (p > 0.01), the best layers' similarity below SIM_ORIGINAL
(what independent pairs stay under), no layer matched, and at least MIN_LAYERS layers compared.
Everything else is "inconclusive".
"""

from __future__ import annotations

import math

from audit.lineage.calibration import confidence
from audit.lineage.compare import EFFECT_FLOOR, N_PERM, Comparison
from audit.record.models import (
    ArchitectureBorrowedEvidence,
    ArchitectureBorrowedFlag,
    TokenizerBorrowedEvidence,
    TokenizerBorrowedFlag,
    TokenizerComparison,
    Verdict,
)
from audit.record.names import PACKAGING, STRUCTURAL, Label, Operation

DERIVED_LOG10_P = -6.0
ORIGINAL_LOG10_P = -2.0
MIN_LAYERS = 2
Z_MIN = 100.0  # independent pairs reach z 56 against the permutation draws, derived pairs >= 300
# "original" needs the best layers' similarity below this. Independent real models exceed the permutation
# null a little, because the hidden-unit alignment itself induces some similarity, and on big models that is
# many permutation sds (Qwen2.5-Coder 1.5B vs 0.5B: similarity 0.017, z 11): the similarity itself is the
# calibrated scale. Independent pairs measured: <= 0.017 (real), <= 0.20 (tiny same-config models trained on the
# same text); derived >= 0.83 (siblings ~0.4).
SIM_ORIGINAL = 0.3
# the exact route needs less similarity than the permutation-robust one (siblings sharing an ancestor keep their
# units in place at ~0.4), but some: an exact test rests on its exchangeability assumption, the floor guards it
EXACT_SIM_FLOOR = 0.25
GRAM_FLOOR_LOG10_P = math.log10(1.0 / (N_PERM + 1))
TOKENIZER_BORROWED_JACCARD = 0.9


def evidence(cmp: Comparison) -> tuple[bool, bool]:
    """(exact tests put the weights in place, the Gram similarity is beyond every permutation draw by Z_MIN)."""
    exact = cmp.exact_log10_p < DERIVED_LOG10_P
    gram = cmp.gram_log10_p <= GRAM_FLOOR_LOG10_P + 1e-9 and cmp.gram_z >= Z_MIN
    return exact, gram


def _evidence_text(cmp: Comparison) -> str:
    exact, gram = evidence(cmp)
    parts = [f"layer similarity {cmp.mean_best_similarity:.2f}, z {cmp.gram_z:.0f} against {N_PERM} permutations "
             f"(p {_p_text(cmp.gram_log10_p)}{', the smallest they can give' if gram else ''})"]
    if exact or cmp.exact_log10_p < ORIGINAL_LOG10_P:
        parts.append(f"units in place: exact p {_p_text(cmp.exact_log10_p)}")
    return "; ".join(parts)


NOT_IN_WEIGHTS = ("Training on another model's outputs (distillation) leaves no trace in the weights: the black-box "
                  "probes (`provaudit probe`, `audit --probe`) test for that.")


def judge(cmp: Comparison) -> Verdict:
    """The verdict for one candidate/reference pair."""
    names = list(dict.fromkeys(o.name for o in cmp.operations))
    ops = [o for o in names if o not in PACKAGING]
    packaging = [o for o in names if o in PACKAGING]
    matched = sum(1 for _, r, _, _ in cmp.layer_map if r is not None)
    n = cmp.layers_compared
    exact, gram = evidence(cmp)
    repack = f"; repackaged: {', '.join(packaging)}" if packaging else ""
    carried = ((exact and cmp.mean_best_similarity >= EXACT_SIM_FLOOR)
               or (gram and cmp.mean_best_similarity >= EFFECT_FLOOR))
    if carried and matched >= 1:
        label = Label.DERIVED if any(o in STRUCTURAL for o in ops) or cmp.matched_fraction < 0.5 else Label.FINE_TUNED
        if cmp.matched_fraction < 0.5:
            ops.append(Operation.PARTIAL_REUSE)
        conf, basis = confidence(label)
        how = f" ({', '.join(ops)})" if ops else ""
        summary = (f"{matched} of {n} layers carry {cmp.reference}'s weights ({_evidence_text(cmp)}): "
                   f"{label} from {cmp.reference}{how}{repack}.")
        if cmp.update is not None and cmp.update.low_rank:
            top = max(cmp.update.rank99.values())
            summary += (f" The update is low-rank (rank <= {top} in {', '.join(sorted(cmp.update.rank99))}): "
                        "a LoRA-style adapter merged into the weights.")
        return Verdict(label=label, parent=cmp.reference, confidence=conf, confidence_basis=basis, operations=ops,
                       packaging=packaging, summary=summary)
    if (cmp.mean_best_similarity < SIM_ORIGINAL and cmp.exact_log10_p > ORIGINAL_LOG10_P and matched == 0
            and n >= MIN_LAYERS):
        conf, basis = confidence(Label.ORIGINAL)
        summary = (f"No layer of the {n} compared carries {cmp.reference}'s weights (layer similarity "
                   f"{cmp.mean_best_similarity:.3f}, below the {SIM_ORIGINAL} independent models stay under; exact "
                   f"tests p {_p_text(cmp.exact_log10_p)}).")
        return Verdict(label=Label.ORIGINAL, confidence=conf, confidence_basis=basis, summary=summary)
    summary = (f"Mixed evidence against {cmp.reference}: {matched} of {n} layers matched ({_evidence_text(cmp)}). "
               "A reference closer to the candidate (an earlier checkpoint of the same family) or more comparable "
               "layers would settle it.")
    return Verdict(label=Label.INCONCLUSIVE, operations=ops, packaging=packaging, summary=summary)


def overall(verdicts: list[Verdict], comparisons: list[Comparison]) -> Verdict:
    """Pick the best parent among several references; 'original' means none of the N checked."""
    n = len(verdicts)
    positive = [(c, v) for c, v in zip(comparisons, verdicts, strict=True)
                if v.label in (Label.DERIVED, Label.FINE_TUNED)]
    if positive:
        # the most similar parent; within 0.001 of similarity a checkpoint the user gave wins over a stored
        # fingerprint (it allows the row-level tests), then the stronger evidence
        cmp, v = max(positive, key=lambda cv: (round(cv[0].mean_best_similarity, 3), cv[0].live,
                                               -cv[0].global_log10_p))
        summary = v.summary
        if n > 1:
            others = [c.reference for c, _ in positive if c is not cmp]
            extra = f" Also related: {', '.join(others)} (likely ancestors or siblings)." if others else ""
            summary += f" Best parent of {n} references checked.{extra}"
        return v.model_copy(update={"summary": summary, "references_checked": n})
    if verdicts and all(v.label == Label.ORIGINAL for v in verdicts):
        conf, basis = confidence(Label.ORIGINAL)
        return Verdict(label=Label.ORIGINAL, confidence=conf, confidence_basis=basis,
                       summary=f"No derivation from any of the {n} reference(s) checked "
                               f"({', '.join(c.reference for c in comparisons)}) was found in the weights. "
                               f"{NOT_IN_WEIGHTS}",
                       references_checked=n)
    ops = sorted({o for v in verdicts for o in v.operations}, key=str)
    packaging = sorted({o for v in verdicts for o in v.packaging}, key=str)
    return Verdict(label=Label.INCONCLUSIVE, operations=ops, packaging=packaging,
                   summary=" ".join(v.summary for v in verdicts if v.label == Label.INCONCLUSIVE),
                   references_checked=n)


def no_weight_evidence(skipped: int) -> Verdict:
    """No stored fingerprint could be compared (registry-only audit of an unrelated vocabulary)."""
    return Verdict(label=Label.INCONCLUSIVE, references_checked=0,
                   summary="No weight fingerprint could be compared with this model "
                           f"({skipped} skipped for lack of shared tokens or layers); pass --reference with a "
                           "candidate parent checkpoint to settle it.")


def flags(verdict: Verdict, comparisons: list[Comparison]) -> list[ArchitectureBorrowedFlag | TokenizerBorrowedFlag]:
    """Architecture/tokenizer borrowing: a match of structure without a match of weights."""
    if verdict.label in (Label.DERIVED, Label.FINE_TUNED):
        return []
    out: list[ArchitectureBorrowedFlag | TokenizerBorrowedFlag] = []
    arch = [c.reference for c in comparisons if c.architecture_match]
    family = [c.reference for c in comparisons if c.family_layout_match and not c.architecture_match]
    if arch:
        out.append(ArchitectureBorrowedFlag(
            detail=f"same architecture as {', '.join(arch)} (sizes, depth, heads, vocabulary), "
                   "but not the same weights; using a published architecture is not a derivation",
            evidence=ArchitectureBorrowedEvidence(references=arch)))
    elif family:
        out.append(ArchitectureBorrowedFlag(
            detail=f"same architecture family as {', '.join(family)} at another size (model type, block layout, "
                   "vocabulary), but not the same weights: sibling sizes of one release are trained apart",
            evidence=ArchitectureBorrowedEvidence(references=family)))
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
    if log10_p < -3:
        exp = math.floor(log10_p)
        return f"= {10 ** (log10_p - exp):.1f}e{exp}"
    return f"= {10 ** log10_p:.2g}"
