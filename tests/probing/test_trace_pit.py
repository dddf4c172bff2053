"""The same-model tests of `provaudit trace` without logprobs: the randomized PIT of sampled tokens under the
sampling distribution (temperature, top-p), its test and the sample size for a stated power."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from audit.probing.trace_stats import achieved_power, pit_test, tokens_for_power

torch = pytest.importorskip("torch")


def _draw(logits: np.ndarray, temperature: float, top_p: float | None, rng: np.random.Generator) -> int:
    """A token as a temperature / nucleus sampler draws it (independent of the code under test)."""
    p = np.exp((logits - logits.max()) / temperature)
    p /= p.sum()
    if top_p is not None:
        order = np.argsort(-p, kind="stable")
        before = np.cumsum(p[order]) - p[order]
        keep = np.zeros_like(p)
        keep[order[before < top_p]] = 1
        p = p * keep / (p * keep).sum()
    return int(rng.choice(len(p), p=p))


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, None), (0.7, None), (0.7, 0.9), (1.3, 0.5)])
def test_pit_of_tokens_drawn_from_the_sampler_is_uniform(temperature: float, top_p: float | None) -> None:
    from audit.probing.backends.transformers_local import pit_parts

    rng = np.random.default_rng(7)
    logits = rng.normal(0, 2.5, size=(1500, 50))
    targets = [_draw(row, temperature, top_p, rng) for row in logits]
    parts = np.asarray(pit_parts(torch.tensor(logits), targets, temperature, top_p))
    u = parts[:, 0] + rng.random(len(parts)) * parts[:, 1]
    assert stats.kstest(u, "uniform").pvalue > 0.01
    assert (parts[:, 1] > 0).all()  # a drawn token is always inside the nucleus
    # surprisal's mean and variance are those of the token drawn from the sampler
    z = (parts[:, 2] - parts[:, 3]).sum() / np.sqrt(parts[:, 4].sum())
    assert abs(z) < 3.5


def test_pit_of_another_models_tokens_is_not_uniform() -> None:
    from audit.probing.backends.transformers_local import pit_parts

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2.5, size=(1500, 50))
    other = logits + rng.normal(0, 1.5, size=logits.shape)  # a "fine-tune": the same shape, other weights
    targets = [_draw(row, 0.7, None, rng) for row in other]
    parts = np.asarray(pit_parts(torch.tensor(logits), targets, 0.7, None))
    u = parts[:, 0] + rng.random(len(parts)) * parts[:, 1]
    assert pit_test(u.tolist(), 0.01).p_value < 1e-4


def test_temperature_zero_marks_tokens_off_the_argmax() -> None:
    from audit.probing.backends.transformers_local import pit_parts

    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]])
    assert [p[:2] for p in pit_parts(logits, [1, 2], 0.0, None)] == [(0.0, 1.0), (1.0, 0.0)]


def test_tokens_outside_the_nucleus_are_extreme() -> None:
    from audit.probing.backends.transformers_local import pit_parts

    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    inside, = pit_parts(logits, [1], 1.0, 0.8)
    outside, = pit_parts(logits, [2], 1.0, 0.8)
    assert inside[:2] == pytest.approx((0.6 / 0.9, 0.3 / 0.9))
    assert outside[:2] == (1.0, 0.0)


def test_pit_test_is_calibrated_and_its_margin_is_respected() -> None:
    rng = np.random.default_rng(11)
    p = [pit_test(rng.random(800).tolist()).p_value for _ in range(400)]
    assert 0.02 < np.mean(np.asarray(p) < 0.05) < 0.09
    shifted = (rng.random(20000) * 0.96 + 0.02 + 0.005).tolist()  # mean shift 0.005, inside a 0.01 margin
    assert pit_test(shifted, 0.01).p_value > 0.5
    assert pit_test((rng.random(3000) * 0.9 + 0.1).tolist(), 0.01).p_value < 1e-6


def test_planned_tokens_give_the_stated_power() -> None:
    n = tokens_for_power(0.05, 0.01, 0.05, 0.8)
    assert achieved_power(n, 0.05, 0.01, 0.05) == pytest.approx(0.8, abs=0.01)
    assert achieved_power(n // 4, 0.05, 0.01, 0.05) < 0.5
    rng = np.random.default_rng(5)  # simulated: a shift of exactly `effect` is rejected about 80% of the time
    hits = [pit_test(np.clip(rng.random(n) + 0.05, 0, 1).tolist(), 0.01).p_value < 0.05 for _ in range(300)]
    assert 0.65 < np.mean(hits) <= 1.0
    with pytest.raises(ValueError):
        tokens_for_power(0.01, 0.01, 0.05, 0.8)
