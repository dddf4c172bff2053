"""Run a batch: check the manifest, skip what the cache already holds, audit the rest, write the outputs.

Outputs under OUT: `records/<slug>.json` and `.html` per model (written atomically as each finishes),
`index.html`, `index.csv`, `index.jsonl` (one row per manifest line, in manifest order), `lineage.json` (the
family tree of the batch's models, `provaudit.lineage/1`, see `audit.batch.lineage`) and `batch.json` (counts:
audited, from cache, failed; the tree's counts). A model that fails is a row with its error; the batch goes on.
An interrupted batch resumes from the cache: rerun the same command.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from audit import __version__
from audit.batch.cache import ResultCache, digest
from audit.batch.fingerprints import FingerprintCache
from audit.batch.hashcache import FileHasher
from audit.batch.manifest import Row, read_manifest
from audit.batch.task import Task, known_fingerprint_key, known_key
from audit.errors import InputError
from audit.fingerprinting.view import unique_names
from audit.record.io import parse_record
from audit.record.models import BatchInfo, LineageTree, Record

INDEX_FIELDS = ("line", "model", "name", "status", "verdict", "parent", "confidence", "operations", "flags",
                "claims", "references_checked", "probes", "summary", "error", "report", "record", "key")
VOLATILE_FIELDS = ("source", "seconds")  # differ between a first run and a rerun


@dataclass
class BatchOptions:
    """Batch settings from the command line (see `provaudit batch --help`)."""

    out: Path
    cache_dir: Path | None = None  # default: OUT/cache
    workers: int | None = None
    executor: str = "local"
    ray_address: str | None = None
    no_registry: bool = False
    registries: tuple[str, ...] = ()
    references: tuple[tuple[str, str | None], ...] = ()  # for every row: (resolved path, name or None)
    suites: tuple[str, ...] = ()  # for every row
    declared: tuple[str, ...] = ()  # for every row
    seed: int = 0
    allow_pickle: bool = False
    probe: dict[str, Any] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)


@dataclass
class BatchSummary:
    """What a batch did: the index rows and the counts."""

    rows: list[dict[str, Any]]
    audited: int = 0
    cached: int = 0
    failed: int = 0
    seconds: float = 0.0
    out: Path = Path(".")
    lineage: LineageTree | None = None
    lineage_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"rows": len(self.rows), "ok": len(self.rows) - self.failed, "failed": self.failed,
                "audited": self.audited, "from_cache": self.cached, "seconds": round(self.seconds, 3)}


Echo = Callable[[str], None]


def run_batch(manifest: str | Path, opts: BatchOptions, echo: Echo | None = None) -> BatchSummary:
    """Audit every model of `manifest`; raise InputError (nothing run) when a row cannot be used."""
    t0 = time.perf_counter()
    say = echo or (lambda _msg: None)
    out = Path(opts.out)
    cache_dir = Path(opts.cache_dir) if opts.cache_dir else out / "cache"
    cache = ResultCache(cache_dir)
    fingerprints = FingerprintCache(cache_dir)
    hasher = FileHasher(cache_dir / "hashes")
    rows = read_manifest(manifest)
    tasks = plan(rows, opts, Path(manifest), say, hasher)  # problems name the manifest as the user wrote it
    manifest = Path(manifest).resolve()
    slugs = unique_slugs([t.name for t in tasks])
    results: dict[int, dict[str, Any]] = {}
    todo: list[Task] = []
    for task in tasks:  # whatever the cache answers without reading a model file is not sent to a worker
        key = known_key(task, hasher)
        found = cache.get(key) if key else None
        fp_key = known_fingerprint_key(task, hasher) if key else None
        fp = fingerprints.get(fp_key) if fp_key else None
        if key and found is not None and found.status == "hit" and fp is not None and fp.status == "hit":
            results[task.index] = {"index": task.index, "key": key, "record": found.record, "error": found.error,
                                   "error_kind": "input" if found.error else None, "source": "cache",
                                   "note": None, "stored": True, "seconds": 0.0,
                                   "fingerprint": {"key": fp_key, "path": str(fp.path) if fp.path else None,
                                                   "error": fp.error, "source": "cache"}}
        else:
            todo.append(task)
    summary = BatchSummary(rows=[], out=out)
    done = 0

    def finish(task: Task, result: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        if result.get("key") and result.get("cacheable") and not result.get("stored"):  # e.g. Ray without shared disk
            cache.put(result["key"], record=result.get("record"), error=result.get("error"))
        results[task.index] = result
        row = index_row(task, rows[task.index], result, slugs[task.index], out, Path(manifest))
        results[task.index]["row"] = row
        say(_progress_line(done, len(tasks), row, result))

    for task in tasks:
        if task.index in results:
            finish(task, results[task.index])
    if todo:
        from audit.batch.executors import execute

        for task, result in execute(todo, opts.executor, opts.workers, opts.ray_address):
            finish(task, result)
    summary.rows = [results[t.index]["row"] for t in tasks]
    summary.failed = sum(r["status"] != "ok" for r in summary.rows)
    summary.cached = sum(results[t.index].get("source") == "cache" for t in tasks)
    summary.audited = len(tasks) - summary.cached
    summary.lineage, summary.lineage_error = _lineage(tasks, rows, results, slugs, Path(manifest), opts, cache_dir,
                                                      say)
    summary.seconds = time.perf_counter() - t0
    write_index(out, summary, Path(manifest), opts)
    return summary


def _lineage(tasks: list[Task], rows: list[Row], results: dict[int, dict[str, Any]], slugs: list[str],
             manifest: Path, opts: BatchOptions, cache_dir: Path, say: Echo) -> tuple[LineageTree | None, str | None]:
    """The batch's family tree from the rows' stored fingerprints (and their audits' parents)."""
    from audit.batch.lineage import Member, build_lineage

    members = []
    for task in tasks:
        result = results[task.index]
        fp = result.get("fingerprint") or {}
        members.append(Member(
            id=slugs[task.index], name=task.name, line=task.line, path=rows[task.index].model,
            fingerprint_key=fp.get("key"), fingerprint_path=fp.get("path"),
            error=None if fp.get("path") else fp.get("error") or result.get("error") or "no weight fingerprint",
            record=result.get("parsed"), report=result["row"].get("report")))
    try:
        # the pairs run on this machine: --workers processes (with Ray and no --workers, this machine's CPUs)
        workers = opts.workers or ((os.cpu_count() or 1) if opts.executor == "ray" else 1)
        tree = build_lineage(members, str(manifest), opts.seed, cache_dir, workers=workers, say=say)
    except Exception as exc:  # noqa: BLE001 - a failure here (a bug) must not lose the rows' results
        message = f"internal error: {type(exc).__name__}: {exc}"
        say(f"provaudit: lineage tree not built: {message}")
        return None, message
    return tree, None


# ---------------------------------------------------------------------------------------------- planning


def plan(rows: list[Row], opts: BatchOptions, manifest: Path, say: Echo, hasher: FileHasher) -> list[Task]:
    """One Task per row; problems (a row with nothing to compare, a bad probe suite) name their line."""
    from audit.checkpoint.locate import _default_name

    problems: list[str] = []
    suites = _suite_digests(rows, opts, manifest, problems)
    tasks: list[Task] = []
    for i, row in enumerate(rows):
        refs = tuple(dict.fromkeys([*row.references, *opts.references]))
        if opts.no_registry and not refs:
            problems.append(f"{manifest}:{row.line}: no references for this model and --no-registry given")
            continue
        names = unique_names([n or _default_name(Path(p)) for p, n in refs])
        row_suites = tuple(dict.fromkeys([*opts.suites, *row.probes]))
        tasks.append(Task(
            index=i, line=row.line, model=row.path, name=row.name or _default_name(Path(row.path)),
            explicit_name=row.name, references=refs, reference_names=tuple(names), suites=row_suites,
            suite_digests=tuple(suites.get(s, "") for s in row_suites),
            declared=tuple(dict.fromkeys([*opts.declared, *row.declared])),
            claims=row.claims, declared_license=row.declared_license,
            registries=None if opts.no_registry else tuple(opts.registries),
            seed=opts.seed, allow_pickle=opts.allow_pickle, probe=dict(opts.probe),
            cache_dir=str(Path(opts.cache_dir) if opts.cache_dir else Path(opts.out) / "cache"),
        ))
    if problems:
        raise InputError(problems[0] if len(problems) == 1 else "manifest: " + "\n  ".join(problems[:20]))
    if opts.no_registry:
        return tasks
    registry = _registry_digest(opts, say, hasher)  # only once the manifest is known good: nothing written before
    return [replace(t, registry_digest=registry) for t in tasks]


def _suite_digests(rows: list[Row], opts: BatchOptions, manifest: Path, problems: list[str]) -> dict[str, str]:
    """SHA-256 of every probe suite named anywhere (its file's content is part of the cache key)."""
    wanted: dict[str, int | None] = {s: None for s in opts.suites}
    for row in rows:
        for s in row.probes:
            wanted.setdefault(s, row.line)
    if not wanted:
        return {}
    from audit.probing.suite import resolve_suite

    out: dict[str, str] = {}
    for spec, line in wanted.items():
        try:
            out[spec] = resolve_suite(spec).sha256
        except InputError as exc:
            problems.append(f"{manifest}:{line}: {exc}" if line else f"--probe {spec}: {exc}")
    return out


def _registry_digest(opts: BatchOptions, say: Echo, hasher: FileHasher) -> str:
    """SHA-256 over the registry's entry files (a new or changed entry invalidates cached audits)."""
    from audit.fingerprinting.registry import load_registry

    registry = load_registry(extra=[Path(r) for r in opts.registries])
    for entry, problem in registry.errors:
        say(f"provaudit: warning: skipping registry entry {entry}: {problem}")
    paths = sorted({str(e.path) for e in registry.entries} | {p for p, _ in registry.errors})
    return digest([[Path(p).name, hasher.sha256(Path(p))] for p in paths])


# ---------------------------------------------------------------------------------------------- outputs


def unique_slugs(names: list[str]) -> list[str]:
    """File-name-safe, case-insensitively unique slugs, stable for a given manifest order."""
    seen: set[str] = set()
    out = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "model"
        slug, n = base, 1
        while slug.lower() in seen:
            n += 1
            slug = f"{base}-{n}"
        seen.add(slug.lower())
        out.append(slug)
    return out


def _relocate(record: dict[str, Any], task: Task) -> dict[str, Any]:
    """A cached record of the same files found elsewhere: point its paths at this row's files."""
    from audit.batch.hashcache import model_files

    def move(block: object, new: str) -> None:
        if not isinstance(block, dict) or block.get("path") == new or not isinstance(block.get("files"), list):
            return
        root = Path(new)
        by_name = {(f.name if root.is_file() else f.relative_to(root).as_posix()): str(f) for f in model_files(root)}
        old = Path(str(block.get("path")))
        for f in block["files"]:
            if isinstance(f, dict) and isinstance(f.get("path"), str):
                p = Path(f["path"])
                rel = p.relative_to(old).as_posix() if root.is_dir() and p.is_relative_to(old) else p.name
                f["path"] = by_name.get(rel, f["path"])
        block["path"] = new

    move(record.get("subject"), task.model)
    for block, (path, _) in zip(record.get("references") or [], task.references, strict=False):
        move(block, path)
    return record


def write_row_outputs(out: Path, slug: str, record: Record) -> tuple[str, str | None, str | None]:
    """Write records/<slug>.json and .html (unchanged files are left alone); return the relative paths
    and the reason the HTML could not be rendered, if it could not."""
    from audit.reporting.writer import dumps_record, write_atomic

    text = dumps_record(record.to_json_dict())
    json_path, html_path = out / "records" / f"{slug}.json", out / "records" / f"{slug}.html"
    rel_json, rel_html = f"records/{slug}.json", f"records/{slug}.html"
    if json_path.is_file() and html_path.is_file() and json_path.read_text(encoding="utf-8") == text:
        return rel_json, rel_html, None
    problem = None
    try:
        from audit.reporting.html import render_html

        write_atomic(html_path, render_html(record))
    except Exception as exc:  # noqa: BLE001 - the JSON record still stands
        problem = f"HTML report not rendered: {type(exc).__name__}: {exc}"
        html_path.unlink(missing_ok=True)
    write_atomic(json_path, text)  # last: an interrupted write leaves a mismatch, re-rendered next time
    return rel_json, None if problem else rel_html, problem


def index_row(task: Task, row: Row, result: dict[str, Any], slug: str, out: Path, manifest: Path) -> dict[str, Any]:
    """The index row of one model; writes its record and report when it has one."""
    record = result.get("record")
    base: dict[str, Any] = {"line": task.line, "model": row.model, "name": task.name}
    error = result.get("error")
    if record is None:
        for suffix in (".json", ".html"):  # a stale report of an earlier run must not look current
            (out / "records" / f"{slug}{suffix}").unlink(missing_ok=True)
        return {**base, "status": "error", "verdict": None, "parent": None, "confidence": None, "operations": [],
                "flags": [], "claims": [], "references_checked": None, "probes": [], "summary": None,
                "error": error or "no record", "report": None, "record": None, "key": result.get("key"),
                "source": result.get("source"), "seconds": result.get("seconds")}
    if result.get("source") == "cache":
        record = _relocate(record, task)
    rec = parse_record(record, f"cache entry {result.get('key')}").model_copy(
        update={"batch": BatchInfo(manifest=str(manifest), line=task.line, cache_key=result.get("key"))})
    result["parsed"] = rec  # for the lineage tree (its parents, its files)
    rel_json, rel_html, problem = write_row_outputs(out, slug, rec)
    v = rec.verdict
    return {**base, "status": "ok", "verdict": v.label.value, "parent": v.parent,
            "confidence": v.confidence, "operations": [o.value for o in v.operations],
            "flags": list(dict.fromkeys(f.kind.value for f in rec.flags)),
            "claims": list(dict.fromkeys(f.flag.value for f in rec.claims.findings)) if rec.claims else [],
            "references_checked": v.references_checked,
            "probes": [p.suite for p in rec.probes],
            "summary": v.summary, "error": problem, "report": rel_html, "record": rel_json,
            "key": result.get("key"), "source": result.get("source"), "seconds": result.get("seconds")}


def _progress_line(done: int, total: int, row: dict[str, Any], result: dict[str, Any]) -> str:
    head = f"[{done}/{total}] {row['name']}: "
    cached = " [cached]" if result.get("source") == "cache" else ""
    if row["status"] != "ok":
        return head + f"error: {row['error']}{cached}"
    conf = row.get("confidence")
    text = head + str(row["verdict"]) + (f" (parent {row['parent']}" if row.get("parent") else " (no parent")
    text += f", confidence {conf:.2f})" if isinstance(conf, (int, float)) else ")"
    text += cached
    if result.get("note"):
        text += f" [{result['note']}]"
    return text


def _csv_cell(value: Any) -> Any:
    """Lists joined with ';'; text that a spreadsheet would run as a formula is quoted with a leading '."""
    if isinstance(value, list):
        value = ";".join(map(str, value))
    if isinstance(value, str) and value[:1] in ("=", "+", "@"):
        return "'" + value
    return "" if value is None else value


def write_index(out: Path, summary: BatchSummary, manifest: Path, opts: BatchOptions) -> None:
    """index.jsonl, index.csv, index.html and batch.json, each written atomically."""
    import csv
    import io

    from audit.reporting.index import render_index
    from audit.reporting.writer import write_atomic

    fields = (*INDEX_FIELDS, *VOLATILE_FIELDS)
    rows = [{k: r.get(k) for k in fields} for r in summary.rows]
    write_atomic(out / "index.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields)
    for r in rows:
        writer.writerow([_csv_cell(r[k]) for k in fields])
    write_atomic(out / "index.csv", buf.getvalue())
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    meta = {"manifest": str(manifest), "created": created, "tool": f"provaudit {__version__}",
            "heading": f"Batch audit: {manifest.name}"}
    lineage: dict[str, Any] | None = None
    if summary.lineage is not None:
        from audit.batch.lineage import summary_counts

        write_atomic(out / "lineage.json", json.dumps(summary.lineage.model_dump(mode="json", by_alias=True),
                                                      indent=2, ensure_ascii=False) + "\n")
        lineage = summary_counts(summary.lineage)
    else:
        (out / "lineage.json").unlink(missing_ok=True)  # a stale tree of an earlier run must not look current
        lineage = {"error": summary.lineage_error}
    write_atomic(out / "index.html", render_index(rows, meta, summary.lineage))
    info = {"schema": "provaudit.batch/1", "tool": {"name": "provaudit", "version": __version__}, "created": created,
            "manifest": str(manifest), "argv": opts.argv, "executor": opts.executor, "workers": opts.workers,
            **summary.as_dict(), "lineage": lineage}
    write_atomic(out / "batch.json", json.dumps(info, indent=2, ensure_ascii=False) + "\n")
