"""Benchmark the tokenizer registry on derived vocabularies: which family does it name, and by how much?

For each of the 19 llama-cpp-python vocabularies and the 3 real models' tokenizers: drop 5% of the tokens
(special tokens kept), append 2,000 made-up tokens (fixed seed), rank the derived vocabulary against
`fingerprints/tokenizers/`, and print one table row: the entry named (with any entries whose stored
vocabularies are byte-identical to it, which no evidence can separate), its score (estimated Jaccard),
the runner-up (the best entry not tied with it) and its score, the null (Jaccard between entries of
different families) as mean ± sd, the evidence that put the first above the runner-up, and the best
entry of another family (the runner-up is often a sibling of the same tokenizer lineage).

    python benchmarks/bench_tokenizer_registry.py [--seed 0] [--drop 0.05] [--add 2000] [--json FILE]

Sources come from `scripts/build_tokenizer_registry.py` (downloaded once with pip, cached under
`<repo>/.cache/tokenizer-registry/`). This prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_tokenizer_registry", REPO / "scripts" / "build_tokenizer_registry.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def bench(seed: int = 0, drop: float = 0.05, add: int = 2000) -> list[dict[str, Any]]:
    """One result per source vocabulary."""
    from audit.fingerprinting.tokenizer_sketch import load_fingerprint_dir, rank_families, simulate_derivation

    build = _builder()
    fps, errors = load_fingerprint_dir(build.OUT)
    for name, problem in errors:
        print(f"skipped registry entry {name}: {problem}", file=sys.stderr)
    sources = build.all_sources(parse_cache=True)
    results = []
    for src in sources:
        derived = simulate_derivation(src.tok, drop=drop, add=add, seed=seed)
        t0 = time.perf_counter()
        rows = rank_families(derived, fps)
        seconds = time.perf_counter() - t0
        top = rows[0]
        tied = [r for r in rows[1:] if r["name"] in top["tied_with"]]
        runner = next(r for r in rows[1:] if r["name"] not in top["tied_with"])
        other = next(r for r in rows if r["family"] != top["family"])
        last_tied = tied[-1] if tied else top
        named = " = ".join([top["name"], *(r["name"] for r in tied)])
        results.append({
            "source": src.name, "source_family": src.family, "vocab_size": len(derived.tokens),
            "named": named, "named_family": top["family"], "score": top["score"], "z": top["z"],
            "p_value": top["p_value"], "confident": top["confident"],
            "runner_up": runner["name"], "runner_up_family": runner["family"], "runner_up_score": runner["score"],
            "nearest_other_family": other["name"], "nearest_other_family_score": other["score"],
            "null_mean": top["null"]["mean"], "null_sd": top["null"]["sd"], "null_n": top["null"]["n"],
            "decided_by": last_tied["ahead_of_next_by"],
            "correct": src.name in [top["name"], *top["tied_with"]] and top["family"] == src.family,
            "seconds": round(seconds, 3),
        })
    return results


def table(results: list[dict[str, Any]]) -> str:
    head = ("| source vocabulary | family named | score | runner-up | runner-up score | null mean ± sd "
            "| decided by | nearest other family | correct |")
    lines = [head, "|" + "---|" * 9]
    for r in results:
        lines.append(
            f"| {r['source']} | {r['named']} ({r['named_family']}) | {r['score']:.4f} "
            f"| {r['runner_up']} ({r['runner_up_family']}) | {r['runner_up_score']:.4f} "
            f"| {r['null_mean']:.3f} ± {r['null_sd']:.3f} (n={r['null_n']}) | {r['decided_by']} "
            f"| {r['nearest_other_family']} {r['nearest_other_family_score']:.4f} "
            f"| {'yes' if r['correct'] else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Tokenizer registry on derived vocabularies")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--drop", type=float, default=0.05, help="share of (non-special) tokens dropped")
    ap.add_argument("--add", type=int, default=2000, help="made-up tokens appended")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    results = bench(args.seed, args.drop, args.add)
    if not results:
        print("no source vocabularies obtainable here", file=sys.stderr)
        return 2
    print(f"derived vocabularies: {args.drop:.0%} of tokens dropped, {args.add} added, seed {args.seed}")
    print(table(results))
    ok = sum(r["correct"] for r in results)
    confident = sum(r["confident"] for r in results)
    mean_s = sum(r["seconds"] for r in results) / len(results)
    print(f"\n{ok}/{len(results)} named correctly (ties between byte-identical vocabularies count as correct "
          f"and are shown with '='); {confident}/{len(results)} confident; {mean_s:.2f} s per ranking")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
