"""Self-contained HTML report rendered from a record (jinja2 template in the bundled `reports/` folder)."""

from __future__ import annotations

import json
import shlex
from functools import lru_cache
from typing import Any

import jinja2
from markupsafe import Markup, escape

from audit.paths import data_dir
from audit.reporting.console import (
    DASH,
    best_comparison,
    condense_layer_map,
    format_bytes,
    format_confidence,
    format_count,
    format_null,
    format_p,
    format_value,
    layer_rows,
    null_band,
    operation_text,
    reference_layers,
    references_checked,
    tokenizer_text,
)

TEMPLATE = "report.html.j2"
LABELS = ("original", "derived", "fine-tuned", "inconclusive")

OPERATION_MEANINGS = {
    "renamed-tensors": "tensor names changed (a repackaged copy); the weights are the same",
    "permutation": "hidden units, attention heads or MLP neurons reordered (function-preserving)",
    "layer-pruning": "layers of the parent were removed",
    "layer-duplication": "layers of the parent were repeated (depth up-scaling)",
    "vocab-extension": "tokens were added to the parent's vocabulary",
    "quantization": "weights stored at lower precision",
    "dtype-conversion": "weights cast to another floating-point type",
    "format-conversion": "re-exported to another file format",
    "exact-copy": "weights identical to the parent's",
    "heavy-continued-training": "weights moved far from the parent, but still traceably",
}

FLAG_MEANINGS = {
    "architecture-borrowed": "Same architecture as a known family. This says nothing about the weights: "
    "Yi-34B used the Llama architecture and was trained from scratch.",
    "tokenizer-borrowed": "Same tokenizer as a known family. Reusing a tokenizer is common and is not "
    "evidence that weights were reused.",
    "distillation-leak": "The model names another vendor's model as itself: it was probably trained on that "
    "model's outputs. This says nothing about its weights.",
    "wrapper-suspected": "Answers, token counts or quirks match another vendor's model: the endpoint may "
    "be a wrapper around it.",
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _text(x: Any) -> str:
    """Display text for a value that may be a string, a number or a small structure."""
    if x is None:
        return DASH
    if isinstance(x, str):
        return x
    if isinstance(x, (int, float, bool)):
        return format_value(x)
    return json.dumps(x, ensure_ascii=False, default=str)


def _explanation(record: dict) -> tuple[list[str], list[str]]:
    """Plain-language meaning of the verdict label, and the caveats that go with it."""
    verdict = record.get("verdict") or {}
    label = verdict.get("label")
    parent = verdict.get("parent") or "the parent"
    n = references_checked(record)
    names = [str(c.get("reference")) for c in record.get("comparisons") or [] if isinstance(c, dict)]
    checked = f"{_plural(n, 'reference')} checked" + (f" ({', '.join(names)})" if names else "")
    ops = [operation_text(o) for o in verdict.get("operations") or []]
    meaning: list[str] = []
    if label == "original":
        meaning.append(
            f"Original means no derivation from any of the {checked}: no reference's weights were found "
            "inside this model, with every weight statistic well inside what independently trained models show."
        )
    elif label == "fine-tuned":
        meaning.append(
            f"Fine-tuned means the weights of {parent} carried over with the same structure: same tensor roles "
            "and shapes, layers matched in order, no permutation needed, and weight statistics far outside "
            "what independent models show. Typical of SFT, RLHF, LoRA merges or short continued pretraining."
        )
    elif label == "derived":
        meaning.append(
            f"Derived means the weights of {parent} are demonstrably inside this model, but its structure or "
            "packaging changed" + (f": {'; '.join(ops)}." if ops else ".")
        )
    elif label == "inconclusive":
        meaning.append(
            f"Inconclusive means the evidence from the {checked} is mixed or too thin to decide either way. "
            "The summary and the evidence below say what is missing; more layers compared, a closer reference, "
            "or the original tokenizer usually settle it."
        )
    else:
        meaning.append(f"Unrecognised verdict label {label!r}.")
    caveats = [
        f"The verdict only concerns the {checked}. A model derived from a model that was not checked "
        "can still be labelled original.",
        "A shared architecture or tokenizer is reported as a flag (architecture-borrowed, tokenizer-borrowed), "
        "not as a derivation.",
        "Each p-value is the chance of seeing a statistic this extreme between independently trained models "
        "(the null); confidence is the tool's own overall judgement, not a probability of the label.",
        "Black-box probe findings (distillation-leak, wrapper-suspected) describe behaviour, not weights.",
    ]
    return meaning, caveats


def _label_class(label: Any) -> str:
    return str(label) if label in LABELS else "unknown"


def _kv(d: Any, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    if not isinstance(d, dict):
        return []
    rows = []
    for k, v in d.items():
        if k in skip:
            continue
        if k == "parameters" and isinstance(v, int):
            rows.append((str(k), f"{format_count(v)} ({v})"))
        else:
            rows.append((str(k), _text(v)))
    return rows


def _colour(sim: float | None, band: float | None) -> str:
    if sim is None:
        return "#9ca3af"
    lo = band if band is not None else 0.0
    if band is not None and sim <= band:
        return "#d1d5db"
    t = max(0.0, min(1.0, (sim - lo) / max(1e-9, 1.0 - lo)))
    return f"hsl(215,70%,{78 - 48 * t:.0f}%)"


def _tick(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") or "0"


def _layer_svg(
    rows: list[tuple[int, int | None, float | None]], band: float | None, n_ref: int | None
) -> Markup:
    """Inline SVG: candidate layer (x) against matched reference layer (y), plus similarity bars."""
    n_c = max(c for c, _, _ in rows) + 1
    refs = [r for _, r, _ in rows if r is not None]
    n_r = max([n_ref or 0, *(r + 1 for r in refs)]) or 1
    cell = max(3.0, min(10.0, 300.0 / max(n_c, n_r)))
    left, top, bar_h, gap = 40.0, 8.0, 60.0, 26.0
    grid_w, grid_h = n_c * cell, n_r * cell
    width = left + grid_w + 120
    bars_top = top + grid_h + gap
    height = bars_top + bar_h + 30
    sims = [s for _, _, s in rows if s is not None]
    lo = min([0.0, *sims, *([band] if band is not None else [])])
    hi = max([1.0, *sims])

    def y_bar(v: float) -> float:
        return bars_top + bar_h * (hi - v) / (hi - lo)

    out = [
        f'<svg class="layermap" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        'role="img" aria-label="layer map: candidate layer against matched reference layer">',
        f'<rect x="{left}" y="{top}" width="{grid_w:.1f}" height="{grid_h:.1f}" fill="#f9fafb" stroke="#d1d5db"/>',
        f'<line x1="{left}" y1="{top}" x2="{left + min(grid_w, grid_h):.1f}" y2="{top + min(grid_w, grid_h):.1f}" '
        'stroke="#d1d5db" stroke-dasharray="3 3"/>',
    ]
    for c, r, s in rows:
        x = left + c * cell
        tip = escape(f"cand {c} -> ref {r if r is not None else 'none'}, similarity {format_value(s)}")
        if r is None:
            out.append(
                f'<rect x="{x:.1f}" y="{top + grid_h + 2:.1f}" width="{cell:.1f}" height="4" fill="#dc2626">'
                f"<title>{tip}</title></rect>"
            )
        else:
            out.append(
                f'<rect x="{x:.1f}" y="{top + r * cell:.1f}" width="{cell:.1f}" height="{cell:.1f}" '
                f'fill="{_colour(s, band)}"><title>{tip}</title></rect>'
            )
        if s is not None:
            y = y_bar(s)
            base = y_bar(max(lo, 0.0))
            out.append(
                f'<rect x="{x + 0.5:.1f}" y="{min(y, base):.1f}" width="{max(1.0, cell - 1):.1f}" '
                f'height="{abs(base - y):.1f}" fill="{_colour(s, band)}"><title>{tip}</title></rect>'
            )
    # axes and labels
    text = 'font-size="10" fill="#374151"'
    out.append(f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" {text}>0</text>')
    out.append(f'<text x="{left - 4}" y="{top + grid_h:.1f}" text-anchor="end" {text}>{n_r - 1}</text>')
    out.append(f'<text x="{left + grid_w + 6:.1f}" y="{top + 10}" {text}>reference layer</text>')
    out.append(f'<text x="{left + grid_w + 6:.1f}" y="{top + 22}" {text}>(rows) against</text>')
    out.append(f'<text x="{left + grid_w + 6:.1f}" y="{top + 34}" {text}>candidate layer</text>')
    out.append(f'<text x="{left + grid_w + 6:.1f}" y="{top + 46}" {text}>(columns)</text>')
    out.append(f'<text x="{left}" y="{bars_top - 8:.1f}" {text}>0</text>')
    out.append(
        f'<text x="{left + grid_w:.1f}" y="{bars_top - 8:.1f}" text-anchor="end" {text}>{n_c - 1}</text>'
    )
    out.append(
        f'<line x1="{left}" y1="{y_bar(lo):.1f}" x2="{left + grid_w:.1f}" y2="{y_bar(lo):.1f}" stroke="#9ca3af"/>'
    )
    out.append(f'<text x="{left - 4}" y="{y_bar(hi) + 8:.1f}" text-anchor="end" {text}>{_tick(hi)}</text>')
    out.append(f'<text x="{left - 4}" y="{y_bar(lo):.1f}" text-anchor="end" {text}>{_tick(lo)}</text>')
    out.append(f'<text x="{left + grid_w + 6:.1f}" y="{bars_top + 10:.1f}" {text}>similarity by</text>')
    out.append(f'<text x="{left + grid_w + 6:.1f}" y="{bars_top + 22:.1f}" {text}>candidate layer</text>')
    if band is not None:
        yb = y_bar(band)
        out.append(
            f'<line x1="{left}" y1="{yb:.1f}" x2="{left + grid_w:.1f}" y2="{yb:.1f}" stroke="#dc2626" '
            'stroke-dasharray="4 2"/>'
        )
        out.append(f'<text x="{left + grid_w + 6:.1f}" y="{yb + 3:.1f}" {text}>null+3sd {band:.3g}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _stat_row(stat: dict) -> dict[str, Any]:
    null = stat.get("null") if isinstance(stat.get("null"), dict) else {}
    log10_p = stat.get("log10_p")
    return {
        "name": _text(stat.get("name")),
        "value": format_value(stat.get("value")),
        "null": format_null(null),
        "null_kind": null.get("kind") or "",
        "p": format_p(stat.get("p_value"), log10_p),
        "p_title": f"log10 p = {log10_p:.4g}" if isinstance(log10_p, (int, float)) else "",
        "meaning": _text(stat.get("meaning")) if stat.get("meaning") is not None else "",
    }


def _architecture_rows(subject_arch: Any, ref_arch: Any) -> list[dict[str, Any]]:
    if not isinstance(subject_arch, dict) or not isinstance(ref_arch, dict):
        return []
    keys = list(subject_arch) + [k for k in ref_arch if k not in subject_arch]
    return [
        {
            "key": str(k),
            "cand": _text(subject_arch.get(k)),
            "ref": _text(ref_arch.get(k)),
            "same": subject_arch.get(k) == ref_arch.get(k),
        }
        for k in keys
    ]


def _comparison_view(record: dict, comp: dict, index: int, is_parent: bool) -> dict[str, Any]:
    ref_name = comp.get("reference")
    ref = next(
        (r for r in record.get("references") or [] if isinstance(r, dict) and r.get("name") == ref_name), {}
    )
    v = comp.get("verdict") or {}
    rows = layer_rows(comp.get("layer_map"))
    band = null_band(comp.get("layer_null"))
    n_ref = reference_layers(record, ref_name)
    layer = None
    if rows:
        layer = {
            "summary": condense_layer_map(comp.get("layer_map"), comp.get("layer_null"), n_ref),
            "band": f"{band:.3g}" if band is not None else None,
            "null": format_null(comp.get("layer_null")),
            "svg": _layer_svg(rows, band, n_ref),
            "rows": [
                {
                    "cand": c,
                    "ref": DASH if r is None else r,
                    "sim": format_value(s),
                    "above": band is not None and s is not None and r is not None and s > band,
                }
                for c, r, s in rows
            ],
        }
    ops = []
    for op in comp.get("operations") or []:
        name = op.get("name") if isinstance(op, dict) else op
        detail = op.get("detail") if isinstance(op, dict) else None
        ops.append(
            {
                "name": _text(name),
                "detail": _text(detail) if detail else "",
                "meaning": OPERATION_MEANINGS.get(str(name), ""),
            }
        )
    tok = comp.get("tokenizer")
    return {
        "id": f"cmp-{index}",
        "reference": _text(ref_name),
        "is_parent": is_parent,
        "label": _text(v.get("label")),
        "label_class": _label_class(v.get("label")),
        "confidence": format_confidence(v.get("confidence")),
        "summary": _text(v.get("summary")) if v.get("summary") else "",
        "stats": [_stat_row(s) for s in comp.get("statistics") or [] if isinstance(s, dict)],
        "layer": layer,
        "tokenizer": tokenizer_text(tok) if isinstance(tok, dict) and tok else None,
        "architecture_match": format_value(comp["architecture_match"])
        if "architecture_match" in comp
        else None,
        "architecture": _architecture_rows(
            (record.get("subject") or {}).get("architecture"), ref.get("architecture")
        ),
        "alignment": _kv(comp.get("alignment")),
        "operations": ops,
        "seconds": format_value(comp.get("seconds")) if comp.get("seconds") is not None else None,
    }


def _probe_view(suite: Any) -> dict[str, Any]:
    if not isinstance(suite, dict):
        return {"name": _text(suite), "claims": [], "detectors": [], "exchanges": [], "errors": 0, "summary": ""}
    prompts = suite.get("prompts") or []
    responses = suite.get("responses") or []
    by_id = {p.get("id"): p for p in prompts if isinstance(p, dict) and "id" in p}
    exchanges = []
    if by_id and all(isinstance(r, dict) and "probe" in r for r in responses):
        # provaudit's own shape: n sampled responses per prompt, joined to their prompt by id
        for r in responses:
            p = by_id.get(r.get("probe")) or {}
            meta = f"{_text(r.get('probe'))} · {_text(p.get('language'))} · sample {_text(r.get('sample'))} · seed {_text(r.get('seed'))}"
            per: dict[str, set[str]] = {}
            for c in r.get("claims") or []:
                if isinstance(c, dict):
                    per.setdefault(str(c.get("vendor")), set()).update([str(c["model"])] if c.get("model") else [])
            claims = ", ".join(f"{v} ({', '.join(sorted(m))})" if m else v for v, m in sorted(per.items()))
            if claims:
                meta += f" · claims: {claims}"
            if r.get("boilerplate"):
                meta += f" · boilerplate: {', '.join(map(str, r['boilerplate']))}"
            if r.get("cutoff"):
                meta += f" · cutoff: {', '.join(map(str, r['cutoff']))}"
            response = _text(r.get("text")) if r.get("error") is None else f"[error] {_text(r.get('error'))}"
            exchanges.append({"prompt": _messages_text(p.get("messages")), "response": response, "meta": meta})
    else:
        for i in range(max(len(prompts), len(responses))):
            p = prompts[i] if i < len(prompts) else None
            r = responses[i] if i < len(responses) else None
            if isinstance(p, dict):
                p = p.get("text") or p.get("prompt") or p
            if isinstance(r, dict):
                r = r.get("text") or r.get("response") or r.get("content") or r
            exchanges.append({"prompt": _text(p), "response": _text(r), "meta": ""})
    detectors = suite.get("detectors") or suite.get("detectors_fired") or []
    vendors = [v for v in suite.get("vendors") or [] if isinstance(v, dict)]
    summary = ""
    if "answered" in suite:
        summary = f"{_text(suite.get('answered'))} answers scored, {_text(suite.get('failed', 0))} errors"
        if vendors:
            summary += "; claims per vendor: " + ", ".join(
                f"{_text(v.get('vendor'))} {_text(v.get('count'))}/{_text(v.get('of'))}" for v in vendors)
    return {
        "name": _text(suite.get("suite") or suite.get("name")),
        "claims": [
            {k: _text(c.get(k)) for k in ("vendor", "model", "language", "count", "of")}
            for c in suite.get("claims") or []
            if isinstance(c, dict)
        ],
        "detectors": [_text(d.get("name") if isinstance(d, dict) and "name" in d else d) for d in detectors],
        "exchanges": exchanges,
        "errors": len(suite.get("errors") or []),
        "summary": summary,
    }


def _flag_view(f: dict) -> dict[str, Any]:
    """A flag for display; example exchanges in the evidence (probe flags) are shown as prompt/response pairs."""
    evidence = f.get("evidence")
    examples = []
    if isinstance(evidence, dict) and isinstance(evidence.get("examples"), list):
        for e in evidence["examples"]:
            if isinstance(e, dict):
                meta = f"{_text(e.get('suite'))} / {_text(e.get('probe'))} · sample {_text(e.get('sample'))} · seed {_text(e.get('seed'))}"
                examples.append({"prompt": _text(e.get("prompt")), "response": _text(e.get("response")), "meta": meta})
        evidence = {k: v for k, v in evidence.items() if k != "examples"}
    return {
        "kind": _text(f.get("kind")),
        "detail": _text(f.get("detail")) if f.get("detail") else "",
        "meaning": FLAG_MEANINGS.get(str(f.get("kind")), ""),
        "evidence": _text(evidence) if evidence else "",
        "examples": examples,
    }


def _messages_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return _text(messages)
    return "\n".join(
        (f"[{m.get('role')}] " if m.get("role") != "user" else "") + _text(m.get("content"))
        for m in messages
        if isinstance(m, dict)
    )


def _files(owner: str, model: Any) -> list[dict[str, str]]:
    if not isinstance(model, dict):
        return []
    return [
        {
            "owner": owner,
            "path": _text(f.get("path")),
            "size": format_bytes(f.get("bytes")),
            "bytes": _text(f.get("bytes")),
            "sha256": _text(f.get("sha256")),
        }
        for f in model.get("files") or []
        if isinstance(f, dict)
    ]


def build_view(record: dict) -> dict[str, Any]:
    """Everything the template shows, as display strings (escaping is left to the template)."""
    verdict = record.get("verdict") or {}
    subject = record.get("subject") or {}
    best = best_comparison(record)
    comps = [c for c in record.get("comparisons") or [] if isinstance(c, dict)]
    ordered = ([best] if best is not None else []) + [c for c in comps if c is not best]
    parent = verdict.get("parent")
    meaning, caveats = _explanation(record)
    command = record.get("command") or {}
    argv = command.get("argv")
    tool = record.get("tool") or {}
    files = _files(f"subject: {_text(subject.get('name'))}", subject)
    for ref in record.get("references") or []:
        if isinstance(ref, dict):
            files += _files(f"reference: {_text(ref.get('name'))}", ref)
    from audit.reporting.registry_view import registry_rows

    return {
        "registry": registry_rows(record),
        "title": f"provaudit: {_text(subject.get('name'))}",
        "label": _text(verdict.get("label")),
        "label_class": _label_class(verdict.get("label")),
        "parent": _text(parent) if parent is not None else "none",
        "confidence": format_confidence(verdict.get("confidence")),
        "summary": _text(verdict.get("summary")) if verdict.get("summary") else "",
        "operations": [
            {"name": operation_text(o), "meaning": OPERATION_MEANINGS.get(str(o), "")}
            for o in verdict.get("operations") or []
        ],
        "meaning": meaning,
        "caveats": caveats,
        "n_refs": references_checked(record),
        "flags": [_flag_view(f) for f in record.get("flags") or [] if isinstance(f, dict)],
        "subject": {
            "name": _text(subject.get("name")),
            "path": _text(subject.get("path")),
            "format": _text(subject.get("format")),
            "architecture": _kv(subject.get("architecture")),
            "tokenizer": _kv(subject.get("tokenizer")),
        },
        "comparisons": [
            _comparison_view(record, c, i, parent is not None and c.get("reference") == parent)
            for i, c in enumerate(ordered)
        ],
        "probes": [_probe_view(s) for s in record.get("probes") or []],
        "provenance": {
            "schema": _text(record.get("schema")),
            "tool": f"{_text(tool.get('name'))} {_text(tool.get('version'))}",
            "created": _text(record.get("created")),
            "command": _text(command.get("name")),
            "argv": shlex.join(str(a) for a in argv) if isinstance(argv, list) else _text(argv),
            "seed": _text(command.get("seed")),
            "files": files,
        },
    }


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("reports"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(record: dict) -> str:
    """Render `record` as one self-contained HTML page (inline CSS and SVG, no scripts, no external assets)."""
    return _environment().get_template(TEMPLATE).render(v=build_view(record))
