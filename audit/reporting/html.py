"""Self-contained HTML report rendered from a record (jinja2 template in the bundled `reports/` folder)."""

from __future__ import annotations

import json
import math
import shlex
from functools import lru_cache
from typing import Any

import jinja2
from markupsafe import Markup

from audit.paths import data_dir
from audit.record.models import Record
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
    elif label == "inconclusive" and n == 0 and record.get("probe_run") is not None:
        meaning.append(
            "No weights were compared: this record holds black-box probe answers only, so there is no lineage "
            "verdict. What the answers show is reported as flags (distillation-leak, wrapper-suspected) and in "
            "the probe section below. Auditing the weights against references settles where the model came from."
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
        "can still be labelled original." if n else "No weights were compared, so nothing here shows or rules "
        "out that the weights come from another model.",
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
            "svg": layer_map_svg(rows, band, n_ref),
            "similarity_svg": layer_similarity_svg(rows, null_mean_sd(comp.get("layer_null"))),
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


def _probe_settings(record: dict) -> list[tuple[str, str]]:
    """How the probe answers were produced, enough to repeat the run: backend, sampling, seeds, suite files."""
    run = record.get("probe_run")
    if not isinstance(run, dict):
        return []
    backend = run.get("backend") if isinstance(run.get("backend"), dict) else {}
    settings = run.get("settings") if isinstance(run.get("settings"), dict) else {}
    rows = [(k, _text(backend[k])) for k in ("kind", "model", "endpoint", "device", "dtype", "chat_template")
            if backend.get(k) is not None]
    rows += [(k, _text(settings[k])) for k in ("samples", "seeds", "temperature", "max_new_tokens", "batch_size",
                                               "declared") if settings.get(k) not in (None, [])]
    rows += [(f"suite {_text(p.get('suite'))}", f"{_text(p.get('source'))} v{_text(p.get('version'))}, "
              f"sha256 {_text(p.get('sha256'))}") for p in record.get("probes") or [] if isinstance(p, dict)
             and p.get("sha256")]
    if run.get("error"):
        rows.append(("error", _text(run["error"])))
    if run.get("seconds") is not None:
        rows.append(("time", f"{format_value(run['seconds'])} s"))
    return rows


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


def _tokenizer_chart(record: dict, top: int = 6) -> Markup | None:
    """Vocabulary overlap with the nearest registry families (and the compared references), over the family null."""
    reg = record.get("registry")
    rows = [t for t in (reg.get("tokenizer") or [] if isinstance(reg, dict) else []) if isinstance(t, dict)]
    null = next((t["null"] for t in rows if isinstance(t.get("null"), dict)), None)
    if (ms := null_mean_sd(null)) is None:
        return None  # an overlap is only shown beside its null
    mean, sd = ms
    bars = [Bar(f"{t.get('family')} ({t.get('name')})", score,
                f"{score:.3f}, p {format_p(t.get('p_value'))}", BLUE if score > mean + 3 * sd else GREY)
            for t in rows[:top] if (score := finite_number(t.get("score"))) is not None]
    for c in record.get("comparisons") or []:
        tok = c.get("tokenizer") if isinstance(c, dict) else None
        if isinstance(tok, dict) and (j := finite_number(tok.get("jaccard"))) is not None:
            bars.append(Bar(f"reference {c.get('reference')}", j, f"{j:.3f} (exact Jaccard)", GREEN))
    if not bars:
        return None
    return bar_chart_svg(bars, label="tokenizer overlap with the nearest families", x_max=1.0,
                         band=(max(0.0, mean - 3 * sd), min(1.0, mean + 3 * sd)),
                         band_label=f"null mean ± 3 sd, different families (n={null.get('n', '?')})")


def _claims_chart(record: dict, top: int = 12) -> Markup | None:
    """Share of answers naming each vendor as the model's maker, against the false-claim rate and the flag rule."""
    run = record.get("probe_run")
    tests = [t for t in (run.get("vendor_tests") or [] if isinstance(run, dict) else []) if isinstance(t, dict)]
    rule = run.get("flag_rule") if isinstance(run, dict) and isinstance(run.get("flag_rule"), dict) else {}
    bars = []
    for t in tests[:top]:
        share = finite_number(t.get("share"))
        if share is None:
            continue
        state = "flagged" if t.get("flagged") else "declared" if t.get("declared") else "not flagged"
        bars.append(Bar(str(t.get("name") or t.get("vendor")), share,
                        f"{t.get('count')}/{t.get('of')}, p {format_p(t.get('p_value'), t.get('log10_p'))}, {state}",
                        RED if t.get("flagged") else GREEN if t.get("declared") else GREY))
    if not bars:
        return None
    x_max = min(1.0, max(0.1, math.ceil(max(b.value for b in bars) * 10) / 10))
    marks = []
    if (p0 := finite_number(rule.get("false_claim_rate"))) is not None:
        marks.append(Mark(p0, f"grey dotted: null false-claim rate {p0:.0%}", GREY, "2 2"))
    if (share := finite_number(rule.get("min_share"))) is not None:
        marks.append(Mark(share, f"red dashed: share needed to flag {share:.0%}"))
    return bar_chart_svg(bars, label="share of answers claiming each vendor", x_max=x_max, marks=tuple(marks))


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
        "tokenizer_chart": _tokenizer_chart(record),
        "claims_chart": _claims_chart(record),
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
        "probe_settings": _probe_settings(record),
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


def render_html(record: Record | dict) -> str:
    """Render `record` as one self-contained HTML page (inline CSS and SVG, no scripts, no external assets)."""
    if isinstance(record, Record):
        record = record.to_json_dict()
    return _environment().get_template(TEMPLATE).render(v=build_view(record))
