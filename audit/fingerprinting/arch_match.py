"""Match a model's architecture against published family configs, with a null from the registry itself."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FIELDS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size",
          "rope_theta", "tied_embeddings")


def arch_score(cand: dict[str, Any], model: dict[str, Any]) -> tuple[float, list[str]]:
    """Fraction of the structural fields known on both sides that agree, and which agree."""
    agree, known = [], 0
    for f in FIELDS:
        a, b = cand.get(f), model.get(f)
        if a is None or b is None:
            continue
        known += 1
        if (isinstance(a, float) or isinstance(b, float)) and not isinstance(a, bool):
            same = math.isclose(float(a), float(b), rel_tol=1e-6)
        else:
            same = a == b
        if same:
            agree.append(f)
    return (len(agree) / known if known else 0.0), agree


def _null(families: list[dict[str, Any]]) -> np.ndarray:
    """Best score of each published model against the models of *other* families: chance agreement."""
    out = []
    for fam in families:
        others = [m for g in families if g["family"] != fam["family"] for m in g["models"]]
        for m in fam["models"]:
            if others:
                out.append(max(arch_score(m, o)[0] for o in others))
    return np.asarray(out or [0.0])


def rank_architectures(cand: dict[str, Any], families: list[dict[str, Any]], top: int = 5) -> list[dict[str, Any]]:
    """Families ranked by their best-matching published config, each with the chance-agreement null."""
    null = _null(families)
    rows = []
    for fam in families:
        best = max(fam["models"], key=lambda m: arch_score(cand, m)[0])
        score, agree = arch_score(cand, best)
        p = float((np.sum(null >= score) + 1) / (len(null) + 1))
        rows.append({
            "family": fam["family"], "model": best.get("name"), "score": round(score, 3), "fields_agreeing": agree,
            "exact": score == 1.0 and len(agree) >= 6,
            "null": {"mean": round(float(null.mean()), 3), "sd": round(float(null.std()), 3), "n": int(len(null)),
                     "kind": "best score of a published model against other families' models"},
            "p_value": round(p, 4),
            "source": best.get("source"),
        })
    rows.sort(key=lambda r: -r["score"])
    return rows[:top]
