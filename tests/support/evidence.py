"""What a derived or fine-tuned verdict must rest on, checked from a record's comparison (JSON values)."""

from __future__ import annotations

from typing import Any

from audit.lineage.verdict import DERIVED_LOG10_P, GRAM_FLOOR_LOG10_P, ORIGINAL_LOG10_P, SIM_ORIGINAL, Z_MIN


def strong_weight_evidence(comparison: dict[str, Any]) -> bool:
    """An exact statistic below 1e-6, or the Gram similarity beyond all its permutation draws by Z_MIN."""
    stats = comparison["statistics"]
    exact = any(s["null"]["method"] == "exact" and s["log10_p"] < DERIVED_LOG10_P for s in stats)
    gram = next(s for s in stats if s["name"] == "layer-gram-similarity")
    robust = gram["log10_p"] <= GRAM_FLOOR_LOG10_P + 1e-3 and gram["effect"] >= Z_MIN
    return exact or robust


def inside_independent_null(comparison: dict[str, Any]) -> bool:
    """Every exact statistic above p = 0.01 and the Gram similarity below what independent pairs stay under."""
    stats = comparison["statistics"]
    gram = next(s for s in stats if s["name"] == "layer-gram-similarity")
    exact = all(s["log10_p"] > ORIGINAL_LOG10_P for s in stats if s["null"]["method"] == "exact")
    return exact and gram["value"] < SIM_ORIGINAL
