"""Terminal summary of a record (rich), plus the small text formatters shared with the HTML view."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from audit.record.models import (
    Comparison,
    DetectedOperation,
    Null,
    ProbeFailure,
    Record,
    RegistrySection,
    TokenizerComparison,
)
from audit.record.names import PACKAGING, Label, Operation

DASH = "—"
LABEL_STYLES = {
    Label.ORIGINAL: "bold white on green",
    Label.FINE_TUNED: "bold white on red",
    Label.DERIVED: "bold black on dark_orange",
    Label.INCONCLUSIVE: "bold black on grey70",
}
MAX_WIDTH = 80

#: A layer-map row as the views use it: candidate layer, matched reference layer or None, similarity or None.
LayerView = tuple[int, int | None, float | None]


# ---------------------------------------------------------------- formatters (shared with html.py)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def finite_number(x: object) -> float | None:
    """x as a float when it is a finite number (not a bool), else None."""
    return float(x) if isinstance(x, (int, float)) and _finite(x) else None


def null_mean_sd(null: Null | Mapping[str, Any] | None) -> tuple[float, float] | None:
    """(mean, sd) of a null distribution, when both are finite numbers.

    Registry tokenizer rows keep their null as a plain mapping (diagnostic keys vary), hence the Mapping.
    """
    if null is None:
        return None
    mean, sd = (null.mean, null.sd) if isinstance(null, Null) else (null.get("mean"), null.get("sd"))
    m, s = finite_number(mean), finite_number(sd)
    return (m, s) if m is not None and s is not None else None


def format_value(value: object) -> str:
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


def format_p(p_value: float | None, log10_p: float | None = None) -> str:
    """A p-value; when it underflowed (or is beyond 1e-300) the exact magnitude comes from log10_p."""
    p = finite_number(p_value)
    lg = finite_number(log10_p)
    if lg is not None and lg == -300.0:
        return "< 1e-300"  # records of provaudit 0.1 clamped normal-fit p-values here
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


def format_null(null: Null | None) -> str:
    """'mean ± sd (n=N)' for an empirical null; 'exact (n=N)' for an exact one; the method when it is unusual."""
    if null is None:
        return DASH
    n = f"n={null.n}" if null.n is not None else ""
    if null.method == "exact":
        return f"exact ({n})" if n else "exact"
    if null.mean is None or null.sd is None:
        return f"{null.method} ({n})" if n else null.method
    text = f"{format_value(null.mean)} ± {format_value(null.sd)}" + (f" ({n})" if n else "")
    return text if null.method == "empirical" else f"{text} {null.method}"


def format_registry_null(null: Null | Mapping[str, Any] | None) -> str:
    """'mean ± sd (n=N)' of a registry score's null, to three and two significant digits."""
    ms = null_mean_sd(null)
    if null is None or ms is None:
        return DASH
    n = null.n if isinstance(null, Null) else null.get("n", "?")
    return f"{ms[0]:.3g} ± {ms[1]:.2g} (n={n})"


def format_confidence(conf: float | None) -> str:
    """Confidence 0..1 with two decimals."""
    c = finite_number(conf)
    return f"{c:.2f}" if c is not None else DASH


def format_bytes(n: float | None) -> str:
    """Human size in binary units."""
    size = finite_number(n)
    if size is None:
        return DASH
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def format_count(n: float | None) -> str:
    """Large counts as 134.5M / 7.2B."""
    if n is None or not _finite(n):
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


def null_band(layer_null: Null | None) -> float | None:
    """mean + 3 sd of the per-layer similarity null, when known."""
    ms = null_mean_sd(layer_null)
    return ms[0] + 3 * ms[1] if ms else None


def layer_rows(layer_map: Sequence[Sequence[Any]]) -> list[LayerView]:
    """Layer-map rows as (candidate, reference or None, similarity or None), sorted by candidate layer.

    A similarity that is not a finite number (NaN in a hand-edited record) counts as unknown.
    """
    rows = [(int(c), None if r is None else int(r), finite_number(s)) for c, r, s in layer_map]
    return sorted(rows, key=lambda r: r[0])


def condense_layer_map(
    layer_map: Sequence[Sequence[Any]],
    layer_null: Null | None = None,
    reference_layers: int | None = None,
    max_runs: int = 4,
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


def reference_layers(record: Record, reference: str) -> int | None:
    """num_layers of the named reference, when the record describes its architecture."""
    ref = record.reference(reference)
    return ref.architecture.num_layers if ref is not None and ref.architecture is not None else None


def best_comparison(record: Record) -> Comparison | None:
    """The comparison against the verdict's parent, else the most confident non-original one, else the first."""
    if not record.comparisons:
        return None
    parent = record.verdict.parent
    if parent is not None and (comp := record.comparison(parent)) is not None:
        return comp

    def score(comp: Comparison) -> tuple[bool, float]:
        v = comp.verdict
        return v.label in (Label.DERIVED, Label.FINE_TUNED), finite_number(v.confidence) or 0.0

    return max(record.comparisons, key=score)


def _name_of(op: Operation | DetectedOperation) -> Operation:
    return op.name if isinstance(op, DetectedOperation) else op


def operation_text(op: Operation | DetectedOperation) -> str:
    """'name: detail' for a detected operation, the bare name for a verdict's operation."""
    if isinstance(op, DetectedOperation):
        return f"{op.name.value}: {op.detail}" if op.detail else op.name.value
    return op.value


def references_checked(record: Record) -> int:
    """N in 'no derivation from any of the N references checked'."""
    n = record.verdict.references_checked
    if n is not None:
        return n
    return len(record.comparisons or record.references)


def tokenizer_text(tok: TokenizerComparison) -> str:
    """'jaccard 1.00; 49152 shared, 0 candidate-only, 0 reference-only'."""
    parts = []
    if (j := finite_number(tok.jaccard)) is not None:
        parts.append(f"jaccard {j:.3f}")
    parts.append(f"{tok.shared} shared, {tok.candidate_only} candidate-only, {tok.reference_only} reference-only")
    return "; ".join(parts)


def probe_lines(record: Record) -> list[tuple[str, str]]:
    """(suite, 'N answered, M errors; claims: OpenAI 12/40, ...') for each probe suite in the record."""
    rows = []
    for suite in record.probes:
        answered = f"{suite.answered} answered"
        if suite.failed:
            answered += f", {suite.failed} errors"
        claims = ", ".join(f"{v.vendor} {v.count}/{v.of}" for v in suite.vendors[:4])
        rows.append((suite.suite, f"{answered}; claims: {claims or 'none'}"))
    if isinstance(record.probe_run, ProbeFailure) and record.probe_run.error:
        rows.append(("", f"not run: {record.probe_run.error}"))
    return rows


def registry_lines(reg: RegistrySection) -> list[str]:
    """Short lines for the terminal: the nearest family of each kind with its score and null, the weight matches.

    The HTML's fuller tables are audit.reporting.registry_view.registry_rows (same formats).
    """
    out = []
    if reg.architecture:
        a = reg.architecture[0]
        out.append(f"architecture: {a.family} ({a.model}) score {a.score:.2f}, null {format_registry_null(a.null)}, "
                   f"p {format_p(a.p_value)}")
    if reg.tokenizer:
        t = reg.tokenizer[0]
        out.append(f"tokenizer: {t.family or DASH} ({t.name}) score {t.score:.3f}, "
                   f"null {format_registry_null(t.null)}, p {format_p(t.p_value)}")
    for w in reg.weights[:3]:
        out.append(f"weights: {w.reference} similarity {w.similarity:.3f} ({w.label.value}, "
                   f"p {format_p(None, w.log10_p)})")
    if reg.skipped:
        out.append(f"weights not comparable: {len(reg.skipped)} entries (too few shared tokens)")
    if (line := unchecked_line(reg, limit=8)) is not None:
        out.append(line)
    return out


def unchecked_line(reg: RegistrySection, limit: int | None = None) -> str | None:
    """The catalog families the registry could not check by weights, in one plain line (None: nothing to say).

    `limit`: name at most that many families (the terminal); the HTML and JSON name them all.
    """
    cov = reg.catalog
    if cov is None or not cov.unchecked:
        return None
    names = cov.unchecked if limit is None or len(cov.unchecked) <= limit else cov.unchecked[:limit]
    more = f" and {len(cov.unchecked) - len(names)} more" if len(names) < len(cov.unchecked) else ""
    return (f"weights not checked for {len(cov.unchecked)} of {cov.families} catalog families (no fingerprint "
            f"of theirs in the registry, or none comparable): {', '.join(names)}{more}; a model derived from one "
            "of them cannot have been found by weights (provaudit refs list; refs build --catalog)")


# ---------------------------------------------------------------- console view


def _verdict_panel(record: Record, width: int) -> Panel:
    verdict, subject = record.verdict, record.subject
    label = verdict.label
    head = Text()
    head.append(f" {label.value.upper()} ", style=LABEL_STYLES.get(label, "bold reverse"))
    head.append("  parent: ", style="dim")
    head.append(verdict.parent or "none", style="bold")
    head.append("  confidence: ", style="dim")
    head.append(format_confidence(verdict.confidence))
    lines: list[Text] = [head]
    if verdict.summary:
        lines.append(Text(verdict.summary))
    n = references_checked(record)
    info = Text(style="dim")
    info.append(f"subject: {subject.name or DASH}")
    if subject.format:
        info.append(f" ({subject.format}")
        if subject.architecture is not None and subject.architecture.parameters:
            info.append(f", {format_count(subject.architecture.parameters)} params")
        info.append(")")
    info.append(f"; {n} reference{'s' if n != 1 else ''} checked")
    lines.append(info)
    io = subject.io
    if io is not None and io.bytes_total:
        got = io.bytes_fetched if io.source == "hub" and io.bytes_fetched is not None else io.bytes_read
        verb = f"fetched from the Hub ({io.endpoint})" if io.source == "hub" else "read"
        lines.append(Text(f"weights {verb}: {format_bytes(got)} of {format_bytes(io.bytes_total)} "
                          f"({got / io.bytes_total:.1%})", style="dim"))
    if label is Label.ORIGINAL:
        lines.append(Text(f"original = no derivation from any of the {n} references checked.", style="dim"))
    return Panel(
        Group(*lines), title=Text("provaudit verdict"), title_align="left", width=width, box=box.ROUNDED
    )


def _evidence_table(comp: Comparison, width: int) -> Table:
    table = Table(
        title=Text(f"Evidence vs {comp.reference}", style="bold"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        width=width,
        pad_edge=False,
    )
    table.add_column("statistic", ratio=3, overflow="fold")
    table.add_column("value", justify="right", ratio=1, overflow="fold")
    table.add_column("null mean ± sd (n)", ratio=3, overflow="fold")
    table.add_column("p", justify="right", ratio=1, no_wrap=False, overflow="fold")
    for stat in comp.statistics:
        table.add_row(
            Text(stat.name.value),
            Text(format_value(stat.value)),
            Text(format_null(stat.null)),
            Text(format_p(stat.p_value, stat.log10_p)),
        )
    return table


def _line(label: str, body: str) -> Text:
    text = Text(f"{label}: ", style="bold")
    text.append(body)
    return text


def _comparison_brief(comp: Comparison) -> str:
    v = comp.verdict
    return f"{comp.reference}: {v.label.value} ({format_confidence(v.confidence)})"


def _claims_block(record: Record) -> list[Text]:
    """'Claims vs evidence' first: each claim, what the weights show, and the flag."""
    from audit.reporting.claims_view import claim_lines

    section = record.claims
    if section is None:
        return []
    out = [Text("Claims vs evidence", style="bold")]
    if section.summary:
        out.append(Text(section.summary))
    for line in claim_lines(section):
        style = "red" if line.startswith(("[undeclared", "[declared-base-contradicted", "[declared-relation")) else \
            "dim" if line.startswith("    ") else ""
        out.append(Text("  " + line, style=style))
    return out


def _trace_block(record: Record) -> list[Text]:
    """`provaudit trace`: each reference's verdict, its tests and the budget spent."""
    from audit.reporting.trace_view import trace_console_lines

    lines = trace_console_lines(record)
    if not lines:
        return []
    return [Text("Trace (black-box lineage)", style="bold"), *(Text("  " + line) for line in lines)]


def print_summary(record: Record, console: Console | None = None) -> None:
    """Print a summary of `record` (verdict, best comparison's evidence, layers, operations, flags)."""
    if console is None:
        console = Console()
    width = min(console.width, MAX_WIDTH)
    out: list[Any] = [*_claims_block(record), _verdict_panel(record, width)]

    comp = best_comparison(record)
    if comp is not None:
        if comp.statistics:
            out.append(_evidence_table(comp, width))
        else:
            out.append(_line(f"Evidence vs {comp.reference}", "no statistics"))
        if comp.layer_map:
            ref_layers = reference_layers(record, comp.reference)
            out.append(_line("Layers", condense_layer_map(comp.layer_map, comp.layer_null, ref_layers)))
        if comp.tokenizer is not None:
            out.append(_line("Tokenizer", tokenizer_text(comp.tokenizer)))
        out.append(_line("Architecture match", format_value(comp.architecture_match)))
        detected: list[Operation | DetectedOperation] = (
            list(comp.operations) or [*record.verdict.operations, *record.verdict.packaging])
        weights = [o for o in detected if _name_of(o) not in PACKAGING]
        packaging = [o for o in detected if _name_of(o) in PACKAGING]
        out.append(_line("Operations", "; ".join(operation_text(o) for o in weights) if weights else "none detected"))
        if packaging:
            out.append(_line("Packaging", "; ".join(operation_text(o) for o in packaging)))
        if comp.update is not None:
            out.append(_line("Update shape", comp.update.detail))
        others = [c for c in record.comparisons if c is not comp]
        if others:
            out.append(_line("Other references", "; ".join(_comparison_brief(c) for c in others)))
    elif record.adapter is not None:
        out.append(_line("PEFT adapter", record.adapter.summary))
    else:
        out.append(Text("No comparisons in this record.", style="dim"))

    if record.registry is not None and (reg_lines := registry_lines(record.registry)):
        out.append(Text(f"Registry ({record.registry.entries} entries), nearest families:", style="bold"))
        out.extend(Text("  " + line) for line in reg_lines)

    out += [_line(f"Probes {name}".strip(), body) for name, body in probe_lines(record)]
    out += _trace_block(record)

    if record.flags:
        out.append(Text("Flags (not derivations):", style="bold"))
        for flag in record.flags:
            text = Text("  • ")
            text.append(flag.kind.value, style="yellow")
            if flag.detail:
                text.append(f": {flag.detail}")
            out.append(text)
    else:
        out.append(_line("Flags", "none"))

    for item in out:
        console.print(item, width=width, crop=True)
