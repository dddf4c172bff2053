"""Open a probe backend, run suites on it, and return the results as record sections."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.errors import InputError
from audit.probing.backends.base import Backend
from audit.probing.runner import ProbeSettings, run_probes
from audit.probing.suite import Suite
from audit.record.models import (
    DistillationLeakFlag,
    ModelInfo,
    ProbeFailure,
    ProbeRun,
    SuiteResult,
    Verdict,
    WrapperSuspectedFlag,
)
from audit.record.names import Label

if TYPE_CHECKING:
    from audit.checkpoint.hashing import BackgroundHasher
    from audit.checkpoint.progress import Progress


def local_backend(model: str, device: str = "auto", batch_size: int = 64) -> Backend:
    """The transformers backend on a local checkpoint (InputError when it cannot be loaded)."""
    from importlib.util import find_spec

    try:  # found, not imported: the backend sets thread options before torch loads
        missing = find_spec("torch") is None or find_spec("transformers") is None
    except (ImportError, ValueError):
        missing = True
    if missing:
        raise InputError("probing a local model needs torch and transformers: pip install 'provaudit[ml]'")
    from audit.probing.backends import create_backend

    return create_backend("transformers", model=model, device=device, batch_size=batch_size)


def endpoint_backend(endpoint: str, model: str, api_key_env: str | None, timeout: float, max_requests: int,
                     concurrency: int = 4) -> Backend:
    """The OpenAI-compatible HTTP backend; InputError (exit 2) when the endpoint is unreachable."""
    from audit.probing.backends import create_backend

    return create_backend("openai", endpoint=endpoint, model=model, api_key_env=api_key_env, timeout=timeout,
                          max_requests=max_requests, concurrency=concurrency)


def fake_backend(rules_file: str) -> Backend:
    from audit.probing.backends import create_backend

    return create_backend("fake", rules_file=rules_file)


@dataclass(frozen=True)
class ProbeOutcome:
    """A probe run as record sections: per-suite results, the flags raised, how the answers were produced."""

    probes: list[SuiteResult]
    flags: list[DistillationLeakFlag | WrapperSuspectedFlag]
    run: ProbeRun | ProbeFailure


def probe(backend: Backend, suites: list[Suite], settings: ProbeSettings, progress: Progress | None = None,
          tokenizer_check: bool = False, inherited: list[str] | None = None) -> ProbeOutcome:
    """Run the suites (and, for endpoints, the tokenizer check); close the backend afterwards.

    `inherited`: vendor names of the parent family the weights derive from; claims of them count as declared.
    """
    inherited = list(inherited or [])
    if inherited:
        settings = replace(settings, declared=tuple(dict.fromkeys([*settings.declared, *inherited])))
    try:
        result = run_probes(backend, suites, settings, progress=progress)
        run = result["probe_run"]
        run["declared"]["inherited"] = inherited
        flags = [DistillationLeakFlag.model_validate(f) for f in result["flags"]]
        wrapper: list[WrapperSuspectedFlag] = []
        if tokenizer_check:
            inference, flag = check_endpoint_tokenizer(backend, run)
            run["tokenizer_inference"] = inference
            wrapper = [WrapperSuspectedFlag.model_validate(flag)] if flag is not None else []
        return ProbeOutcome(probes=[SuiteResult.model_validate(b) for b in result["probes"]],
                            flags=[*flags, *wrapper], run=ProbeRun.model_validate(run))
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()


def inherited_vendors(verdict: Verdict, references: list[ModelInfo]) -> list[str]:
    """Vendor names of the parent family when the weight audit found the model derived from it.

    A fine-tune of Llama that says "I am Llama, made by Meta" repeats its parent, not a teacher: those
    claims are treated like --declared names.
    """
    from audit.probing.detectors import default_lexicon

    parent = verdict.parent
    if verdict.label not in (Label.FINE_TUNED, Label.DERIVED) or not parent:
        return []
    ref = next((r for r in references if r.name == parent), None)
    lex = default_lexicon()
    for candidate in (ref.family if ref is not None else None, parent):
        vendor = lex.vendor_of(str(candidate)) if candidate else None
        if vendor is not None:
            return [lex.name(vendor)]
    return []


def check_endpoint_tokenizer(backend: Backend, run: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Infer the tokenizer an endpoint bills with; return it and, if warranted, a wrapper-suspected flag."""
    from audit.fingerprinting.registry import load_registry
    from audit.probing.tokcount import backend_counter, infer_tokenizer_family
    from audit.probing.wrapper import wrapper_flag

    fps = [e.data for e in load_registry().of_kind("tokenizer")]
    inference = infer_tokenizer_family(backend_counter(backend), fps)
    claimed = [t["vendor"] for t in run.get("vendor_tests", []) if t.get("flagged")]
    flag = wrapper_flag(inference, list(run["declared"]["vendors"]), claimed, list(run["declared"]["names"]))
    return inference, flag


def local_subject(model: str, name: str | None) -> tuple[dict[str, Any], BackgroundHasher]:
    """Name, path and format of a local model probed without a weight audit, and a BackgroundHasher whose
    result() gives its files (hashing overlaps with generation)."""
    from audit.checkpoint.hashing import BackgroundHasher
    from audit.checkpoint.locate import _resolve as resolve_model

    path = resolve_model(model)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    fmt = "gguf" if path.suffix == ".gguf" else "hf-folder" if path.is_dir() else path.suffix.lstrip(".")
    subject = {"name": name or (path.stem if path.is_file() else path.name), "path": str(path), "format": fmt}
    return subject, BackgroundHasher([Path(f) for f in files])


def endpoint_subject(backend: Backend, name: str | None) -> ModelInfo:
    desc = backend.describe()
    return ModelInfo(name=name or str(desc["model"]), path=str(desc["endpoint"]), format="openai-endpoint")
