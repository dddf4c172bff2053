"""`provaudit trace`: which reference model produced a subject's outputs (method ``provaudit.trace/1``).

The subject (an OpenAI-compatible endpoint, or a local model) answers N neutral prompts, S times each at the
requested temperature (once at temperature 0), plus the billing texts (max_tokens=1) and the
prompt-extraction probes (temperature 0). Every reference and control is a local checkpoint.

Per reference R (alpha after Holm over the references):

* same-model. H0: the subject is R at the requested settings.
  - logprob-gap, when the endpoint returns per-token logprobs: median |log p_subject - log p_R| over the
    subject's tokens, R teacher-forced on the same text. Same weights give numerical noise only; H0 is
    rejected beyond `logprob_tolerance` (a tolerance decision, no p-value). A tokenization that is not R's
    (fewer than half the tokens align) rejects H0 too.
  - sample-likelihood, always: per completion the mean per-token log-likelihood under R; R's own completions
    are sampled at the same requested settings with other seeds; two-sided permutation test within prompts
    (exchangeable under H0, whatever temperature and top-p both apply). Decides when no logprobs came back.
  - greedy-match at temperature 0: the share of prompts whose answer equals R's greedy answer (evidence).
* derived-from. H0: R explains the subject's completions no better than control C does (bits per byte, a
  tokenizer-free unit). Exact one-sided sign test over prompts per control; the largest p over controls
  (every control must be beaten). Controls: the other references and the --control models.
  Assumption: each control is as good a language model as R on text of unrelated origin.
* hidden prompt. Billed prompt tokens of texts of growing length regressed (OLS) on their token count under
  R's tokenizer: a slope of ~1 says the endpoint bills with R's tokenizer, and then offset minus R's own
  template overhead (its default system prompt included) is the excess; a hidden prompt is suspected when the
  excess is >= 3 tokens and 3 standard errors. Its length is offset minus the overhead of R's template with an
  explicit system message. An extraction answer whose length fits that estimate (within 30%) is retested as
  R's system prompt.

Verdict per reference: not rejected + closer than controls -> same-model; rejected + closer -> derived (or
same-model when the retest with the extracted prompt does not reject, or inconclusive when a hidden prompt is
suspected and no extraction fits: a hidden prompt and a fine-tune both explain it); rejected + not closer ->
unrelated; not rejected + not closer -> inconclusive (too little power), unless logprobs matched within
tolerance (then same-model).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from audit.errors import InputError
from audit.probing.backends.base import Generation, Messages
from audit.probing.trace_stats import billing_fit, holm, sign_test, stratified_permutation
from audit.record.models import (
    HiddenPromptEvidence,
    HiddenPromptSuspectedFlag,
    TraceBilling,
    TraceBudget,
    TraceExtraction,
    TraceHiddenPrompt,
    TraceNull,
    TraceObserved,
    TraceReference,
    TraceSection,
    TraceSettings,
    TraceStatistic,
)
from audit.record.names import TraceStatisticName, TraceVerdict

if TYPE_CHECKING:
    from audit.checkpoint.progress import Progress
    from audit.probing.trace_local import GenerationCache, LocalModel, Scored

METHOD = "provaudit.trace/1"
OWN_SEED_OFFSET = 7919  # the reference's own samples use other seeds than the subject's
EXPLICIT_SYSTEM = "You are a helpful assistant."
TOP_LOGPROBS = 5
EXTRACT_TOKENS = 96
MIN_EXCESS = 3.0


# ---------------------------------------------------------------------------------------------- data files


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TracePrompts(_File):
    kind: Literal["trace-prompts"]
    version: int = 1
    neutral: list[str] = Field(min_length=1, max_length=1000)
    billing: list[str] = Field(min_length=3, max_length=100)


class ExtractionPrompt(_File):
    id: str
    language: str
    prompt: str


class ExtractionFile(_File):
    kind: Literal["prompt-extraction"]
    version: int = 1
    prompts: list[ExtractionPrompt] = Field(min_length=1, max_length=100)


def _read(path: Path, model: type[_File]) -> Any:
    import yaml
    from pydantic import ValidationError

    try:
        return model.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: unreadable ({type(exc).__name__})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"{path}: schema error at {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def load_prompts(path: Path | None = None) -> TracePrompts:
    """probes/trace-prompts.yaml (or the user's file of kind trace-prompts)."""
    from audit.paths import data_dir

    result: TracePrompts = _read(Path(path) if path else data_dir("probes") / "trace-prompts.yaml", TracePrompts)
    return result


def load_extraction(path: Path | None = None) -> ExtractionFile:
    """probes/prompt-extraction.yaml."""
    from audit.paths import data_dir

    result: ExtractionFile = _read(Path(path) if path else data_dir("probes") / "prompt-extraction.yaml",
                                   ExtractionFile)
    return result


# ---------------------------------------------------------------------------------------------- options, plan


@dataclass(frozen=True)
class TraceOptions:
    """How to trace: prompt count, samples, settings requested from the subject, test levels."""

    prompts: int = 12
    samples: int = 4
    temperature: float = 0.7
    top_p: float | None = None
    max_tokens: int = 48
    seed: int = 0
    logprobs: bool = True
    alpha: float = 0.05
    logprob_tolerance: float = 0.02
    draws: int = 1999
    billing: bool = True
    extraction: bool = True
    prompts_file: str | None = None

    @property
    def per_prompt(self) -> int:
        """Completions per prompt: one at temperature 0 (greedy answers repeat)."""
        return 1 if self.temperature == 0 else self.samples


@dataclass(frozen=True)
class Plan:
    requests: int
    tokens: int
    per_prompt: int
    neutral: list[str]
    billing: list[str]
    extraction: list[str]

    def line(self, max_requests: int | None) -> str:
        """The budget, in one line, before anything is sent."""
        cap = f"; stops at --max-requests {max_requests}" if max_requests is not None else ""
        return (f"trace plan: {self.requests} requests to the subject ({len(self.neutral)} prompts x "
                f"{self.per_prompt} sample(s), {len(self.billing)} billing, {len(self.extraction)} extraction), "
                f"at most ~{self.tokens} tokens{cap}; answers already cached cost nothing")


def plan(options: TraceOptions) -> Plan:
    """What the trace will send (before anything is loaded or asked)."""
    data = load_prompts(Path(options.prompts_file) if options.prompts_file else None)
    neutral = data.neutral[:options.prompts]
    billing = data.billing if options.billing else []
    extraction = [p.prompt for p in load_extraction().prompts] if options.extraction else []
    s = options.per_prompt

    def estimate(text: str) -> int:  # ~3 characters per token plus a chat template
        return len(text) // 3 + 40

    tokens = (sum(estimate(t) + options.max_tokens for t in neutral) * s + sum(estimate(t) + 1 for t in billing)
              + sum(estimate(t) + EXTRACT_TOKENS for t in extraction))
    return Plan(len(neutral) * s + len(billing) + len(extraction), tokens, s, neutral, billing, extraction)


# ---------------------------------------------------------------------------------------------- the subject


class Subject(Protocol):
    """What is traced: answers with optional per-token logprobs, and what it cost."""

    def generate(self, batch: Sequence[Messages], max_new_tokens: int, temperature: float, seed: int, n: int, *,
                 logprobs: int | None = None, top_p: float | None = None) -> list[list[Generation]]: ...

    def describe(self) -> dict[str, Any]: ...


class LocalSubject:
    """A local checkpoint traced like an endpoint (its own logprobs, its own token counts; no cost)."""

    def __init__(self, model: LocalModel) -> None:
        self.m = model

    def generate(self, batch: Sequence[Messages], max_new_tokens: int, temperature: float, seed: int, n: int, *,
                 logprobs: int | None = None, top_p: float | None = None) -> list[list[Generation]]:
        from audit.probing.backends.openai_http import EndpointGeneration

        out: list[list[Generation]] = []
        for messages in batch:
            row: list[Generation] = []
            for j in range(n):
                text, ids = self.m.generate(list(messages), max_new_tokens, temperature, seed + j, top_p)
                gen = EndpointGeneration(text, self.m.prompt_count(list(messages)), len(ids))
                if logprobs is not None and text:
                    scored = self.m.score(list(messages), text)
                    gen.tokens, gen.logprobs = scored.pieces, scored.logprobs
                if not text.strip():
                    gen.error = "empty response"
                row.append(gen)
            out.append(row)
        return out

    def describe(self) -> dict[str, Any]:
        return {"kind": "transformers", "model": self.m.path, "requests": 0, "cached": 0, "retries": 0}


# ---------------------------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Model:
    """A reference or control: a name and a local checkpoint."""

    name: str
    path: str


@dataclass
class _Answers:
    texts: list[list[str]]  # per prompt, the usable completions
    gens: list[list[Generation]]


@dataclass
class _RefData:
    model: Model
    lm: LocalModel
    own: list[list[str]]
    subj_scores: list[list[Scored]]
    own_scores: list[list[Scored]]
    bpb_controls: dict[str, list[list[float]]] = field(default_factory=dict)
    retest: tuple[list[list[Scored]], list[list[Scored]]] | None = None


@dataclass(frozen=True)
class TraceOutcome:
    section: TraceSection
    flags: list[HiddenPromptSuspectedFlag]


def run_trace(subject: Subject, references: list[Model], controls: list[Model], options: TraceOptions,
              cache: GenerationCache, progress: Progress | None = None, device: str = "auto",
              max_requests: int | None = None) -> TraceOutcome:
    """Ask the subject, run the references and controls locally, test, decide; see the module docstring."""
    from audit.probing.trace_local import load_local

    if not references:
        raise InputError("trace needs at least one reference (-r NAME=PATH)")
    the_plan = plan(options)
    s = options.per_prompt
    neutral = [[{"role": "user", "content": p}] for p in the_plan.neutral]
    _start(progress, "trace: asking the subject", len(neutral) + 2)
    gens: list[list[Generation]] = []
    for msgs in neutral:  # one prompt at a time: progress, and a budget stop leaves whole prompts answered
        gens += subject.generate([msgs], options.max_tokens, options.temperature, options.seed, s,
                                 logprobs=TOP_LOGPROBS if options.logprobs else None, top_p=options.top_p)
        _tick(progress)
    billing_gens = subject.generate([[{"role": "user", "content": t}] for t in the_plan.billing], 1, 0.0,
                                    options.seed, 1) if the_plan.billing else []
    _tick(progress)
    extract_gens = subject.generate([[{"role": "user", "content": t}] for t in the_plan.extraction],
                                    EXTRACT_TOKENS, 0.0, options.seed, 1) if the_plan.extraction else []
    _tick(progress)
    answers = _Answers([[g.text for g in row if g.ok] for row in gens], gens)

    loaded: dict[str, LocalModel] = {}
    for m in [*references, *controls]:
        if m.path not in loaded:
            _start(progress, f"trace: loading {m.name}", 1)
            loaded[m.path] = load_local(m.path, device)
            _tick(progress)
    memo: dict[tuple[str, str, str], Scored] = {}

    def score_all(lm: LocalModel, convs: list[Messages], texts: list[list[str]]) -> list[list[Scored]]:
        """Scores of texts[i][j] after convs[i] under lm, batched, each pair scored once per run."""
        todo = [(c, t) for c, row in zip(convs, texts, strict=True) for t in row
                if (lm.identity, repr(c), t) not in memo]
        unique = list({(repr(c), t): (c, t) for c, t in todo}.values())
        for (c, t), sc in zip(unique, lm.score_many(unique), strict=True):
            memo[(lm.identity, repr(c), t)] = sc
        return [[memo[(lm.identity, repr(c), t)] for t in row] for c, row in zip(convs, texts, strict=True)]

    data: list[_RefData] = []
    for ref in references:
        lm = loaded[ref.path]
        _start(progress, f"trace: sampling and scoring {ref.name}", len(neutral))
        own = []
        for msgs in neutral:
            own.append(_sample(lm, cache, msgs, options))
            _tick(progress)
        data.append(_RefData(ref, lm, own, score_all(lm, neutral, answers.texts), score_all(lm, neutral, own)))
    others = {m.name: m for m in [*references, *controls]}
    for d in data:
        for name, other in others.items():
            if name == d.model.name or other.path == d.model.path:
                continue
            scored = score_all(loaded[other.path], neutral, answers.texts)
            d.bpb_controls[name] = [[x.bits_per_byte for x in row] for row in scored]

    # hidden prompt: billing against each reference's tokenizer (the best fitting one is reported)
    billing = _billing(data, the_plan.billing, billing_gens)
    suspected = bool(billing is not None and billing.hidden_tokens is not None)
    extraction = _extraction(the_plan.extraction, extract_gens, data[0].lm if data else None, billing)
    candidate = _candidate(extraction, extract_gens, billing) if suspected else None

    verdicts = _decide_all(data, answers, options, len(neutral), hidden=suspected)
    if candidate is not None:  # retest the references whose same-model test rejected with the extracted prompt
        for d, (verdict, _stats, rejected, _summary) in zip(data, verdicts, strict=True):
            if verdict in (TraceVerdict.DERIVED, TraceVerdict.INCONCLUSIVE) and rejected:
                with_system = [[{"role": "system", "content": candidate}, *m] for m in neutral]
                own = [_sample(d.lm, cache, msgs, options) for msgs in with_system]
                d.retest = (score_all(d.lm, with_system, answers.texts), score_all(d.lm, with_system, own))
        verdicts = _decide_all(data, answers, options, len(neutral), hidden=suspected)

    # requests each verdict needed: the shortest prefix of prompts from which on it no longer changed
    final = [v[0] for v in verdicts]
    needed: list[int | None] = [None] * len(data)
    streak = [True] * len(data)
    for k in range(len(neutral), 0, -1):
        prefix = _decide_all(data, answers, options, k, hidden=suspected)
        for r, v in enumerate(prefix):
            streak[r] = streak[r] and v[0] == final[r]
            if streak[r]:
                needed[r] = k * s
    extra = len(the_plan.billing) + len(the_plan.extraction)
    refs_out: list[TraceReference] = []
    for d, (verdict, stats, _rejected, summary), need in zip(data, verdicts, needed, strict=True):
        uses_hidden = suspected and (d.retest is not None or verdict == TraceVerdict.INCONCLUSIVE)
        refs_out.append(TraceReference(
            name=d.model.name, path=d.model.path, verdict=verdict, statistics=stats,
            controls=sorted(d.bpb_controls), requests_needed=(need + extra if need is not None and uses_hidden
                                                              else need),
            hidden_prompt_retest=d.retest is not None, summary=summary))

    desc = subject.describe()
    all_gens = [g for row in gens for g in row] + list(_flat(billing_gens)) + list(_flat(extract_gens))
    failed = sum(not g.ok for g in all_gens)
    stopped = any((g.error or "").startswith("request budget exhausted") for g in all_gens)
    returned = [g for row in gens for g in row if g.ok]
    budget = TraceBudget(
        planned_requests=the_plan.requests, planned_tokens=the_plan.tokens, max_requests=max_requests,
        requests_sent=int(desc.get("requests") or 0), requests_cached=int(desc.get("cached") or 0),
        retries=int(desc.get("retries") or 0),
        prompt_tokens_billed=sum(g.prompt_tokens or 0 for g in all_gens if g.ok),
        completion_tokens_billed=sum(g.completion_tokens or 0 for g in all_gens if g.ok),
        failed=failed, stopped_at_budget=stopped)
    observed = TraceObserved(
        logprobs_returned=any(getattr(g, "logprobs", None) for g in returned),
        mean_completion_tokens=(round(statistics.mean(g.completion_tokens for g in returned
                                                      if g.completion_tokens is not None), 2)
                                if any(g.completion_tokens is not None for g in returned) else None),
        answered=len(returned))
    settings = TraceSettings(prompts=len(neutral), samples=s, temperature=options.temperature, top_p=options.top_p,
                             max_tokens=options.max_tokens, seed=options.seed, logprobs_requested=options.logprobs,
                             alpha=options.alpha, logprob_tolerance=options.logprob_tolerance)
    hidden = TraceHiddenPrompt(suspected=suspected, billing=billing, extraction=extraction, candidate=candidate,
                               summary=_hidden_summary(billing, candidate))
    section = TraceSection(prompts=the_plan.neutral, settings=settings, observed=observed, budget=budget,
                           references=refs_out, controls=[c.name for c in controls], hidden_prompt=hidden,
                           summary=trace_summary(refs_out, suspected, budget))
    flags = []
    if suspected and billing is not None:
        flags.append(HiddenPromptSuspectedFlag(
            detail=f"The endpoint bills ~{billing.hidden_tokens:.0f} prompt tokens more than {billing.reference}'s "
                   "chat template accounts for: a hidden system prompt is likely (evidence, not certainty).",
            evidence=HiddenPromptEvidence(reference=billing.reference, hidden_tokens=billing.hidden_tokens,
                                          hidden_tokens_se=billing.hidden_tokens_se,
                                          extracted=candidate[:300] if candidate else None)))
    return TraceOutcome(section, flags)


def _flat(rows: list[list[Generation]]) -> list[Generation]:
    return [g for row in rows for g in row]


def _sample(lm: LocalModel, cache: GenerationCache, msgs: Messages, options: TraceOptions) -> list[str]:
    """The reference's own completions at the requested settings (seeds other than the subject's)."""
    from audit.probing.trace_local import sample

    return sample(lm, cache, msgs, options.max_tokens, options.temperature, options.seed + OWN_SEED_OFFSET,
                  options.per_prompt, options.top_p)


def _start(progress: Progress | None, label: str, total: int) -> None:
    if progress is not None:
        progress.start(label, total)


def _tick(progress: Progress | None) -> None:
    if progress is not None:
        progress.tick()


# ---------------------------------------------------------------------------------------------- tests


def logprob_gap(gens: Sequence[Generation], scores: Sequence[Scored]) -> tuple[float, int, int] | None:
    """(median |delta logprob|, aligned tokens, subject tokens) over completions with logprobs; None if none.

    Tokens align while the endpoint's token strings equal the reference's pieces of the same text."""
    diffs: list[float] = []
    total = 0
    for gen, sc in zip(gens, scores, strict=True):
        tokens, values = getattr(gen, "tokens", None), getattr(gen, "logprobs", None)
        if not tokens or not values:
            continue
        total += len(tokens)
        for tok, lp, piece, ref_lp in zip(tokens, values, sc.pieces, sc.logprobs, strict=False):
            if tok != piece:
                break
            diffs.append(abs(lp - ref_lp))
    if not total:
        return None
    return (statistics.median(diffs) if diffs else float("inf")), len(diffs), total


def _same_model(d: _RefData, answers: _Answers, options: TraceOptions, k: int,
                retest: bool) -> tuple[TraceStatistic | None, TraceStatistic, TraceStatistic | None]:
    """(logprob-gap or None, sample-likelihood with raw p, greedy-match or None) on the first k prompts."""
    subj, own = (d.retest if retest and d.retest is not None else (d.subj_scores, d.own_scores))
    groups = [([x.mean_logprob for x in subj[i] if x.logprobs], [x.mean_logprob for x in own[i] if x.logprobs])
              for i in range(k)]
    res = stratified_permutation(groups, draws=options.draws, seed=options.seed)
    where = " (reference given the extracted system prompt)" if retest and d.retest is not None else ""
    sample_stat = TraceStatistic(
        name=TraceStatisticName.SAMPLE_LIKELIHOOD, test="same-model", value=round(res.value, 6),
        null=TraceNull(method=res.method, kind=res.kind, n=res.n,
                       assumption="the subject samples from the reference at the requested settings, as the "
                                  "reference's own completions do; prompts independent"),
        p_value=res.p_value, detail=f"{sum(len(a) for a, _ in groups)} subject vs {sum(len(b) for _, b in groups)} "
                                    f"reference completions over {k} prompts{where}")
    gap_stat = None
    ok_gens = [[g for g in answers.gens[i] if g.ok] for i in range(k)]
    gap = logprob_gap([g for row in ok_gens for g in row], [x for row in subj[:k] for x in row])
    if gap is not None:
        median, aligned, total = gap
        misaligned = aligned < total / 2
        gap_stat = TraceStatistic(
            name=TraceStatisticName.LOGPROB_GAP, test="same-model",
            value=round(median, 6) if median != float("inf") else 1e9,
            null=TraceNull(method="tolerance", kind=f"same weights: |delta| <= {options.logprob_tolerance} nats "
                           "(float32 reference vs the served numerics; --logprob-tolerance)", n=aligned,
                           assumption="the endpoint reports log-probabilities of the raw model distribution "
                                      "(before temperature and top-p), as vLLM and llama.cpp do"),
            rejected=misaligned or median > options.logprob_tolerance,
            detail=(f"{aligned} of {total} tokens aligned with the reference's tokenization"
                    + ("; the endpoint does not tokenize like the reference" if misaligned else "") + where))
    greedy = None
    if options.temperature == 0:
        pairs = [(a, b) for i in range(k) for a, b in zip(answers.texts[i][:1], d.own[i][:1], strict=False)]
        if pairs:
            same = sum(a.strip() == b.strip() for a, b in pairs)
            first = [_divergence(a, b) for a, b in pairs if a.strip() != b.strip()]
            greedy = TraceStatistic(
                name=TraceStatisticName.GREEDY_MATCH, test="same-model", value=round(same / len(pairs), 4),
                null=TraceNull(method="tolerance", kind="identical greedy answers", n=len(pairs),
                               assumption="greedy decoding on both sides; near-ties may flip under other numerics"),
                detail=f"{same} of {len(pairs)} prompts identical" + (
                    f"; first divergence at characters {first[:8]}" if first else "") + where)
    return gap_stat, sample_stat, greedy


def _divergence(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _closer(d: _RefData, k: int) -> TraceStatistic | None:
    """Sign test per control on per-prompt mean(bpb_control - bpb_reference); the largest p."""
    if not d.bpb_controls:
        return None
    worst = None
    for name, bpb in d.bpb_controls.items():
        diffs = []
        for i in range(k):
            ref = [x.bits_per_byte for x in d.subj_scores[i]]
            if ref and bpb[i]:
                diffs.append(statistics.mean(bpb[i]) - statistics.mean(ref))
        res = sign_test(diffs)
        if worst is None or res.p_value > worst[1].p_value:
            worst = (name, res)
    assert worst is not None
    name, res = worst
    return TraceStatistic(
        name=TraceStatisticName.CLOSER_THAN_CONTROLS, test="derived-from", value=round(res.value, 4),
        null=TraceNull(method="exact", kind="one-sided sign test over prompts, largest p over "
                       f"{len(d.bpb_controls)} control(s)", n=res.n,
                       assumption="prompts independent; each control is as good a language model as the reference "
                                  "on text of unrelated origin"),
        p_value=res.p_value, detail=f"least beaten control: {name} (reference better on {res.value:.0%} of "
                                    f"{res.n} prompts)")


Decision = tuple[TraceVerdict, list[TraceStatistic], bool, str]


def _decide_all(data: list[_RefData], answers: _Answers, options: TraceOptions, k: int,
                hidden: bool = False) -> list[Decision]:
    """Verdict per reference on the first k prompts, Holm over references for each test."""
    rows = []
    for d in data:
        base = _same_model(d, answers, options, k, retest=False)
        re = _same_model(d, answers, options, k, retest=True) if d.retest is not None else None
        rows.append((d, base, re, _closer(d, k)))
    p_same = holm([b[1].p_value for _, b, _, _ in rows])
    p_re = holm([r[1].p_value if r is not None else None for _, _, r, _ in rows])
    p_close = holm([c.p_value if c is not None else None for *_, c in rows])
    out: list[Decision] = []
    for r, (d, base, re, close) in enumerate(rows):
        stats, rejected, matched = _apply(base, p_same[r], options)
        re_rejected = None
        if re is not None:
            re_stats, re_rejected, re_matched = _apply(re, p_re[r], options)
            stats += re_stats
            matched = matched or re_matched
        closer = None
        if close is not None:
            closer = p_close[r] is not None and float(p_close[r] or 1.0) < options.alpha
            stats.append(close.model_copy(update={"p_holm": p_close[r], "rejected": closer}))
        verdict, summary = _verdict(d.model.name, rejected, re_rejected, matched, closer, hidden)
        out.append((verdict, stats, rejected, summary))
    return out


def _apply(triple: tuple[TraceStatistic | None, TraceStatistic, TraceStatistic | None], p_holm: float | None,
           options: TraceOptions) -> tuple[list[TraceStatistic], bool, bool]:
    """Statistics with Holm p and decisions; (stats, same-model rejected, logprobs matched within tolerance)."""
    gap, sample, greedy = triple
    sample_rejected = p_holm is not None and p_holm < options.alpha
    stats = [sample.model_copy(update={"p_holm": p_holm, "rejected": sample_rejected})]
    if gap is not None:
        stats.insert(0, gap)
    if greedy is not None:
        stats.append(greedy)
    rejected = bool(gap.rejected) if gap is not None else sample_rejected
    return stats, rejected, gap is not None and not gap.rejected


def _verdict(name: str, rejected: bool, re_rejected: bool | None, matched: bool, closer: bool | None,
             hidden: bool) -> tuple[TraceVerdict, str]:
    if not rejected or re_rejected is False:
        prompt = " once given the extracted system prompt" if rejected else ""
        if matched or closer:
            why = "its logprobs match the reference's within tolerance" if matched else \
                "it is closer to the reference than to every control"
            return TraceVerdict.SAME_MODEL, (f"Same model as {name}{prompt}: the same-model test does not reject "
                                             f"and {why}.")
        return TraceVerdict.INCONCLUSIVE, (f"The same-model test does not reject {name}, but nothing shows the test "
                                           "had power (no control to beat): add a --control model or more prompts.")
    if closer:
        if hidden:
            return TraceVerdict.INCONCLUSIVE, (
                f"Closer to {name} than to every control, but not its own outputs; the billing shows a hidden "
                "system prompt, which would explain the shift as well as a fine-tune would. An extracted prompt "
                "that fits the billed length would settle it.")
        return TraceVerdict.DERIVED, (f"Derived from {name}: closer to it than to every control, but its outputs "
                                      "are not the reference's own (a fine-tune or other modification).")
    if closer is None:
        return TraceVerdict.INCONCLUSIVE, (f"Not {name} itself; with no control model the test cannot tell a "
                                           "derivative from an unrelated model: add --control.")
    return TraceVerdict.UNRELATED, (f"Not {name}, and no closer to it than to the controls.")


# ---------------------------------------------------------------------------------------------- hidden prompt


def _billing(data: list[_RefData], texts: list[str], gens: list[list[Generation]]) -> TraceBilling | None:
    """The billing regression under each reference's tokenizer; the one whose slope is closest to 1."""
    pairs = [(t, row[0].prompt_tokens) for t, row in zip(texts, gens, strict=False)
             if row and row[0].ok and row[0].prompt_tokens is not None]
    if len(pairs) < 3 or not data:
        return None
    best: TraceBilling | None = None
    for d in data:
        out = billing_estimate(d.model.name, d.lm, [t for t, _ in pairs], [int(b or 0) for _, b in pairs])
        if out is not None and (best is None or abs((out.slope or 0) - 1) < abs((best.slope or 0) - 1)):
            best = out
    return best


def billing_estimate(name: str, lm: Any, texts: list[str], billed: list[int]) -> TraceBilling | None:
    """Fit billed = offset + slope * tokens(text) and split the offset into template and hidden prompt.

    `lm` needs count(text), prompt_count(messages)."""
    user = [lm.count(t) for t in texts]
    fit = billing_fit(user, billed)
    if fit is None:
        return None
    overhead = [lm.prompt_count([{"role": "user", "content": t}]) - n for t, n in zip(texts, user, strict=True)]
    system = [lm.prompt_count([{"role": "system", "content": EXPLICIT_SYSTEM}, {"role": "user", "content": t}])
              - n - lm.count(EXPLICIT_SYSTEM) for t, n in zip(texts, user, strict=True)]
    ov, ov_sys = int(statistics.median_low(overhead)), int(statistics.median_low(system))
    matches = abs(fit.slope - 1.0) <= 0.05
    excess = fit.offset - ov
    suspected = matches and excess >= max(MIN_EXCESS, 3 * fit.offset_se)
    hidden = fit.offset - ov_sys if suspected else None
    detail = (f"billed = {fit.offset:.1f} + {fit.slope:.3f} x tokens over {fit.points} texts; {name}'s template adds "
              f"{ov} tokens (default system prompt included), {ov_sys} with an explicit system message")
    if not matches:
        detail += "; the slope is not 1: the endpoint does not bill with this tokenizer, the offset cannot be split"
    return TraceBilling(reference=name, points=fit.points, user_tokens=user, billed=list(billed),
                        slope=round(fit.slope, 4), slope_se=round(fit.slope_se, 4), offset=round(fit.offset, 3),
                        offset_se=round(fit.offset_se, 3), template_overhead=ov, template_overhead_system=ov_sys,
                        excess_tokens=round(excess, 3), hidden_tokens=round(hidden, 2) if hidden is not None else None,
                        hidden_tokens_se=round(fit.offset_se, 3) if hidden is not None else None,
                        tokenizer_matches=matches, detail=detail)


def _extraction(prompts: list[str], gens: list[list[Generation]], lm: LocalModel | None,
                billing: TraceBilling | None) -> list[TraceExtraction]:
    out = []
    for prompt, row in zip(prompts, gens, strict=False):
        text = row[0].text if row and row[0].ok else ""
        tokens = lm.count(text) if lm is not None and text else None
        fits = bool(billing is not None and billing.hidden_tokens and tokens
                    and abs(tokens - billing.hidden_tokens) <= 0.3 * billing.hidden_tokens)
        out.append(TraceExtraction(prompt=prompt, excerpt=text[:300] if text else (row[0].error or "")[:300]
                                   if row else "", tokens=tokens, fits_billing=fits))
    return out


def _candidate(extraction: list[TraceExtraction], gens: list[list[Generation]],
               billing: TraceBilling | None) -> str | None:
    """The extraction answer closest in length to the billed hidden prompt, if one fits."""
    if billing is None or billing.hidden_tokens is None:
        return None
    target = billing.hidden_tokens
    fitting = [(abs((e.tokens or 0) - target), row[0].text)
               for e, row in zip(extraction, gens, strict=False) if e.fits_billing and row and row[0].ok]
    return min(fitting)[1].strip() if fitting else None


def _hidden_summary(billing: TraceBilling | None, candidate: str | None) -> str:
    if billing is None:
        return "No billing evidence (the subject reported no prompt token counts)."
    if billing.hidden_tokens is None:
        if billing.tokenizer_matches:
            return (f"No hidden prompt in the billing: the offset is within {billing.excess_tokens:+.1f} tokens of "
                    f"{billing.reference}'s own template.")
        return billing.detail
    text = (f"About {billing.hidden_tokens:.0f} ± {billing.hidden_tokens_se or 0:.1f} hidden prompt tokens billed "
            f"beyond {billing.reference}'s chat template.")
    return text + (" A prompt-extraction answer fits that length and was retested as the system prompt."
                   if candidate else " No extraction answer fits that length.")


def trace_summary(refs: list[TraceReference], hidden: bool, budget: TraceBudget) -> str:
    """One sentence per reference, the hidden-prompt finding and the cost."""
    parts = [f"{r.name}: {r.verdict.value}" for r in refs]
    text = "Trace: " + "; ".join(parts) + "."
    if hidden:
        text += " A hidden system prompt is suspected (see the hidden-prompt-suspected flag)."
    text += (f" Cost: {budget.requests_sent} requests sent, {budget.requests_cached} from cache"
             + (", stopped at the request budget" if budget.stopped_at_budget else "") + ".")
    return text

