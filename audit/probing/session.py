"""Glue between the CLI and the probe runner: open a backend, run suites, put the results in a record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audit.errors import InputError
from audit.probing.backends.base import Backend
from audit.probing.runner import ProbeSettings, run_probes
from audit.probing.suite import Suite


def local_backend(model: str, device: str = "auto", batch_size: int = 8) -> Backend:
    """The transformers backend on a local checkpoint (InputError when it cannot be loaded)."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise InputError("probing a local model needs torch and transformers: pip install 'provaudit[ml]'") from None
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


def probe(backend: Backend, suites: list[Suite], settings: ProbeSettings, progress: Any = None,
          tokenizer_check: bool = False) -> dict[str, Any]:
    """Run the suites (and, for endpoints, the tokenizer check); close the backend afterwards."""
    try:
        result = run_probes(backend, suites, settings, progress=progress)
        if tokenizer_check:
            check_endpoint_tokenizer(backend, result)
        return result
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()


def inherited_vendors(record: dict[str, Any]) -> list[str]:
    """Vendor names of the parent family when the weight audit found the model derived from it.

    A fine-tune of Llama that says "I am Llama, made by Meta" repeats its parent, not a teacher: those
    claims are treated like --declared names.
    """
    from audit.probing.detectors import default_lexicon

    verdict = record.get("verdict") or {}
    parent = verdict.get("parent")
    if verdict.get("label") not in ("fine-tuned", "derived") or not parent:
        return []
    ref = next((r for r in record.get("references") or [] if r.get("name") == parent), {})
    lex = default_lexicon()
    for candidate in (ref.get("family"), parent):
        vendor = lex.vendor_of(str(candidate)) if candidate else None
        if vendor is not None:
            return [lex.name(vendor)]
    return []


def attach(record: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Add a probe run's suites, flags and run description to a record (flags appended)."""
    record["probes"] = list(record.get("probes") or []) + result["probes"]
    record["flags"] = list(record.get("flags") or []) + result["flags"]
    record["probe_run"] = result["probe_run"]
    return record


def attach_error(record: dict[str, Any], suites: list[Suite], message: str) -> dict[str, Any]:
    """Record that the probes could not run (the weight audit stands)."""
    record["probe_run"] = {"error": message, "suites": [s.name for s in suites]}
    return record


def check_endpoint_tokenizer(backend: Backend, result: dict[str, Any]) -> None:
    """Infer the tokenizer an endpoint bills with; add it to probe_run and, if warranted, a wrapper-suspected flag."""
    from audit.probing.tokcount import backend_counter, infer_tokenizer_family
    from audit.probing.wrapper import wrapper_flag
    from audit.registry import load_registry

    fps = [e.data for e in load_registry().of_kind("tokenizer")]
    inference = infer_tokenizer_family(backend_counter(backend), fps)
    run = result["probe_run"]
    run["tokenizer_inference"] = inference
    claimed = [t["vendor"] for t in run.get("vendor_tests", []) if t.get("flagged")]
    flag = wrapper_flag(inference, list(run["declared"]["vendors"]), claimed, list(run["declared"]["names"]))
    if flag is not None:
        result["flags"].append(flag)


def probe_only_record(subject: dict[str, Any], result: dict[str, Any], argv: list[str], seed: int) -> dict[str, Any]:
    """A record for `provaudit probe`: no weights compared, so the verdict is inconclusive with no parent."""
    from audit.reporting.record import build_record

    flags = result["flags"]
    found = "; ".join(f["evidence"]["vendor_name"] for f in flags if f["kind"] == "distillation-leak")
    summary = ("Black-box probes only: no weights were compared, so there is no lineage verdict; "
               + (f"the answers claim another vendor's identity ({found}): see the distillation-leak flag."
                  if found else "no foreign identity claim beyond noise."))
    tok = (result.get("probe_run") or {}).get("tokenizer_inference")
    if tok:
        summary += " " + (tok.get("summary") or f"Endpoint tokenizer: {tok.get('reason')}")
    if any(f["kind"] == "wrapper-suspected" for f in flags):
        summary += " The endpoint is suspected of wrapping another vendor's model: see the wrapper-suspected flag."
    verdict = {"label": "inconclusive", "parent": None, "confidence": None, "operations": [],
               "references_checked": 0, "summary": summary}
    record = build_record("probe", argv, seed, subject, [], [], verdict, [])
    return attach(record, result)


def local_subject(model: str, name: str | None) -> tuple[dict[str, Any], Any]:
    """Subject block for a local model probed without a weight audit, and a BackgroundHasher whose
    result() fills its `files` (hashing overlaps with generation)."""
    from audit.checkpoint.hashing import BackgroundHasher
    from audit.checkpoint.locate import _resolve as resolve_model

    path = resolve_model(model)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    fmt = "gguf" if path.suffix == ".gguf" else "hf-folder" if path.is_dir() else path.suffix.lstrip(".")
    subject = {"name": name or (path.stem if path.is_file() else path.name), "path": str(path), "format": fmt,
               "files": []}
    return subject, BackgroundHasher([Path(f) for f in files])


def endpoint_subject(backend: Backend, name: str | None) -> dict[str, Any]:
    desc = backend.describe()
    return {"name": name or desc["model"], "path": desc["endpoint"], "format": "openai-endpoint", "files": []}
