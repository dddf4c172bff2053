"""Sample-only trace statistics (audit/probing/trace_mmd.py): kernels, MMD permutation test, closer-by-samples."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import numpy as np
import pytest

from audit.probing.trace_mmd import KERNELS, closer_by_samples, gram, mmd_test, text_kernel
from audit.probing.trace_stats import sign_test

WORDS = ("the a lighthouse stands tall on rocky shore its beam sweeps across dark sea guiding ships safely home "
         "through storms and fog keepers once lived inside tower light flashes every few seconds").split()


def _sampler(seed: int, bias: int = 0) -> Callable[[int, int], list[str]]:
    """A toy 'model': per prompt a Zipf-like word distribution; `bias` moves probability to other words."""
    rng = random.Random(seed)

    def sample(prompt: int, n: int) -> list[str]:
        order = WORDS[prompt % 7:] + WORDS[:prompt % 7]
        order = order[bias:] + order[:bias]
        weights = [1.0 / (r + 1) for r in range(len(order))]
        return [" ".join(rng.choices(order, weights, k=14)) for _ in range(n)]

    return sample


def _naive_mmd2(a: list[str], b: list[str]) -> float:
    """MMD^2 written out: unbiased when both sides have >= 2, else the V-statistic."""
    k = text_kernel
    if len(a) >= 2 and len(b) >= 2:
        aa = sum(k(x, y) for i, x in enumerate(a) for j, y in enumerate(a) if i != j) / (len(a) * (len(a) - 1))
        bb = sum(k(x, y) for i, x in enumerate(b) for j, y in enumerate(b) if i != j) / (len(b) * (len(b) - 1))
    else:
        aa = sum(k(x, y) for x in a for y in a) / len(a) ** 2
        bb = sum(k(x, y) for x in b for y in b) / len(b) ** 2
    ab = sum(k(x, y) for x in a for y in b) / (len(a) * len(b))
    return aa + bb - 2 * ab


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernels_are_similarities_and_positive_semidefinite(name: str) -> None:
    kernel = KERNELS[name]
    sample = _sampler(1)
    texts = [t for p in range(4) for t in sample(p, 5)] + ["", "", "x", "The lighthouse.", "the lighthouse"]
    k = gram(texts, kernel)
    assert np.allclose(k, k.T)
    assert k.min() >= 0.0 and k.max() <= 1.0 + 1e-12
    assert np.allclose(np.diag(k), 1.0)
    assert np.linalg.eigvalsh(k).min() > -1e-9
    assert kernel("", "") == 1.0 and kernel("", "some text") < 1.0


def test_same_distribution_is_calibrated_and_different_is_rejected() -> None:
    """Size near 5% over 200 synthetic repeats under H0; power against a slightly shifted distribution."""
    null_p, alt_p = [], []
    for rep in range(200):
        subj, ref, other = _sampler(2 * rep), _sampler(2 * rep + 1), _sampler(2 * rep + 1, bias=1)
        null_p.append(mmd_test([(subj(p, 3), ref(p, 3)) for p in range(6)], draws=199, seed=rep).p_value)
        if rep < 40:
            alt_p.append(mmd_test([(subj(p, 3), other(p, 3)) for p in range(6)], draws=199, seed=rep).p_value)
    size = np.mean(np.asarray(null_p) < 0.05)
    assert 0.01 <= size <= 0.10, size
    assert np.mean(np.asarray(alt_p) < 0.05) >= 0.6
    assert np.mean(null_p) == pytest.approx(0.5, abs=0.08)  # p roughly uniform under H0


def test_clearly_different_reaches_the_smallest_p() -> None:
    english, other = _sampler(3), _sampler(4, bias=10)
    res = mmd_test([(english(p, 4), other(p, 4)) for p in range(10)], draws=999, seed=5)
    assert res.method == "empirical" and res.n == 999
    assert res.p_value == pytest.approx(1 / 1000)
    assert res.value > 0


def test_exact_enumeration_matches_brute_force() -> None:
    """Few relabellings: every one enumerated; p = share of relabellings at least as extreme, computed naively."""
    s1, s2 = _sampler(5), _sampler(6, bias=2)
    groups = [(s1(0, 2), s2(0, 2)), (s1(1, 1), s2(1, 2)), (s1(2, 2), s2(2, 3))]
    res = mmd_test(groups)
    observed = sum(_naive_mmd2(list(a), list(b)) for a, b in groups)
    per_prompt = []
    for a, b in groups:
        pooled, na = [*a, *b], len(a)
        per_prompt.append([_naive_mmd2([pooled[i] for i in pick], [pooled[i] for i in range(len(pooled)) if i not in pick])
                           for pick in itertools.combinations(range(len(pooled)), na)])
    values = [sum(v) for v in itertools.product(*per_prompt)]
    assert res.method == "exact" and res.n == len(values) == 6 * 3 * 10
    assert res.value == pytest.approx(observed)
    assert res.p_value == pytest.approx(np.mean([v >= observed - 1e-9 for v in values]))


def test_temperature_zero_single_answers() -> None:
    """One greedy answer a side: identical answers give MMD 0 and p 1; the null cannot reject (degenerate)."""
    same = mmd_test([(["The sea is calm tonight."], ["The sea is calm tonight."])] * 8)
    assert same.value == 0.0 and same.p_value == 1.0 and same.method == "exact"
    differ = mmd_test([(["The sea is calm tonight."], ["Waves crash on the rocks."])] * 8)
    assert differ.value > 0 and differ.p_value == 1.0
    # the same greedy answers asked 4 times a side: relabelling now separates them
    repeated = mmd_test([(["The sea is calm tonight."] * 4, ["Waves crash on the rocks."] * 4)] * 8, draws=999)
    assert repeated.p_value == pytest.approx(1 / 1000)
    assert mmd_test([(["The sea is calm tonight."] * 4, ["The sea is calm tonight."] * 4)] * 8).p_value == 1.0


def test_prompts_with_an_empty_side_are_left_out() -> None:
    assert mmd_test([([], ["a b c"]), (["a b c"], [])]).p_value == 1.0
    full = mmd_test([(["a b c d", "a b c"], ["x y z w", "x y z"])])
    assert mmd_test([(["a b c d", "a b c"], ["x y z w", "x y z"]), ([], ["q"])]) == full
    with pytest.raises(ValueError):
        mmd_test([(["a"], ["b"])], draws=0)


def test_closer_by_samples_sign() -> None:
    """A subject sampled like the reference is closer to it than to a control, prompt by prompt."""
    ref, subj, ctl = _sampler(7), _sampler(8), _sampler(9, bias=6)
    prompts = range(12)
    s = [subj(p, 4) for p in prompts]
    r = [ref(p, 4) for p in prompts]
    c = [ctl(p, 4) for p in prompts]
    diffs = closer_by_samples(s, r, c)
    assert len(diffs) == 12 and all(d > 0 for d in diffs)
    assert sign_test(diffs).p_value == pytest.approx(0.5 ** 12)
    assert all(d < 0 for d in closer_by_samples(s, c, r))  # swapping reference and control flips every sign
    assert closer_by_samples([[]], [["a"]], [["b"]]) == [0.0]
    with pytest.raises(ValueError):
        closer_by_samples(s, r, c[:-1])
