"""Sample-only statistics of `provaudit trace`, for references that are endpoints (no scores, only text).

After Gao, Liang & Guestrin 2024, "Model Equality Testing: which model is this API serving?": a kernel
two-sample test (MMD) on completions with a permutation null.

* `text_kernel`: similarity in [0, 1] of two completions, from their text alone (works across tokenizers).
* `mmd_test`: H0: per prompt the subject's and the reference's completions come from the same distribution
  (the same model at the same settings). Statistic = sum over prompts of MMD^2 (unbiased estimate when both
  sides have >= 2 completions, else the biased V-statistic). Null = relabelling subject/reference completions
  within each prompt: under H0 they are exchangeable, so the p-value is valid for ANY symmetric statistic and
  kernel (positive definiteness matters for power, not for validity). Exact when there are at most
  `EXACT_LIMIT` relabellings, else `draws` random ones with p = (1 + count) / (draws + 1). One-sided.
* `closer_by_samples`: per prompt, mean similarity of the subject's completions to the reference's minus that
  to a control's; fed to `trace_stats.sign_test` (derived-from test when the reference is an endpoint).

Assumption of the null: the completions of different prompts are sampled independently. Seeding sample j of
every prompt with the same seed (seed + j) couples them across prompts (a seed that draws likely tokens does so
on every prompt) and the within-prompt relabelling then rejects too often: measured 5 of 15 base-vs-base pairs
at p < 0.05 with the character Hamming kernel (benchmarks/bench_trace_mmd.py --shared-seeds). Give every
(prompt, sample) its own seed.

Note: one completion a side (temperature 0) leaves the null degenerate: swapping the two answers leaves any
symmetric statistic unchanged, so p = 1 whatever the answers (statistic 0 when they are identical). Greedy
answers repeated k times a side (an endpoint's temperature-0 answers, asked k times) give the test power.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from audit.probing.trace_stats import EXACT_LIMIT, TestResult

Kernel = Callable[[str, str], float]

NGRAMS = (3, 4, 5)  # character n-gram lengths of the n-gram kernels
HAMMING_CHARS = 128  # positions compared by the character Hamming kernel
HAMMING_WORDS = 24  # positions compared by the word Hamming kernel
_PAD = "\x00"
_EMPTY = ("\x00empty",)  # the feature of an empty completion: similar only to other empty completions


def _counted(counts: Counter[str]) -> tuple[dict[str, float], float]:
    """Feature counts (the empty feature for an empty text) and their Euclidean norm."""
    if not counts:
        counts = Counter(_EMPTY)
    return dict(counts), math.sqrt(sum(c * c for c in counts.values()))


def _cosine(a: tuple[dict[str, float], float], b: tuple[dict[str, float], float]) -> float:
    """Cosine of two count vectors (an inner product: positive definite)."""
    (fa, na), (fb, nb) = (a, b) if len(a[0]) <= len(b[0]) else (b, a)
    return min(1.0, sum(c * fb.get(g, 0.0) for g, c in fa.items()) / (na * nb))


@lru_cache(maxsize=8192)
def _ngrams(text: str) -> tuple[dict[str, float], float]:
    """Character n-gram counts (n in NGRAMS) of the whitespace-normalised text, and their Euclidean norm."""
    norm = " ".join(text.split())
    return _counted(Counter(norm[i:i + n] for n in NGRAMS for i in range(len(norm) - n + 1)))


def ngram_cosine(a: str, b: str) -> float:
    """Cosine of the character 3-, 4- and 5-gram count vectors (positive definite)."""
    return _cosine(_ngrams(a), _ngrams(b))


@lru_cache(maxsize=8192)
def _words(text: str) -> tuple[dict[str, float], float]:
    """Word unigram and bigram counts (lower-cased, whitespace-split), and their Euclidean norm."""
    words = text.lower().split()
    counts: Counter[str] = Counter(words)
    counts.update(f"{x} {y}" for x, y in itertools.pairwise(words))
    return _counted(counts)


def word_cosine(a: str, b: str) -> float:
    """Cosine of the word unigram+bigram count vectors (positive definite)."""
    return _cosine(_words(a), _words(b))


def ngram_jaccard(a: str, b: str) -> float:
    """Jaccard index of the sets of character 3-5-grams (the Tanimoto kernel: positive definite)."""
    fa, fb = _ngrams(a)[0].keys(), _ngrams(b)[0].keys()
    return len(fa & fb) / len(fa | fb)


def hamming_chars(a: str, b: str) -> float:
    """Share of the first HAMMING_CHARS character positions where both texts agree (padded: positive definite)."""
    pa, pb = a.ljust(HAMMING_CHARS, _PAD), b.ljust(HAMMING_CHARS, _PAD)
    return sum(x == y for x, y in zip(pa[:HAMMING_CHARS], pb[:HAMMING_CHARS], strict=True)) / HAMMING_CHARS


def hamming_words(a: str, b: str) -> float:
    """Share of the first HAMMING_WORDS whitespace-separated word positions where both agree (paper's kernel)."""
    wa, wb = a.split()[:HAMMING_WORDS], b.split()[:HAMMING_WORDS]
    wa += [_PAD] * (HAMMING_WORDS - len(wa))
    wb += [_PAD] * (HAMMING_WORDS - len(wb))
    return sum(x == y for x, y in zip(wa, wb, strict=True)) / HAMMING_WORDS


def text_kernel(a: str, b: str) -> float:
    """Similarity of two completions in [0, 1], from the text alone: Jaccard index of character 3-5-gram sets.

    Chosen on real outputs (benchmarks/bench_trace_mmd.py: SmolLM2-135M-Instruct, its fine-tune, Gemma-3-270M;
    48 tokens at temperature 0.7): the most power of the kernels tried. Rejecting Gemma against SmolLM2 at
    p < 0.05: 78% of 3-prompt x 2-sample subsets, 99% at 6 x 2 (n-gram cosine 60% / 92%, word 1-2-gram cosine
    51% / 82%, the paper's Hamming kernel on words 8% / 39%, on characters 14% / 38%); closer_by_samples +
    sign test, fine-tune closer to SmolLM2 than to Gemma: 66% at 6 x 2 (cosine 43%, Hamming 33-52%); every
    kernel kept its size (base vs base) at or near 5%. Position-wise (Hamming) kernels lose because sampled
    answers diverge after a few tokens and compare shifted text from then on; n-gram sets keep the vocabulary
    and phrasing of the whole answer, work across tokenizers, and ignore how often a phrase repeats (which
    cosine weights). The Jaccard (Tanimoto) index on sets is positive definite, so MMD^2 is a proper
    distance between distributions (the permutation p-value would be valid for any kernel).
    """
    return ngram_jaccard(a, b)


KERNELS: dict[str, Kernel] = {"ngram-cosine": ngram_cosine, "ngram-jaccard": ngram_jaccard, "word-cosine": word_cosine,
                              "hamming-chars": hamming_chars, "hamming-words": hamming_words}


def gram(texts: Sequence[str], kernel: Kernel = text_kernel) -> np.ndarray:
    """The symmetric kernel matrix of `texts`."""
    n = len(texts)
    out = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            out[i, j] = out[j, i] = kernel(texts[i], texts[j])
    return out


def _mmd2(k: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """MMD^2 for every labelling (rows of `masks`, True = subject), from the pooled kernel matrix `k`.

    Unbiased (diagonal excluded) when both sides have >= 2 completions, else the biased V-statistic.
    """
    a = masks.astype(float)
    b = 1.0 - a
    na, nb = int(masks[0].sum()), masks.shape[1] - int(masks[0].sum())
    unbiased = na >= 2 and nb >= 2
    kk = k - np.diag(np.diag(k)) if unbiased else k
    waa, wbb = (na * (na - 1), nb * (nb - 1)) if unbiased else (na * na, nb * nb)
    saa = np.einsum("di,ij,dj->d", a, kk, a)
    sbb = np.einsum("di,ij,dj->d", b, kk, b)
    sab = np.einsum("di,ij,dj->d", a, k, b)
    return np.asarray(saa / waa + sbb / wbb - 2.0 * sab / (na * nb))


def mmd_test(groups: Sequence[tuple[Sequence[str], Sequence[str]]], draws: int = 1999, seed: int = 0,
             kernel: Kernel = text_kernel) -> TestResult:
    """One-sided permutation test of H0 "same distribution" on completions; see the module docstring.

    `groups`: per prompt (the subject's completions, the reference's); prompts with an empty side are left out.
    """
    if draws < 1:
        raise ValueError("draws must be >= 1")
    strata = []
    for a, b in groups:
        if len(a) and len(b):
            texts = [*a, *b]
            mask = np.zeros(len(texts), dtype=bool)
            mask[:len(a)] = True
            strata.append((gram(texts, kernel), mask))
    kind = "relabel subject/reference completions within each prompt; sum over prompts of MMD^2"
    if not strata:
        return TestResult(0.0, 1.0, "exact", 0, "no prompt with completions on both sides")
    observed = float(sum(_mmd2(k, m[None, :])[0] for k, m in strata))
    tol = 1e-9 * max(1.0, abs(observed))
    total = math.prod(math.comb(len(m), int(m.sum())) for _, m in strata)
    if total <= EXACT_LIMIT:
        grid = np.zeros(1)
        for k, m in strata:
            n = len(m)
            masks = np.zeros((math.comb(n, int(m.sum())), n), dtype=bool)
            for row, pick in enumerate(itertools.combinations(range(n), int(m.sum()))):
                masks[row, list(pick)] = True
            grid = (grid[:, None] + _mmd2(k, masks)[None, :]).ravel()
        p = float((grid >= observed - tol).mean())
        return TestResult(observed, p, "exact", total, kind)
    rng = np.random.default_rng(seed)
    acc = np.zeros(draws)
    for k, m in strata:
        acc += _mmd2(k, rng.permuted(np.tile(m, (draws, 1)), axis=1))
    p = (1 + int((acc >= observed - tol).sum())) / (draws + 1)
    return TestResult(observed, p, "empirical", draws, kind)


def closer_by_samples(subject: Sequence[Sequence[str]], reference: Sequence[Sequence[str]],
                      control: Sequence[Sequence[str]], kernel: Kernel = text_kernel) -> list[float]:
    """Per prompt: mean k(subject_i, reference_j) - mean k(subject_i, control_j).

    Positive = the subject's answers resemble the reference's more than the control's. A prompt with an
    empty side gives 0.0 (a tie, which `sign_test` drops). For `trace_stats.sign_test`. Assumes the control's
    answers are as varied as the reference's (a control that repeats itself less is farther from everything).
    """
    if not len(subject) == len(reference) == len(control):
        raise ValueError("subject, reference and control need one entry per prompt each")
    out = []
    for s, r, c in zip(subject, reference, control, strict=True):
        if not (len(s) and len(r) and len(c)):
            out.append(0.0)
            continue
        to_ref = float(np.mean([kernel(x, y) for x in s for y in r]))
        to_ctl = float(np.mean([kernel(x, y) for x in s for y in c]))
        out.append(to_ref - to_ctl)
    return out
