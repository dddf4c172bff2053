"""Locate the bundled data folders both in a checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder `name` (probes, fingerprints, reports) wherever it lives."""
    bundled = _PKG / "_bundled" / name
    if bundled.is_dir():
        return bundled
    checkout = _PKG.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"data folder {name!r} not found next to the package")
