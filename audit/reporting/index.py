"""The batch index page: one self-contained HTML table over the index rows and the batch's family tree
(jinja2, autoescaped; the tree's SVG is built and escaped by `audit.reporting.lineage_view`)."""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from audit.record.models import LineageTree

TEMPLATE = "index.html.j2"
LABELS = ("original", "derived", "fine-tuned", "inconclusive")


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    from audit.paths import data_dir

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(data_dir("reports"))), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _link(path: Any) -> str | None:
    """A relative link to a file the batch wrote (never a scheme, never an absolute path)."""
    if not isinstance(path, str) or not path or ":" in path or path.startswith(("/", "\\")):
        return None
    return quote(path, safe="/._-")


def _confidence(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "—"


def _row_view(n: int, row: dict[str, Any]) -> dict[str, Any]:
    label = row.get("verdict")
    return {
        "n": n,
        "name": str(row.get("name") or ""),
        "model": str(row.get("model") or ""),
        "failed": row.get("status") != "ok",
        "error": str(row.get("error") or ""),
        "label": str(label or "—"),
        "label_class": label if label in LABELS else "",
        "parent": str(row.get("parent") or "none"),
        "confidence": _confidence(row.get("confidence")),
        "operations": ", ".join(map(str, row.get("operations") or [])) or "—",
        "flags": ", ".join(map(str, row.get("flags") or [])) or "—",
        "claims": ", ".join(map(str, row.get("claims") or [])) or "—",
        "report": _link(row.get("report")),
        "record": _link(row.get("record")),
    }


def render_index(rows: list[dict[str, Any]], meta: dict[str, Any], lineage: LineageTree | None = None) -> str:
    """HTML for the batch index. `meta`: manifest, created, tool (name version), seconds (optional);
    `lineage`: the batch's family tree, drawn above the table."""
    from audit.reporting.lineage_view import lineage_view

    labels = Counter(r.get("verdict") if r.get("status") == "ok" else "error" for r in rows)
    counts = [{"label": k, "cls": k, "count": labels[k]} for k in (*LABELS, "error") if labels.get(k)]
    failed = labels.get("error", 0)
    subtitle = f"{len(rows)} model{'' if len(rows) == 1 else 's'}"
    subtitle += f", {failed} failed" if failed else ""
    subtitle += f" · manifest {meta.get('manifest', '')}" if meta.get("manifest") else ""
    view = {
        "title": f"provaudit batch: {meta.get('manifest') or 'index'}",
        "heading": str(meta.get("heading") or "Batch audit"),
        "subtitle": subtitle,
        "counts": counts,
        "rows": [_row_view(i + 1, r) for i, r in enumerate(rows)],
        "tool": str(meta.get("tool") or "provaudit"),
        "footer": f"{meta.get('tool') or 'provaudit'} · written {meta.get('created') or ''}",
        "lineage": lineage_view(lineage),
    }
    return _environment().get_template(TEMPLATE).render(v=view)
