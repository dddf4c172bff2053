"""Run probe suites on a backend: n seeded samples per prompt, every exchange recorded, detectors applied,
claims counted per vendor, flags decided. Errors of single probes are recorded, never fatal.

A backend that batches internally (`batches_internally`, local models) gets every prompt of the run in one
generate call (it decodes prompts x samples `batch_size` rows at a time); others get `batch_size` prompts
per call, suite by suite."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

from audit.probing import flags as flagging
from audit.probing.backends.base import Backend, BatchingBackend, Generation, sample_seeds
from audit.probing.detectors import Boilerplate, Lexicon, default_boilerplate, default_lexicon, run_detectors
from audit.probing.suite import Probe, Suite

if TYPE_CHECKING:
    from audit.checkpoint.progress import Progress


@dataclass
class ProbeSettings:
    """How the probes are sampled. Sample j of every prompt uses seed `seed + j`."""

    samples: int = 3
    max_new_tokens: int = 160
    temperature: float = 0.7
    seed: int = 0
    batch_size: int = 64
    declared: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["declared"] = list(self.declared)
        out["seeds"] = sample_seeds(self.seed, self.samples)
        return out


class EventLog:
    """A garak-style list of timestamped events (seconds since the run started)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: str, **data: Any) -> None:
        self.events.append({"t": round(time.perf_counter() - self.t0, 3), "event": event, **data})


def run_probes(backend: Backend, suites: list[Suite], settings: ProbeSettings | None = None, *,
               lexicon: Lexicon | None = None, boilerplate: Boilerplate | None = None,
               progress: Progress | None = None) -> dict[str, Any]:
    """Run every suite; return {"probes": [per suite], "flags": [...], "probe_run": {...}} for the record."""
    settings = settings or ProbeSettings()
    lexicon = lexicon or default_lexicon(tuple(settings.declared))
    boilerplate = boilerplate or default_boilerplate()
    log = EventLog()
    log("run.start", suites=[s.name for s in suites], samples=settings.samples)
    blocks, everything, prompts = [], [], {}
    answers = _generate_run(backend, suites, settings, log, progress) \
        if getattr(backend, "batches_internally", False) else [None] * len(suites)
    for suite, gens in zip(suites, answers, strict=True):
        responses = _run_suite(backend, suite, settings, lexicon, boilerplate, log, progress, gens)
        everything += responses
        prompts.update({(suite.name, p.id): _prompt_text(p) for p in suite.probes})
        blocks.append(_suite_block(suite, responses))
    m_vendors = len([v for v in lexicon.vendors if v not in lexicon.declared])
    tests = flagging.vendor_tests(everything, lexicon, m_vendors)
    flags = flagging.distillation_flags(tests, everything, prompts)
    errors = sum(r["error"] is not None for r in everything)
    log("run.done", answers=len(everything), errors=errors, flags=len(flags))
    return {
        "probes": blocks,
        "flags": flags,
        "probe_run": {
            "backend": backend.describe(),
            "settings": settings.as_dict(),
            "declared": {"names": list(settings.declared),
                         "vendors": sorted(v for v in lexicon.declared)},
            "answers": len(everything),
            "errors": errors,
            "vendor_tests": tests,
            "flag_rule": flagging.rule(),
            "seconds": round(time.perf_counter() - log.t0, 3),
            "events": log.events,
        },
    }


def _prompt_text(probe: Probe) -> str:
    return "\n".join(f"[{role}] {text}" if role != "user" else text for role, text in probe.messages)


def _generate_run(backend: Backend, suites: list[Suite], settings: ProbeSettings, log: EventLog,
                  progress: Progress | None) -> list[list[list[Generation]] | None]:
    """Every prompt of every suite in one call to a backend that batches internally; per suite, the answers."""
    probes = [p for s in suites for p in s.probes]
    if progress is not None:
        progress.start(f"probing: {', '.join(s.name for s in suites)}", len(probes))
    tick = (lambda _i: progress.tick()) if progress is not None else None
    log("generate.start", prompts=len(probes), samples=settings.samples)
    gens = _generate(cast(BatchingBackend, backend), probes, settings, log, "+".join(s.name for s in suites),
                     on_prompt_done=tick)
    log("generate.done", prompts=len(probes))
    out: list[list[list[Generation]] | None] = []
    for suite in suites:
        out.append(gens[:len(suite.probes)])
        gens = gens[len(suite.probes):]
    return out


def _run_suite(backend: Backend, suite: Suite, settings: ProbeSettings, lexicon: Lexicon,
               boilerplate: Boilerplate, log: EventLog, progress: Progress | None,
               answers: list[list[Generation]] | None = None) -> list[dict[str, Any]]:
    """Answers (generated here batch by batch unless given) of one suite, with the detectors' findings."""
    log("suite.start", suite=suite.name, probes=len(suite.probes))
    if progress is not None and answers is None:
        progress.start(f"probing: {suite.name}", len(suite.probes))
    seeds = sample_seeds(settings.seed, settings.samples)
    out: list[dict[str, Any]] = []
    probes = list(suite.probes)
    step = max(1, len(probes) if answers is not None else settings.batch_size)
    for i in range(0, len(probes), step):
        batch = probes[i:i + step]
        gens = answers if answers is not None else _generate(backend, batch, settings, log, suite.name)
        for probe, samples in zip(batch, gens, strict=True):
            for j, gen in enumerate(samples):
                out.append(_score(suite.name, probe, j, seeds[j], gen, lexicon, boilerplate, log))
            if progress is not None and answers is None:
                progress.tick()
    log("suite.done", suite=suite.name, answers=len(out), errors=sum(r["error"] is not None for r in out))
    return out


def _generate(backend: Backend, batch: list[Probe], settings: ProbeSettings, log: EventLog,
              suite: str, **extra: Any) -> list[list[Generation]]:
    """Ask the backend for one batch; a crash or a malformed result becomes per-probe errors."""
    ids = [p.id for p in batch]
    try:
        gens = backend.generate([p.message_list() for p in batch], settings.max_new_tokens,
                                settings.temperature, settings.seed, settings.samples, **extra)
        if len(gens) != len(batch) or any(len(g) != settings.samples for g in gens):
            raise ValueError(f"backend returned {[len(g) for g in gens]} samples for {len(batch)} prompts")
    except Exception as exc:  # noqa: BLE001 - recorded per probe, the run goes on
        message = f"backend failed: {type(exc).__name__}: {exc}"
        log("batch.error", suite=suite, probes=ids, error=message)
        return [[Generation(error=message) for _ in range(settings.samples)] for _ in batch]
    log("batch.done", suite=suite, probes=ids)
    return gens


def _score(suite: str, probe: Probe, sample: int, seed: int, gen: Generation, lexicon: Lexicon,
           boilerplate: Boilerplate, log: EventLog) -> dict[str, Any]:
    error = gen.error
    if error is None and not (gen.text or "").strip():
        error = "empty response"
    row: dict[str, Any] = {"suite": suite, "probe": probe.id, "language": probe.language, "sample": sample,
                           "seed": seed, "text": gen.text or "", "prompt_tokens": gen.prompt_tokens,
                           "completion_tokens": gen.completion_tokens, "error": error}
    if error is not None:
        log("probe.error", suite=suite, probe=probe.id, sample=sample, error=error)
        return row
    row.update(run_detectors(gen.text, probe.detectors, lexicon, boilerplate))
    return row


def _suite_block(suite: Suite, responses: list[dict[str, Any]]) -> dict[str, Any]:
    """The record's entry for one suite: prompts, every response, claim counts, detector summaries."""
    ok = [r for r in responses if r["error"] is None]
    fired = sorted({d for r in ok for d, key in (("identity", "claims"), ("boilerplate", "boilerplate"),
                                                  ("cutoff", "cutoff")) if r.get(key)})
    return {
        "suite": suite.name,
        "description": suite.description,
        "source": suite.source,
        "sha256": suite.sha256,
        "version": suite.version,
        "detectors_run": suite.detectors(),
        "detectors": fired,
        "answered": len(ok),
        "failed": len(responses) - len(ok),
        "claims": _claims(ok),
        "vendors": _vendors(ok),
        "boilerplate": _counts(ok, "boilerplate", "phrase"),
        "cutoff": _counts(ok, "cutoff", "date"),
        "errors": [{"probe": r["probe"], "sample": r["sample"], "error": r["error"]}
                   for r in responses if r["error"] is not None],
        "prompts": [p.as_dict() for p in suite.probes],
        "responses": [{k: v for k, v in r.items() if k != "suite"} for r in responses],
    }


def _claims(ok: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{vendor, model, language, count, of}]: answers claiming each (vendor, model) per language."""
    scored = [r for r in ok if "claims" in r]
    of = Counter(r["language"] for r in scored)
    counts: Counter[tuple[str, str | None, str]] = Counter()
    for r in scored:
        models: dict[str, set[str]] = defaultdict(set)
        for c in r["claims"]:
            names = models[c["vendor"]]
            if c["model"]:
                names.add(c["model"])
        for vendor, names in models.items():
            claimed: list[str | None] = [*sorted(names)] or [None]
            for model in claimed:
                counts[(vendor, model, r["language"])] += 1
    return [{"vendor": v, "model": m, "language": lang, "count": n, "of": of[lang]}
            for (v, m, lang), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0], str(kv[0][1])))]


def _vendors(ok: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{vendor, count, of, share}] over all languages of the suite."""
    scored = [r for r in ok if "claims" in r]
    counts = Counter(v for r in scored for v in {c["vendor"] for c in r["claims"]})
    n = len(scored)
    return [{"vendor": v, "count": k, "of": n, "share": round(k / n, 4)} for v, k in counts.most_common()]


def _counts(ok: list[dict[str, Any]], key: str, label: str) -> list[dict[str, Any]]:
    scored = [r for r in ok if key in r]
    counts = Counter(x for r in scored for x in set(r[key]))
    return [{label: x, "count": k, "of": len(scored)} for x, k in counts.most_common()]
