"""The work for one manifest row, run in a worker process: hash, look up the cache, audit, store.

`run_task` must stay importable and picklable by name (process pools and Ray ship it to workers); a
`Task` holds only plain values.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audit.batch.hashcache import FileHasher
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
        if self.allow_pickle:
            out.append("--allow-pickle")
        return [*out, "--seed", str(self.seed)]


def key_material(task: Task, file_digest: Callable[[Path], str | None]) -> dict[str, Any]:
    """What the cache key covers; `file_digest(path)` gives a file's SHA-256 (or None if unknown)."""
    from audit.batch.hashcache import model_files

    def files(path: str) -> list[list[str | None]]:
        root = Path(path)
        return [[f.name if root.is_file() else f.relative_to(root).as_posix(), file_digest(f)]
                for f in model_files(root)]

    return {
        "model": {"name": task.name, "files": files(task.model)},
        "references": [{"name": n, "files": files(p)}
                       for (p, _), n in zip(task.references, task.reference_names, strict=True)],
        "registry": task.registry_digest if task.registries is not None else None,
        "probes": {"suites": list(task.suite_digests), "settings": task.probe} if task.suites else None,
        "declared": list(task.declared) if task.suites else [],
        "seed": task.seed,
        "allow_pickle": task.allow_pickle,
    }


def known_key(task: Task, hasher: FileHasher) -> str | None:
    """The cache key if every file's hash is already memoised (nothing is read), else None."""
    from audit.batch.cache import make_key

    unknown: list[Path] = []

    def lookup(path: Path) -> str | None:
        d = hasher.known(path)
        if d is None:
            unknown.append(path)
        return d

    try:
        material = key_material(task, lookup)
    except OSError:
        return None
    return None if unknown else make_key(material)


def compute_key(task: Task, hasher: FileHasher) -> str:
    """The cache key, hashing whatever files are not memoised yet."""
    from audit.batch.cache import make_key

    return make_key(key_material(task, hasher.sha256))


def run_task(task: Task) -> dict[str, Any]:
    """Audit one model, or take its record from the cache; never raises (errors are part of the result)."""
    from audit.batch.cache import ResultCache
    from audit.batch.hashcache import FileHasher
    from audit.errors import InputError

    t0 = time.perf_counter()
    cache_dir = Path(task.cache_dir) if task.cache_dir else None
    hasher = FileHasher(cache_dir / "hashes" if cache_dir else None)
    result: dict[str, Any] = {"index": task.index, "key": None, "record": None, "error": None, "error_kind": None,
                              "source": "audit", "note": None, "stored": False, "pid": os.getpid()}
    try:
        key = compute_key(task, hasher)
    except OSError as exc:
        return {**result, "error": f"cannot read the model's files: {exc}", "error_kind": "input",
                "seconds": round(time.perf_counter() - t0, 3)}
    result["key"] = key
    cache = ResultCache(cache_dir) if cache_dir else None
    if cache is not None:
        found = cache.get(key)
        if found.status == "hit":
            return {**result, "record": found.record, "error": found.error,
                    "error_kind": "input" if found.error else None, "source": "cache", "stored": True,
                    "seconds": round(time.perf_counter() - t0, 3)}
        if found.status == "corrupt":
            result["note"] = f"cache entry rebuilt ({found.reason})"
    try:
        record = audit_one(task)
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


def request(task: Task) -> Request:
    """The pipeline request of this row: the same as `provaudit audit` with the row's options."""
    from audit.pipeline import ProbeRequest, Request
    from audit.record.names import CommandName

    settings = {k: v for k, v in task.probe.items()
                if k in ("samples", "max_new_tokens", "temperature", "batch_size", "device")}
    probes = ProbeRequest(tuple(task.suites), declared=tuple(task.declared), **settings) if task.suites else None
    return Request(CommandName.AUDIT, model=task.model, name=task.explicit_name, references=task.references,
                   registries=task.registries, probes=probes, seed=task.seed, allow_pickle=task.allow_pickle,
                   argv=tuple(task.argv()))


def audit_one(task: Task) -> dict[str, Any]:
    """The record of `provaudit audit` for this task (weights, then probes when asked), as JSON values."""
    from audit.pipeline import run

    return run(request(task), reuse_registry=True).to_json_dict()
