"""The batch index's family tree: an inline SVG (layered top-down) and the evidence table, from a LineageTree.

Every name and text from the tree is escaped here, because the SVG is inserted into the page as markup. No
scripts: the evidence of an edge shows on hover (SVG <title>) and in the table below the picture.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from audit.record.models import LineageEdge, LineageNode, LineageTree
from audit.reporting.console import format_p, format_value

NODE_W, NODE_H = 150.0, 34.0
SLOT_W, LEVEL_H = 196.0, 110.0
MARGIN = 16.0
NAME_CHARS, LABEL_CHARS = 22, 24


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _link(path: str | None) -> str | None:
    if not path or ":" in path or path.startswith(("/", "\\")):
        return None
    return quote(path, safe="/._-")


def _p_of(edge: LineageEdge) -> str:
    return format_p(edge.statistic.p_value, edge.statistic.log10_p)


def evidence_text(edge: LineageEdge, names: dict[str, str]) -> str:
    """One paragraph of an edge's evidence (the SVG tooltip)."""
    arrow = "->" if edge.directed else "--"
    s = edge.statistic
    parts = [f"{names[edge.parent]} {arrow} {names[edge.child]}: {edge.relation}",
             f"{s.name.value} {format_value(s.value)} (p {_p_of(edge)}"
             + (f", z {s.effect:.0f} against {s.null.n} draws)" if s.effect is not None and s.null.n else ")"),
             f"{edge.layers_matched} of {edge.layers_compared} layers matched ({edge.matched_share:.0%})"]
    if edge.exact_log10_p is not None and edge.exact_log10_p < -2:
        parts.append(f"exact tests p {format_p(None, edge.exact_log10_p)}")
    parts.append(f"direction: {edge.rule.value} ({edge.rule_detail})" if edge.rule_detail else
                 f"direction: {edge.rule.value}")
    if edge.note:
        parts.append(f"not drawn: {edge.note}")
    return "; ".join(parts) + ". " + edge.summary


def _positions(tree: LineageTree) -> tuple[dict[str, tuple[float, float]], float, float]:
    """Node centres: each family a tidy tree (leaves side by side, a parent above the middle of its children),
    families left to right, models related to no other on the last row."""
    drawn = [e for e in tree.edges if e.in_tree]
    depth = {n.id: n.depth for n in tree.nodes}
    children: dict[str, list[str]] = {n.id: [] for n in tree.nodes}
    has_parent: set[str] = set()
    for e in drawn:
        top, low = (e.parent, e.child) if depth[e.parent] <= depth[e.child] else (e.child, e.parent)
        if low not in has_parent:
            children[top].append(low)
            has_parent.add(low)
    x_slot: dict[str, float] = {}
    next_slot = 0.0

    def place(node: str, seen: set[str]) -> float:
        nonlocal next_slot
        seen.add(node)
        kids = [k for k in children[node] if k not in seen]
        if not kids:
            x_slot[node] = next_slot
            next_slot += 1
        else:
            xs = [place(k, seen) for k in kids]
            x_slot[node] = (xs[0] + xs[-1]) / 2
        return x_slot[node]

    families = [n for n in tree.nodes if n.family is not None and n.id not in has_parent]
    seen: set[str] = set()
    for root in families:
        place(root.id, seen)
    for n in tree.nodes:  # anything a cycle of undirected choices left out
        if n.family is not None and n.id not in seen:
            place(n.id, seen)
    max_depth = max([depth[i] for i in x_slot] or [0])
    alone = [n for n in tree.nodes if n.family is None]
    per_row = max(4, int(next_slot) or 4)
    pos: dict[str, tuple[float, float]] = {
        i: (MARGIN + SLOT_W * (x + 0.5), MARGIN + LEVEL_H * depth[i] + NODE_H / 2) for i, x in x_slot.items()}
    y_alone = MARGIN + LEVEL_H * (max_depth + 1) if x_slot else MARGIN
    for k, n in enumerate(alone):
        pos[n.id] = (MARGIN + SLOT_W * (k % per_row + 0.5), y_alone + LEVEL_H * 0.6 * (k // per_row) + NODE_H / 2)
    rows_alone = (len(alone) + per_row - 1) // per_row
    width = MARGIN * 2 + SLOT_W * max(next_slot, min(len(alone), per_row), 1)
    height = (y_alone + LEVEL_H * 0.6 * rows_alone if alone else y_alone - LEVEL_H + NODE_H + MARGIN) + MARGIN
    return pos, width, height


def lineage_svg(tree: LineageTree) -> Markup:
    """The tree as an inline SVG: nodes labelled with model names (linked to their reports), edges labelled with
    the relation, arrows for directed edges, dashed lines for undirected ones, the evidence on hover."""
    names = {n.id: n.name for n in tree.nodes}
    pos, width, height = _positions(tree)
    out = [f'<svg class="lineage" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
           f'role="img" aria-label="{escape(tree.summary_line())}" font-family="system-ui, sans-serif">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#374151"/></marker></defs>']
    for e in tree.edges:
        if not e.in_tree:
            continue
        (x1, y1), (x2, y2) = pos[e.parent], pos[e.child]
        down = 1.0 if y2 >= y1 else -1.0  # tree neighbours sit one level apart; a parent drawn below points up
        sx, sy, ex, ey = x1, y1 + down * NODE_H / 2, x2, y2 - down * NODE_H / 2
        style = 'marker-end="url(#arrow)"' if e.directed else 'stroke-dasharray="5 4"'
        kind = "directed" if e.directed else "related"
        # the label sits nearer the child, where siblings' edges are a slot apart
        mx, my = sx + 0.82 * (ex - sx), sy + 0.72 * (ey - sy)
        halo = 'text-anchor="middle" font-size="11" stroke="#ffffff" stroke-width="4" paint-order="stroke"'
        lines = _label_lines(e)
        text = "".join(f'<tspan x="{mx:.1f}" dy="{0 if k == 0 else 13}">{escape(_short(t, LABEL_CHARS))}</tspan>'
                       for k, t in enumerate(lines))
        out.append(
            f'<g class="edge {kind}" data-parent="{escape(e.parent)}" data-child="{escape(e.child)}">'
            f"<title>{escape(evidence_text(e, names))}</title>"
            f'<line x1="{sx:.1f}" y1="{sy:.1f}" x2="{ex:.1f}" y2="{ey:.1f}" stroke="#374151" stroke-width="1.5" '
            f"{style}/>"
            f'<text x="{mx:.1f}" y="{my - 6 * (len(lines) - 1) + 4:.1f}" fill="#111827" {halo}>{text}</text>'
            "</g>")
    for n in tree.nodes:
        x, y = pos[n.id]
        out.append(_node(n, x, y))
    out.append("</svg>")
    return Markup("".join(out))


def _label_lines(e: LineageEdge) -> list[str]:
    """What an edge says in the picture: the relation, then what was done (weights, then packaging)."""
    head = e.label.value if e.directed else f"related ({e.label.value})"
    done = [o.value for o in e.operations] + [o.value for o in e.packaging]
    return [head, ", ".join(done)] if done else [head]


def _node(n: LineageNode, x: float, y: float) -> str:
    outside = n.kind != "model"
    stroke = "#6b7280" if outside else "#1f2937"
    fill = "#f3f4f6" if outside else "#ffffff"
    dash = ' stroke-dasharray="4 3"' if outside else ""
    tip = n.name + (f" ({n.kind}" + (f": {n.path}" if n.path else "") + ")" if outside else
                    (f" (manifest line {n.line}" + (f", its audit: {n.verdict.value}" if n.verdict else "") + ")"))
    body = (f'<rect x="{x - NODE_W / 2:.1f}" y="{y - NODE_H / 2:.1f}" width="{NODE_W:.0f}" height="{NODE_H:.0f}" '
            f'rx="6" fill="{fill}" stroke="{stroke}" stroke-width="2"{dash}/>'
            f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" font-size="12" font-weight="600" '
            f'fill="#111827">{escape(_short(n.name, NAME_CHARS))}</text>')
    link = _link(n.report)
    inner = f"<title>{escape(tip)}</title>{body}"
    if link:
        inner = f'<a href="{link}">{inner}</a>'
    return f'<g class="node {escape(n.kind)}" data-id="{escape(n.id)}">{inner}</g>'


def lineage_view(tree: LineageTree | None) -> dict[str, Any] | None:
    """What the index template shows of the tree: the picture, the summary, the evidence rows."""
    if tree is None:
        return None
    names = {n.id: n.name for n in tree.nodes}
    edges = []
    for e in tree.edges:
        s = e.statistic
        edges.append({
            "parent": names[e.parent], "child": names[e.child], "arrow": "→" if e.directed else "—",
            "relation": e.relation, "rule": e.rule.value, "rule_detail": e.rule_detail,
            "statistic": f"{s.name.value} {format_value(s.value)}", "p": _p_of(e),
            "effect": f"z {s.effect:.0f}" if s.effect is not None else "",
            "exact": format_p(None, e.exact_log10_p) if e.exact_log10_p is not None else "—",
            "layers": f"{e.layers_matched}/{e.layers_compared}", "share": f"{e.matched_share:.0%}",
            "source": e.source, "drawn": e.in_tree, "note": e.note or "",
        })
    counts = (f"{tree.pairs_compared} pairs compared ({tree.pairs_from_cache} from the cache): {tree.pairs_related} "
              f"related, {tree.pairs_unrelated} unrelated, {tree.pairs_inconclusive} inconclusive; "
              f"{tree.pairs_skipped} could not be compared")
    return {
        "svg": lineage_svg(tree) if tree.nodes else None,
        "summary": tree.summary_line(),
        "counts": counts,
        "method": tree.method,
        "edges": edges,
        "excluded": [{"name": x.name, "line": x.line, "reason": x.reason} for x in tree.excluded],
        "skipped": [{"a": p.a, "b": p.b, "reason": p.reason} for p in tree.skipped],
        "inconclusive": [{"a": p.a, "b": p.b, "reason": p.reason} for p in tree.inconclusive],
        "more_skipped": max(0, tree.pairs_skipped - len(tree.skipped)),
    }
