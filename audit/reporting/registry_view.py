"""Display rows for the registry section of a record (nearest families by architecture, tokenizer, weights)."""

from __future__ import annotations

from typing import Any

from audit.reporting.console import format_p


def _null_text(null: Any) -> str:
    if not isinstance(null, dict) or not null:
        return "—"
    return f"{null.get('mean', 0):.3g} ± {null.get('sd', 0):.2g} (n={null.get('n', '?')})"


def registry_rows(record: dict) -> dict[str, list[dict[str, str]]] | None:
    """Rows per evidence kind, best first; None when the record has no registry section."""
    reg = record.get("registry")
    if not isinstance(reg, dict):
        return None
    arch = [{"family": str(a.get("family")), "entry": str(a.get("model")), "score": f"{a.get('score', 0):.2f}",
             "null": _null_text(a.get("null")), "p": format_p(a.get("p_value"))} for a in reg.get("architecture") or []]
    tok = [{"family": str(t.get("family")), "entry": str(t.get("name")), "score": f"{t.get('score', 0):.3f}",
            "null": _null_text(t.get("null")), "p": format_p(t.get("p_value"))} for t in reg.get("tokenizer") or []]
    weights = [{"family": "", "entry": str(w.get("reference")), "score": f"{w.get('similarity', 0):.3f}",
                "null": w.get("label", ""), "p": format_p(None, w.get("log10_p"))} for w in reg.get("weights") or []]
    skipped = [f"{s.get('reference')}: {s.get('reason')}" for s in reg.get("skipped") or []]
    errors = [f"{e.get('entry')}: {e.get('problem')}" for e in reg.get("errors") or []]
    return {"architecture": arch[:3], "tokenizer": tok[:3], "weights": weights, "skipped": skipped, "errors": errors,
            "entries": str(reg.get("entries", "?"))}


def registry_lines(record: dict) -> list[str]:
    """Short lines for the terminal: the nearest family of each kind with its score and null."""
    rows = registry_rows(record)
    if rows is None:
        return []
    out = []
    for kind in ("architecture", "tokenizer"):
        if rows[kind]:
            r = rows[kind][0]
            out.append(f"{kind}: {r['family']} ({r['entry']}) score {r['score']}, null {r['null']}, p {r['p']}")
    for w in rows["weights"][:3]:
        out.append(f"weights: {w['entry']} similarity {w['score']} ({w['null']}, p {w['p']})")
    if rows["skipped"]:
        out.append(f"weights not comparable: {len(rows['skipped'])} entries (too few shared tokens)")
    return out
