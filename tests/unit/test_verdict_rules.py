"""judge / overall on hand-built comparisons, probed exactly at the documented thresholds.

derived/fine-tuned: (exact log10 p < -6, OR the Gram similarity at its permutation floor with z >= Z_MIN)
  AND mean best-layer similarity >= 0.25 (EXACT_SIM_FLOOR) for the exact route, 0.5 (EFFECT_FLOOR) for the
  permutation route, AND >= 1 matched layer;
  any structural operation -> derived, else fine-tuned (packaging never decides);
  matched fraction < 0.5 -> derived + partial-reuse.
original: exact and Gram log10 p > -2 AND no matched layer AND >= 2 layers compared.
anything else: inconclusive.
`log10_p` below is the exact evidence; the Gram route is probed separately.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from audit.lineage import compare, verdict
from audit.lineage.compare import Comparison
from audit.lineage.stats import Statistic
from audit.lineage.verdict import judge, overall
from audit.record.models import DetectedOperation, Verdict
from audit.record.names import PACKAGING, STRUCTURAL, Label, Operation, StatisticName

FLOOR = math.log10(1 / (compare.N_PERM + 1))


def below(x: float) -> float:
    return float(np.nextafter(x, -math.inf))


def above(x: float) -> float:
    return float(np.nextafter(x, math.inf))


def make_cmp(log10_p: float = -20.0, sim: float = 0.9, matched: int = 6, n: int = 6,
             ops: tuple[Operation, ...] = (), name: str = "parent", gram_log10_p: float = -0.5,
             gram_z: float = 0.0) -> Comparison:
    """A comparison whose first `matched` of `n` candidate layers matched reference layers in order;
    `log10_p` is the exact tests' evidence, `gram_*` the permutation-robust one."""
    layer_map = [(i, i if i < matched else None, sim if i < matched else 0.01, -12.0 if i < matched else -0.1)
                 for i in range(n)]
    stats = [
        Statistic(StatisticName.LAYER_GRAM_SIMILARITY, sim, "empirical", "random permutation of hidden units",
                  compare.N_PERM, gram_log10_p, null_mean=0.004, null_sd=0.001),
        Statistic(StatisticName.HIDDEN_ALIGNMENT_IDENTITY, 64.0, "exact", "fixed points of a random permutation",
                  64, log10_p),
    ]
    return Comparison(
        reference=name, statistics=stats, layer_map=layer_map, layer_null=(0.004, 0.001, 24 * n),
        similarity=np.full((n, n), 0.01), alignment={"method": "embedding-anchors"}, tokenizer=None,
        architecture_match=True, operations=[DetectedOperation(name=o, detail="") for o in ops],
        global_log10_p=min(log10_p, gram_log10_p), gram_log10_p=gram_log10_p, gram_z=gram_z, exact_log10_p=log10_p,
        mean_best_similarity=sim, matched_fraction=matched / n if n else 0.0,
        layers_compared=n,
    )


def test_thresholds_are_the_documented_ones() -> None:
    assert verdict.DERIVED_LOG10_P == -6.0
    assert verdict.ORIGINAL_LOG10_P == -2.0
    assert verdict.MIN_LAYERS == 2
    assert compare.EFFECT_FLOOR == verdict.EFFECT_FLOOR == 0.5
    assert verdict.Z_MIN == 100.0
    assert verdict.EXACT_SIM_FLOOR == 0.25 and verdict.SIM_ORIGINAL == 0.3


def test_comparison_fixture_is_consistent() -> None:
    c = make_cmp(matched=3, n=6)
    assert sum(r is not None for _, r, _, _ in c.layer_map) == 3 and c.matched_fraction == 0.5
    assert c.stat(StatisticName.HIDDEN_ALIGNMENT_IDENTITY).log10_p == c.exact_log10_p == c.global_log10_p


# ------------------------------------------------------------------ the derivation boundary


@pytest.mark.parametrize(("log10_p", "positive"), [
    (below(-6.0), True), (-6.0, False), (above(-6.0), False), (-300.0, True),
])
def test_p_value_boundary_at_minus_six(log10_p, positive) -> None:
    v = judge(make_cmp(log10_p=log10_p))
    assert (v.label == Label.FINE_TUNED) is positive
    if not positive:  # too weak to call a derivation, too strong (and matched) to call original
        assert v.label == Label.INCONCLUSIVE and v.parent is None


@pytest.mark.parametrize(("gram_log10_p", "z", "positive"), [
    (FLOOR, verdict.Z_MIN, True), (FLOOR, 1e4, True), (FLOOR, below(verdict.Z_MIN), False),
    (math.log10(2 / (compare.N_PERM + 1)), 1e4, False),  # one permutation draw reached it: not beyond the null
])
def test_permutation_route_needs_the_floor_and_the_effect_size(gram_log10_p, z, positive) -> None:
    """Without exact evidence (e.g. permuted units), the Gram similarity must beat every draw by Z_MIN."""
    v = judge(make_cmp(log10_p=0.0, gram_log10_p=gram_log10_p, gram_z=z))
    assert v.label == (Label.FINE_TUNED if positive else Label.INCONCLUSIVE)


@pytest.mark.parametrize(("sim", "positive"), [
    (0.25, True), (above(0.25), True), (below(0.25), False), (0.05, False), (1.0, True),
])
def test_exact_route_similarity_floor_at_0_25(sim, positive) -> None:
    v = judge(make_cmp(log10_p=-50.0, sim=sim))
    assert v.label == (Label.FINE_TUNED if positive else Label.INCONCLUSIVE)


@pytest.mark.parametrize(("sim", "positive"), [
    (0.5, True), (above(0.5), True), (below(0.5), False), (0.25, False), (1.0, True),
])
def test_permutation_route_similarity_floor_at_0_5(sim, positive) -> None:
    v = judge(make_cmp(log10_p=0.0, sim=sim, gram_log10_p=FLOOR, gram_z=1e4))
    assert v.label == (Label.FINE_TUNED if positive else Label.INCONCLUSIVE)


def test_significant_but_no_matched_layer_is_not_a_derivation() -> None:
    v = judge(make_cmp(log10_p=-50.0, sim=0.9, matched=0))
    assert v.label == Label.INCONCLUSIVE


def test_positive_verdict_names_the_parent() -> None:
    v = judge(make_cmp(name="meta-llama/Llama-3-8B"))
    assert isinstance(v, Verdict)
    assert v.parent == "meta-llama/Llama-3-8B"
    assert "meta-llama/Llama-3-8B" in v.summary
    assert v.confidence is not None and 0.5 <= v.confidence <= 0.99


# ------------------------------------------------------------------ derived vs fine-tuned


def test_no_operation_full_match_is_fine_tuned() -> None:
    v = judge(make_cmp())
    assert v.label == Label.FINE_TUNED
    assert v.operations == []


@pytest.mark.parametrize("op", sorted(STRUCTURAL, key=str))
def test_any_structural_operation_makes_it_derived(op) -> None:
    v = judge(make_cmp(ops=(op,)))
    assert v.label == Label.DERIVED
    assert v.operations == [op]
    assert op.value in v.summary


def test_every_operation_is_packaging_structural_or_partial_reuse() -> None:
    assert STRUCTURAL | PACKAGING | {Operation.PARTIAL_REUSE} == set(Operation)
    assert not STRUCTURAL & PACKAGING and Operation.PARTIAL_REUSE not in STRUCTURAL | PACKAGING


@pytest.mark.parametrize("op", sorted(PACKAGING, key=str))
def test_packaging_never_decides_the_label(op) -> None:
    v = judge(make_cmp(ops=(op,)))
    assert v.label == Label.FINE_TUNED and v.operations == [] and v.packaging == [op]
    assert op.value in v.summary


def test_operations_are_reported_once_in_detection_order() -> None:
    ops = (Operation.PERMUTATION, Operation.RENAMED_TENSORS, Operation.PERMUTATION, Operation.SIGN_FLIP)
    v = judge(make_cmp(ops=ops))
    assert v.operations == [Operation.PERMUTATION, Operation.SIGN_FLIP]
    assert v.packaging == [Operation.RENAMED_TENSORS]


@pytest.mark.parametrize(("matched", "n", "partial"), [
    (1, 6, True), (2, 6, True), (3, 7, True), (3, 6, False), (4, 7, False), (6, 6, False),
])
def test_matched_fraction_below_half_is_partial_reuse(matched, n, partial) -> None:
    v = judge(make_cmp(matched=matched, n=n))
    assert (matched / n < 0.5) is partial
    assert v.label == (Label.DERIVED if partial else Label.FINE_TUNED)
    assert (Operation.PARTIAL_REUSE in v.operations) is partial
    assert v.parent == "parent"


def test_partial_reuse_comes_after_the_detected_operations() -> None:
    v = judge(make_cmp(matched=1, n=6, ops=(Operation.LAYER_PRUNING,)))
    assert v.label == Label.DERIVED
    assert v.operations == [Operation.LAYER_PRUNING, Operation.PARTIAL_REUSE]


def test_confidence_is_the_measured_error_bound() -> None:
    """Confidence is 1 - the 95% upper bound of the calibrated error rate of that kind of verdict, and says so."""
    from audit.lineage.calibration import load_calibration, upper_bound

    cal = load_calibration()
    positive = judge(make_cmp())
    assert positive.confidence == round(1 - upper_bound(cal.independent_called_derived, cal.independent_pairs), 3)
    assert positive.confidence_basis and str(cal.independent_pairs) in positive.confidence_basis
    original = judge(make_cmp(log10_p=-0.3, sim=0.004, matched=0))
    assert original.confidence == round(1 - upper_bound(cal.derived_called_original, cal.derived_pairs), 3)
    unsure = judge(make_cmp(log10_p=-4.0, sim=0.05, matched=0))
    assert unsure.label == Label.INCONCLUSIVE and unsure.confidence is None


def test_clopper_pearson_bound() -> None:
    from audit.lineage.calibration import upper_bound

    assert upper_bound(0, 122) == pytest.approx(1 - 0.05 ** (1 / 122))  # exact for zero errors
    assert upper_bound(5, 5) == 1.0 and upper_bound(0, 0) == 1.0
    assert upper_bound(1, 100) > upper_bound(0, 100)


# ------------------------------------------------------------------ original


@pytest.mark.parametrize(("log10_p", "original"), [
    (above(-2.0), True), (-2.0, False), (below(-2.0), False), (0.0, True), (-4.0, False),
])
def test_original_needs_p_above_minus_two(log10_p, original) -> None:
    v = judge(make_cmp(log10_p=log10_p, sim=0.004, matched=0, n=6))
    assert v.label == (Label.ORIGINAL if original else Label.INCONCLUSIVE)
    if original:
        assert v.parent is None and v.operations == []


@pytest.mark.parametrize(("n", "original"), [(0, False), (1, False), (2, True), (30, True)])
def test_original_needs_at_least_two_layers(n, original) -> None:
    v = judge(make_cmp(log10_p=-0.3, sim=0.004, matched=0, n=n))
    assert v.label == (Label.ORIGINAL if original else Label.INCONCLUSIVE)


def test_original_needs_no_matched_layer() -> None:
    """A single matched layer (e.g. a copied block) with an unremarkable global statistic is not original."""
    v = judge(make_cmp(log10_p=-0.3, sim=0.1, matched=1, n=12))
    assert v.label == Label.INCONCLUSIVE


# ------------------------------------------------------------------ overall over several references


def _judged(*cmps: Comparison) -> tuple[list[Verdict], list[Comparison]]:
    return [judge(c) for c in cmps], list(cmps)


def test_overall_picks_the_most_similar_parent() -> None:
    a = make_cmp(name="grandparent", sim=0.6, log10_p=-40.0)
    b = make_cmp(name="parent", sim=0.95, log10_p=-30.0, ops=(Operation.LAYER_PRUNING,))
    c = make_cmp(name="stranger", sim=0.004, log10_p=-0.2, matched=0)
    vs, cs = _judged(a, b, c)
    assert [v.label for v in vs] == [Label.FINE_TUNED, Label.DERIVED, Label.ORIGINAL]
    best = overall(vs, cs)
    assert best.label == Label.DERIVED and best.parent == "parent"
    assert best.references_checked == 3
    assert "grandparent" in best.summary and "stranger" not in best.summary.split("Also related")[-1]


def test_overall_breaks_similarity_ties_by_p_value() -> None:
    a = make_cmp(name="weaker", sim=0.8, log10_p=-10.0)
    b = make_cmp(name="stronger", sim=0.8, log10_p=-90.0)
    for order in ((a, b), (b, a)):
        assert overall(*_judged(*order)).parent == "stronger"


def test_overall_original_only_when_every_reference_says_original() -> None:
    x = make_cmp(name="x", log10_p=-0.5, sim=0.003, matched=0, n=6)
    y = make_cmp(name="y", log10_p=-0.1, sim=0.002, matched=0, n=24)
    vs, cs = _judged(x, y)
    assert [v.label for v in vs] == [Label.ORIGINAL, Label.ORIGINAL]
    o = overall(vs, cs)
    assert o.label == Label.ORIGINAL and o.parent is None
    assert o.references_checked == 2
    assert o.confidence == min(v.confidence for v in vs)
    assert "x" in o.summary and "y" in o.summary

    unsure = make_cmp(name="z", log10_p=-4.0, sim=0.05, matched=0, n=6)
    vs, cs = _judged(x, y, unsure)
    assert vs[2].label == Label.INCONCLUSIVE
    assert overall(vs, cs).label == Label.INCONCLUSIVE


def test_overall_single_positive_among_originals_wins() -> None:
    vs, cs = _judged(make_cmp(name="a", log10_p=-0.5, sim=0.003, matched=0),
                     make_cmp(name="b", matched=2, n=6))
    o = overall(vs, cs)
    assert o.label == Label.DERIVED and o.parent == "b"
    assert Operation.PARTIAL_REUSE in o.operations


def test_overall_of_nothing_is_not_original() -> None:
    assert overall([], []).label == Label.INCONCLUSIVE
