"""NaN/Inf and all-zero weights: what the comparison could not use, as a flag and a sentence in the verdict.

Rows holding NaN or Inf are set to zero when read (`audit.checkpoint.model.WeightQuality`), and the Gram
comparison leaves out hidden units whose rows are zero and weights that are mostly zero (`compare._finite_units`),
so the statistics rest on finite rows only. This module turns what the readers saw into the record's
`non-finite-weights` flag; a candidate with nothing usable at all gets an inconclusive verdict that says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from audit.fingerprinting.view import ModelView
from audit.record.models import (
    AnyFlag,
    NonFiniteWeightsEvidence,
    NonFiniteWeightsFlag,
    UnusableWeights,
    Verdict,
)
from audit.record.names import Label

LISTED = 100


def unusable_weights(view: ModelView) -> UnusableWeights | None:
    """What `view`'s reads so far held that is unusable (None when every row read was finite and no tensor zero)."""
    q = view.ckpt.quality
    bad, zero = q.nonfinite, q.all_zero
    if not bad and not zero:
        return None
    return UnusableWeights(model=view.name, nonfinite={n: q.nonfinite_rows[n] for n in bad[:LISTED]},
                           all_zero=zero[:LISTED], tensors_nonfinite=len(bad), tensors_all_zero=len(zero),
                           usable=q.usable())


def _said(u: UnusableWeights) -> str:
    parts = []
    if u.tensors_nonfinite:
        rows = sum(u.nonfinite.values())
        parts.append(f"{u.tensors_nonfinite} tensor(s) with NaN, Inf or overflowing values ({rows} row(s) left out)")
    if u.tensors_all_zero:
        parts.append(f"{u.tensors_all_zero} all-zero tensor(s)")
    return f"{u.model}: {' and '.join(parts)}"


def weight_quality(verdict: Verdict, flags: list[AnyFlag], cand: ModelView,
                   references: Sequence[ModelView]) -> tuple[Verdict, list[AnyFlag]]:
    """The verdict and flags with the `non-finite-weights` flag added when the candidate or a checkpoint
    reference held NaN/Inf or all-zero tensors; the verdict's summary says what was left out, and a candidate
    with nothing usable (all NaN, all zero) is inconclusive."""
    found = [u for u in (unusable_weights(v) for v in (cand, *references)) if u is not None]
    if not found:
        return verdict, flags
    detail = "Left out of the comparison: " + "; ".join(_said(u) for u in found) + "."
    flag = NonFiniteWeightsFlag(detail=detail, evidence=NonFiniteWeightsEvidence(models=found))
    if found[0].model == cand.name and not found[0].usable:
        verdict = Verdict(label=Label.INCONCLUSIVE, references_checked=verdict.references_checked,
                          summary=f"Nothing usable: every weight row of {cand.name} that was read is NaN, Inf or "
                                  "zero, so no comparison could be made. " + detail)
    else:
        verdict = verdict.model_copy(update={"summary": f"{verdict.summary} {detail}"})
    return verdict, [*flags, flag]
