"""Request -> record: the one path every command takes (compare, audit, probe, batch rows, demo).

A `Request` says what to audit (a local model, an OpenAI-compatible endpoint, or scripted answers), against
what (reference checkpoints, the registry), which probe suites to run and with which seed. `run` returns a
complete, immutable `Record`; commands only parse options into a request and render the record.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit import __version__
from audit.errors import InputError
from audit.record.models import (
    AdapterInfo,
    AnyFlag,
    ClaimsSection,
    Command,
    DeclaredClaim,
    FileDigest,
    MergeInfo,
    MergeParent,
    ModelInfo,
    ProbeFailure,
    Record,
    RegistrySection,
    SkippedReference,
    Tool,
    Verdict,
)
from audit.record.models import Comparison as ComparisonRecord
from audit.record.names import CommandName, FlagKind, Label, Operation

if TYPE_CHECKING:
    from audit.checkpoint.model import Checkpoint
    from audit.checkpoint.progress import Progress
    from audit.fingerprinting.registry import Registry
    from audit.fingerprinting.view import ModelView
    from audit.lineage.compare import Comparison
    from audit.probing.runner import ProbeSettings
    from audit.probing.session import ProbeOutcome
    from audit.probing.suite import Suite
    from audit.probing.trace import TraceOptions

Warn = Callable[[str], None]


@dataclass(frozen=True)
class ProbeRequest:
    """Which probe suites to run and how to sample them (sample j of every prompt uses seed SEED+j)."""

    suites: tuple[str, ...] = ()  # bundled names or suite files; empty: every bundled suite
    samples: int = 3
    max_new_tokens: int = 160
    temperature: float = 0.7
    batch_size: int = 64
    device: str = "auto"
    declared: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible API to probe instead of a local model."""

    url: str
    model: str
    api_key_env: str | None = None
    timeout: float = 60.0
    max_requests: int = 2000
    tokenizer_check: bool = True


@dataclass(frozen=True)
class TraceRequest:
    """`provaudit trace`: test options, control models (path, name), the response cache, the local device."""

    options: TraceOptions
    controls: tuple[tuple[str, str | None], ...] = ()
    cache: bool = True
    device: str = "auto"
    reference_api_key_env: str | None = None  # for references given as endpoint:URL#MODEL


@dataclass(frozen=True)
class Request:
    """Everything that determines a record, apart from when it was made."""

    command: CommandName
    model: str | None = None  # a local model (path or hub id in the local cache)
    name: str | None = None  # the subject's name in the report
    references: tuple[tuple[str, str | None], ...] = ()  # (path, name or None)
    registries: tuple[str, ...] | None = None  # None: no registry; else extra registry folders
    probes: ProbeRequest | None = None
    endpoint: Endpoint | None = None
    fake_rules: str | None = None  # scripted answers (tests and demos)
    seed: int = 0
    allow_pickle: bool = False
    argv: tuple[str, ...] = field(default_factory=tuple)
    claims: tuple[str, ...] = ()  # what the user was told (--claim): 'self-developed', 'fine-tuned from X'
    declared_license: str | None = None  # the licence the user was told (--declared-license)
    claims_source: str = "command line"  # where `claims` and `declared_license` came from (a manifest line)
    trace: TraceRequest | None = None  # `provaudit trace`: references are traced from outputs, not weights

    @property
    def weights(self) -> bool:
        """True when weights are compared (references or the registry), not only probed."""
        return self.model is not None and (bool(self.references) or self.registries is not None)


def split_reference(spec: str) -> tuple[str, str | None]:
    """A reference as given on a command line or in a manifest: 'name=path' -> (path, name), a plain path ->
    (path, None)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        if name and "/" not in name:
            return path, name
    return spec, None


def run(request: Request, progress: Progress | None = None, warn: Warn | None = None,
        reuse_registry: bool = False, candidate: ModelView | None = None) -> Record:
    """Carry out `request`; InputError (exit 2) for unusable input, nothing written.

    `reuse_registry`: keep the loaded registry for later requests in this process (batch workers).
    `candidate`: `request.model` already opened (a batch row's view, also used for its fingerprint).
    """
    sources = [x for x in (request.model, request.endpoint, request.fake_rules) if x]
    if len(sources) != 1:
        raise InputError("give exactly one model, endpoint or scripted backend to audit")
    if request.trace is not None:
        return run_trace(request, progress)
    suites = _suites(request.probes) if request.probes is not None else []  # a bad suite stops before any work
    user_claims(request)  # a claim that cannot be read stops before any work too
    if not request.weights:
        if request.probes is None:
            raise InputError("nothing to do: give references, the registry or probe suites")
        return _probe_only(request, suites, progress)
    return _weights(request, suites, progress, warn, reuse_registry, candidate)


# ---------------------------------------------------------------------------------------------- weights


def _weights(request: Request, suites: list[Suite], progress: Progress | None, warn: Warn | None,
             reuse_registry: bool, candidate: ModelView | None = None) -> Record:
    from audit.checkpoint import open_checkpoint
    from audit.checkpoint.adapter import ADAPTER_FORMAT
    from audit.checkpoint.hashing import BackgroundHasher
    from audit.errors import NothingComparable
    from audit.fingerprinting.describe import model_info, stored_info
    from audit.fingerprinting.reference import Reference, live_reference
    from audit.fingerprinting.view import ModelView
    from audit.lineage.compare import compare_screened, compare_views
    from audit.lineage.registry_audit import family_flags, registry_section
    from audit.lineage.verdict import flags as verdict_flags
    from audit.lineage.verdict import judge, no_weight_evidence, overall

    assert request.model is not None
    opened = candidate.ckpt if candidate is not None else \
        open_checkpoint(request.model, allow_pickle=request.allow_pickle, name=request.name)
    if opened.format == ADAPTER_FORMAT:  # a PEFT adapter is audited as what it is, not as a model
        return _adapter(request, opened)
    candidate = candidate or ModelView(opened)
    registry = registry_for(request.registries, warn, reuse_registry) if request.registries is not None else None
    cand = candidate
    live = [ModelView(open_checkpoint(path, allow_pickle=request.allow_pickle, name=ref_name))
            for path, ref_name in request.references]
    _dedupe_names(live)
    hashers = {id(v): BackgroundHasher(v.ckpt.files) for v in [cand, *live]}
    refs: list[Reference] = [live_reference(v) for v in live]
    if registry is not None:
        refs += [e.data["reference"] for e in registry.of_kind("weights")]
    comparisons, verdicts, sections, skipped = [], [], [], []
    for ref in refs:
        if progress is not None:
            progress.start(f"{cand.name} vs {ref.name}", 2 * _work(cand))  # both models, or the screen and the full pass
        try:
            cmp = (compare_views(cand, ref, seed=request.seed, progress=progress) if ref.view is not None
                   else compare_screened(cand, ref, seed=request.seed, progress=progress))
        except NothingComparable as exc:
            if ref.view is not None:  # the user asked for this reference explicitly
                raise
            skipped.append(SkippedReference(reference=ref.name, reason=str(exc)))
            continue
        v = judge(cmp)
        comparisons.append(cmp)
        verdicts.append(v)
        sections.append(cmp.to_record(v, len(ref.layers)))
    if not comparisons and registry is None:
        raise InputError("no reference could be compared")
    verdict = overall(verdicts, comparisons) if comparisons else no_weight_evidence(len(skipped))
    merge = _merge(cand, live, comparisons, request.seed) if len(live) >= 2 else None
    if merge is not None:
        verdict = _merge_verdict(verdict, merge)
    flags: list[AnyFlag] = list(verdict_flags(verdict, comparisons))
    from audit.lineage.quality import weight_quality

    verdict, flags = weight_quality(verdict, flags, cand, live)  # NaN/Inf or all-zero tensors: flag and verdict
    reg: RegistrySection | None = None
    if registry is not None:
        reg = registry_section(cand, registry, comparisons, skipped)
        if verdict.label not in (Label.DERIVED, Label.FINE_TUNED):
            kinds = {f.kind for f in flags}
            flags += [f for f in family_flags(reg) if f.kind not in kinds]
    subject = _with_io(model_info(cand, hashers[id(cand)].result()), cand)
    references = ([_with_io(model_info(v, hashers[id(v)].result()), v) for v in live]
                  + [stored_info(r) for r in refs if r.view is None])
    outcome = _probe_stage(request, suites, verdict, references, progress) if suites else None
    if outcome is not None:
        flags += outcome.flags
    claims = _claims(request, cand.ckpt, verdict, sections, references, merge=merge,
                     identities={**{v.name: v.ckpt for v in live}, **{r.name: r.stored for r in refs if r.view is None}})
    return Record(
        tool=Tool(version=__version__), created=_now(), command=_command(request), subject=subject,
        references=references, verdict=verdict, comparisons=sections, flags=flags,
        probes=outcome.probes if outcome is not None else [], probe_run=outcome.run if outcome is not None else None,
        registry=reg, merge=merge, claims=claims,
    )


def user_claims(request: Request) -> list[DeclaredClaim]:
    """The claims given on the command line or in a manifest row (InputError for one that cannot be read)."""
    from audit.claims.declared import parse_cli_claim, parse_cli_licence

    out = [c for text in request.claims for c in parse_cli_claim(text, request.claims_source)]
    if request.declared_license:
        out.append(parse_cli_licence(request.declared_license, request.claims_source))
    return out


def _claims(request: Request, ckpt: Checkpoint, verdict: Verdict, comparisons: list[ComparisonRecord],
            references: list[ModelInfo], *, merge: MergeInfo | None = None, adapter: AdapterInfo | None = None,
            identities: dict[str, object] | None = None) -> ClaimsSection:
    """Claims vs evidence: the model's own declarations and the user's, beside the measured relation."""
    from audit.claims.collect import collect_declarations, identity_of
    from audit.claims.judge import judge_claims, measured_from
    from audit.claims.licences import licence_of_model

    found = collect_declarations(ckpt)
    ids = {name: identity_of(name, source) for name, source in (identities or {}).items()}
    measured = measured_from(verdict, comparisons, references, merge=merge, adapter=adapter, identities=ids)
    return judge_claims([*found.claims, *user_claims(request)], measured, subject_name=ckpt.name,
                        licence_for=licence_of_model, files=found.texts, sources_read=found.sources,
                        notes=found.notes)


def _merge(cand: ModelView, live: list[ModelView], comparisons: list[Comparison], seed: int) -> MergeInfo | None:
    """Whether the candidate combines two or more of the checkpoints given as references (a merge)."""
    from audit.lineage.merges import find_merge

    by_name = {c.reference: c for c in comparisons}
    found = find_merge(cand, [(v, by_name.get(v.name)) for v in live], seed=seed)
    if found is None:
        return None
    parents = [MergeParent(reference=name, weight=round(w, 4),
                           spread=round(found.spread[name], 4) if name in found.spread else None,
                           layers=found.layers.get(name, []))
               for name, w in found.parents]
    return MergeInfo(kind=found.kind, parents=parents, residual=round(found.residual, 4),
                     layers_compared=found.layers_compared, detail=found.detail)


def _merge_verdict(verdict: Verdict, merge: MergeInfo) -> Verdict:
    """A merge is derived from every parent named: the one with the largest weight is `parent`."""
    top = max(merge.parents, key=lambda p: p.weight)
    names = ", ".join(f"{p.reference} ({p.weight:.2f})" for p in merge.parents)
    ops = [Operation.MERGE, *(o for o in verdict.operations if o not in (Operation.MERGE, Operation.PARTIAL_REUSE))]
    carried = verdict.label in (Label.DERIVED, Label.FINE_TUNED)
    return verdict.model_copy(update={
        "label": Label.DERIVED, "parent": top.reference, "operations": ops,
        "confidence": verdict.confidence if carried else None,
        "confidence_basis": (verdict.confidence_basis if carried else None),
        "summary": f"A {merge.kind} merge of {names}: {merge.detail}. " + verdict.summary})


def _adapter(request: Request, ckpt: Checkpoint) -> Record:
    """A PEFT adapter: what it declares (base, rank, targets) and whether its shapes fit the base it is checked
    on (the first reference). Fitting makes the adapter a fine-tune of that base in waiting (relation: adapter)."""
    from audit.checkpoint import open_checkpoint
    from audit.checkpoint.adapter import read_adapter
    from audit.checkpoint.hashing import BackgroundHasher
    from audit.fingerprinting.describe import model_info
    from audit.fingerprinting.view import ModelView
    from audit.lineage.adapters import adapter_findings

    adapter = read_adapter(ckpt)
    hasher = BackgroundHasher(ckpt.files)
    base = None
    if request.references:
        path, ref_name = request.references[0]
        base = ModelView(open_checkpoint(path, allow_pickle=request.allow_pickle, name=ref_name))
    found = adapter_findings(adapter, base)
    summary = found.summary()[0].upper() + found.summary()[1:] + "."
    if base is None:
        hint = f" (e.g. hf:{found.base_declared})" if found.base_declared and "/" in found.base_declared else ""
        verdict = Verdict(label=Label.INCONCLUSIVE, summary=summary + " Give the base it declares as a reference"
                          f"{hint} to check that its shapes fit.")
    elif found.shapes_fit:
        verdict = Verdict(label=Label.FINE_TUNED, parent=base.name, references_checked=1,
                          confidence_basis="structural: every adapted module's shape fits the base; no weights "
                                           "are compared (an adapter holds only the update)",
                          summary=summary + f" Applied to {base.name}, it makes a fine-tune of it (relation: adapter).")
    else:
        verdict = Verdict(label=Label.INCONCLUSIVE, references_checked=1,
                          summary=summary + " Check it against the base it declares.")
    subject = ModelInfo(name=ckpt.name, path=str(ckpt.path), format=ckpt.format,
                        files=[FileDigest.model_validate(f) for f in hasher.result()])
    references = [_with_io(model_info(base, BackgroundHasher(base.ckpt.files).result()), base)] if base else []
    adapter_record = found.to_record()
    claims = _claims(request, ckpt, verdict, [], references, adapter=adapter_record,
                     identities={base.name: base.ckpt} if base is not None else None)
    return Record(tool=Tool(version=__version__), created=_now(), command=_command(request), subject=subject,
                  references=references, verdict=verdict, adapter=adapter_record, claims=claims)


def _probe_stage(request: Request, suites: list[Suite], verdict: Verdict, references: list[ModelInfo],
                 progress: Progress | None) -> ProbeOutcome:
    """Probes after a weight audit: a backend that cannot start is recorded and warned about, the audit stands."""
    from audit.probing import session

    assert request.probes is not None and request.model is not None
    p = request.probes
    try:
        backend = session.local_backend(request.model, p.device, p.batch_size)
    except Exception as exc:  # noqa: BLE001 - the weight audit's record still stands
        message = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        return session.ProbeOutcome(probes=[], flags=[], run=ProbeFailure(error=message, suites=[s.name for s in suites]))
    inherited = session.inherited_vendors(verdict, references)
    return session.probe(backend, suites, _settings(request), progress=progress, inherited=inherited)


# ---------------------------------------------------------------------------------------------- trace


def run_trace(request: Request, progress: Progress | None = None) -> Record:
    """`provaudit trace`: which reference produced the subject's outputs (audit.probing.trace). No weights are
    compared, so the record's verdict is inconclusive with references_checked=0; the trace is in `trace`."""
    from audit.probing import trace as tr
    from audit.probing.backends import create_backend
    from audit.probing.backends.openai_http import default_cache_dir
    from audit.probing.trace_local import GenerationCache, load_local

    assert request.trace is not None
    t = request.trace
    names = [name or Path(path).stem for path, name in [*request.references, *t.controls]]
    if len(set(names)) != len(names):
        raise InputError(f"reference and control names must differ: {', '.join(names)}")
    root = default_cache_dir() if t.cache else None
    e = request.endpoint
    opened: list[Any] = []

    def model(name: str, path: str) -> tr.Model:
        if not path.startswith("endpoint:"):
            return tr.Model(name, path)
        url, _, served = path[len("endpoint:"):].partition("#")
        ref_backend: Any = create_backend("openai", endpoint=url, model=served, api_key_env=t.reference_api_key_env,
                                          timeout=e.timeout if e else 120.0,
                                          max_requests=e.max_requests if e else 500, cache_dir=root)
        opened.append(ref_backend)
        return tr.Model(name, f"endpoint:{ref_backend.describe()['endpoint']}#{served}", endpoint=ref_backend)

    models = [model(n, path) for n, (path, _) in zip(names, [*request.references, *t.controls], strict=True)]
    refs, controls = models[:len(request.references)], models[len(request.references):]
    cache = GenerationCache(root.parent / "generations" if root is not None else None)
    subject_backend: tr.Subject
    if e is not None:
        backend: Any = create_backend("openai", endpoint=e.url, model=e.model, api_key_env=e.api_key_env,
                                      timeout=e.timeout, max_requests=e.max_requests, cache_dir=root)
        subject_backend = backend
        subject = ModelInfo(name=request.name or e.model, path=str(subject_backend.describe()["endpoint"]),
                            format="openai-endpoint")
    elif request.model is not None:
        local = load_local(request.model, t.device)
        subject_backend = tr.LocalSubject(local)
        subject = ModelInfo(name=request.name or Path(local.path).stem, path=local.path, format="local")
    else:
        raise InputError("trace needs MODEL or --endpoint URL --model NAME")
    try:
        outcome = tr.run_trace(subject_backend, refs, controls, t.options, cache, progress=progress, device=t.device,
                               max_requests=e.max_requests if e is not None else None)
    finally:
        for b in [subject_backend, *opened]:
            close = getattr(b, "close", None)
            if callable(close):
                close()
    section = outcome.section
    verdict = Verdict(label=Label.INCONCLUSIVE, references_checked=0,
                      summary="Black-box trace only: no weights were compared, so there is no weight lineage "
                              "verdict. " + section.summary)
    return Record(tool=Tool(version=__version__), created=_now(), command=_command(request), subject=subject,
                  verdict=verdict, flags=list(outcome.flags), trace=section)


# ---------------------------------------------------------------------------------------------- probes only


def _probe_only(request: Request, suites: list[Suite], progress: Progress | None) -> Record:
    """`provaudit probe`: no weights compared, so the verdict is inconclusive with no parent; findings are flags."""
    from audit.probing import session

    hasher = None
    if request.endpoint is not None:
        e = request.endpoint
        backend = session.endpoint_backend(e.url, e.model, e.api_key_env, e.timeout, e.max_requests)
        subject = session.endpoint_subject(backend, request.name)
    elif request.fake_rules is not None:
        backend = session.fake_backend(request.fake_rules)
        subject = ModelInfo(name=request.name or str(backend.describe()["model"]), path=request.fake_rules,
                            format="fake")
    else:
        assert request.model is not None and request.probes is not None
        local, hasher = session.local_subject(request.model, request.name)
        backend = session.local_backend(request.model, request.probes.device, request.probes.batch_size)
    check = request.endpoint is not None and request.endpoint.tokenizer_check
    outcome = session.probe(backend, suites, _settings(request), progress=progress, tokenizer_check=check)
    if hasher is not None:  # hashing overlapped with generation
        subject = ModelInfo(**local, files=hasher.result())
    return Record(
        tool=Tool(version=__version__), created=_now(), command=_command(request), subject=subject,
        verdict=_probe_verdict(outcome), flags=outcome.flags, probes=outcome.probes, probe_run=outcome.run,
    )


def _probe_verdict(outcome: ProbeOutcome) -> Verdict:
    found = "; ".join(f.evidence.vendor_name for f in outcome.flags if f.kind == FlagKind.DISTILLATION_LEAK)
    summary = ("Black-box probes only: no weights were compared, so there is no lineage verdict; "
               + (f"the answers claim another vendor's identity ({found}): see the distillation-leak flag."
                  if found else "no foreign identity claim beyond noise."))
    tok = getattr(outcome.run, "tokenizer_inference", None)
    if tok is not None:
        summary += " " + (tok.summary or f"Endpoint tokenizer: {tok.reason}")
    if any(f.kind == FlagKind.WRAPPER_SUSPECTED for f in outcome.flags):
        summary += " The endpoint is suspected of wrapping another vendor's model: see the wrapper-suspected flag."
    return Verdict(label=Label.INCONCLUSIVE, references_checked=0, summary=summary)


# ---------------------------------------------------------------------------------------------- helpers


def _suites(probes: ProbeRequest) -> list[Suite]:
    from audit.probing.suite import resolve_suites

    return resolve_suites(list(probes.suites))


def _settings(request: Request) -> ProbeSettings:
    from audit.probing.runner import ProbeSettings

    p = request.probes or ProbeRequest()
    return ProbeSettings(p.samples, p.max_new_tokens, p.temperature, request.seed, p.batch_size, tuple(p.declared))


@lru_cache(maxsize=4)
def _registry(extra: tuple[str, ...]) -> Registry:
    from audit.fingerprinting.registry import load_registry

    return load_registry(extra=[Path(r) for r in extra])


def registry_for(extra: tuple[str, ...], warn: Warn | None = None, reuse: bool = False) -> Registry:
    """The bundled, user and extra registries; broken entries are warned about. `reuse`: load once per process."""
    registry = _registry(tuple(extra)) if reuse else _registry.__wrapped__(tuple(extra))
    if warn is not None:
        for entry, problem in registry.errors:
            warn(f"provaudit: warning: skipping registry entry {entry}: {problem}")
    return registry


def _command(request: Request) -> Command:
    return Command(name=request.command, argv=list(request.argv), seed=request.seed)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _work(view: ModelView) -> int:
    return sum(len(view.row_weights(layer)) for layer in view.roles.layers())


def _with_io(info: ModelInfo, view: ModelView) -> ModelInfo:
    """The record's model description with what reading its checkpoint cost (bytes read, fetched, requests)."""
    io = view.ckpt.io
    return info if io is None else info.model_copy(update={"io": io.to_record()})


def _dedupe_names(views: list[ModelView]) -> None:
    from audit.fingerprinting.view import unique_names

    for v, name in zip(views, unique_names([v.ckpt.name for v in views]), strict=True):
        v.ckpt.name = name
