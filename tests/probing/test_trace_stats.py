"""Statistics of `provaudit trace`: the sign test, Holm, the billing estimator (PIT tests: test_trace_pit.py)."""

from __future__ import annotations

import numpy as np
import pytest

from audit.probing.trace import billing_estimate
from audit.probing.trace_stats import billing_fit, holm, sign_test


def test_sign_test_is_exact_binomial() -> None:
    assert sign_test([1.0] * 10).p_value == pytest.approx(1 / 1024)
    assert sign_test([1.0, -1.0] * 5).p_value > 0.5
    assert sign_test([]).p_value == 1.0


def test_holm_adjusts_monotonically_and_skips_missing() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.2, None, 0.01])
    assert out[1] is None and out[2] == pytest.approx(0.02) and out[0] == pytest.approx(0.2)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 2 x 0.8 capped at 1, then kept monotone


def test_billing_fit_recovers_slope_and_offset_with_errors() -> None:
    rng = np.random.default_rng(2)
    x = np.array([3, 14, 35, 60, 95, 140], dtype=float)
    exact = billing_fit(x, 57 + x)
    assert exact is not None and exact.slope == pytest.approx(1) and exact.offset == pytest.approx(57)
    assert exact.offset_se == pytest.approx(0, abs=1e-6)
    noisy = billing_fit(x, 40 + 1.3 * x + rng.normal(0, 2, len(x)))
    assert noisy is not None and abs(noisy.offset - 40) < 3 * noisy.offset_se + 1 and noisy.offset_se > 0
    assert billing_fit([1, 1, 1], [2, 3, 4]) is None and billing_fit([1, 2], [1, 2]) is None


class _WordLM:
    """Counts words; a template of 'sys'+'user' markers with a default system prompt of 12 words."""

    DEFAULT = 12

    def count(self, text: str) -> int:
        return len(text.split())

    def prompt_count(self, messages: list[dict[str, str]]) -> int:
        system = [m for m in messages if m["role"] == "system"]
        body = sum(self.count(m["content"]) for m in messages)
        return body + 3 * len(messages) + (0 if system else self.DEFAULT + 3) + 2


TEXTS = [" ".join(["word"] * n) for n in (2, 10, 25, 50, 90, 140)]


def test_billing_estimate_finds_a_hidden_prompt_of_known_length() -> None:
    lm = _WordLM()
    hidden = 60
    billed = [lm.prompt_count([{"role": "system", "content": "x " * hidden}, {"role": "user", "content": t}])
              for t in TEXTS]
    est = billing_estimate("ref", lm, TEXTS, billed)
    assert est is not None and est.tokenizer_matches
    assert est.hidden_tokens == pytest.approx(hidden)


def test_billing_estimate_plain_relay_has_no_hidden_prompt() -> None:
    lm = _WordLM()
    billed = [lm.prompt_count([{"role": "user", "content": t}]) for t in TEXTS]
    est = billing_estimate("ref", lm, TEXTS, billed)
    assert est is not None and est.hidden_tokens is None and est.excess_tokens == pytest.approx(0)


def test_billing_with_another_tokenizer_is_not_split() -> None:
    lm = _WordLM()
    billed = [int(1.6 * lm.count(t)) + 30 for t in TEXTS]
    est = billing_estimate("ref", lm, TEXTS, billed)
    assert est is not None and est.tokenizer_matches is False and est.hidden_tokens is None
