"""Benchmark probe throughput: batched (left-padded) versus one-prompt-at-a-time generation on real SmolLM2.

(For the default probe run, old path vs new, tokens/s and where the time goes, see bench_generation.py.
The backend now sorts rows by prompt length before batching, so "forward steps" below is an estimate.)

    python benchmarks/bench_probes.py                       # 16 self-identity prompts, 32 new tokens, sizes 1 and 8
    python benchmarks/bench_probes.py --prompts 26 --max-new-tokens 64 --batch-sizes 1,8,26 --json rows.json
    python benchmarks/bench_probes.py --device cpu --threads 1   # force CPU, one intra-op thread

The model is the real `base` case of tests/support/realcases.py (SmolLM2-135M-Instruct converted from its
GGUF to an HF folder; built once and cached, as for the `real` tests), loaded through provaudit's
transformers probe backend: its own chat template, left padding, CUDA with bf16 when torch sees a GPU,
CPU with float32 otherwise (the device is printed). The prompts are the bundled self-identity suite's.

Each row times `backend.generate` over all prompts with the backend's batch size set to the row's size,
after one untimed warm-up call. Columns: batch size, wall seconds (median of --repeats), prompts/s,
generated tokens/s (tokens of the answers up to and including the end-of-turn token, the ones the probes
keep), forward steps (decoding calls: one per new token of the longest answer of each batch) and the
speed-up over batch size 1. Greedy decoding by default, so both modes produce the same answers and the
comparison is like for like. It prints numbers, it is not a test; the 1-minute load average is printed
because concurrent work inflates wall times. On a shared CPU, torch's intra-op threads spin-wait on each
other: when another process holds a core, `--threads 1` can be several times faster than the default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests.support.realcases builds and caches the real checkpoints


def load_backend(device: str, batch_size: int) -> tuple[Any, Path]:
    from audit.probing.backends import create_backend
    from tests.support.realcases import build_cases

    base = build_cases()["base"]
    return create_backend("transformers", model=str(base), device=device, batch_size=batch_size), base


def suite_prompts(count: int) -> list[list[dict[str, str]]]:
    """The first `count` conversations of the self-identity suite (cycled when more are asked for)."""
    from audit.probing.suite import resolve_suite

    convs = [p.message_list() for p in resolve_suite("self-identity").probes]
    return [convs[i % len(convs)] for i in range(count)]


def device_line(backend: Any) -> str:
    import torch

    desc = backend.describe()
    name = torch.cuda.get_device_name(0) if desc["device"].startswith("cuda") else \
        f"{torch.get_num_threads()} CPU threads"
    return (f"device {desc['device']} ({name}), dtype {desc['dtype']}, torch {torch.__version__}, "
            f"model {desc['model_class']} from {desc['model']}")


def measure(backend: Any, convs: list[list[dict[str, str]]], batch_size: int, max_new_tokens: int,
            temperature: float, seed: int, repeats: int) -> dict[str, Any]:
    """Time generation of every prompt with the backend's batch size set to `batch_size`."""
    import torch

    backend.batch_size = batch_size
    backend.generate(convs[:batch_size], 4, temperature, seed, 1)  # warm-up: kernels, caches, allocator
    times, gens = [], []
    for _ in range(repeats):
        if backend.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = backend.generate(convs, max_new_tokens, temperature, seed, 1)
        if backend.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        gens = [row[0] for row in out]
    errors = [g.error for g in gens if g.error]
    if errors:
        raise SystemExit(f"generation failed at batch size {batch_size}: {errors[0]}")
    seconds = statistics.median(times)
    tokens = sum(g.completion_tokens or 0 for g in gens)
    lengths = [g.completion_tokens or 0 for g in gens]
    steps = sum(max(lengths[i:i + batch_size]) for i in range(0, len(lengths), batch_size))
    return {"batch_size": batch_size, "prompts": len(convs), "seconds": round(seconds, 3),
            "prompts_per_s": round(len(convs) / seconds, 3), "tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 2), "forward_steps": steps,
            "texts": [g.text for g in gens]}


def print_table(rows: list[dict[str, Any]]) -> None:
    base = next((r for r in rows if r["batch_size"] == 1), rows[0])
    head = f"{'batch':>5}  {'prompts':>7}  {'seconds':>8}  {'prompts/s':>9}  {'gen tokens':>10}  {'tokens/s':>9}" \
           f"  {'steps':>6}  {'speed-up':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['batch_size']:>5}  {r['prompts']:>7}  {r['seconds']:>8.2f}  {r['prompts_per_s']:>9.2f}  "
              f"{r['tokens']:>10}  {r['tokens_per_s']:>9.1f}  {r['forward_steps']:>6}  "
              f"{base['seconds'] / r['seconds']:>7.2f}x")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=16, help="how many self-identity prompts (default 16)")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="longest answer per prompt (default 32)")
    ap.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per batch size; the median is shown")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="auto: CUDA (bf16) when torch sees a GPU, else CPU (default)")
    ap.add_argument("--threads", type=int, help="torch intra-op CPU threads (default: torch's choice)")
    ap.add_argument("--json", dest="json_path", help="also write the rows (with the answers) to this file")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    backend, base = load_backend(args.device, max(sizes))
    print(device_line(backend))
    print(f"load {time.perf_counter() - t0:.1f} s; {args.prompts} prompts, <= {args.max_new_tokens} new tokens, "
          f"temperature {args.temperature}, seed {args.seed}; load average {os.getloadavg()[0]:.2f}")
    convs = suite_prompts(args.prompts)
    rows = [measure(backend, convs, b, args.max_new_tokens, args.temperature, args.seed, args.repeats)
            for b in sizes]
    print_table(rows)
    if args.temperature == 0 and len(rows) > 1:
        same = sum(a == b for a, b in zip(rows[0]["texts"], rows[-1]["texts"], strict=True))
        print(f"greedy answers identical between batch {rows[0]['batch_size']} and {rows[-1]['batch_size']}: "
              f"{same}/{len(convs)}")
    if args.json_path:
        desc = backend.describe()
        Path(args.json_path).write_text(json.dumps({"backend": desc, "model": str(base), "args": vars(args),
                                                    "rows": rows}, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
