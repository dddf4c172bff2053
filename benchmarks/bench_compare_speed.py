"""How long `provaudit compare` of two ~135M-parameter models takes, against a raw read of both files.

    python benchmarks/bench_compare_speed.py [CANDIDATE REFERENCE] [--runs 5]

Default pair: the real SmolLM2-135M fine-tune and its base (tests/support/realcases.py builds them once,
cached in .cache/realcases). Prints the raw sequential read time of both models' files from the page cache,
the wall time of the CLI (median of --runs, each a fresh process: imports, hashing and writing included), the
ratio of the two, and where the time goes (in-process profile, top functions by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _files(model: Path) -> list[Path]:
    return sorted(p for p in model.rglob("*") if p.is_file()) if model.is_dir() else [model]


def raw_read(paths: list[Path]) -> float:
    """Seconds to read every byte of `paths` sequentially (1 MiB blocks)."""
    t0 = time.perf_counter()
    for path in paths:
        with path.open("rb") as fh:
            while fh.read(1 << 20):
                pass
    return time.perf_counter() - t0


def cli_seconds(candidate: Path, reference: Path, runs: int) -> list[float]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "audit", "compare", str(candidate), str(reference), "-q",
                            "--json", str(Path(tmp) / "r.json")], check=True)
            out.append(time.perf_counter() - t0)
    return out


def profile(candidate: Path, reference: Path, top: int) -> None:
    from audit.pipeline import Request, run
    from audit.record.names import CommandName

    request = Request(CommandName.COMPARE, model=str(candidate), references=((str(reference), "reference"),))
    run(request)  # warm the imports
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(run, request)
    total = time.perf_counter() - t0
    print(f"\nwhere the time goes (in-process, {total:.2f} s under the profiler; top {top} by own time):")
    stats = pstats.Stats(prof)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
    for (file, line, func), (_, ncalls, tottime, cumtime, _) in rows:
        where = f"{Path(file).name}:{line} {func}"
        print(f"  {tottime:6.2f} s own  {cumtime:6.2f} s total  {ncalls:>6} calls  {where}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("candidate", nargs="?", type=Path)
    ap.add_argument("reference", nargs="?", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()
    if args.candidate is None or args.reference is None:
        from tests.support.realcases import build_cases

        cases = build_cases()
        args.candidate, args.reference = cases["finetuned"], cases["base"]
    paths = _files(args.candidate) + _files(args.reference)
    raw_read(paths)  # warm the page cache
    read = min(raw_read(paths) for _ in range(3))
    size = sum(p.stat().st_size for p in paths)
    times = cli_seconds(args.candidate, args.reference, args.runs)
    median = statistics.median(times)
    print(f"pair: {args.candidate} vs {args.reference} ({size / 1e9:.2f} GB)")
    print(f"raw read of both, warm page cache: {read:.2f} s ({size / read / 1e9:.1f} GB/s)")
    print(f"provaudit compare (CLI, {args.runs} runs): median {median:.2f} s, min {min(times):.2f} s, "
          f"max {max(times):.2f} s")
    print(f"ratio compare / raw read: {median / read:.1f}")
    profile(args.candidate, args.reference, args.top)


if __name__ == "__main__":
    main()
