"""Display rows for a record's 'Claims vs evidence' (the terminal and the HTML report both open with it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

from audit.record.models import ClaimSource, ClaimsSection, LicenceFinding
from audit.record.names import ClaimFlag

#: Flags that say a claim is contradicted by the weights (shown first, in red).
CONTRADICTIONS = frozenset({ClaimFlag.UNDECLARED_DERIVATION, ClaimFlag.DECLARED_BASE_CONTRADICTED,
                            ClaimFlag.DECLARED_RELATION_MISMATCH})


class ClaimRow(TypedDict):
    flag: str
    meaning: str
    severity: str  # contradicted | unverified | consistent
    claim: str
    sources: list[str]
    measured: str
    evidence: str
    settle: str


class ObligationRow(TypedDict):
    clause: str
    text: str
    status: str
    detail: str


class LicenceRow(TypedDict):
    parent: str
    basis: str
    parent_licence: str
    url: str
    declared: str
    compatible: str
    summary: str
    obligations: list[ObligationRow]


def source_text(src: ClaimSource) -> str:
    """'README.md line 12', 'GGUF metadata general.license', 'command line'."""
    where = src.file
    if src.line is not None:
        where += f" line {src.line}"
    elif src.key:
        where += f" {src.key}"
    return where


def severity(flag: ClaimFlag) -> str:
    if flag in CONTRADICTIONS:
        return "contradicted"
    return "consistent" if flag == ClaimFlag.CONSISTENT else "unverified"


def claim_rows(section: ClaimsSection) -> list[ClaimRow]:
    """One row per finding, contradictions first."""
    order = {"contradicted": 0, "unverified": 1, "consistent": 2}
    rows = [ClaimRow(flag=f.flag.value, meaning=f.flag.meaning, severity=severity(f.flag), claim=f.claim,
                     sources=_unique(source_text(c.source) for c in f.claims), measured=f.measured,
                     evidence=f.evidence, settle=f.settle or "") for f in section.findings]
    return sorted(rows, key=lambda r: order[r["severity"]])


def licence_rows(section: ClaimsSection) -> list[LicenceRow]:
    return [_licence_row(lic) for lic in section.licences]


def _licence_row(lic: LicenceFinding) -> LicenceRow:
    compatible = {True: "yes", False: "no", None: "unknown"}[lic.compatible]
    return LicenceRow(parent=lic.parent, basis=lic.basis, parent_licence=lic.licence_name or lic.parent_licence or
                      "unknown", url=lic.url or "", declared=lic.declared_licence or "none",
                      compatible=compatible, summary=lic.summary,
                      obligations=[ObligationRow(clause=o.clause, text=o.text, status=o.status.value,
                                                 detail=o.detail) for o in lic.obligations])


def claim_lines(section: ClaimsSection, limit: int = 8) -> list[str]:
    """Plain lines for the terminal: '[flag] claim (sources) -> measured'."""
    lines = []
    for row in claim_rows(section)[:limit]:
        src = f" ({', '.join(row['sources'][:3])})" if row["sources"] else ""
        lines.append(f"[{row['flag']}] claimed: {row['claim']}{src}; measured: {row['measured']}")
        if row["settle"]:
            lines.append(f"    to settle: {row['settle']}")
    for lic in licence_rows(section):
        checks = sum(ob["status"] == "check" for ob in lic["obligations"])
        lines.append(f"licence: inherits {lic['parent_licence']} from {lic['parent']} ({lic['basis']}); declared: "
                     f"{lic['declared']}; compatible: {lic['compatible']}"
                     + (f"; {checks} obligation{'' if checks == 1 else 's'} to check (--html lists them)"
                        if checks else ""))
        for ob in lic["obligations"]:
            if ob["status"] == "not-met":
                lines.append(f"    not met: {ob['clause']}: {ob['text']}" + (f" ({ob['detail']})" if ob["detail"] else ""))
    return lines


def _unique(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for x in items:
        if x not in out:
            out.append(x)
    return out
