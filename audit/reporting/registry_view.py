"""Display rows for the registry section of a record (nearest families by architecture, tokenizer, weights).

The terminal's short version is audit.reporting.console.registry_lines (same formats).
"""

from __future__ import annotations

from typing import TypedDict

from audit.record.models import RegistrySection
from audit.reporting.console import DASH, format_p, format_registry_null


class RegistryRow(TypedDict):
    family: str
    entry: str
    score: str
    null: str
    p: str


class RegistryRows(TypedDict):
    """What the report shows of a registry section: nearest rows per evidence kind, best first."""

    architecture: list[RegistryRow]
    tokenizer: list[RegistryRow]
    weights: list[RegistryRow]
    skipped: list[str]
    errors: list[str]
    entries: str


def registry_rows(reg: RegistrySection) -> RegistryRows:
    """Rows per evidence kind, best first (the three nearest architectures and tokenizers, every weight match)."""
    arch = [RegistryRow(family=a.family, entry=a.model, score=f"{a.score:.2f}", null=format_registry_null(a.null),
                        p=format_p(a.p_value)) for a in reg.architecture[:3]]
    tok = [RegistryRow(family=t.family or DASH, entry=t.name, score=f"{t.score:.3f}",
                       null=format_registry_null(t.null), p=format_p(t.p_value)) for t in reg.tokenizer[:3]]
    weights = [RegistryRow(family="", entry=w.reference, score=f"{w.similarity:.3f}", null=w.label.value,
                           p=format_p(None, w.log10_p)) for w in reg.weights]
    return RegistryRows(architecture=arch, tokenizer=tok, weights=weights,
                        skipped=[f"{s.reference}: {s.reason}" for s in reg.skipped],
                        errors=[f"{e.entry}: {e.problem}" for e in reg.errors], entries=str(reg.entries))
