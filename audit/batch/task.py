"""The work for one manifest row, run in a worker process: hash, look up the cache, audit, fingerprint, store.

The model is opened once: the same opened checkpoint is audited and fingerprinted (the fingerprint feeds the
batch's lineage tree). `run_task` must stay importable and picklable by name (process pools and Ray ship it to
workers); a `Task` holds only plain values.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audit.batch.fingerprints import FingerprintCache
    from audit.batch.hashcache import FileHasher
    from audit.fingerprinting.view import ModelView
    from audit.pipeline import Request


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to audit one model (plain, picklable values)."""

    index: int  # position in the manifest (0-based)
    line: int  # manifest line
    model: str  # resolved path
    name: str  # the name the model is reported under
    explicit_name: str | None
    references: tuple[tuple[str, str | None], ...]  # (resolved path, name or None)
    reference_names: tuple[str, ...]  # the names they are reported under
    suites: tuple[str, ...] = ()  # probe suite names or files
    suite_digests: tuple[str, ...] = ()
    declared: tuple[str, ...] = ()
    claims: tuple[str, ...] = ()  # what the manifest says the model is (set beside the evidence)
    declared_license: str | None = None
    registries: tuple[str, ...] | None = None  # None: --no-registry; else extra registry folders
    registry_digest: str | None = None
    seed: int = 0
    allow_pickle: bool = False
    probe: dict[str, Any] = field(default_factory=dict)  # samples, max_new_tokens, temperature, batch_size, device
    cache_dir: str | None = None

    def argv(self) -> list[str]:
        """The `provaudit audit` command line equivalent to this task (recorded as the record's argv)."""
        out = ["audit", self.model]
        if self.explicit_name:
            out += ["--name", self.explicit_name]
        for path, name in self.references:
            out += ["--reference", f"{name}={path}" if name else path]
        if self.registries is None:
            out.append("--no-registry")
        else:
            for r in self.registries:
                out += ["--registry", r]
        for s in self.suites:
            out += ["--probe", s]
        for d in self.declared:
            out += ["--declared", d]
        if self.suites:
            for k in ("samples", "max_new_tokens", "temperature", "batch_size", "device"):
                if k in self.probe:
                    out += [f"--{k.replace('_', '-')}", str(self.probe[k])]
        for c in self.claims:
            out += ["--claim", c]
        if self.declared_license:
            out += ["--declared-license", self.declared_license]
        if self.allow_pickle:
            out.append("--allow-pickle")
        return [*out, "--seed", str(self.seed)]


def file_digests(path: str, file_digest: Callable[[Path], str | None]) -> list[list[str | None]]:
    """[[name relative to the model, SHA-256], ...] for the files an audit of the model at `path` reads."""
    from audit.batch.hashcache import model_files

    root = Path(path)
    return [[f.name if root.is_file() else f.relative_to(root).as_posix(), file_digest(f)]
            for f in model_files(root)]


def key_material(task: Task, file_digest: Callable[[Path], str | None]) -> dict[str, Any]:
    """What the cache key covers; `file_digest(path)` gives a file's SHA-256 (or None if unknown)."""

    def files(path: str) -> list[list[str | None]]:
        return file_digests(path, file_digest)

    return {
        "model": {"name": task.name, "files": files(task.model)},
        "references": [{"name": n, "files": files(p)}
                       for (p, _), n in zip(task.references, task.reference_names, strict=True)],
        "registry": task.registry_digest if task.registries is not None else None,
        "probes": {"suites": list(task.suite_digests), "settings": task.probe} if task.suites else None,
        "declared": list(task.declared) if task.suites else [],
        "seed": task.seed,
        "allow_pickle": task.allow_pickle,
        "claims": [*task.claims, *([f"licence:{task.declared_license}"] if task.declared_license else [])],
    }


def _if_known(hasher: FileHasher, fn: Callable[[Callable[[Path], str | None]], str]) -> str | None:
    """fn(lookup) when every file it looks up is already memoised (nothing is read), else None."""
    unknown: list[Path] = []

    def lookup(path: Path) -> str | None:
        d = hasher.known(path)
        if d is None:
            unknown.append(path)
        return d

    try:
        value = fn(lookup)
    except OSError:
        return None
    return None if unknown else value


def known_key(task: Task, hasher: FileHasher) -> str | None:
    """The cache key if every file's hash is already memoised (nothing is read), else None."""
    from audit.batch.cache import make_key

    return _if_known(hasher, lambda lookup: make_key(key_material(task, lookup)))


def compute_key(task: Task, hasher: FileHasher) -> str:
    """The cache key, hashing whatever files are not memoised yet."""
    from audit.batch.cache import make_key

    return make_key(key_material(task, hasher.sha256))


def fingerprint_key_of(task: Task, file_digest: Callable[[Path], str | None]) -> str:
    """The key of this row's weight fingerprint in the batch cache (the model's files, seed, pickle option)."""
    from audit.batch.fingerprints import fingerprint_key

    return fingerprint_key(file_digests(task.model, file_digest), task.seed, task.allow_pickle)


def known_fingerprint_key(task: Task, hasher: FileHasher) -> str | None:
    """The fingerprint's key if every file's hash is already memoised (nothing is read), else None."""
    return _if_known(hasher, lambda lookup: fingerprint_key_of(task, lookup))


def run_task(task: Task) -> dict[str, Any]:
    """Audit and fingerprint one model, or take either from the cache; never raises (errors are part of the
    result). The model is opened at most once, whatever needs doing."""
    from audit.batch.cache import ResultCache
    from audit.batch.fingerprints import FingerprintCache
    from audit.batch.hashcache import FileHasher
    from audit.errors import InputError

    t0 = time.perf_counter()
    cache_dir = Path(task.cache_dir) if task.cache_dir else None
    hasher = FileHasher(cache_dir / "hashes" if cache_dir else None)
    result: dict[str, Any] = {"index": task.index, "key": None, "record": None, "error": None, "error_kind": None,
                              "source": "audit", "note": None, "stored": False, "pid": os.getpid(),
                              "fingerprint": {"key": None, "path": None, "error": None, "source": None}}
    try:
        key = compute_key(task, hasher)
        fp_key = fingerprint_key_of(task, hasher.sha256)
    except OSError as exc:
        message = f"cannot read the model's files: {exc}"
        return {**result, "error": message, "error_kind": "input", "seconds": round(time.perf_counter() - t0, 3),
                "fingerprint": {**result["fingerprint"], "error": message}}
    result["key"] = key
    result["fingerprint"]["key"] = fp_key
    cache = ResultCache(cache_dir) if cache_dir else None
    fps = FingerprintCache(cache_dir) if cache_dir else None
    audited = False
    if cache is not None:
        found = cache.get(key)
        if found.status == "hit":
            result |= {"record": found.record, "error": found.error, "error_kind": "input" if found.error else None,
                       "source": "cache", "stored": True}
            audited = True
        elif found.status == "corrupt":
            result["note"] = f"cache entry rebuilt ({found.reason})"
    fingerprinted = False
    if fps is not None:
        entry = fps.get(fp_key)
        if entry.status == "hit":
            result["fingerprint"] |= {"path": str(entry.path) if entry.path else None, "error": entry.error,
                                      "source": "cache"}
            fingerprinted = True
    if audited and fingerprinted:
        return {**result, "seconds": round(time.perf_counter() - t0, 3)}

    view: ModelView | None = None
    open_error: Exception | None = None
    try:
        view = open_view(task)
    except Exception as exc:  # noqa: BLE001 - the audit would stop on the same error: reported below, as its error
        open_error = exc
    if not fingerprinted:
        result["fingerprint"] |= fingerprint_row(task, view, open_error, fp_key, fps)
    if not audited:
        try:
            if open_error is not None:
                raise open_error
            record = audit_one(task, view)
        except InputError as exc:  # the same files give the same error: cache it
            result |= {"error": str(exc), "error_kind": "input"}
        except Exception as exc:  # noqa: BLE001 - one model's failure must not stop the batch; not cached
            result |= {"error": f"internal error: {type(exc).__name__}: {exc}", "error_kind": "internal"}
        else:
            result["record"] = record
        probe_failed = bool(((result["record"] or {}).get("probe_run") or {}).get("error"))  # ProbeFailure
        # internal errors and probes that could not start may be transient: not cached
        result["cacheable"] = result["error_kind"] != "internal" and not probe_failed
        if cache is not None and result["cacheable"]:
            try:
                cache.put(key, record=result["record"], error=result["error"])
                result["stored"] = True
            except OSError:
                pass  # the parent stores it
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


def open_view(task: Task) -> ModelView:
    """The row's model, opened once for its audit and its fingerprint."""
    from audit.checkpoint import open_checkpoint
    from audit.fingerprinting.view import ModelView

    return ModelView(open_checkpoint(task.model, allow_pickle=task.allow_pickle, name=task.explicit_name))


def fingerprint_row(task: Task, view: ModelView | None, open_error: BaseException | None, key: str,
                    fps: FingerprintCache | None) -> dict[str, Any]:
    """Build the row's weight fingerprint from the opened `view` into the cache: {"path", "error", "source"}.
    A model that cannot be fingerprinted says why (cached, unless the failure may be transient)."""
    from audit.errors import InputError
    from audit.fingerprinting.reference import build_weight_fingerprint

    if fps is None:
        return {"error": "no cache folder to keep the fingerprint in", "source": "built"}
    error: str | None = None
    transient = False
    if open_error is not None:
        error = str(open_error) if isinstance(open_error, InputError) else \
            f"internal error: {type(open_error).__name__}: {open_error}"
        transient = not isinstance(open_error, InputError)
    elif view is not None and (not view.roles.layers() or not view.hidden or not view.embed_name()):
        error = "no transformer blocks or embeddings found; nothing to fingerprint"
    if error is None and view is not None:
        built = fps.file_path(key).with_name(f"{key}.{os.getpid()}.build.safetensors")
        try:
            built.parent.mkdir(parents=True, exist_ok=True)
            build_weight_fingerprint(view, built, {"name": task.name, "source": "batch"}, seed=task.seed)
            return {"path": str(fps.put_file(key, built)), "error": None, "source": "built"}
        except InputError as exc:
            error = str(exc)
        except OSError as exc:
            error, transient = f"fingerprint not stored: {exc}", True
        except Exception as exc:  # noqa: BLE001 - this model is left out of the tree, the batch goes on
            error, transient = f"internal error: {type(exc).__name__}: {exc}", True
        finally:
            built.unlink(missing_ok=True)
    if not transient:
        try:
            fps.put_error(key, error or "not fingerprinted")
        except OSError:
            pass
    return {"path": None, "error": error or "not fingerprinted", "source": "built"}


def request(task: Task) -> Request:
    """The pipeline request of this row: the same as `provaudit audit` with the row's options."""
    from audit.pipeline import ProbeRequest, Request
    from audit.record.names import CommandName

    settings = {k: v for k, v in task.probe.items()
                if k in ("samples", "max_new_tokens", "temperature", "batch_size", "device")}
    probes = ProbeRequest(tuple(task.suites), declared=tuple(task.declared), **settings) if task.suites else None
    return Request(CommandName.AUDIT, model=task.model, name=task.explicit_name, references=task.references,
                   registries=task.registries, probes=probes, seed=task.seed, allow_pickle=task.allow_pickle,
                   argv=tuple(task.argv()), claims=task.claims, declared_license=task.declared_license,
                   claims_source=f"manifest line {task.line}")


def audit_one(task: Task, view: ModelView | None = None) -> dict[str, Any]:
    """The record of `provaudit audit` for this task (weights, then probes when asked), as JSON values.
    `view`: the row's model already opened (see `open_view`)."""
    from audit.pipeline import run

    return run(request(task), reuse_registry=True, candidate=view).to_json_dict()
