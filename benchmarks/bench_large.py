"""Fingerprint and compare Llama-2-shaped checkpoints of ~1B, ~3B and ~7B parameters through the CLI, against a raw read.

    python benchmarks/bench_large.py                          # 1b, 3b, 7b; needs ~2x the largest model free on disk
    python benchmarks/bench_large.py --sizes 1b --keep        # keep the generated models for another run
    python benchmarks/bench_large.py --sizes 7b --code /tmp/provaudit-head   # measure another copy of the code

For each size, one at a time (disk is limited): generate a base model, its disguised derivative and an
independent model with `benchmarks/large_synth.py` (seeded, shard by shard; each in a child process whose time
and peak RSS are reported), then measure, with the page cache warm (files read once first) unless marked cold:

  * raw read: every byte of the base model's files, sequentially (16 MiB reads into one buffer), warm and cold;
  * sha256: the same read, warm, through hashlib (the audit hashes every file: that must run at >= half the raw
    read speed; checked against the cold read, the storage's speed: a warm read is a memory copy, 5-10 GB/s, that
    one core's SHA-256, ~1.5 GB/s, cannot match, so the warm ratio is printed beside it);
  * `provaudit fingerprint BASE` cold and warm; `provaudit compare BASE BASE`, `compare DERIVATIVE BASE` (must
    say derived from base) and `compare BASE INDEPENDENT` (must not say derived or fine-tuned), each a child
    process: wall time, peak RSS (os.wait4's ru_maxrss), bytes read.

Bytes read: the record's own I/O counters when it has them (a key with "bytes" and "read"/"fetched" in its name
under `subject`/`model` and each of `references`, summed), else the child's /proc/<pid>/io, read after it exited
and before it was reaped: `read_bytes` (what it made the kernel fetch from storage, mmap page faults and
readahead included: meaningful cold) and `rchar` (bytes through read() system calls, e.g. hashing; misses mmap).
The table says which, and shows the /proc counter beside the record's. "Cold" means the
model's pages were evicted with posix_fadvise(DONTNEED) after an fsync (only this benchmark's files; fincore
checks how much stayed resident), or, with --drop-caches, the whole machine's page cache.

Prints a markdown table and the targets of issue 14 (met / MISSED), writes every number to `--json` (default
DIR/results.json). Exit status 0 only when every target was met. Everything goes under --dir (default
./provaudit-runs/bench-large, ignored by git); the models are deleted after each size unless --keep.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.large_synth import SIZES, Shape  # noqa: E402

CHUNK = 16 * 1024 * 1024
GIB = 1024**3
RSS_TARGET = 2 * GIB
SHA_TARGET = 0.5  # sha256 throughput / raw read throughput
CHILD_TIMEOUT = 3600


@dataclass
class Child:
    cmd: list[str]
    rc: int
    seconds: float
    maxrss: int  # bytes
    cpu: float  # user + system seconds
    io: dict[str, int]
    out: str
    err: str


def run_child(cmd: list[str], env: dict[str, str] | None = None, timeout: float = CHILD_TIMEOUT,
              cwd: Path = ROOT) -> Child:
    """Run cmd; wall time, peak RSS and /proc/<pid>/io of the child (read while it is a zombie, before reaping)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        deadline = t0 + timeout
        while True:  # wait for exit without reaping, so /proc/<pid>/io still holds the totals
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            if info is not None:
                break
            if time.perf_counter() > deadline:
                proc.kill()
            time.sleep(0.02)
        seconds = time.perf_counter() - t0
        io: dict[str, int] = {}
        try:
            for line in Path(f"/proc/{proc.pid}/io").read_text().splitlines():
                key, _, value = line.partition(":")
                io[key.strip()] = int(value)
        except OSError:
            pass
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Child(cmd, proc.returncode, seconds, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, io,
                     out.read(), err.read())


def model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def nbytes(files: list[Path]) -> int:
    return sum(f.stat().st_size for f in files)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raw_read(files: list[Path]) -> tuple[float, float]:
    """(wall, CPU) seconds to read every byte of the files sequentially (16 MiB reads into one buffer)."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    c0, t0 = _cpu(), time.perf_counter()
    for f in files:
        with f.open("rb", buffering=0) as fh:
            while fh.readinto(view):
                pass
    return time.perf_counter() - t0, _cpu() - c0


def sha256_read(files: list[Path]) -> tuple[float, float]:
    """(wall, CPU) seconds to read and SHA-256 every file (one thread)."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    c0, t0 = _cpu(), time.perf_counter()
    for f in files:
        h = hashlib.sha256()
        with f.open("rb", buffering=0) as fh:
            while n := fh.readinto(view):
                h.update(view[:n])
    return time.perf_counter() - t0, _cpu() - c0


def resident(files: list[Path]) -> float | None:
    """Fraction of the files' bytes in the page cache (fincore), None when it cannot be told."""
    if not shutil.which("fincore"):
        return None
    proc = subprocess.run(["fincore", "-J", "-b", *map(str, files)], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    rows = json.loads(proc.stdout).get("fincore", [])
    total = sum(int(r["size"]) for r in rows)
    return sum(int(r["res"]) for r in rows) / total if total else None


def evict(files: list[Path], drop_caches: bool) -> str:
    """Take the files out of the page cache; say how (and how much stayed resident)."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    how = "fadvise"
    if drop_caches:
        try:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
            how = "drop_caches"
        except OSError:
            how = "fadvise (drop_caches refused)"
    left = resident(files)
    return how if left is None else f"{how}, {100 * left:.0f}% left"


def find_io(record: dict[str, Any]) -> tuple[int, int | None, str] | None:
    """(bytes read, bytes total or None, where) summed over the record's I/O counters, if it has any.

    Looks under `subject` / `model` and each entry of `references` for a mapping with an integer key holding
    "bytes" and "read" (else "fetched"), and a "bytes"+"total" one beside it.
    """
    models: list[tuple[str, Any]] = [(k, record.get(k)) for k in ("subject", "model")]
    refs = record.get("references")
    if isinstance(refs, list):
        models += [(f"references[{i}]", r) for i, r in enumerate(refs)]
    read, totals, where = 0, [], []
    for name, node in models:
        found = _search(node, name)
        if found:
            read += found[0]
            totals.append(found[1])
            where.append(found[2])
    if not where:
        return None
    total = sum(t for t in totals if t is not None) if all(t is not None for t in totals) else None
    return read, total, "record " + " + ".join(where)


def _search(node: Any, where: str) -> tuple[int, int | None, str] | None:
    if isinstance(node, dict):
        keys = [k for k, v in node.items() if isinstance(v, int) and not isinstance(v, bool) and "bytes" in k.lower()]
        read_key = next((k for k in keys if "read" in k.lower()), None) or next(
            (k for k in keys if "fetched" in k.lower()), None)
        if read_key is not None:
            total_key = next((k for k in keys if "total" in k.lower()), None)
            return node[read_key], node[total_key] if total_key else None, f"{where}.{read_key}"
        for k, v in node.items():
            found = _search(v, f"{where}.{k}")
            if found:
                return found
    return None


@dataclass
class Row:
    size: str
    step: str
    seconds: float | None = None
    cpu: float | None = None
    gbps: float | None = None
    read: int | None = None
    read_source: str = ""
    fraction: float | None = None
    rss: int | None = None
    result: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[Row] = []
        self.checks: list[tuple[str, bool, str]] = []
        self.env = dict(os.environ)
        code = str(args.code.resolve()) if args.code else str(ROOT)
        self.env["PYTHONPATH"] = code + os.pathsep + self.env.get("PYTHONPATH", "")
        self.code = code

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print("  " + fmt_row(row), flush=True)
        return row

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append((name, ok, detail))

    def generate(self, size: str, label: str, out: Path, *args: str) -> Child | None:
        """Run large_synth.py with args, writing to out; one row (time, throughput, peak RSS)."""
        cmd = [sys.executable, str(ROOT / "benchmarks" / "large_synth.py"), *args, "--out", str(out)]
        child = run_child(cmd, timeout=self.args.timeout)
        if child.rc != 0:
            msg = (child.err.strip().splitlines() or ["failed"])[-1]
            self.add(Row(size, label, child.seconds, child.cpu, result=f"FAILED: {msg}"))
            return None
        gb = nbytes(model_files(out))
        self.add(Row(size, label, child.seconds, child.cpu, gb / 1e9 / child.seconds, rss=child.maxrss,
                     result=f"{gb / 1e9:.2f} GB, {len(list(out.glob('*.safetensors')))} shards"))
        return child

    def provaudit(self, size: str, step: str, args: list[str], total: int, record_path: Path | None) -> tuple[Row, dict[str, Any]]:
        cmd = [sys.executable, "-m", "audit", *args]  # run in the code's folder: `-m` puts the cwd first on sys.path
        child = run_child(cmd, env=self.env, timeout=self.args.timeout, cwd=Path(self.code))
        record: dict[str, Any] = {}
        if record_path is not None and record_path.is_file():
            record = json.loads(record_path.read_text())
        row = Row(size, step, child.seconds, child.cpu, rss=child.maxrss,
                  extra={"rchar": child.io.get("rchar"), "read_bytes": child.io.get("read_bytes"), "rc": child.rc})
        io = find_io(record) if record else None
        if io is not None:
            row.read, io_total, row.read_source = io
            row.fraction = row.read / (io_total or total)
            key = "read_bytes" if "cold" in step else "rchar"
            if child.io.get(key) is not None:
                row.read_source += f"; /proc {key} {child.io[key] / 1e9:.3f} GB"
        elif child.io:
            cold = "cold" in step
            key = "read_bytes" if cold else "rchar"
            row.read, row.read_source = child.io.get(key), f"/proc io {key}"
            row.fraction = row.read / total if row.read is not None else None
        if child.rc != 0:
            msg = (child.err.strip().splitlines() or [f"exit {child.rc}"])[-1]
            row.result = f"FAILED (exit {child.rc}): {msg[:160]}"
        return row, record  # the caller adds the row once its result is known

    def one_size(self, size: str) -> None:
        shape: Shape = SIZES[size]
        args = self.args
        folder = args.dir / size
        base, deriv, indep = folder / "base", folder / "derivative", folder / "independent"
        print(f"\n== {size}: hidden {shape.hidden}, {shape.layers} layers, {shape.params / 1e9:.2f}e9 parameters, "
              f"{shape.nbytes / 1e9:.1f} GB bf16; load average {os.getloadavg()[0]:.1f} ==", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        if not base.is_dir() and not self.generate(size, "generate base", base, "base", "--size", size, "--seed", "0"):
            return
        files = model_files(base)
        total = nbytes(files)

        # raw reads and hashing
        how = evict(files, args.drop_caches)
        cold, cpu = raw_read(files)
        self.add(Row(size, "raw read, cold", cold, cpu, total / 1e9 / cold, total, "", 1.0, result=how))
        raw_read(files)
        warm, cpu = raw_read(files)
        self.add(Row(size, "raw read, warm", warm, cpu, total / 1e9 / warm, total, "", 1.0,
                     result=f"{100 * (resident(files) or 0):.0f}% resident" if shutil.which("fincore") else ""))
        sha, cpu = sha256_read(files)
        self.add(Row(size, "sha256, warm", sha, cpu, total / 1e9 / sha, total, "", 1.0,
                     result=f"{cold / sha:.2f} x raw cold, {warm / sha:.2f} x raw warm throughput"))
        # the storage's speed is the cold read; a warm read is a memory copy that one core's SHA-256 cannot match
        self.check(f"{size}: sha256 >= {SHA_TARGET} x raw (cold) read throughput", cold / sha >= SHA_TARGET,
                   f"{cold / sha:.2f} (warm: {warm / sha:.2f})")

        # fingerprint, cold then warm
        out = folder / "fingerprint.json"
        how = evict(files, args.drop_caches)
        row, _ = self.provaudit(size, "fingerprint, cold", ["fingerprint", str(base), "-q", "-o", str(out)], total, out)
        row.result = row.result or how
        cold_row = self.add(row)
        raw_read(files)
        row, _ = self.provaudit(size, "fingerprint, warm", ["fingerprint", str(base), "-q", "-o", str(out)], total, out)
        if row.seconds is not None and not row.result:
            row.result = f"{row.seconds / warm:.2f} x raw warm read, {row.seconds / cold:.2f} x raw cold read"
        self.add(row)
        secs = row.seconds if row.extra["rc"] == 0 and row.seconds is not None else float("inf")
        self.check(f"{size}: warm fingerprint faster than a warm raw read", secs < warm, f"{secs:.1f} s vs {warm:.1f} s")
        self.check(f"{size}: fingerprint peak RSS < 2 GiB", max(cold_row.rss or 0, row.rss or 0) < RSS_TARGET,
                   f"{max(cold_row.rss or 0, row.rss or 0) / GIB:.2f} GiB")
        if cold_row.fraction is not None:
            self.check(f"{size}: cold fingerprint reads < 2% of the model ({cold_row.read_source})",
                       cold_row.fraction < 0.02, f"{100 * cold_row.fraction:.1f}%")

        # compares
        if not args.no_self:
            raw_read(files)
            self.compare(size, "compare base base", base, base, 2 * total, expect="copy")
        others = (("derivative", deriv, ("derivative", "--base", str(base), "--seed", "1"), (deriv, base), "derived"),
                  ("independent", indep, ("base", "--size", size, "--seed", "1000"), (base, indep), "not derived"))
        for name, path, recipe, (cand, ref), expect in others:
            if not path.is_dir() and not self.generate(size, f"generate {name}", path, *recipe):
                return
            res = resident(model_files(path) + files)
            self.compare(size, f"compare {cand.name} {ref.name}", cand, ref, 2 * total, expect=expect,
                         note=f"{100 * res:.0f}% in page cache before" if res is not None else "")
            if not args.keep:
                shutil.rmtree(path if name == "derivative" else folder)

    def compare(self, size: str, step: str, cand: Path, ref: Path, total: int, expect: str, note: str = "") -> None:
        out = self.args.dir / size / f"{step.replace(' ', '-')}.json"
        row, record = self.provaudit(size, step, ["compare", str(cand), str(ref), "-q", "--json", str(out)], total, out)
        verdict = record.get("verdict") or {}
        label, parent = verdict.get("label"), verdict.get("parent")
        if not row.result:
            ops = ",".join(verdict.get("operations") or []) or "-"
            row.result = f"{label} (parent {parent}; {ops})" + (f"; {note}" if note else "")
            row.extra["summary"] = verdict.get("summary")
        self.add(row)
        if expect == "derived":
            ok = label == "derived" and parent == ref.name
            self.check(f"{size}: derivative called derived from base", ok, f"{label}, parent {parent}")
        elif expect == "not derived":
            ok = label is not None and label not in ("derived", "fine-tuned")
            self.check(f"{size}: independent model not called derived", ok, f"{label}, parent {parent}")
        else:
            ok = label in ("derived", "fine-tuned") and parent == ref.name
            self.check(f"{size}: a model compared with itself is found", ok, f"{label}")
        self.check(f"{size}: {step} peak RSS < 2 GiB", row.rss is not None and row.rss < RSS_TARGET,
                   f"{(row.rss or 0) / GIB:.2f} GiB")


HEADER = ("| size | step | seconds | CPU s | GB/s | bytes read (source) | of model | peak RSS GiB | result |\n"
          "|---|---|---:|---:|---:|---|---:|---:|---|")


def fmt_row(r: Row) -> str:
    def num(v: float | None, f: str) -> str:
        return "-" if v is None else format(v, f)

    read = "-" if r.read is None else f"{r.read / 1e9:.3f} GB" + (f" ({r.read_source})" if r.read_source else "")
    frac = "-" if r.fraction is None else f"{100 * r.fraction:.1f}%"
    rss = "-" if r.rss is None else f"{r.rss / GIB:.2f}"
    return (f"| {r.size} | {r.step} | {num(r.seconds, '.1f')} | {num(r.cpu, '.1f')} | {num(r.gbps, '.2f')} | {read} | "
            f"{frac} | {rss} | "
            f"{r.result} |")


def git_commit() -> str | None:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return proc.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1b,3b,7b", help="comma-separated, of: " + ", ".join(SIZES))
    ap.add_argument("--dir", type=Path, default=Path("provaudit-runs/bench-large"), help="where models and results go")
    ap.add_argument("--keep", action="store_true", help="keep the generated models (and reuse ones already there)")
    ap.add_argument("--json", type=Path, help="where to write the numbers (default DIR/results.json)")
    ap.add_argument("--code", type=Path, help="run provaudit from this source tree (default: this checkout)")
    ap.add_argument("--drop-caches", action="store_true",
                    help="cold runs empty the whole machine's page cache (root) instead of only the model files'")
    ap.add_argument("--no-self", action="store_true", help="skip `compare BASE BASE`")
    ap.add_argument("--timeout", type=float, default=CHILD_TIMEOUT, help="seconds per child process")
    args = ap.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        ap.error(f"unknown size(s) {unknown}; choose from {sorted(SIZES)}")
    args.dir = args.dir.resolve()
    args.dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    meta = {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, "code": bench.code,
            "commit": git_commit(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "load_average_start": os.getloadavg()[0], "free_disk_gb": shutil.disk_usage(args.dir).free / 1e9}
    print(f"{meta['cpus']} CPUs, {meta['memory_gib']:.0f} GiB memory, {meta['free_disk_gb']:.0f} GB free under "
          f"{args.dir}; provaudit from {bench.code}", flush=True)
    print(HEADER)
    for size in sizes:
        bench.one_size(size)
    meta["load_average_end"] = os.getloadavg()[0]
    print("\n" + HEADER)
    for r in bench.rows:
        print(fmt_row(r))
    print()
    for name, ok, detail in bench.checks:
        print(f"{'met   ' if ok else 'MISSED'} {name}: {detail}")
    print(f"(1-min load average {meta['load_average_start']:.1f} at the start, {meta['load_average_end']:.1f} at the "
          f"end, on {meta['cpus']} CPUs: above ~1.5 other work shared the machine and wall times are inflated)")
    out = args.json or args.dir / "results.json"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": [r.__dict__ for r in bench.rows],
                               "checks": [{"name": n, "met": ok, "value": d} for n, ok, d in bench.checks]}, indent=2))
    tmp.replace(out)
    print(f"numbers: {out}")
    return 0 if bench.checks and all(ok for _, ok, _ in bench.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
