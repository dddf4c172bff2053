"""Turn identity claims counted over many sampled answers into `distillation-leak` flags.

The rule, per vendor V that the model claims to be (never a declared one):
  * at least MIN_COUNT answers claim V, spread over at least MIN_PROMPTS different prompts
    (samples of one prompt are not independent: one odd prompt must not flag on its own);
  * V's share of the scored answers is at least MIN_SHARE;
  * a one-sided binomial test of the count against a small false-claim rate P0 (what an honest model
    plus detector noise produces for any one vendor) gives p < ALPHA / m, Bonferroni over the m vendors
    in the lexicon (any of them could have come up).
A flag is a signal that the model was trained on V's outputs, not proof of derivation or wrapping.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

MIN_COUNT = 3
MIN_PROMPTS = 2
MIN_SHARE = 0.05
P0 = 0.02
ALPHA = 0.01
MAX_EXAMPLES = 5
EXCERPT = 300

CAVEAT = ("A self-report is a signal, not proof: it suggests training on that vendor's outputs "
          "and says nothing about the weights or about wrapping.")


def rule() -> dict[str, Any]:
    """The flag rule's parameters, as recorded."""
    return {"min_count": MIN_COUNT, "min_prompts": MIN_PROMPTS, "min_share": MIN_SHARE,
            "false_claim_rate": P0, "alpha": ALPHA, "correction": "bonferroni over lexicon vendors",
            "test": "one-sided binomial, count of answers claiming the vendor among scored answers"}


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p) (scipy.stats.binom); 0.0 where the tail underflows a double."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p))


def binomial_log10_sf(k: int, n: int, p: float) -> float | None:
    """log10 P(X >= k), finite where binomial_sf underflows to 0 (None for an impossible tail, k > n).

    scipy's binom.logsf is log(sf), so it underflows with sf; past that the tail is summed from the log
    pmf terms (logsumexp), which keeps the magnitude of p-values far below 1e-308.
    """
    if k <= 0:
        return 0.0
    if k > n:
        return None
    from scipy.special import logsumexp
    from scipy.stats import binom

    log_p = float(binom.logsf(k - 1, n, p))
    if not math.isfinite(log_p):
        log_p = float(logsumexp(binom.logpmf(range(k, n + 1), n, p)))
    return log_p / math.log(10) if math.isfinite(log_p) else None


def vendor_tests(responses: list[dict[str, Any]], lexicon: Any, m_vendors: int) -> list[dict[str, Any]]:
    """One row per claimed vendor over every identity-scored answer: count, share, prompts, p, flagged."""
    scored = [r for r in responses if "claims" in r and r.get("error") is None]
    n = len(scored)
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in scored:
        for vendor in {c["vendor"] for c in r["claims"]}:
            per[vendor].append(r)
    threshold = ALPHA / max(1, m_vendors)
    rows = []
    for vendor, hits in per.items():
        k = len(hits)
        prompts = len({(h["suite"], h["probe"]) for h in hits})
        p = binomial_sf(k, n, P0)
        log10_p = binomial_log10_sf(k, n, P0)  # finite where p underflows to 0
        declared = vendor in lexicon.declared
        flagged = (not declared and k >= MIN_COUNT and prompts >= MIN_PROMPTS and k / n >= MIN_SHARE
                   and p < threshold)
        rows.append({"vendor": vendor, "name": lexicon.name(vendor), "count": k, "of": n,
                     "share": round(k / n, 4), "prompts": prompts, "p_value": p,
                     "log10_p": None if log10_p is None else round(log10_p, 2), "declared": declared,
                     "flagged": flagged,
                     "reason": _reason(declared, k, prompts, k / n, p, threshold)})
    rows.sort(key=lambda r: (-r["count"], r["vendor"]))
    return rows


def _reason(declared: bool, k: int, prompts: int, share: float, p: float, threshold: float) -> str:
    if declared:
        return "declared: the model's own name"
    missing = []
    if k < MIN_COUNT:
        missing.append(f"count {k} < {MIN_COUNT}")
    if prompts < MIN_PROMPTS:
        missing.append(f"{prompts} prompt(s) < {MIN_PROMPTS}")
    if share < MIN_SHARE:
        missing.append(f"share {share:.1%} < {MIN_SHARE:.0%}")
    if p >= threshold:
        missing.append(f"p {p:.2g} >= {threshold:.2g}")
    return "; ".join(missing) if missing else "beyond noise"


def distillation_flags(tests: list[dict[str, Any]], responses: list[dict[str, Any]],
                       prompts: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    """A distillation-leak flag, with its evidence, for every flagged vendor."""
    flags = []
    for t in tests:
        if not t["flagged"]:
            continue
        hits = [r for r in responses if r.get("error") is None
                and any(c["vendor"] == t["vendor"] for c in r.get("claims") or [])]
        models: dict[str, int] = defaultdict(int)
        languages: dict[str, list[int]] = {}
        for r in hits:
            for model in {c["model"] for c in r["claims"] if c["vendor"] == t["vendor"] and c["model"]}:
                models[model] += 1
        hit_ids = {id(h) for h in hits}
        for r in responses:
            if "claims" in r and r.get("error") is None:
                row = languages.setdefault(r["language"], [0, 0])
                row[1] += 1
                row[0] += int(id(r) in hit_ids)
        named = ", ".join(sorted(models, key=lambda x: -models[x])) or "the vendor itself"
        langs = ", ".join(f"{lang} {c}/{n}" for lang, (c, n) in sorted(languages.items()) if c)
        detail = (f"claims to be {t['name']} ({named}) in {t['count']} of {t['of']} sampled answers "
                  f"({t['share']:.0%}, {t['prompts']} prompts; {langs}); binomial p = {t['p_value']:.2g} against "
                  f"a {P0:.0%} false-claim rate. {CAVEAT}")
        examples = [{"suite": r["suite"], "probe": r["probe"], "sample": r["sample"], "seed": r["seed"],
                     "prompt": prompts.get((r["suite"], r["probe"]), ""), "response": _excerpt(r["text"]),
                     "claims": [c for c in r["claims"] if c["vendor"] == t["vendor"]]}
                    for r in _spread(hits)]
        flags.append({"kind": "distillation-leak", "detail": detail, "evidence": {
            "vendor": t["vendor"], "vendor_name": t["name"], "models": dict(models), "count": t["count"],
            "of": t["of"], "share": t["share"], "prompts": t["prompts"],
            "languages": {lang: {"count": c, "of": n} for lang, (c, n) in sorted(languages.items())},
            "p_value": t["p_value"], "log10_p": t["log10_p"], "rule": rule(), "examples": examples}})
    return flags


def _spread(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Up to MAX_EXAMPLES answers, one per prompt first."""
    seen: set[tuple[str, str]] = set()
    first: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for h in hits:
        key = (h["suite"], h["probe"])
        (rest if key in seen else first).append(h)
        seen.add(key)
    return (first + rest)[:MAX_EXAMPLES]


def _excerpt(text: str) -> str:
    text = text.strip()
    return text if len(text) <= EXCERPT else text[:EXCERPT - 1] + "…"
