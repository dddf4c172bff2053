"""Benchmark CLI start-up: `provaudit --help` must answer in under 0.5 s and must not import torch/transformers.

    python benchmarks/bench_cli.py            # median of 5 runs of each command
    python benchmarks/bench_cli.py --runs 9

Prints numbers (and the slowest imports); it is not a test. Run it on a quiet machine: the 1-minute load
average is printed because concurrent work inflates wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HELP_TARGET_S = 0.5
FORBIDDEN = ("torch", "transformers")
HEAVY = ("torch", "transformers", "scipy", "numpy", "rich", "jinja2", "safetensors", "gguf", "yaml", "tokenizers")

# Runs the CLI in-process the way the console script does, then reports which heavy packages got imported.
_PROBE = """
import json, sys
from audit.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = {heavy!r}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))), file=sys.__stderr__)
"""


def provaudit_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("provaudit")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "audit"]


def time_cmd(cmd: list[str], runs: int) -> tuple[float, float, float]:
    """(median, min, max) wall seconds of `cmd` over `runs` runs, after one unmeasured warm-up run."""
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
        dt = time.perf_counter() - t0
        if res.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.decode()[-500:]}")
        if i:
            times.append(dt)
    return statistics.median(times), min(times), max(times)


def heavy_imports(argv: list[str]) -> list[str]:
    """Heavy top-level packages in sys.modules after running `provaudit ARGV` in a fresh interpreter."""
    code = _PROBE.format(argv=argv, heavy=HEAVY)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    return json.loads(res.stderr.strip().splitlines()[-1])


def slowest_imports(module: str, top: int) -> tuple[float, list[tuple[float, str]]]:
    """Total and the `top` largest cumulative import times (seconds) of `import module`, via -X importtime."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                         capture_output=True, text=True, cwd=REPO)
    rows = []
    for line in res.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        rows.append((int(cumulative) / 1e6, name.strip()))
    total = next((c for c, name in reversed(rows) if name == module), 0.0)
    return total, sorted(rows, reverse=True)[:top]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)

    load0 = os.getloadavg()[0]
    cli = provaudit_cmd()
    cases = [
        ("python -c pass (interpreter floor)", [sys.executable, "-c", "pass"], None),
        ("provaudit --help", [*cli, "--help"], ["--help"]),
        ("provaudit --version", [*cli, "--version"], ["--version"]),
        ("provaudit fingerprint --help", [*cli, "fingerprint", "--help"], ["fingerprint", "--help"]),
        ("provaudit compare --help", [*cli, "compare", "--help"], ["compare", "--help"]),
        ("provaudit audit --help", [*cli, "audit", "--help"], ["audit", "--help"]),
    ]
    print(f"{'command':38s} {'median s':>9s} {'min s':>7s} {'max s':>7s}  heavy packages imported")
    results = {}
    for label, cmd, probe_argv in cases:
        med, lo, hi = time_cmd(cmd, args.runs)
        heavy = heavy_imports(probe_argv) if probe_argv is not None else []
        results[label] = (med, heavy)
        print(f"{label:38s} {med:9.3f} {lo:7.3f} {hi:7.3f}  {', '.join(heavy) or '-'}")
    load1 = os.getloadavg()[0]
    print(f"(median of {args.runs} runs after a warm-up; 1-minute load average {load0:.1f} before, {load1:.1f} "
          f"after, on {os.cpu_count()} CPUs{': other work was running, times are inflated' if max(load0, load1) > 1.5 else ''})")

    total, top = slowest_imports("audit.cli", 8)
    print(f"\nimport audit.cli: {total:.3f} s of imports (-X importtime); largest cumulative:")
    for secs, name in top:
        print(f"  {secs:7.3f} s  {name.strip()}")

    med, heavy = results["provaudit --help"]
    bad = [m for m in heavy if m in FORBIDDEN]
    print(f"\ntarget `provaudit --help` < {HELP_TARGET_S} s: {'met' if med < HELP_TARGET_S else 'MISSED'} "
          f"(median {med:.3f} s); torch/transformers not imported by --help: "
          f"{'met' if not bad else 'MISSED (' + ', '.join(bad) + ')'}")
    for label, (_, heavy) in results.items():
        bad = [m for m in heavy if m in FORBIDDEN]
        if bad and label != "provaudit --help":
            print(f"note: {label} imports {', '.join(bad)}")


if __name__ == "__main__":
    main()
