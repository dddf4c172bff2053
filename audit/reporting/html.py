"""Self-contained HTML report rendered from a record (jinja2 template in the bundled `reports/` folder)."""

from __future__ import annotations

import json
import math
import shlex
from enum import Enum
from functools import lru_cache
from typing import Any

import jinja2
from markupsafe import Markup
from pydantic import BaseModel

from audit.paths import data_dir
from audit.record.models import (
    Architecture,
    Comparison,
    DetectedOperation,
    DistillationLeakFlag,
    Flag,
    Message,
    ModelInfo,
    ProbeFailure,
    ProbeRun,
    Record,
    Statistic,
    SuiteResult,
)
from audit.record.names import Label
from audit.reporting.charts import (
    BLUE,
    GREEN,
    GREY,
    RED,
    Bar,
    Mark,
    bar_chart_svg,
    layer_map_svg,
    layer_similarity_svg,
)
from audit.reporting.console import (
    DASH,
    best_comparison,
    condense_layer_map,
    finite_number,
    format_bytes,
    format_confidence,
    format_count,
    format_null,
    format_p,
    format_value,
    layer_rows,
    null_band,
    null_mean_sd,
    operation_text,
    reference_layers,
    references_checked,
    tokenizer_text,
    unchecked_line,
)
from audit.reporting.registry_view import registry_rows

TEMPLATE = "report.html.j2"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _text(x: object) -> str:
    """Display text for a value that may be a string, a number or a small structure."""
    if x is None:
        return DASH
    if isinstance(x, Enum):
        return str(x.value)
    if isinstance(x, str):
        return x
    if isinstance(x, (int, float, bool)):
        return format_value(x)
    if isinstance(x, BaseModel):
        x = x.model_dump(mode="json")
    return json.dumps(x, ensure_ascii=False, default=str)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _explanation(record: Record) -> tuple[list[str], list[str]]:
    """Plain-language meaning of the verdict label (from `Label.meaning`), and the caveats that go with it."""
    verdict = record.verdict
    label = verdict.label
    parent = verdict.parent or "the parent"
    n = references_checked(record)
    names = [c.reference for c in record.comparisons]
    checked = f"{_plural(n, 'reference')} checked" + (f" ({', '.join(names)})" if names else "")
    ops = [operation_text(o) for o in verdict.operations]
    meaning = f"{label.value.capitalize()} means {_lower_first(label.meaning)}"
    if label is Label.INCONCLUSIVE and n == 0 and record.probe_run is not None:
        paragraph = (
            "No weights were compared: this record holds black-box probe answers only, so there is no lineage "
            "verdict. What the answers show is reported as flags (distillation-leak, wrapper-suspected) and in "
            "the probe section below. Auditing the weights against references settles where the model came from."
        )
    elif label is Label.ORIGINAL:
        # the meaning is written for "the N references checked": name them
        generic = "the N references checked"
        paragraph = (meaning.replace(generic, f"the {checked}") if generic in meaning
                     else f"{meaning} References checked: {n}" + (f" ({', '.join(names)})." if names else "."))
    elif label is Label.FINE_TUNED:
        paragraph = f"{meaning} Here the parent is {parent}."
    elif label is Label.DERIVED:
        detected = f"; operations detected: {'; '.join(ops)}" if ops else ""
        paragraph = f"{meaning} Here the parent is {parent}{detected}."
    else:
        paragraph = f"{meaning} This verdict concerns the {checked}."
    caveats = [
        f"The verdict only concerns the {checked}. A model derived from a model that was not checked "
        "can still be labelled original." if n else "No weights were compared, so nothing here shows or rules "
        "out that the weights come from another model.",
        "A shared architecture or tokenizer is reported as a flag (architecture-borrowed, tokenizer-borrowed), "
        "not as a derivation.",
        "Each p-value is the chance of seeing a statistic this extreme between independently trained models "
        "(the null); confidence is 1 minus the 95% upper bound of the error rate measured for this kind of "
        "verdict in the calibration benchmark (what it rests on is stated with it), not a probability of the label.",
        "Black-box probe findings (distillation-leak, wrapper-suspected) describe behaviour, not weights.",
    ]
    return [paragraph], caveats


def _kv(model: BaseModel | None) -> list[tuple[str, str]]:
    """Every field of a record section as (name, display text), in the record's order."""
    if model is None:
        return []
    rows = []
    for key in type(model).model_fields:
        value = getattr(model, key)
        if key == "parameters" and isinstance(value, int):
            rows.append((key, f"{format_count(value)} ({value})"))
        else:
            rows.append((key, _text(value)))
    return rows


def _stat_row(stat: Statistic) -> dict[str, Any]:
    return {
        "name": stat.name.value,
        "value": format_value(stat.value),
        "effect": format_value(stat.effect) if stat.effect is not None else "",
        "null": format_null(stat.null),
        "null_kind": stat.null.kind,
        "assumption": stat.null.assumption or "",
        "p": format_p(stat.p_value, stat.log10_p),
        "p_title": f"log10 p = {stat.log10_p:.4g}",
        "meaning": stat.meaning,
        "detail": stat.detail or "",
    }


def _architecture_rows(subject_arch: Architecture | None, ref_arch: Architecture | None) -> list[dict[str, Any]]:
    if subject_arch is None or ref_arch is None:
        return []
    rows = []
    for key in Architecture.model_fields:
        cand, ref = getattr(subject_arch, key), getattr(ref_arch, key)
        rows.append({"key": key, "cand": _text(cand), "ref": _text(ref), "same": cand == ref})
    return rows


def _operation_view(op: DetectedOperation) -> dict[str, str]:
    return {"name": op.name.value, "detail": op.detail, "meaning": op.name.meaning}


def _comparison_view(record: Record, comp: Comparison, index: int, is_parent: bool) -> dict[str, Any]:
    ref = record.reference(comp.reference)
    v = comp.verdict
    rows = layer_rows(comp.layer_map)
    band = null_band(comp.layer_null)
    n_ref = reference_layers(record, comp.reference)
    layer = None
    if rows:
        layer = {
            "summary": condense_layer_map(comp.layer_map, comp.layer_null, n_ref),
            "band": f"{band:.3g}" if band is not None else None,
            "null": format_null(comp.layer_null),
            "svg": layer_map_svg(rows, band, n_ref),
            "similarity_svg": layer_similarity_svg(rows, null_mean_sd(comp.layer_null)),
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
    return {
        "id": f"cmp-{index}",
        "reference": comp.reference,
        "is_parent": is_parent,
        "label": v.label.value,
        "label_class": v.label.value,
        "confidence": format_confidence(v.confidence),
        "summary": v.summary,
        "stats": [_stat_row(s) for s in comp.statistics],
        "layer": layer,
        "tokenizer": tokenizer_text(comp.tokenizer) if comp.tokenizer is not None else None,
        "architecture_match": format_value(comp.architecture_match),
        "architecture": _architecture_rows(record.subject.architecture, ref.architecture if ref else None),
        "alignment": _kv(comp.alignment),
        "operations": [_operation_view(op) for op in comp.operations],
        "update": comp.update.detail if comp.update is not None else None,
        "seconds": format_value(comp.seconds) if comp.seconds is not None else None,
    }


def _messages_text(messages: list[Message]) -> str:
    return "\n".join((f"[{m.role}] " if m.role != "user" else "") + m.content for m in messages)


def _probe_view(suite: SuiteResult) -> dict[str, Any]:
    """A probe suite: its counts, the claims table, and every sampled answer joined to its prompt by id."""
    by_id = {p.id: p for p in suite.prompts}
    exchanges = []
    for r in suite.responses:
        p = by_id.get(r.probe)
        meta = f"{r.probe} · {p.language if p else DASH} · sample {r.sample} · seed {r.seed}"
        per: dict[str, set[str]] = {}
        for c in r.claims or []:
            per.setdefault(c.vendor, set()).update([c.model] if c.model else [])
        claims = ", ".join(f"{v} ({', '.join(sorted(m))})" if m else v for v, m in sorted(per.items()))
        if claims:
            meta += f" · claims: {claims}"
        if r.boilerplate:
            meta += f" · boilerplate: {', '.join(r.boilerplate)}"
        if r.cutoff:
            meta += f" · cutoff: {', '.join(r.cutoff)}"
        response = r.text if r.error is None else f"[error] {r.error}"
        exchanges.append({"prompt": _messages_text(p.messages) if p else DASH, "response": response, "meta": meta})
    summary = f"{suite.answered} answers scored, {suite.failed} errors"
    if suite.vendors:
        summary += "; claims per vendor: " + ", ".join(f"{v.vendor} {v.count}/{v.of}" for v in suite.vendors)
    return {
        "name": suite.suite,
        "claims": [
            {"vendor": c.vendor, "model": _text(c.model), "language": c.language, "count": str(c.count),
             "of": str(c.of)}
            for c in suite.claims
        ],
        "detectors": list(suite.detectors),
        "exchanges": exchanges,
        "errors": len(suite.errors),
        "summary": summary,
    }


def _probe_settings(record: Record) -> list[tuple[str, str]]:
    """How the probe answers were produced, enough to repeat the run: backend, sampling, seeds, suite files."""
    run = record.probe_run
    if run is None:
        return []
    rows: list[tuple[str, str]] = []
    if isinstance(run, ProbeRun):
        backend, settings = run.backend, run.settings
        extra = backend.model_extra or {}
        backend_values = {"kind": backend.kind, "model": backend.model, "endpoint": backend.endpoint,
                          "device": backend.device, "dtype": backend.dtype,
                          "chat_template": extra.get("chat_template")}
        rows += [(k, _text(val)) for k, val in backend_values.items() if val is not None]
        setting_values = {"samples": settings.samples, "seeds": settings.seeds,
                          "temperature": settings.temperature, "max_new_tokens": settings.max_new_tokens,
                          "batch_size": settings.batch_size, "declared": settings.declared}
        rows += [(k, _text(val)) for k, val in setting_values.items() if val != []]
    rows += [(f"suite {p.suite}", f"{p.source} v{p.version}, sha256 {p.sha256}")
             for p in record.probes if p.sha256]
    if isinstance(run, ProbeFailure) and run.error:
        rows.append(("error", run.error))
    if isinstance(run, ProbeRun) and run.seconds is not None:
        rows.append(("time", f"{format_value(run.seconds)} s"))
    return rows


def _flag_view(flag: Flag) -> dict[str, Any]:
    """A flag for display; example exchanges (distillation-leak) are shown as prompt/response pairs."""
    examples = []
    if isinstance(flag, DistillationLeakFlag):
        for e in flag.evidence.examples:
            meta = f"{e.suite} / {e.probe} · sample {e.sample} · seed {e.seed}"
            examples.append({"prompt": e.prompt, "response": e.response, "meta": meta})
        evidence = flag.evidence.model_dump(mode="json", exclude_none=True, exclude={"examples"})
    else:
        evidence = flag.evidence.model_dump(mode="json", exclude_none=True)
    return {
        "kind": flag.kind.value,
        "detail": flag.detail,
        "meaning": flag.kind.meaning,
        "evidence": _text(evidence) if evidence else "",
        "examples": examples,
    }


def _files(owner: str, model: ModelInfo) -> list[dict[str, str]]:
    return [
        {
            "owner": owner,
            "path": f.path,
            "size": format_bytes(f.bytes),
            "bytes": str(f.bytes),
            "sha256": _text(f.sha256),
        }
        for f in model.files
    ]


def _tokenizer_chart(record: Record, top: int = 6) -> Markup | None:
    """Vocabulary overlap with the nearest registry families (and the compared references), over the family null."""
    rows = record.registry.tokenizer if record.registry is not None else []
    null = next((t.null for t in rows if t.null is not None), None)
    if null is None or (ms := null_mean_sd(null)) is None:
        return None  # an overlap is only shown beside its null
    mean, sd = ms
    bars = [Bar(f"{t.family or DASH} ({t.name})", score,
                f"{score:.3f}, p {format_p(t.p_value)}", BLUE if score > mean + 3 * sd else GREY)
            for t in rows[:top] if (score := finite_number(t.score)) is not None]
    for c in record.comparisons:
        if c.tokenizer is not None and (j := finite_number(c.tokenizer.jaccard)) is not None:
            bars.append(Bar(f"reference {c.reference}", j, f"{j:.3f} (exact Jaccard)", GREEN))
    if not bars:
        return None
    return bar_chart_svg(bars, label="tokenizer overlap with the nearest families", x_max=1.0,
                         band=(max(0.0, mean - 3 * sd), min(1.0, mean + 3 * sd)),
                         band_label=f"null mean ± 3 sd, different families (n={null.get('n', '?')})")


def _claims_chart(record: Record, top: int = 12) -> Markup | None:
    """Share of answers naming each vendor as the model's maker, against the false-claim rate and the flag rule."""
    run = record.probe_run
    if not isinstance(run, ProbeRun):
        return None
    bars = []
    for t in run.vendor_tests[:top]:
        share = finite_number(t.share)
        if share is None:
            continue
        state = "flagged" if t.flagged else "declared" if t.declared else "not flagged"
        note = f"{t.count}/{t.of}, p {format_p(t.p_value, t.log10_p)}, {state}"
        bars.append(Bar(t.name or t.vendor, share, note, RED if t.flagged else GREEN if t.declared else GREY))
    if not bars:
        return None
    x_max = min(1.0, max(0.1, math.ceil(max(b.value for b in bars) * 10) / 10))
    marks = []
    if (p0 := finite_number(run.flag_rule.false_claim_rate)) is not None:
        marks.append(Mark(p0, f"grey dotted: null false-claim rate {p0:.0%}", GREY, "2 2"))
    if (share := finite_number(run.flag_rule.min_share)) is not None:
        marks.append(Mark(share, f"red dashed: share needed to flag {share:.0%}"))
    return bar_chart_svg(bars, label="share of answers claiming each vendor", x_max=x_max, marks=tuple(marks))


def trace_view(record: Record) -> Any:
    """The trace section's view (None without one)."""
    from audit.reporting.trace_view import trace_view as view

    return view(record)


def _declared_view(record: Record) -> dict[str, Any] | None:
    """Claims vs evidence (the report opens with it)."""
    from audit.reporting.claims_view import claim_rows, licence_rows

    section = record.claims
    if section is None:
        return None
    return {"summary": section.summary, "rows": claim_rows(section), "licences": licence_rows(section),
            "sources": section.sources_read, "notes": section.notes}


def build_view(record: Record) -> dict[str, Any]:
    """Everything the template shows, as display strings (escaping is left to the template)."""
    verdict, subject, command = record.verdict, record.subject, record.command
    best = best_comparison(record)
    ordered = ([best] if best is not None else []) + [c for c in record.comparisons if c is not best]
    parent = verdict.parent
    meaning, caveats = _explanation(record)
    files = _files(f"subject: {subject.name}", subject)
    for ref in record.references:
        files += _files(f"reference: {ref.name}", ref)
    return {
        "declared": _declared_view(record),
        "trace": trace_view(record),
        "registry": registry_rows(record.registry) if record.registry is not None else None,
        "registry_unchecked": unchecked_line(record.registry) if record.registry is not None else None,
        "adapter": record.adapter.summary if record.adapter is not None else None,
        "tokenizer_chart": _tokenizer_chart(record),
        "claims_chart": _claims_chart(record),
        "title": f"provaudit: {subject.name}",
        "label": verdict.label.value,
        "label_class": verdict.label.value,
        "parent": parent if parent is not None else "none",
        "confidence": format_confidence(verdict.confidence),
        "confidence_basis": verdict.confidence_basis or "",
        "summary": verdict.summary,
        "operations": [{"name": o.value, "meaning": o.meaning} for o in verdict.operations],
        "packaging": [{"name": o.value, "meaning": o.meaning} for o in verdict.packaging],
        "meaning": meaning,
        "caveats": caveats,
        "n_refs": references_checked(record),
        "flags": [_flag_view(f) for f in record.flags],
        "subject": {
            "name": subject.name,
            "path": subject.path,
            "format": subject.format,
            "architecture": _kv(subject.architecture),
            "tokenizer": _kv(subject.tokenizer),
        },
        "comparisons": [
            _comparison_view(record, c, i, parent is not None and c.reference == parent)
            for i, c in enumerate(ordered)
        ],
        "probes": [_probe_view(s) for s in record.probes],
        "probe_settings": _probe_settings(record),
        "provenance": {
            "schema": record.schema_,
            "tool": f"{record.tool.name} {record.tool.version}",
            "created": record.created,
            "command": command.name.value,
            "argv": shlex.join(command.argv),
            "seed": str(command.seed),
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


def render_html(record: Record) -> str:
    """Render `record` as one self-contained HTML page (inline CSS and SVG, no scripts, no external assets)."""
    return _environment().get_template(TEMPLATE).render(v=build_view(record))
