"""Views of a record's `trace` section (provaudit trace): terminal lines and the HTML partial's data.

The console calls `trace_console_lines(record)`; the HTML report calls `trace_view(record)` and includes
`reports/trace.html.j2` with the result bound to `trace` (nothing is shown when it is None).
"""

from __future__ import annotations

from typing import Any

from audit.record.models import Record, TraceReference, TraceSection, TraceStatistic


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def statistic_text(s: TraceStatistic) -> str:
    """'sample-pit 0.041 (p 0.003, Holm 0.006; analytic, n=2200)' and the like."""
    null = s.null
    n = f", n={null.n}" if null.n is not None else ""
    if s.p_value is None:
        decision = "beyond tolerance" if s.rejected else "within tolerance"
        return f"{s.name.value} {s.value:.4g} ({decision}; {null.method}{n})"
    holm = f", Holm {_p(s.p_holm)}" if s.p_holm is not None else ""
    return f"{s.name.value} {s.value:.4g} (p {_p(s.p_value)}{holm}; {null.method}{n})"


def budget_text(t: TraceSection) -> str:
    b = t.budget
    cap = f" of at most {b.max_requests}" if b.max_requests is not None else ""
    refs = (f"; {b.reference_requests_sent} sent to endpoint references ({b.reference_requests_cached} from cache)"
            if b.reference_requests_sent or b.reference_requests_cached else "")
    return (f"{b.requests_sent} requests sent{cap} (planned {b.planned_requests}), {b.requests_cached} from cache, "
            f"{b.retries} retries, {b.failed} failed; tokens billed {b.prompt_tokens_billed} prompt + "
            f"{b.completion_tokens_billed} completion" + ("; stopped at the request budget" if b.stopped_at_budget
                                                          else "") + refs)


def power_text(t: TraceSection) -> str:
    """How the sample count was chosen and what the subject's answers show about the applied temperature."""
    s, o = t.settings, t.observed
    parts = []
    if s.power is not None and s.effect is not None:
        parts.append(f"samples {s.samples_chosen} for power {s.power:g} against a PIT shift of {s.effect:g} "
                     f"(margin {s.pit_margin:g}; ~{s.tokens_needed} answer tokens needed)")
    if s.greedy_tolerance is not None:
        parts.append(f"greedy tolerance {s.greedy_tolerance:g} of tokens off the reference's argmax")
    if o.temperature_fit is not None:
        parts.append(f"the answers fit temperature {o.temperature_fit:g} best")
    return "; ".join(parts)


def trace_console_lines(record: Record) -> list[str]:
    """Plain lines for the terminal summary (empty when the record has no trace)."""
    t = record.trace
    if t is None:
        return []
    s = t.settings
    lines = [f"Trace ({t.method}): {s.prompts} prompts x {s.samples} sample(s) at temperature {s.temperature:g}"
             + (f", top_p {s.top_p:g}" if s.top_p is not None else "") + f", max {s.max_tokens} tokens; "
             f"logprobs {'returned' if t.observed.logprobs_returned else 'not returned'}; alpha {s.alpha:g} (Holm)"]
    if power_text(t):
        lines.append(f"  {power_text(t)}")
    for r in t.references:
        need = f", verdict stable after {r.requests_needed} requests" if r.requests_needed is not None else ""
        lines.append(f"  {r.name}: {r.verdict.value}{need}")
        lines += [f"    {statistic_text(x)}" for x in r.statistics]
        lines.append(f"    {r.summary}")
    h = t.hidden_prompt
    lines.append(f"  hidden prompt: {'suspected' if h.suspected else 'not suspected'}: {h.summary}")
    lines.append(f"  budget: {budget_text(t)}")
    return lines


def _reference_view(r: TraceReference) -> dict[str, Any]:
    return {
        "name": r.name, "path": r.path, "verdict": r.verdict.value, "meaning": r.verdict.meaning,
        "summary": r.summary, "requests_needed": "-" if r.requests_needed is None else str(r.requests_needed),
        "controls": ", ".join(r.controls) or "none",
        "statistics": [{
            "name": x.name.value, "meaning": x.name.meaning, "test": x.test, "value": f"{x.value:.4g}",
            "p": _p(x.p_value), "p_holm": _p(x.p_holm),
            "decision": "-" if x.rejected is None else ("rejected" if x.rejected else "not rejected"),
            "null": f"{x.null.method}: {x.null.kind}" + (f" (n={x.null.n})" if x.null.n is not None else ""),
            "assumption": x.null.assumption, "detail": x.detail} for x in r.statistics],
    }


def trace_view(record: Record) -> dict[str, Any] | None:
    """Display strings for reports/trace.html.j2 (escaping is left to the template); None without a trace."""
    t = record.trace
    if t is None:
        return None
    b = t.hidden_prompt.billing
    return {
        "method": t.method,
        "summary": t.summary,
        "settings": (f"{t.settings.prompts} prompts x {t.settings.samples} sample(s), temperature "
                     f"{t.settings.temperature:g}" + (f", top_p {t.settings.top_p:g}" if t.settings.top_p else "")
                     + f", max {t.settings.max_tokens} tokens, seed {t.settings.seed}, alpha {t.settings.alpha:g}"),
        "observed": (f"{t.observed.answered} answers; logprobs "
                     f"{'returned' if t.observed.logprobs_returned else 'not returned'}; mean completion "
                     f"{t.observed.mean_completion_tokens if t.observed.mean_completion_tokens is not None else '-'}"
                     " tokens" + (f"; {power_text(t)}" if power_text(t) else "")),
        "budget": budget_text(t),
        "references": [_reference_view(r) for r in t.references],
        "controls": ", ".join(t.controls) or "none",
        "hidden": {
            "suspected": t.hidden_prompt.suspected, "summary": t.hidden_prompt.summary,
            "billing": (None if b is None else {
                "detail": b.detail, "slope": f"{b.slope} ± {b.slope_se}", "offset": f"{b.offset} ± {b.offset_se}",
                "overhead": f"{b.template_overhead} / {b.template_overhead_system}",
                "hidden": "-" if b.hidden_tokens is None else f"{b.hidden_tokens:.1f} ± {b.hidden_tokens_se or 0:.1f}",
                "points": [{"user": u, "billed": v} for u, v in zip(b.user_tokens, b.billed, strict=False)]}),
            "extraction": [{"prompt": e.prompt, "excerpt": e.excerpt, "tokens": "-" if e.tokens is None
                            else str(e.tokens), "fits": "yes" if e.fits_billing else "no"}
                           for e in t.hidden_prompt.extraction],
            "candidate": t.hidden_prompt.candidate or "",
        },
        "prompts": t.prompts,
    }
