"""Terminal summary of a record (rich), plus the small text formatters shared with the HTML view."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from audit.record.models import Record

DASH = "—"
LABEL_STYLES = {
    "original": "bold white on green",
    "fine-tuned": "bold white on red",
    "derived": "bold black on dark_orange",
    "inconclusive": "bold black on grey70",
}
MAX_WIDTH = 80


# ---------------------------------------------------------------- formatters (shared with html.py)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def finite_number(x: Any) -> float | None:
    """x as a float when it is a finite number (not a bool), else None."""
    return float(x) if _finite(x) else None


def null_mean_sd(null: Any) -> tuple[float, float] | None:
    """(mean, sd) of a record's null distribution, when both are finite numbers."""
    if isinstance(null, dict) and _finite(null.get("mean")) and _finite(null.get("sd")):
        return float(null["mean"]), float(null["sd"])
    return None


def format_value(value: Any) -> str:
    """A statistic's value in a few significant digits; dash for missing."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return DASH
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4g}"
    return str(value)


def format_p(p_value: Any, log10_p: Any = None) -> str:
    """A p-value; when it underflowed (or is beyond 1e-300) the exact magnitude comes from log10_p."""
    p = p_value if _finite(p_value) else None
    lg = log10_p if _finite(log10_p) else None
    if lg is not None and lg <= -300:
        return "< 1e-300"  # our statistics clamp here: beyond it a normal tail says nothing precise
    if lg is not None and (p is None or p < 1e-300):
        exp = math.floor(lg)
        mant = 10 ** (lg - exp)
        if round(mant, 1) >= 10:
            mant, exp = 1.0, exp + 1
        return f"{mant:.1f}e{exp}"
    if p is None:
        return DASH
    if p == 0:
        return "< 1e-300"
    if p >= 1e-3:
        return f"{p:.3f}"
    return f"{p:.1e}"


def format_null(null: Any) -> str:
    """'mean ± sd (n=N)' for a statistic's null distribution."""
    if not isinstance(null, dict) or not null:
        return DASH
    text = f"{format_value(null.get('mean'))} ± {format_value(null.get('sd'))}"
    if null.get("n") is not None:
        text += f" (n={null['n']})"
    return text


def format_confidence(conf: Any) -> str:
    """Confidence 0..1 with two decimals."""
    return f"{conf:.2f}" if _finite(conf) else DASH


def format_bytes(n: Any) -> str:
    """Human size in binary units."""
    if not _finite(n):
        return DASH
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def format_count(n: Any) -> str:
    """Large counts as 134.5M / 7.2B."""
    if not _finite(n):
        return DASH
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suffix}"
    return str(n)


def format_ranges(values: Iterable[int]) -> str:
    """[1, 2, 3, 5, 6] -> '1-3, 5, 6' (ranges for three or more consecutive values)."""
    nums = sorted(set(values))
    parts: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{nums[i]}-{nums[j]}")
        else:
            parts.extend(str(n) for n in nums[i : j + 1])
        i = j + 1
    return ", ".join(parts)


def null_band(layer_null: Any) -> float | None:
    """mean + 3 sd of the per-layer similarity null, when known."""
    ms = null_mean_sd(layer_null)
    return ms[0] + 3 * ms[1] if ms else None


def layer_rows(layer_map: Any) -> list[tuple[int, int | None, float | None]]:
    """Layer-map rows as (candidate, reference or None, similarity or None), sorted by candidate layer."""
    rows = []
    for row in layer_map or []:
        if not isinstance(row, (list, tuple)) or len(row) < 2 or not isinstance(row[0], int):
            continue
        ref = row[1] if isinstance(row[1], int) and not isinstance(row[1], bool) else None
        sim = float(row[2]) if len(row) > 2 and _finite(row[2]) else None
        rows.append((row[0], ref, sim))
    return sorted(rows, key=lambda r: r[0])


def condense_layer_map(
    layer_map: Any, layer_null: Any = None, reference_layers: int | None = None, max_runs: int = 4
) -> str:
    """One line for a layer map: 'cand 0-29 -> ref 0-29 in order; unmatched cand: 5, 6; ...'."""
    rows = layer_rows(layer_map)
    if not rows:
        return "no layer map"
    matched = [(c, r, s) for c, r, s in rows if r is not None]
    runs: list[tuple[int, int, int, int]] = []  # cand start, cand end, ref start, ref end
    for c, r, _ in matched:
        if runs and c == runs[-1][1] + 1 and r == runs[-1][3] + 1:
            runs[-1] = (runs[-1][0], c, runs[-1][2], r)
        else:
            runs.append((c, c, r, r))

    def span(a: int, b: int) -> str:
        return str(a) if a == b else f"{a}-{b}"

    parts: list[str] = []
    if len(runs) == 1:
        c0, c1, r0, r1 = runs[0]
        parts.append(f"cand {span(c0, c1)} -> ref {span(r0, r1)} in order")
    elif runs:
        shown = [f"cand {span(c0, c1)} -> ref {span(r0, r1)}" for c0, c1, r0, r1 in runs[:max_runs]]
        if len(runs) > max_runs:
            shown.append(f"+{len(runs) - max_runs} more runs")
        parts.append(", ".join(shown))
    unmatched = [c for c, r, _ in rows if r is None]
    if unmatched:
        parts.append(f"unmatched cand: {format_ranges(unmatched)}")
    refs = [r for _, r, _ in matched]
    dup = sorted({r for r in refs if refs.count(r) > 1})
    if dup:
        parts.append(f"ref used twice or more: {format_ranges(dup)}")
    if reference_layers:
        missing = sorted(set(range(reference_layers)) - set(refs))
        if missing:
            parts.append(f"ref not matched: {format_ranges(missing)}")
    band = null_band(layer_null)
    sims = [s for _, _, s in matched if s is not None]
    if band is not None and sims:
        above = sum(s > band for s in sims)
        parts.append(f"{above}/{len(sims)} above null+3sd ({band:.3g})")
    return "; ".join(parts)


def reference_layers(record: dict, reference: Any) -> int | None:
    """num_layers of the named reference, from record['references'], if given."""
    for ref in record.get("references") or []:
        if isinstance(ref, dict) and ref.get("name") == reference:
            n = (ref.get("architecture") or {}).get("num_layers")
            return n if isinstance(n, int) else None
    return None


def best_comparison(record: dict) -> dict | None:
    """The comparison against the verdict's parent, else the most confident non-original one, else the first."""
    comps = [c for c in record.get("comparisons") or [] if isinstance(c, dict)]
    if not comps:
        return None
    parent = (record.get("verdict") or {}).get("parent")
    for comp in comps:
        if parent is not None and comp.get("reference") == parent:
            return comp

    def score(comp: dict) -> tuple[int, float]:
        v = comp.get("verdict") or {}
        conf = v.get("confidence")
        return (v.get("label") in ("derived", "fine-tuned"), conf if _finite(conf) else 0.0)

    return max(comps, key=score)


def operation_text(op: Any) -> str:
    """'name: detail' for an operation given as a string or {name, detail}."""
    if isinstance(op, dict):
        name, detail = str(op.get("name", "?")), op.get("detail")
        return f"{name}: {detail}" if detail else name
    return str(op)


def references_checked(record: dict) -> int:
    """N in 'no derivation from any of the N references checked'."""
    n = (record.get("verdict") or {}).get("references_checked")
    if isinstance(n, int):
        return n
    return len(record.get("comparisons") or record.get("references") or [])


# ---------------------------------------------------------------- console view


def _verdict_panel(record: dict, width: int) -> Panel:
    verdict = record.get("verdict") or {}
    label = str(verdict.get("label") or "unknown")
    subject = record.get("subject") or {}
    head = Text()
    head.append(f" {label.upper()} ", style=LABEL_STYLES.get(label, "bold reverse"))
    head.append("  parent: ", style="dim")
    head.append(str(verdict.get("parent") or "none"), style="bold")
    head.append("  confidence: ", style="dim")
    head.append(format_confidence(verdict.get("confidence")))
    lines: list[Text] = [head]
    if verdict.get("summary"):
        lines.append(Text(str(verdict["summary"])))
    n = references_checked(record)
    arch = subject.get("architecture") or {}
    info = Text(style="dim")
    info.append(f"subject: {subject.get('name') or DASH}")
    if subject.get("format"):
        info.append(f" ({subject['format']}")
        if arch.get("parameters"):
            info.append(f", {format_count(arch['parameters'])} params")
        info.append(")")
    info.append(f"; {n} reference{'s' if n != 1 else ''} checked")
    lines.append(info)
    if label == "original":
        lines.append(Text(f"original = no derivation from any of the {n} references checked.", style="dim"))
    return Panel(
        Group(*lines), title=Text("provaudit verdict"), title_align="left", width=width, box=box.ROUNDED
    )


def _evidence_table(comp: dict, width: int) -> Table:
    table = Table(
        title=Text(f"Evidence vs {comp.get('reference', DASH)}", style="bold"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        width=width,
        pad_edge=False,
    )
    table.add_column("statistic", ratio=3, overflow="fold")
    table.add_column("value", justify="right", ratio=1, overflow="fold")
    table.add_column("null mean ± sd (n)", ratio=3, overflow="fold")
    table.add_column("p", justify="right", ratio=1, no_wrap=False, overflow="fold")
    for stat in comp.get("statistics") or []:
        if not isinstance(stat, dict):
            continue
        table.add_row(
            Text(str(stat.get("name", DASH))),
            Text(format_value(stat.get("value"))),
            Text(format_null(stat.get("null"))),
            Text(format_p(stat.get("p_value"), stat.get("log10_p"))),
        )
    return table


def _line(label: str, body: str) -> Text:
    text = Text(f"{label}: ", style="bold")
    text.append(body)
    return text


def print_summary(record: Record | dict, console: Console | None = None) -> None:
    """Print a summary of `record` (verdict, best comparison's evidence, layers, operations, flags)."""
    if isinstance(record, Record):
        record = record.to_json_dict()
    if console is None:
        console = Console()
    width = min(console.width, MAX_WIDTH)
    out: list[Any] = [_verdict_panel(record, width)]

    comp = best_comparison(record)
    if comp is not None:
        if any(isinstance(s, dict) for s in comp.get("statistics") or []):
            out.append(_evidence_table(comp, width))
        else:
            out.append(_line(f"Evidence vs {comp.get('reference', DASH)}", "no statistics"))
        ref_layers = reference_layers(record, comp.get("reference"))
        if comp.get("layer_map"):
            out.append(
                _line("Layers", condense_layer_map(comp["layer_map"], comp.get("layer_null"), ref_layers))
            )
        tok = comp.get("tokenizer")
        if isinstance(tok, dict) and tok:
            out.append(_line("Tokenizer", tokenizer_text(tok)))
        if "architecture_match" in comp:
            out.append(_line("Architecture match", format_value(comp.get("architecture_match"))))
        ops = comp.get("operations") or (record.get("verdict") or {}).get("operations") or []
        out.append(_line("Operations", "; ".join(operation_text(o) for o in ops) if ops else "none detected"))
        others = [c for c in record.get("comparisons") or [] if isinstance(c, dict) and c is not comp]
        if others:
            out.append(_line("Other references", "; ".join(_comparison_brief(c) for c in others)))
    else:
        out.append(Text("No comparisons in this record.", style="dim"))

    from audit.reporting.registry_view import registry_lines

    reg_lines = registry_lines(record)
    if reg_lines:
        out.append(Text(f"Registry ({record['registry'].get('entries', '?')} entries), nearest families:", style="bold"))
        out.extend(Text("  " + line) for line in reg_lines)

    out += [_line(f"Probes {name}".strip(), body) for name, body in probe_lines(record)]

    flags = [f for f in record.get("flags") or [] if isinstance(f, dict)]
    if flags:
        out.append(Text("Flags (not derivations):", style="bold"))
        for flag in flags:
            text = Text("  • ")
            text.append(str(flag.get("kind", "?")), style="yellow")
            if flag.get("detail"):
                text.append(f": {flag['detail']}")
            out.append(text)
    else:
        out.append(_line("Flags", "none"))

    for item in out:
        console.print(item, width=width, crop=True)


def probe_lines(record: dict) -> list[tuple[str, str]]:
    """(suite, 'N answered, M errors; claims: OpenAI 12/40, ...') for each probe suite in the record."""
    rows = []
    for suite in record.get("probes") or []:
        if not isinstance(suite, dict):
            continue
        parts = [f"{suite.get('answered', DASH)} answered"]
        if suite.get("failed"):
            parts[0] += f", {suite['failed']} errors"
        vendors = [v for v in suite.get("vendors") or [] if isinstance(v, dict)]
        claims = ", ".join(f"{v.get('vendor')} {v.get('count')}/{v.get('of')}" for v in vendors[:4])
        rows.append((str(suite.get("suite", DASH)), f"{parts[0]}; claims: {claims or 'none'}"))
    run = record.get("probe_run")
    if isinstance(run, dict) and run.get("error"):
        rows.append(("", f"not run: {run['error']}"))
    return rows


def tokenizer_text(tok: dict) -> str:
    """'jaccard 1.00; 49152 shared, 0 candidate-only, 0 reference-only'."""
    parts = []
    if _finite(tok.get("jaccard")):
        parts.append(f"jaccard {tok['jaccard']:.3f}")
    counts = [
        f"{tok[k]} {k.replace('_', '-')}" for k in ("shared", "candidate_only", "reference_only") if k in tok
    ]
    if counts:
        parts.append(", ".join(counts))
    return "; ".join(parts) or DASH


def _comparison_brief(comp: dict) -> str:
    v = comp.get("verdict") or {}
    return f"{comp.get('reference', DASH)}: {v.get('label', DASH)} ({format_confidence(v.get('confidence'))})"
