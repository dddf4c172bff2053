"""The trace section's terminal lines and HTML partial (a hand-built record; no model)."""

from __future__ import annotations

import jinja2

from audit.paths import data_dir
from audit.record.models import (
    Command,
    HiddenPromptEvidence,
    HiddenPromptSuspectedFlag,
    ModelInfo,
    Record,
    Tool,
    TraceBilling,
    TraceBudget,
    TraceHiddenPrompt,
    TraceNull,
    TraceObserved,
    TraceReference,
    TraceSection,
    TraceSettings,
    TraceStatistic,
    Verdict,
)
from audit.record.names import CommandName, Label, TraceStatisticName, TraceVerdict
from audit.reporting.trace_view import trace_console_lines, trace_view


def _record() -> Record:
    stat = TraceStatistic(name=TraceStatisticName.SAMPLE_PIT, test="same-model", value=-0.41,
                          null=TraceNull(method="analytic", kind="normal", n=1999, assumption="same settings"),
                          p_value=0.002, p_holm=0.004, rejected=True, detail="<b>18 vs 18</b>")
    ref = TraceReference(name="smol", path="/m", verdict=TraceVerdict.DERIVED, statistics=[stat],
                         controls=["gemma"], requests_needed=12, summary="Derived from smol.")
    billing = TraceBilling(reference="smol", points=6, user_tokens=[3, 14], billed=[90, 101], slope=1.0,
                           offset=87.0, template_overhead=30, template_overhead_system=14, excess_tokens=57.0,
                           hidden_tokens=73.0, hidden_tokens_se=0.0, tokenizer_matches=True, detail="fit")
    section = TraceSection(
        prompts=["Describe a lighthouse."],
        settings=TraceSettings(prompts=1, samples=3, temperature=0.7, max_tokens=24, seed=0, logprobs_requested=True,
                               alpha=0.05, logprob_tolerance=0.02),
        observed=TraceObserved(logprobs_returned=True, answered=3),
        budget=TraceBudget(planned_requests=14, planned_tokens=900, max_requests=50, requests_sent=14,
                           requests_cached=0),
        references=[ref], controls=["gemma"],
        hidden_prompt=TraceHiddenPrompt(suspected=True, billing=billing, summary="About 73 hidden tokens."),
        summary="Trace: smol: derived.")
    flag = HiddenPromptSuspectedFlag(detail="hidden prompt", evidence=HiddenPromptEvidence(reference="smol",
                                                                                          hidden_tokens=73.0))
    return Record(tool=Tool(version="0"), created="2026-01-01T00:00:00+00:00", command=Command(name=CommandName.TRACE),
                  subject=ModelInfo(name="acme", path="http://127.0.0.1/v1", format="openai-endpoint"),
                  verdict=Verdict(label=Label.INCONCLUSIVE, references_checked=0, summary="trace only"),
                  flags=[flag], trace=section)


def test_record_round_trips_through_json() -> None:
    rec = _record()
    again = Record.model_validate(rec.to_json_dict())
    assert again.trace == rec.trace and again.flags[0].kind.value == "hidden-prompt-suspected"


def test_console_lines_name_verdict_p_values_and_budget() -> None:
    lines = "\n".join(trace_console_lines(_record()))
    assert "smol: derived" in lines and "p 0.002, Holm 0.004" in lines and "14 requests sent of at most 50" in lines
    assert "hidden prompt: suspected" in lines
    assert trace_console_lines(_record().model_copy(update={"trace": None})) == []


def test_html_partial_renders_escaped() -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(data_dir("reports"))), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    html = env.get_template("trace.html.j2").render(trace=trace_view(_record()))
    assert "smol" in html and "derived" in html and "73.0 ± 0.0" in html
    assert "<b>18 vs 18</b>" not in html and "&lt;b&gt;" in html
    assert env.get_template("trace.html.j2").render(trace=None).strip() == ""
