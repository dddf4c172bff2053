"""Benchmark `provaudit batch`: throughput (models/hour) of a first run, and the result cache on reruns.

    python benchmarks/bench_batch.py                 # tiny models, plus the real SmolLM2 cases if cached
    python benchmarks/bench_batch.py --workers 4 --tiny 12 --no-real --json rows.json

For each set of models it runs the real CLI (`python -m audit batch MANIFEST --no-registry -r base`) in a
fresh process four times over the same output folder:
  first    empty cache: every model hashed and audited
  rerun    same command: every row answered from the cache (no worker process started)
  touched  after `touch` of every model file: hashes recomputed (mtime changed), audits still cached
  shared   a second batch into a new folder with `--cache` pointing at the first one's cache
Wall time includes interpreter start-up and writing every record, report and the index. The real cases
(tests/support/realcases.py, `.cache/realcases/smollm2-v1`) are used only when already built; this script
never downloads or builds them. Prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
REAL_CASES = ("finetuned", "permuted", "pruned", "duplicated", "renamed", "vocab_extended", "independent")


def tiny_models(folder: Path, n: int) -> tuple[Path, list[Path]]:
    """A tiny Llama `base` and `n` models: fine-tunes, permuted, pruned copies and independent ones."""
    from tests.support import tiny

    base = tiny.make_llama(0, layers=6)
    ref = tiny.save_hf(base, folder / "base")
    makers = [lambda i: tiny.finetune(base, 0.03, seed=i), lambda i: tiny.permute_hidden(base, i),
              lambda i: tiny.prune_layers(base, [1 + i % 4]), lambda i: tiny.make_llama(100 + i, layers=6)]
    return ref, [tiny.save_hf(makers[i % len(makers)](i), folder / f"m{i:03d}") for i in range(n)]


def real_models(cache: Path) -> tuple[Path, list[Path]] | None:
    """The cached real cases (base and its derivatives), or None when they are not built."""
    folders = [cache / c for c in REAL_CASES]
    if not (cache / "base").is_dir() or not all(f.is_dir() for f in folders):
        return None
    return cache / "base", folders


def run(manifest: Path, out: Path, workers: int, *extra: str) -> tuple[float, dict[str, Any]]:
    """Wall seconds of one `provaudit batch` process, and its batch.json."""
    cmd = [sys.executable, "-m", "audit", "batch", str(manifest), "--out", str(out), "--no-registry",
           "--workers", str(workers), "-q", *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr[-1000:]}")
    return wall, json.loads((out / "batch.json").read_text(encoding="utf-8"))


def bench_set(label: str, ref: Path, models: list[Path], workers: int, tmp: Path) -> list[dict[str, Any]]:
    """The four runs of one model set; one row each."""
    manifest = tmp / f"{label}.csv"
    manifest.write_text("model,references\n" + "".join(f"{m},base={ref}\n" for m in models), encoding="utf-8")
    gb = sum(f.stat().st_size for m in [ref, *models] for f in Path(m).iterdir() if f.is_file()) / 1e9
    out = tmp / f"{label}-out"
    rows = []

    def row(run_name: str, wall: float, info: dict[str, Any]) -> None:
        n = info["rows"]
        rows.append({"set": label, "run": run_name, "models": n, "GB": round(gb, 2), "workers": workers,
                     "audited": info["audited"], "cached": info["from_cache"], "failed": info["failed"],
                     "wall_s": round(wall, 2), "batch_s": info["seconds"],
                     "models_per_hour": round(n / wall * 3600) if wall else None})
        print(f"[bench] {label} {run_name}: {n} models in {wall:.1f} s", file=sys.stderr)

    row("first", *run(manifest, out, workers))
    row("rerun", *run(manifest, out, workers))
    for m in [ref, *models]:
        for f in Path(m).iterdir():
            os.utime(f)
    row("touched", *run(manifest, out, workers))
    row("shared", *run(manifest, tmp / f"{label}-shared", workers, "--cache", str(out / "cache")))
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = ["set", "run", "models", "GB", "workers", "audited", "cached", "failed", "wall_s", "batch_s",
            "models_per_hour"]
    cells = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for x in cells:
        print("  ".join(v.ljust(w) for v, w in zip(x, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--tiny", type=int, default=6, help="number of tiny models (default 6)")
    parser.add_argument("--no-real", action="store_true", help="skip the cached real SmolLM2 cases")
    parser.add_argument("--real-cache", type=Path, default=REPO / ".cache" / "realcases" / "smollm2-v1")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON to this file")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp_name:
        tmp = Path(tmp_name)
        ref, models = tiny_models(tmp / "tiny-models", args.tiny)
        rows += bench_set("tiny", ref, models, args.workers, tmp)
        real = None if args.no_real else real_models(args.real_cache)
        if real is not None:
            rows += bench_set("smollm2", real[0], real[1], args.workers, tmp)
        elif not args.no_real:
            print(f"[bench] real cases not found under {args.real_cache}: skipped "
                  "(build them with python -m tests.support.realcases)", file=sys.stderr)
    print_table(rows)
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; models/hour = models / wall_s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
