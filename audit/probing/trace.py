"""`provaudit trace`: which reference model produced a subject's outputs (method ``provaudit.trace/1``).

The subject (an OpenAI-compatible endpoint, or a local model) answers N neutral prompts, S times each at the
requested temperature (once at temperature 0; every prompt and sample with its own seed, so prompts are
independent), plus the billing texts (max_tokens=1) and the prompt-extraction probes (temperature 0). Every
reference and control is a local checkpoint.

Per reference R (alpha after Holm over the references):

* same-model. H0: the subject is R at the requested settings.
  - logprob-gap, when the endpoint returns per-token logprobs: median |log p_subject - log p_R| over the
    subject's tokens, R teacher-forced on the same text, against R's raw and its tempered log-probabilities
    (endpoints report either). Same weights give numerical noise only; H0 is rejected beyond
    `logprob_tolerance` (a tolerance decision, no p-value). A tokenization that is not R's (fewer than half
    the tokens align) rejects H0 too. Decides when logprobs came back.
  - sample-pit (temperature > 0): R teacher-forced on the subject's text gives, for every token (and the
    end-of-turn token of a finished answer), its randomized probability integral transform under the
    distribution a sampler at the requested temperature and top-p draws from: Uniform(0, 1) under H0, i.i.d.
    along an answer and across independently seeded answers. Their mean is tested against 1/2 with a margin
    (re-tokenization of text and numerics move it slightly) under the normal null; no sampling from R is
    needed. The number of samples per prompt is chosen for a stated power against a stated shift.
  - greedy-tokens (temperature 0): the share of the subject's tokens that are not R's argmax, teacher-forced;
    a tolerance decision (near-ties and re-tokenization only under H0).
  - greedy-match at temperature 0: the share of prompts whose answer equals R's greedy answer (evidence).
* derived-from. H0: R explains the subject's completions no better than control C does (bits per byte, a
  tokenizer-free unit). Exact one-sided sign test over prompts per control; the largest p over controls
  (every control must be beaten). Controls: the other references and the --control models.
  Assumption: each control is as good a language model as R on text of unrelated origin.
* hidden prompt. Billed prompt tokens of texts of growing length regressed (OLS) on their token count under
  R's tokenizer: a slope of ~1 says the endpoint bills with R's tokenizer, and then offset minus R's own
  template overhead (its default system prompt included) is the excess; a hidden prompt is suspected when the
  excess is >= 3 tokens and 3 standard errors. Its length is offset minus the overhead of R's template with an
  explicit system message. The extraction answers are cleaned (audit/probing/extraction.py) and the best one
  that fits that length (within 30%) is retested as R's system prompt.

Verdict per reference: not rejected + closer than controls -> same-model; rejected + closer -> derived (or
same-model when the retest with the extracted prompt does not reject, or inconclusive when a hidden prompt is
suspected and no extraction fits: a hidden prompt and a fine-tune both explain it); rejected + not closer ->
unrelated; not rejected + not closer -> inconclusive (too little power), unless logprobs matched within
tolerance (then same-model).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from audit.errors import InputError
from audit.probing.backends.base import Generation, Messages
from audit.probing.trace_stats import achieved_power, billing_fit, holm, pit_test, sign_test, tokens_for_power
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
PROMPT_SEED_STRIDE = 1000  # prompt i, sample j is requested with seed + 1000 i + j: independent prompts
PIT_SEED_OFFSET = 104729  # the uniform draws of the randomized PIT, apart from every sampling seed
EXPLICIT_SYSTEM = "You are a helpful assistant."
TOP_LOGPROBS = 5
EXTRACT_TOKENS = 160
MIN_EXCESS = 3.0
TEMPERATURE_DRIFT = 0.25  # a fitted temperature this far (relative) from the requested one triggers a retest
TOKENS_PER_ANSWER = 0.75  # planning guess: an answer uses this share of max_tokens


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
    """How to trace: prompt count, samples, settings requested from the subject, test levels.

    `samples` None: chosen so that the sample-pit test has `power` against a PIT mean shift of `effect`."""

    prompts: int = 12
    samples: int | None = None
    temperature: float = 0.7
    top_p: float | None = None
    max_tokens: int = 48
    seed: int = 0
    logprobs: bool = True
    alpha: float = 0.05
    logprob_tolerance: float = 0.02
    power: float = 0.8
    effect: float = 0.05
    pit_margin: float = 0.01
    greedy_tolerance: float = 0.03
    billing: bool = True
    extraction: bool = True
    prompts_file: str | None = None
    references: int = 1  # for planning: Holm over this many references
    endpoint_references: int = 0  # for planning: each is asked the neutral prompts too

    def tokens_needed(self) -> int:
        """Subject tokens for the stated power (alpha split over the references, as Holm's first step)."""
        return tokens_for_power(self.effect, self.pit_margin, self.alpha / max(1, self.references), self.power)

    @property
    def per_prompt(self) -> int:
        """Completions per prompt: one at temperature 0 (greedy answers repeat), else `samples` or enough
        for the stated power (at least 2)."""
        if self.temperature == 0:
            return 1
        if self.samples is not None:
            return self.samples
        per_answer = max(1.0, TOKENS_PER_ANSWER * self.max_tokens)
        return max(2, min(100, math.ceil(self.tokens_needed() / (self.prompts * per_answer))))


@dataclass(frozen=True)
class Plan:
    requests: int
    tokens: int
    per_prompt: int
    neutral: list[str]
    billing: list[str]
    extraction: list[str]
    power_line: str = ""
    reference_requests: int = 0

    def line(self, max_requests: int | None) -> str:
        """The budget, in one line, before anything is sent."""
        cap = f"; stops at --max-requests {max_requests}" if max_requests is not None else ""
        refs = (f", plus {self.reference_requests} to each endpoint reference" if self.reference_requests else "")
        return (f"trace plan: {self.requests} requests to the subject ({len(self.neutral)} prompts x "
                f"{self.per_prompt} sample(s), {len(self.billing)} billing, {len(self.extraction)} extraction)"
                f"{refs}, at most ~{self.tokens} tokens{cap}; answers already cached cost nothing" + self.power_line)


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
    power = ""
    if options.temperature > 0:
        expected = int(len(neutral) * s * TOKENS_PER_ANSWER * options.max_tokens)
        power = (f"; sample-pit power ~{achieved_power(expected, options.effect, options.pit_margin, options.alpha):.2f}"
                 f" against a PIT shift of {options.effect:g} (needs ~{options.tokens_needed()} answer tokens, "
                 f"~{expected} expected)")
    return Plan(len(neutral) * s + len(billing) + len(extraction), tokens, s, neutral, billing, extraction, power,
                len(neutral) * s if options.endpoint_references else 0)


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
            for text, ids in self.m.generate_many(list(messages), max_new_tokens, temperature, seed, n, top_p):
                gen = EndpointGeneration(text, self.m.prompt_count(list(messages)), len(ids),
                                         finish_reason="length" if len(ids) >= max_new_tokens else "stop")
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
    """A reference or control: a name and a local checkpoint, or (references only) an endpoint that answers
    like the subject does (`endpoint`: a Subject; `path` its public description)."""

    name: str
    path: str
    endpoint: Any = field(default=None, compare=False)


@dataclass
class _Answers:
    texts: list[list[str]]  # per prompt, the usable completions
    gens: list[list[Generation]]
    stopped: list[list[bool]]  # per usable completion: the subject ended its turn (its end token is a draw too)


@dataclass
class _RefData:
    model: Model
    lm: LocalModel
    greedy: list[str]  # the reference's own greedy answers (temperature 0 only)
    subj_scores: list[list[Scored]]
    bpb_controls: dict[str, list[list[float]]] = field(default_factory=dict)
    retest: list[list[Scored]] | None = None  # the subject's answers scored again (see retest_note)
    retest_note: str = ""  # " once given the extracted system prompt" or " at temperature X (...)"
    retest_temperature: float | None = None


@dataclass
class _EndpointRef:
    """A reference that is an endpoint: only its answers to the same prompts (and the controls' own samples)."""

    model: Model
    samples: list[list[str]]
    controls: dict[str, list[list[str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class TraceOutcome:
    section: TraceSection
    flags: list[HiddenPromptSuspectedFlag]


def _stopped(gen: Generation, max_tokens: int) -> bool:
    """The answer ended at the model's end-of-turn token (finish_reason, else fewer tokens than allowed)."""
    if gen.finish_reason in ("stop", "length"):
        return gen.finish_reason == "stop"
    return gen.completion_tokens is not None and gen.completion_tokens < max_tokens


def run_trace(subject: Subject, references: list[Model], controls: list[Model], options: TraceOptions,
              cache: GenerationCache, progress: Progress | None = None, device: str = "auto",
              max_requests: int | None = None) -> TraceOutcome:
    """Ask the subject, run the references and controls locally, test, decide; see the module docstring."""
    from audit.probing.trace_local import load_local

    if not references:
        raise InputError("trace needs at least one reference (-r NAME=PATH)")
    the_plan = plan(options)
    s = options.per_prompt
    pit = (options.temperature, options.top_p)
    neutral = [[{"role": "user", "content": p}] for p in the_plan.neutral]
    _start(progress, "trace: asking the subject", len(neutral) + 2)
    gens: list[list[Generation]] = []
    for i, msgs in enumerate(neutral):  # one prompt at a time: progress, and a budget stop leaves whole prompts
        gens += subject.generate([msgs], options.max_tokens, options.temperature,
                                 options.seed + PROMPT_SEED_STRIDE * i, s,
                                 logprobs=TOP_LOGPROBS if options.logprobs else None, top_p=options.top_p)
        _tick(progress)
    billing_gens = subject.generate([[{"role": "user", "content": t}] for t in the_plan.billing], 1, 0.0,
                                    options.seed, 1) if the_plan.billing else []
    _tick(progress)
    extract_gens = subject.generate([[{"role": "user", "content": t}] for t in the_plan.extraction],
                                    EXTRACT_TOKENS, 0.0, options.seed, 1) if the_plan.extraction else []
    _tick(progress)
    answers = _Answers([[g.text for g in row if g.ok] for row in gens], gens,
                       [[_stopped(g, options.max_tokens) for g in row if g.ok] for row in gens])

    loaded: dict[str, LocalModel] = {}
    for m in [*references, *controls]:
        if m.endpoint is None and m.path not in loaded:
            _start(progress, f"trace: loading {m.name}", 1)
            loaded[m.path] = load_local(m.path, device)
            _tick(progress)
    memo: dict[tuple[str, str, str, str, bool], Scored] = {}

    def score_all(lm: LocalModel, convs: list[Messages], texts: list[list[str]],
                  settings: tuple[float, float | None] | None = None) -> list[list[Scored]]:
        """Scores of texts[i][j] after convs[i] under lm (with the PIT parts at `settings` when given), batched,
        each pair scored once per run."""
        keys = [[(lm.identity, repr(c), t, repr(settings), stop) for t, stop in zip(row, ends, strict=True)]
                for c, row, ends in zip(convs, texts, answers.stopped, strict=True)]
        todo = {k: (c, k[2], k[4]) for c, row in zip(convs, keys, strict=True) for k in row if k not in memo}
        items = list(todo.items())
        scored = lm.score_many([(c, t) for _, (c, t, _) in items], pit=settings,
                               stopped=[stop for _, (_, _, stop) in items])
        for (k, _), sc in zip(items, scored, strict=True):
            memo[k] = sc
        return [[memo[k] for k in row] for row in keys]

    data: list[_RefData] = []
    endpoint_refs: list[_EndpointRef] = []
    items: list[_RefData | _EndpointRef] = []  # in the order the references were given
    for ref in references:
        if ref.endpoint is not None:
            endpoint_refs.append(_ask_endpoint_reference(ref, neutral, options, progress))
            items.append(endpoint_refs[-1])
            continue
        lm = loaded[ref.path]
        _start(progress, f"trace: scoring {ref.name}", 1)
        greedy = _greedy(lm, cache, neutral, options) if options.temperature == 0 else []
        data.append(_RefData(ref, lm, greedy, score_all(lm, neutral, answers.texts, pit)))
        items.append(data[-1])
        _tick(progress)
    others = {m.name: m for m in [*references, *controls] if m.endpoint is None}
    for e in endpoint_refs:  # controls of an endpoint reference: the local models' own samples, the other endpoints'
        for name, other in others.items():
            e.controls[name] = [_sample(loaded[other.path], cache, msgs, options, i)
                                for i, msgs in enumerate(neutral)]
        for f in endpoint_refs:
            if f is not e:
                e.controls[f.model.name] = f.samples
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
    candidate = _candidate(the_plan.extraction, extract_gens, data[0].lm, billing) if suspected else None

    verdicts = _decide_all(items, answers, options, len(neutral), hidden=suspected)
    if candidate is not None:  # retest the references whose same-model test rejected with the extracted prompt
        for item, (verdict, _stats, rejected, _summary) in zip(items, verdicts, strict=True):
            if isinstance(item, _RefData) and verdict in (TraceVerdict.DERIVED, TraceVerdict.INCONCLUSIVE) \
                    and rejected:
                with_system = [[{"role": "system", "content": candidate}, *m] for m in neutral]
                item.retest = score_all(item.lm, with_system, answers.texts, pit)
                item.retest_note = " once given the extracted system prompt"
        verdicts = _decide_all(items, answers, options, len(neutral), hidden=suspected)
    # an endpoint that ignores the requested temperature: retest at the one the answers fit best
    fits = {id(d): _temperature_fit(d, len(neutral)) for d in data}
    again = False
    for item, (verdict, stats, rejected, _summary) in zip(items, verdicts, strict=True):
        fit = fits.get(id(item))
        if (isinstance(item, _RefData) and item.retest is None and rejected and fit is not None
                and options.temperature > 0 and verdict != TraceVerdict.UNRELATED
                and not any(st.name == TraceStatisticName.LOGPROB_GAP for st in stats)
                and abs(fit - options.temperature) > TEMPERATURE_DRIFT * options.temperature):
            item.retest = score_all(item.lm, neutral, answers.texts, (fit, options.top_p))
            item.retest_temperature = fit
            item.retest_note = (f" at temperature {fit:g}, the one its answers fit best (requested "
                                f"{options.temperature:g}: the endpoint appears to apply another)")
            again = True
    if again:
        verdicts = _decide_all(items, answers, options, len(neutral), hidden=suspected)

    # requests each verdict needed: the shortest prefix of prompts from which on it no longer changed
    final = [v[0] for v in verdicts]
    needed: list[int | None] = [None] * len(items)
    streak = [True] * len(items)
    for k in range(len(neutral), 0, -1):
        prefix = _decide_all(items, answers, options, k, hidden=suspected)
        for r, v in enumerate(prefix):
            streak[r] = streak[r] and v[0] == final[r]
            if streak[r]:
                needed[r] = k * s
    extra = len(the_plan.billing) + len(the_plan.extraction)
    refs_out: list[TraceReference] = []
    for item, (verdict, stats, _rejected, summary), need in zip(items, verdicts, needed, strict=True):
        local = item if isinstance(item, _RefData) else None
        retested = local is not None and local.retest is not None
        by_prompt = retested and local is not None and local.retest_temperature is None
        uses_hidden = suspected and (by_prompt or verdict == TraceVerdict.INCONCLUSIVE)
        refs_out.append(TraceReference(
            name=item.model.name, path=item.model.path, verdict=verdict, statistics=stats,
            controls=sorted(item.bpb_controls if isinstance(item, _RefData) else item.controls),
            requests_needed=(need + extra if need is not None and uses_hidden else need),
            hidden_prompt_retest=by_prompt,
            temperature_retest=local.retest_temperature if local is not None else None, summary=summary))

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
        failed=failed, stopped_at_budget=stopped,
        reference_requests_sent=sum(int(r.endpoint.describe().get("requests") or 0) for r in references if r.endpoint),
        reference_requests_cached=sum(int(r.endpoint.describe().get("cached") or 0)
                                      for r in references if r.endpoint))
    observed = TraceObserved(
        logprobs_returned=any(getattr(g, "logprobs", None) for g in returned),
        mean_completion_tokens=(round(statistics.mean(g.completion_tokens for g in returned
                                                      if g.completion_tokens is not None), 2)
                                if any(g.completion_tokens is not None for g in returned) else None),
        answered=len(returned), temperature_fit=fits.get(id(data[0])) if data else None)
    settings = TraceSettings(prompts=len(neutral), samples=s, temperature=options.temperature, top_p=options.top_p,
                             max_tokens=options.max_tokens, seed=options.seed, logprobs_requested=options.logprobs,
                             alpha=options.alpha, logprob_tolerance=options.logprob_tolerance,
                             power=options.power if options.temperature > 0 else None,
                             effect=options.effect if options.temperature > 0 else None,
                             pit_margin=options.pit_margin if options.temperature > 0 else None,
                             greedy_tolerance=options.greedy_tolerance if options.temperature == 0 else None,
                             tokens_needed=options.tokens_needed() if options.temperature > 0 else None,
                             samples_chosen="auto" if options.samples is None else "given")
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


def _temperature_fit(d: _RefData, k: int) -> float | None:
    """The grid temperature under which the reference gives the subject's first k prompts' answers the highest
    likelihood (None at temperature 0 or without answers)."""
    from audit.probing.backends.base import TEMPERATURE_GRID

    rows = [x.temperature_ll for row in d.subj_scores[:k] for x in row if x.temperature_ll]
    if not rows:
        return None
    totals = [sum(r[g] for r in rows) for g in range(len(TEMPERATURE_GRID))]
    return TEMPERATURE_GRID[max(range(len(totals)), key=totals.__getitem__)]


def _greedy(lm: LocalModel, cache: GenerationCache, convs: list[Messages], options: TraceOptions) -> list[str]:
    """The reference's own greedy answers (for greedy-match at temperature 0)."""
    from audit.probing.trace_local import greedy_all

    return greedy_all(lm, cache, convs, options.max_tokens, options.seed)


def _sample(lm: LocalModel, cache: GenerationCache, msgs: Messages, options: TraceOptions, i: int) -> list[str]:
    """A local model's own answers to prompt i at the requested settings (a control of an endpoint reference)."""
    from audit.probing.trace_local import sample

    return sample(lm, cache, msgs, options.max_tokens, options.temperature,
                  options.seed + PROMPT_SEED_STRIDE * i + 2 * ENDPOINT_SEED_OFFSET, options.per_prompt, options.top_p)


def _start(progress: Progress | None, label: str, total: int) -> None:
    if progress is not None:
        progress.start(label, total)


def _tick(progress: Progress | None) -> None:
    if progress is not None:
        progress.tick()


# ---------------------------------------------------------------------------------------------- tests


def logprob_gap(gens: Sequence[Generation], scores: Sequence[Scored],
                temperature: float = 1.0) -> tuple[float, int, int, str] | None:
    """(median |delta logprob|, aligned tokens, subject tokens, "raw" or "tempered") over completions with
    logprobs; None if none. Tokens align while the endpoint's token strings equal the reference's pieces of the
    same text. The reference's tempered log-probabilities (from the PIT parts) are compared too: endpoints
    report either; the closer median is kept."""
    raw: list[float] = []
    tempered: list[float] = []
    total = 0
    for gen, sc in zip(gens, scores, strict=True):
        tokens, values = getattr(gen, "tokens", None), getattr(gen, "logprobs", None)
        if not tokens or not values:
            continue
        total += len(tokens)
        pit = sc.pit or []
        for i, (tok, lp, piece, ref_lp) in enumerate(zip(tokens, values, sc.pieces, sc.logprobs, strict=False)):
            if tok != piece:
                break
            raw.append(abs(lp - ref_lp))
            if 0 < temperature != 1 and i < len(pit):
                tempered.append(abs(lp + pit[i][2]))  # pit[i][2]: surprisal under the tempered distribution
    if not total:
        return None
    if not raw:
        return float("inf"), 0, total, "raw"
    best = (statistics.median(raw), "raw")
    if tempered and statistics.median(tempered) < best[0]:
        best = (statistics.median(tempered), "tempered")
    return best[0], len(raw), total, best[1]


def _same_model(d: _RefData, answers: _Answers, options: TraceOptions, k: int,
                retest: bool) -> tuple[TraceStatistic | None, TraceStatistic, TraceStatistic | None]:
    """(logprob-gap or None, sample-pit or greedy-tokens, greedy-match or None) on the first k prompts."""
    import numpy as np

    subj = d.retest if retest and d.retest is not None else d.subj_scores
    where = f" (retest{d.retest_note})" if retest and d.retest is not None else ""
    parts = [p for row in subj[:k] for x in row for p in (x.pit or [])]
    if options.temperature > 0:
        rng = np.random.default_rng(options.seed + PIT_SEED_OFFSET)
        arr = np.asarray(parts, dtype=float).reshape(-1, 5)
        u = arr[:, 0] + rng.random(len(arr)) * arr[:, 1]
        res = pit_test(u.tolist(), options.pit_margin)
        power = achieved_power(res.n, options.effect, options.pit_margin, options.alpha)
        outside = int((arr[:, 1] == 0).sum())
        main = TraceStatistic(
            name=TraceStatisticName.SAMPLE_PIT, test="same-model", value=round(res.value, 6),
            null=TraceNull(method="analytic", kind=res.kind, n=res.n,
                           assumption="the subject samples from the reference at the requested temperature and "
                                      "top-p, each answer with its own seed; shifts within the margin are "
                                      "re-tokenization and numerics"),
            p_value=res.p_value,
            detail=(f"{res.n} tokens of {sum(len(r) for r in subj[:k])} answers over {k} prompts; power "
                    f"{power:.2f} against a shift of {options.effect:g}"
                    + (f"; {outside} token(s) outside the reference's top-p nucleus" if outside else "") + where))
    else:
        off = sum(1 for p in parts if p[1] == 0)
        share = off / len(parts) if parts else 0.0
        main = TraceStatistic(
            name=TraceStatisticName.GREEDY_TOKENS, test="same-model", value=round(share, 4),
            null=TraceNull(method="tolerance", kind=f"same weights: at most {options.greedy_tolerance:g} of the "
                           "tokens off the reference's argmax (near-ties, re-tokenization)", n=len(parts),
                           assumption="the subject decodes greedily at temperature 0"),
            rejected=not parts or share > options.greedy_tolerance,
            detail=f"{off} of {len(parts)} tokens are not the reference's most likely token{where}")
    gap_stat = None
    ok_gens = [[g for g in answers.gens[i] if g.ok] for i in range(k)]
    gap = logprob_gap([g for row in ok_gens for g in row], [x for row in subj[:k] for x in row],
                      options.temperature)
    if gap is not None:
        median, aligned, total, scale = gap
        misaligned = aligned < total / 2
        gap_stat = TraceStatistic(
            name=TraceStatisticName.LOGPROB_GAP, test="same-model",
            value=round(median, 6) if median != float("inf") else 1e9,
            null=TraceNull(method="tolerance", kind=f"same weights: |delta| <= {options.logprob_tolerance} nats "
                           "(float32 reference vs the served numerics; --logprob-tolerance)", n=aligned,
                           assumption="the endpoint reports log-probabilities of the model distribution, raw or "
                                      "at the requested temperature (the closer of the two is used)"),
            rejected=misaligned or median > options.logprob_tolerance,
            detail=(f"{aligned} of {total} tokens aligned with the reference's tokenization; compared with its "
                    f"{scale} log-probabilities"
                    + ("; the endpoint does not tokenize like the reference" if misaligned else "") + where))
    greedy = None
    if options.temperature == 0 and d.greedy:
        pairs = [(a, b) for i in range(k) for a, b in zip(answers.texts[i][:1], d.greedy[i:i + 1], strict=False)]
        if pairs:
            same = sum(a.strip() == b.strip() for a, b in pairs)
            first = [_divergence(a, b) for a, b in pairs if a.strip() != b.strip()]
            greedy = TraceStatistic(
                name=TraceStatisticName.GREEDY_MATCH, test="same-model", value=round(same / len(pairs), 4),
                null=TraceNull(method="tolerance", kind="identical greedy answers", n=len(pairs),
                               assumption="greedy decoding on both sides; near-ties may flip under other numerics"),
                detail=f"{same} of {len(pairs)} prompts identical" + (
                    f"; first divergence at characters {first[:8]}" if first else ""))
    return gap_stat, main, greedy


def _divergence(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _closer(d: _RefData, k: int) -> TraceStatistic | None:
    """Sign test per control on per-prompt mean(bpb_control - bpb_reference); the largest p."""
    diffs: dict[str, list[float]] = {}
    for name, bpb in d.bpb_controls.items():
        diffs[name] = []
        for i in range(k):
            ref = [x.bits_per_byte for x in d.subj_scores[i]]
            if ref and bpb[i]:
                diffs[name].append(statistics.mean(bpb[i]) - statistics.mean(ref))
    return _closer_statistic(diffs, "each control is as good a language model as the reference on text of "
                             "unrelated origin", "reference better")


def _closer_statistic(diffs: dict[str, list[float]], assumption: str, better: str) -> TraceStatistic | None:
    """closer-than-controls from per-control, per-prompt differences (positive: the reference is closer): the
    exact sign test of each control, the largest p (every control must be beaten); None without controls."""
    worst = None
    for name, values in diffs.items():
        res = sign_test(values)
        if worst is None or res.p_value > worst[1].p_value:
            worst = (name, res)
    if worst is None:
        return None
    name, res = worst
    return TraceStatistic(
        name=TraceStatisticName.CLOSER_THAN_CONTROLS, test="derived-from", value=round(res.value, 4),
        null=TraceNull(method="exact", kind=f"one-sided sign test over prompts, largest p over {len(diffs)} "
                       "control(s)", n=res.n, assumption=f"prompts independent; {assumption}"),
        p_value=res.p_value, detail=f"least beaten control: {name} ({better} on {res.value:.0%} of {res.n} prompts)")


Decision = tuple[TraceVerdict, list[TraceStatistic], bool, str]


def _decide_all(items: Sequence[_RefData | _EndpointRef], answers: _Answers, options: TraceOptions, k: int,
                hidden: bool = False) -> list[Decision]:
    """Verdict per reference on the first k prompts, Holm over references for each test."""
    Triple = tuple[TraceStatistic | None, TraceStatistic, TraceStatistic | None]
    rows: list[tuple[_RefData | _EndpointRef, Triple, Triple | None, TraceStatistic | None]] = []
    for d in items:
        if isinstance(d, _EndpointRef):
            rows.append((d, (None, _same_by_samples(d, answers, options, k), None), None,
                         _closer_by_samples(d, answers, k)))
            continue
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
        note = d.retest_note if isinstance(d, _RefData) else ""
        verdict, summary = _verdict(d.model.name, rejected, re_rejected, matched, closer, hidden, note)
        pit = next((x for x in stats if x.name == TraceStatisticName.SAMPLE_PIT), None)
        if verdict == TraceVerdict.SAME_MODEL and not matched and pit is not None and pit.null.n is not None:
            power = achieved_power(pit.null.n, options.effect, options.pit_margin, options.alpha)
            summary += (f" The sample test had power {power:.2f} against a PIT shift of {options.effect:g}: a "
                        "lighter modification (a short fine-tune) is not excluded; logprobs or temperature 0 "
                        "would tell.")
        out.append((verdict, stats, rejected, summary))
    return out


# ---------------------------------------------------------------------------------------------- endpoint references


ENDPOINT_SEED_OFFSET = 7919  # an endpoint reference is asked with other seeds than the subject
GREEDY_AGREEMENT = 0.5  # temperature 0: an endpoint reference is the same model if it answers at least half alike


def _ask_endpoint_reference(ref: Model, neutral: list[Messages], options: TraceOptions,
                            progress: Progress | None) -> _EndpointRef:
    """The endpoint reference's answers to the neutral prompts (same settings, its own seeds)."""
    _start(progress, f"trace: asking {ref.name}", len(neutral))
    samples = []
    for i, msgs in enumerate(neutral):
        row = ref.endpoint.generate([msgs], options.max_tokens, options.temperature,
                                    options.seed + PROMPT_SEED_STRIDE * i + ENDPOINT_SEED_OFFSET, options.per_prompt,
                                    top_p=options.top_p)[0]
        samples.append([g.text for g in row if g.ok])
        _tick(progress)
    if not any(samples):
        raise InputError(f"reference {ref.name} ({ref.path}) answered none of the prompts: "
                         f"{next((g.error for g in row if g.error), 'no answer')}")
    return _EndpointRef(ref, samples)


def _same_by_samples(e: _EndpointRef, answers: _Answers, options: TraceOptions, k: int) -> TraceStatistic:
    """sample-mmd (temperature > 0) or greedy-match against an endpoint reference's answers."""
    from audit.probing.trace_mmd import mmd_test

    if options.temperature > 0:
        res = mmd_test([(answers.texts[i], e.samples[i]) for i in range(k)], seed=options.seed)
        return TraceStatistic(
            name=TraceStatisticName.SAMPLE_MMD, test="same-model", value=round(res.value, 6),
            null=TraceNull(method=res.method, kind=res.kind, n=res.n,
                           assumption="both endpoints sample the same model at the requested settings, every answer "
                                      "with its own seed; prompts independent"),
            p_value=res.p_value,
            detail=f"{sum(len(a) for a in answers.texts[:k])} subject vs {sum(len(b) for b in e.samples[:k])} "
                   f"reference answers over {k} prompts")
    pairs = [(a[0], b[0]) for a, b in zip(answers.texts[:k], e.samples[:k], strict=True) if a and b]
    same = sum(a.strip() == b.strip() for a, b in pairs)
    share = same / len(pairs) if pairs else 0.0
    return TraceStatistic(
        name=TraceStatisticName.GREEDY_MATCH, test="same-model", value=round(share, 4),
        null=TraceNull(method="tolerance", kind=f"same model: at least {GREEDY_AGREEMENT:g} of the greedy answers "
                       "identical", n=len(pairs),
                       assumption="greedy decoding on both sides; batching and numerics may flip near-ties"),
        rejected=share < GREEDY_AGREEMENT, detail=f"{same} of {len(pairs)} prompts answered identically")


def _closer_by_samples(e: _EndpointRef, answers: _Answers, k: int) -> TraceStatistic | None:
    """Sign test per control on per-prompt similarity(subject, reference) - similarity(subject, control)."""
    from audit.probing.trace_mmd import closer_by_samples

    diffs = {name: closer_by_samples(answers.texts[:k], e.samples[:k], control[:k])
             for name, control in e.controls.items()}
    return _closer_statistic(diffs, "the controls' answers are as alike to an unrelated model's as the "
                             "reference's are (character n-gram similarity)",
                             "the subject's answers resemble the reference's more")


def _apply(triple: tuple[TraceStatistic | None, TraceStatistic, TraceStatistic | None], p_holm: float | None,
           options: TraceOptions) -> tuple[list[TraceStatistic], bool, bool]:
    """Statistics with Holm p and decisions; (stats, same-model rejected, logprobs matched within tolerance)."""
    gap, main, greedy = triple
    if main.p_value is not None:
        main_rejected = p_holm is not None and p_holm < options.alpha
        main = main.model_copy(update={"p_holm": p_holm, "rejected": main_rejected})
    else:
        main_rejected = bool(main.rejected)
    stats = [main]
    if gap is not None:
        stats.insert(0, gap)
    if greedy is not None:
        stats.append(greedy)
    rejected = bool(gap.rejected) if gap is not None else main_rejected
    return stats, rejected, gap is not None and not gap.rejected


def _verdict(name: str, rejected: bool, re_rejected: bool | None, matched: bool, closer: bool | None,
             hidden: bool, note: str = "") -> tuple[TraceVerdict, str]:
    if not rejected or re_rejected is False:
        prompt = note if rejected else ""
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
    from audit.probing.extraction import clean_extraction, fits

    out = []
    for prompt, row in zip(prompts, gens, strict=False):
        text = clean_extraction(row[0].text, prompts) if row and row[0].ok else ""
        tokens = lm.count(text) if lm is not None and text else None
        fit = bool(billing is not None and billing.hidden_tokens and tokens and fits(tokens, billing.hidden_tokens))
        out.append(TraceExtraction(prompt=prompt, excerpt=text[:300] if text else (row[0].error or "")[:300]
                                   if row else "", tokens=tokens, fits_billing=fit))
    return out


def _candidate(prompts: list[str], gens: list[list[Generation]], lm: LocalModel,
               billing: TraceBilling | None) -> str | None:
    """The cleaned extraction answer to retest as the system prompt (audit/probing/extraction.py), if one fits
    the billed hidden-prompt length."""
    from audit.probing.extraction import best_candidate

    if billing is None or billing.hidden_tokens is None:
        return None
    answers = [row[0].text if row and row[0].ok else "" for row in gens]
    return best_candidate(answers, billing.hidden_tokens, lm.count, probes=prompts)


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

