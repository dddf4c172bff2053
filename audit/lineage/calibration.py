"""The measured error rates behind a verdict's confidence (fingerprints/calibration.yaml)."""

from __future__ import annotations

from functools import lru_cache

import yaml
from pydantic import ValidationError
from scipy.special import betaincinv

from audit.datafiles import FileModel, error_lines
from audit.paths import data_dir
from audit.record.names import Label

LEVEL = 0.95


class Calibration(FileModel):
    """Counts from the calibration benchmark: how often each kind of verdict was wrong."""

    schema_: str
    source: str
    independent_pairs: int
    independent_called_derived: int
    derived_pairs: int
    derived_called_original: int

    model_config = FileModel.model_config | {"populate_by_name": True}


def upper_bound(errors: int, trials: int, level: float = LEVEL) -> float:
    """Clopper-Pearson one-sided upper confidence bound of an error rate (errors of trials)."""
    if trials <= 0:
        return 1.0
    if errors >= trials:
        return 1.0
    return float(betaincinv(errors + 1, trials - errors, level))  # the beta quantile, without scipy.stats


@lru_cache(maxsize=1)
def load_calibration() -> Calibration:
    data = yaml.safe_load((data_dir("fingerprints") / "calibration.yaml").read_text(encoding="utf-8"))
    if isinstance(data, dict) and "schema" in data:
        data = {("schema_" if k == "schema" else k): v for k, v in data.items()}
    try:
        return Calibration.model_validate(data)
    except ValidationError as exc:  # the bundled file is ours: a bad one is a bug
        raise RuntimeError("fingerprints/calibration.yaml: " + "; ".join(error_lines(exc)[:3])) from None


def confidence(label: Label) -> tuple[float | None, str | None]:
    """(confidence, what it rests on) for a verdict label; none for inconclusive."""
    cal = load_calibration()
    if label in (Label.DERIVED, Label.FINE_TUNED):
        k, n, what = cal.independent_called_derived, cal.independent_pairs, "independent pairs called derived or fine-tuned"
    elif label == Label.ORIGINAL:
        k, n, what = cal.derived_called_original, cal.derived_pairs, "derived pairs called original"
    else:
        return None, None
    bound = upper_bound(k, n)
    return (round(1.0 - bound, 3),
            f"1 - the {LEVEL:.0%} upper bound ({bound:.3f}) of the rate of {what} in calibration "
            f"({k} of {n}; {cal.source})")
