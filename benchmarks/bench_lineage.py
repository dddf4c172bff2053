"""Lineage accuracy and speed on real checkpoints derived from SmolLM2-135M-Instruct.

Builds the cases of tests/support/realcases.py (cached; same cache as the real tests), runs
`provaudit compare CASE BASE --reference-name base` in-process for each, and prints one row per case:
expected and found verdict, parent, operations, the smallest log10 p among the statistics, and the wall
time of the whole compare (opening, reading and hashing both checkpoints included).

    python benchmarks/bench_lineage.py [--cache-dir DIR] [--only CASE,CASE] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.realcases import build_cases, build_seconds, default_cache_dir  # noqa: E402

# case -> (expected label, expected parent, operations that must be detected)
EXPECTED: dict[str, tuple[str, str | None, set[str]]] = {
    "finetuned": ("fine-tuned", "base", set()),
    "permuted": ("derived", "base", {"permutation"}),
    "pruned": ("derived", "base", {"layer-pruning"}),
    "duplicated": ("derived", "base", {"layer-duplication"}),
    "renamed": ("derived", "base", {"renamed-tensors", "dtype-conversion"}),
    "vocab_extended": ("derived", "base", {"vocab-extension"}),
    "quantized": ("derived", "base", {"quantization"}),
    "independent": ("original", None, set()),
    "gemma3": ("original", None, set()),
}


def run_compare(candidate: Path, reference: Path, out: Path) -> tuple[dict[str, Any], float]:
    """Run the real CLI in-process; return the JSON record and the wall seconds it took."""
    from audit.cli import main

    argv = ["compare", str(candidate), str(reference), "--reference-name", "base", "--json", str(out), "-q"]
    t0 = time.perf_counter()
    try:
        main(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"provaudit {' '.join(argv)} exited with {exc.code}") from None
    seconds = time.perf_counter() - t0
    return json.loads(out.read_text(encoding="utf-8")), seconds


def row(case: str, record: dict[str, Any], seconds: float) -> dict[str, Any]:
    """One table row: what was found, what was expected, whether they agree."""
    v = record["verdict"]
    label, parent, ops = EXPECTED[case]
    stats = [s["log10_p"] for c in record["comparisons"] for s in c["statistics"]]
    ok = v["label"] == label and v["parent"] == parent and ops <= set(v["operations"])
    return {"case": case, "expected": label, "verdict": v["label"], "parent": v["parent"] or "-",
            "operations": ", ".join(v["operations"]) or "-", "min_log10_p": min(stats) if stats else 0.0,
            "seconds": round(seconds, 1), "ok": ok,
            "flags": ", ".join(f["kind"] for f in record.get("flags", []))}


def print_table(rows: list[dict[str, Any]]) -> None:
    """Plain-text table on stdout."""
    cols = [("case", "case"), ("expected", "expected"), ("verdict", "verdict"), ("parent", "parent"),
            ("operations", "operations"), ("min log10 p", "min_log10_p"), ("seconds", "seconds"), ("ok", "ok")]
    cells = [[_fmt(r[key]) for _, key in cols] for r in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (title, _) in enumerate(cols)]
    print("  ".join(title.ljust(w) for (title, _), w in zip(cols, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)))


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None, help="case cache (default: $PROVAUDIT_TEST_CACHE "
                        "or <repo>/.cache/realcases)")
    parser.add_argument("--only", default="", help="comma-separated cases to run (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON to this file")
    args = parser.parse_args()
    cache = args.cache_dir or default_cache_dir()

    t0 = time.perf_counter()
    cases = build_cases(cache)
    build_wall = time.perf_counter() - t0
    import audit.cli.compare_cmd  # noqa: F401 - warm the imports so the first row's time is comparable
    import audit.pipeline  # noqa: F401

    wanted = [c for c in EXPECTED if not args.only or c in args.only.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in wanted:
            record, seconds = run_compare(cases[case], cases["base"], Path(tmp) / f"{case}.json")
            rows.append(row(case, record, seconds))
            print(f"[bench] {case}: {rows[-1]['verdict']} in {seconds:.1f} s", file=sys.stderr)
    print_table(rows)
    logged = build_seconds(cache)
    print(f"\ncases: {sum(r['ok'] for r in rows)}/{len(rows)} as expected; compare total "
          f"{sum(r['seconds'] for r in rows):.1f} s; case build {build_wall:.1f} s this run "
          f"(when built: {sum(logged.values()):.1f} s, {logged})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
