"""Inline SVG charts for the HTML report, drawn from numbers in the record (no scripts, no external assets).

Every label that comes from the record is escaped here, because the SVG is inserted into the page as markup.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

from audit.reporting.console import format_value

TEXT = 'font-size="10" fill="#374151"'
BLUE, GREY, LIGHT, RED, GREEN, BAND = "#2563eb", "#9ca3af", "#d1d5db", "#dc2626", "#15803d", "#fee2e2"


def _tick(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") or "0"


def _colour(sim: float | None, band: float | None) -> str:
    if sim is None:
        return GREY
    lo = band if band is not None else 0.0
    if band is not None and sim <= band:
        return LIGHT
    t = max(0.0, min(1.0, (sim - lo) / max(1e-9, 1.0 - lo)))
    return f"hsl(215,70%,{78 - 48 * t:.0f}%)"


def _open(cls: str, width: float, height: float, label: str) -> str:
    return (f'<svg class="{cls}" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'role="img" aria-label="{escape(label)}">')


def layer_map_svg(rows: list[tuple[int, int | None, float | None]], band: float | None,
                  n_ref: int | None) -> Markup:
    """Heatmap: candidate layer (columns) against the reference layer it matched (rows), shaded by similarity."""
    n_c = max(c for c, _, _ in rows) + 1
    refs = [r for _, r, _ in rows if r is not None]
    n_r = max([n_ref or 0, *(r + 1 for r in refs)]) or 1
    cell = max(3.0, min(24.0, 300.0 / max(n_c, n_r)))
    left, top = 40.0, 8.0
    grid_w, grid_h = n_c * cell, n_r * cell
    width, height = left + grid_w + 120, top + grid_h + 28
    out = [
        _open("layermap", width, height, "layer map: candidate layer against matched reference layer"),
        f'<rect x="{left}" y="{top}" width="{grid_w:.1f}" height="{grid_h:.1f}" fill="#f9fafb" stroke="{LIGHT}"/>',
        f'<line x1="{left}" y1="{top}" x2="{left + min(grid_w, grid_h):.1f}" y2="{top + min(grid_w, grid_h):.1f}" '
        f'stroke="{LIGHT}" stroke-dasharray="3 3"/>',
    ]
    for c, r, s in rows:
        x = left + c * cell
        tip = escape(f"cand {c} -> ref {r if r is not None else 'none'}, similarity {format_value(s)}")
        if r is None:
            out.append(f'<rect x="{x:.1f}" y="{top + grid_h + 2:.1f}" width="{cell:.1f}" height="4" fill="{RED}">'
                       f"<title>{tip}</title></rect>")
        else:
            out.append(f'<rect x="{x:.1f}" y="{top + r * cell:.1f}" width="{cell:.1f}" height="{cell:.1f}" '
                       f'fill="{_colour(s, band)}"><title>{tip}</title></rect>')
    out += [
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" {TEXT}>0</text>',
        f'<text x="{left - 4}" y="{top + grid_h:.1f}" text-anchor="end" {TEXT}>{n_r - 1}</text>',
        f'<text x="{left}" y="{top + grid_h + 18:.1f}" {TEXT}>0</text>',
        f'<text x="{left + grid_w:.1f}" y="{top + grid_h + 18:.1f}" text-anchor="end" {TEXT}>{n_c - 1}</text>',
    ]
    for i, line in enumerate(("reference layer", "(rows) against", "candidate layer", "(columns)")):
        out.append(f'<text x="{left + grid_w + 6:.1f}" y="{top + 10 + 12 * i}" {TEXT}>{line}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def layer_similarity_svg(rows: list[tuple[int, int | None, float | None]],
                         null: tuple[float, float] | None) -> Markup:
    """Per-layer similarity of each candidate layer to its best reference layer, over the null band.

    The shaded band is the null's mean ± 3 sd (what layers of independent models score); the dashed line its mean.
    Matched layers are blue dots, unmatched layers grey.
    """
    sims = [s for _, _, s in rows if s is not None]
    band = (null[0] - 3 * null[1], null[0] + 3 * null[1]) if null is not None else None
    lo = min([0.0, *sims, *([band[0]] if band else [])])
    hi = max([1.0, *sims])
    n_c = max(c for c, _, _ in rows) + 1
    step = max(4.0, min(14.0, 420.0 / n_c), 240.0 / n_c)
    left, top, plot_h = 40.0, 8.0, 120.0
    plot_w = n_c * step
    width, height = left + plot_w + 130, top + plot_h + 30

    def y(v: float) -> float:
        return top + plot_h * (hi - v) / (hi - lo)

    out = [
        _open("layersim", width, height, "per-layer similarity against the null band"),
        f'<rect x="{left}" y="{top}" width="{plot_w:.1f}" height="{plot_h:.1f}" fill="#f9fafb" stroke="{LIGHT}"/>',
    ]
    if band is not None and null is not None:
        out.append(f'<rect x="{left}" y="{y(band[1]):.1f}" width="{plot_w:.1f}" '
                   f'height="{max(1.0, y(band[0]) - y(band[1])):.1f}" fill="{BAND}">'
                   f"<title>null mean ± 3 sd: {band[0]:.3g} to {band[1]:.3g}</title></rect>")
        out.append(f'<line x1="{left}" y1="{y(null[0]):.1f}" x2="{left + plot_w:.1f}" y2="{y(null[0]):.1f}" '
                   f'stroke="{RED}" stroke-dasharray="4 2"/>')
    if lo < 0 < hi:
        out.append(f'<line x1="{left}" y1="{y(0):.1f}" x2="{left + plot_w:.1f}" y2="{y(0):.1f}" stroke="{GREY}"/>')
    for c, r, s in rows:
        if s is None:
            continue
        matched = r is not None and (band is None or s > band[1])
        tip = escape(f"cand {c} -> ref {r if r is not None else 'none'}, similarity {format_value(s)}")
        out.append(f'<circle cx="{left + (c + 0.5) * step:.1f}" cy="{y(s):.1f}" r="{min(3.5, step / 2.5):.1f}" '
                   f'fill="{BLUE if matched else GREY}"><title>{tip}</title></circle>')
    out += [
        f'<text x="{left - 4}" y="{y(hi) + 8:.1f}" text-anchor="end" {TEXT}>{_tick(hi)}</text>',
        f'<text x="{left - 4}" y="{y(lo):.1f}" text-anchor="end" {TEXT}>{_tick(lo)}</text>',
        f'<text x="{left}" y="{top + plot_h + 14:.1f}" {TEXT}>0</text>',
        f'<text x="{left + plot_w:.1f}" y="{top + plot_h + 14:.1f}" text-anchor="end" {TEXT}>{n_c - 1}</text>',
        f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 26:.1f}" text-anchor="middle" {TEXT}>'
        "candidate layer</text>",
    ]
    legend = ["similarity to the", "best reference layer"]
    if band is not None:
        legend += ["", "shaded: null mean ± 3 sd", f"({band[0]:.3g} to {band[1]:.3g})", "dashed: null mean"]
    for i, line in enumerate(legend):
        out.append(f'<text x="{left + plot_w + 6:.1f}" y="{top + 10 + 12 * i}" {TEXT}>{escape(line)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: a label, a value on the chart's scale, the text printed after it, and a colour."""

    label: str
    value: float
    note: str = ""
    colour: str = BLUE


@dataclass(frozen=True)
class Mark:
    """A vertical reference line across a bar chart, with its legend text."""

    value: float
    label: str
    colour: str = RED
    dash: str = "4 2"


def bar_chart_svg(bars: list[Bar], *, label: str, x_max: float = 1.0,
                  band: tuple[float, float] | None = None, band_label: str = "",
                  marks: tuple[Mark, ...] = ()) -> Markup:
    """Horizontal bars on a 0..x_max axis, an optional shaded null band and vertical reference marks."""
    label_w, plot_w, row_h, top = 150.0, 300.0, 18.0, 8.0
    plot_h = row_h * len(bars)
    legend = ([f"shaded: {band_label}"] if band is not None and band_label else []) + [m.label for m in marks]
    width, height = label_w + plot_w + 190, top + plot_h + 30 + 12 * max(0, len(legend) - 1)

    def x(v: float) -> float:
        return label_w + plot_w * max(0.0, min(v, x_max)) / x_max

    out = [_open("bars", width, height, label),
           f'<rect x="{label_w}" y="{top}" width="{plot_w}" height="{plot_h:.1f}" fill="#f9fafb" stroke="{LIGHT}"/>']
    if band is not None:
        out.append(f'<rect x="{x(band[0]):.1f}" y="{top}" width="{max(1.0, x(band[1]) - x(band[0])):.1f}" '
                   f'height="{plot_h:.1f}" fill="{BAND}"><title>{escape(band_label)}</title></rect>')
    for i, b in enumerate(bars):
        y0 = top + i * row_h
        name = b.label if len(b.label) <= 24 else b.label[:23] + "…"
        out.append(f'<text x="{label_w - 6}" y="{y0 + 12.5:.1f}" text-anchor="end" {TEXT}>'
                   f"<title>{escape(b.label)}</title>{escape(name)}</text>")
        out.append(f'<rect x="{label_w}" y="{y0 + 3:.1f}" width="{max(1.0, x(b.value) - label_w):.1f}" '
                   f'height="{row_h - 6:.1f}" fill="{b.colour}"><title>{escape(b.label)}: {escape(b.note)}</title>'
                   "</rect>")
        out.append(f'<text x="{label_w + plot_w + 6:.1f}" y="{y0 + 12.5:.1f}" {TEXT}>{escape(b.note)}</text>')
    for m in marks:
        out.append(f'<line x1="{x(m.value):.1f}" y1="{top}" x2="{x(m.value):.1f}" y2="{top + plot_h:.1f}" '
                   f'stroke="{m.colour}" stroke-width="1.5" stroke-dasharray="{m.dash}">'
                   f"<title>{escape(m.label)}</title></line>")
    out += [f'<text x="{label_w}" y="{top + plot_h + 12:.1f}" {TEXT}>0</text>',
            f'<text x="{label_w + plot_w:.1f}" y="{top + plot_h + 12:.1f}" text-anchor="end" {TEXT}>'
            f"{_tick(x_max)}</text>"]
    for i, line in enumerate(legend):
        out.append(f'<text x="{label_w}" y="{top + plot_h + 24 + 12 * i:.1f}" {TEXT}>{escape(line)}</text>')
    out.append("</svg>")
    return Markup("".join(out))
