"""Power and calibration of the sample-only trace tests (audit/probing/trace_mmd.py) on real model outputs.

Generates completions of the first N neutral prompts of probes/trace-prompts.yaml locally (CPU) from
SmolLM2-135M-Instruct (`base`), its 3-step fine-tune (`finetuned`) and Gemma-3-270M (`gemma`), at temperature
0.7 (base: `--replicas` disjoint groups of `--samples` seeds, for base-vs-base pairs) and 0 (greedy), caches
them as JSON (`--cache`), then prints for every kernel:

* base vs base (other seeds; must not reject): the p-value of every pair of disjoint groups, and the share
  of pairs with p < 0.05 (the test's size on real outputs);
* finetuned vs base and gemma vs base: p-value and statistic at prompts x samples in a grid, i.e. how many
  prompts x samples a rejection needed;
* closer_by_samples + sign_test: is finetuned closer to base than to gemma (and gemma closer to base than to
  finetuned, which must not come out);
* the greedy answers: one a side (the null is degenerate: p = 1) and repeated `--samples` times a side;
* the seconds of one mmd_test (30 prompts x (4+4) completions, 1999 draws).

Every (prompt, sample) is seeded on its own (one generate call per prompt); `--shared-seeds` seeds sample j of
every prompt alike in one batched call, which couples the prompts and breaks the permutation null.

    python benchmarks/bench_trace_mmd.py [--base DIR] [--finetuned DIR] [--gemma FILE] [--prompts 12]
                                         [--samples 4] [--max-tokens 48] [--cache completions.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REALCASES = REPO / ".cache" / "realcases" / "smollm2-v1"
TEMPERATURE = 0.7


def _gemma_default() -> str:
    from tests.support.realcases import build_cases

    return str(build_cases()["gemma3"])


def generate(models: dict[str, str], prompts: list[str], samples: int, replicas: int, max_tokens: int,
             threads: int, shared_seeds: bool = False) -> dict[str, Any]:
    """{name: {"sampled": [[text] per prompt], "greedy": [text per prompt], "seconds": s}}."""
    import torch

    torch.set_num_threads(threads)
    from audit.probing.backends.transformers_local import TransformersBackend

    batch = [[{"role": "user", "content": p}] for p in prompts]
    out: dict[str, Any] = {}
    for name, path in models.items():
        backend = TransformersBackend(path, device="cpu")
        n = samples * (replicas if name == "base" else 2)
        start = time.perf_counter()
        if shared_seeds:  # sample j of every prompt seeded 1000 + j: samples coupled across prompts
            sampled = backend.generate(batch, max_tokens, TEMPERATURE, seed=1000, n=n)
        else:  # every (prompt, sample) its own seed: independent across prompts, as the permutation null needs
            sampled = [backend.generate([msgs], max_tokens, TEMPERATURE, seed=100_000 + 1000 * i, n=n)[0]
                       for i, msgs in enumerate(batch)]
        greedy = backend.generate(batch, max_tokens, 0.0, seed=0, n=1)
        secs = time.perf_counter() - start
        out[name] = {"sampled": [[g.text for g in row] for row in sampled], "greedy": [row[0].text for row in greedy],
                     "seconds": secs}
        print(f"generated {name}: {len(prompts)} prompts x {n} samples + greedy in {secs:.1f} s", flush=True)
        del backend
    return out


def _fmt(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.0e}"


def analyse(data: dict[str, Any], samples: int, draws: int, repeats: int) -> None:
    from audit.probing.trace_mmd import KERNELS, closer_by_samples, mmd_test
    from audit.probing.trace_stats import sign_test

    base = data["base"]["sampled"]
    replicas = len(base[0]) // samples
    groups = [[row[r * samples:(r + 1) * samples] for row in base] for r in range(replicas)]
    ft, gm = data["finetuned"]["sampled"], data["gemma"]["sampled"]
    n_prompts = len(base)
    grid_prompts = [p for p in (3, 6, 12, 24) if p <= n_prompts]
    grid_samples = [s for s in (1, 2, 4) if s <= samples]
    print(f"\n{n_prompts} prompts, {samples} samples a side at T={TEMPERATURE}, {draws} draws; "
          f"{replicas} disjoint base groups -> {replicas * (replicas - 1) // 2} base-vs-base pairs")
    for kname, kernel in KERNELS.items():
        print(f"\n=== kernel {kname}")
        pairs = list(itertools.combinations(range(replicas), 2))
        start = time.perf_counter()
        ps = [mmd_test(list(zip(groups[i], groups[j], strict=True)), draws=draws, seed=7 + i * 31 + j,
                       kernel=kernel).p_value for i, j in pairs]
        each = (time.perf_counter() - start) / len(pairs)
        print(f"base vs base p ({len(pairs)} pairs): {' '.join(_fmt(p) for p in sorted(ps))}; "
              f"share p<0.05: {sum(p < 0.05 for p in ps)}/{len(ps)}  ({each * 1000:.0f} ms a test)")
        for subj_name, subj in (("finetuned", ft), ("gemma", gm)):
            cells = []
            for np_, ns in itertools.product(grid_prompts, grid_samples):
                res = mmd_test([(subj[i][:ns], groups[0][i][:ns]) for i in range(np_)], draws=draws, seed=1,
                               kernel=kernel)
                cells.append(f"{np_}x{ns}: p={_fmt(res.p_value)} s={res.value:.3g}")
            print(f"{subj_name} vs base (prompts x samples): " + "; ".join(cells))
        # greedy: one answer per side (degenerate null) and the answer repeated `samples` times
        g = {k: data[k]["greedy"] for k in ("base", "finetuned", "gemma")}
        for subj_name in ("base", "finetuned", "gemma"):
            one = mmd_test([([a], [b]) for a, b in zip(g[subj_name], g["base"], strict=True)], draws=draws,
                           kernel=kernel)
            rep = mmd_test([([a] * samples, [b] * samples) for a, b in zip(g[subj_name], g["base"], strict=True)],
                           draws=draws, kernel=kernel)
            same = sum(a == b for a, b in zip(g[subj_name], g["base"], strict=True))
            print(f"T=0 {subj_name} vs base: identical answers {same}/{n_prompts}; 1+1: p={_fmt(one.p_value)} "
                  f"s={one.value:.3g}; {samples}+{samples} repeated: p={_fmt(rep.p_value)} s={rep.value:.3g}")
        # derived-from: closer to the reference than to the control, exact sign test over prompts
        for subj_name, subj, ref_name, ref, ctl_name, ctl in (
                ("finetuned", ft, "base", groups[0], "gemma", gm),
                ("gemma", gm, "base", groups[0], "finetuned", ft),
                ("base#1", groups[1], "base", groups[0], "gemma", gm),
                ("base#1", groups[1], "finetuned", ft, "gemma", gm)):
            for ns in grid_samples:
                diffs = closer_by_samples([r[:ns] for r in subj], [r[:ns] for r in ref], [r[:ns] for r in ctl],
                                          kernel=kernel)
                st = sign_test(diffs)
                print(f"closer: {subj_name} to {ref_name} than to {ctl_name}, {ns} samples: "
                      f"{sum(d > 0 for d in diffs)}/{len(diffs)} positive, p={_fmt(st.p_value)}")
        for subj_name, ref_name, ctl_name in (("finetuned", "base", "gemma"), ("gemma", "base", "finetuned")):
            diffs = closer_by_samples([[t] for t in g[subj_name]], [[t] for t in g[ref_name]],
                                      [[t] for t in g[ctl_name]], kernel=kernel)
            print(f"closer at T=0 (greedy, 1 a side): {subj_name} to {ref_name} than to {ctl_name}: "
                  f"{sum(d > 0 for d in diffs)}/{len(diffs)} positive, p={_fmt(sign_test(diffs).p_value)}")
    power_table(data, samples, repeats)
    # speed: 30 prompts x (4+4), draws as given
    import numpy as np

    rng = np.random.default_rng(0)
    texts = [t for row in base for t in row]
    big = [([texts[k] for k in rng.integers(0, len(texts), 4)], [texts[k] for k in rng.integers(0, len(texts), 4)])
           for _ in range(30)]
    for kname, kernel in KERNELS.items():
        start = time.perf_counter()
        res = mmd_test(big, draws=draws, kernel=kernel)
        print(f"speed {kname}: 30 prompts x (4+4), {res.n} {res.method} draws: "
              f"{time.perf_counter() - start:.3f} s")


def power_table(data: dict[str, Any], samples: int, repeats: int, draws: int = 499) -> None:
    """Share of p < 0.05 over random subsets (prompts, base groups, samples) per kernel and prompts x samples.

    mmd: subject base (another group: the size), finetuned, gemma against a base group. closer: sign test of
    closer_by_samples, finetuned to base than to gemma (power) and gemma to base than to finetuned (base and
    finetuned answer alike, so this must stay rare). Subsets overlap: the repeats are not independent.
    """
    import random

    from audit.probing.trace_mmd import KERNELS, closer_by_samples, mmd_test
    from audit.probing.trace_stats import sign_test

    base = data["base"]["sampled"]
    replicas = len(base[0]) // samples
    n_prompts = len(base)
    cells = [(p, s) for p in (3, 6, 12) for s in (2, 4) if p <= n_prompts and s <= samples]
    print(f"\nshare of p < 0.05 over {repeats} random subsets ({draws} draws), per prompts x samples")
    print(f"{'kernel':<14} {'test':<24} " + " ".join(f"{p}x{s:<4}" for p, s in cells))
    for kname, kernel in KERNELS.items():
        rows: dict[str, list[str]] = {}
        for p_, s_ in cells:
            rng = random.Random(p_ * 100 + s_)
            hits: dict[str, int] = {}
            for _ in range(repeats):
                prompts = rng.sample(range(n_prompts), p_)
                r0, r1 = rng.sample(range(replicas), 2)
                ref = [base[i][r0 * samples:r0 * samples + s_] for i in prompts]
                subjects = {"mmd base (size)": [base[i][r1 * samples:r1 * samples + s_] for i in prompts],
                            "mmd finetuned": [rng.sample(data["finetuned"]["sampled"][i], s_) for i in prompts],
                            "mmd gemma": [rng.sample(data["gemma"]["sampled"][i], s_) for i in prompts]}
                for name, subj in subjects.items():
                    res = mmd_test(list(zip(subj, ref, strict=True)), draws=draws, seed=rng.randrange(1 << 30),
                                   kernel=kernel)
                    hits[name] = hits.get(name, 0) + (res.p_value < 0.05)
                ft, gm = subjects["mmd finetuned"], subjects["mmd gemma"]
                for name, (a, b, c) in {"closer ft>base vs gemma": (ft, ref, gm),
                                        "closer gemma>base vs ft": (gm, ref, ft)}.items():
                    hits[name] = hits.get(name, 0) + (sign_test(closer_by_samples(a, b, c, kernel)).p_value < 0.05)
            for name, h in hits.items():
                rows.setdefault(name, []).append(f"{h / repeats:<7.2f}")
        for name, vals in rows.items():
            print(f"{kname:<14} {name:<24} " + " ".join(vals), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=str(REALCASES / "base"))
    parser.add_argument("--finetuned", default=str(REALCASES / "finetuned"))
    parser.add_argument("--gemma", default=None, help="default: the cached Gemma-3-270M GGUF of the real cases")
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--replicas", type=int, default=6, help="disjoint base sample groups (base-vs-base pairs)")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--draws", type=int, default=1999)
    parser.add_argument("--repeats", type=int, default=40, help="random subsets per cell of the rejection-rate table")
    parser.add_argument("--cache", type=Path, default=None, help="completions JSON: read if present, else written")
    parser.add_argument("--shared-seeds", action="store_true",
                        help="seed sample j of every prompt alike (one batched call; couples prompts: see docstring)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    args = parser.parse_args()
    if args.cache is not None and args.cache.exists():
        data = json.loads(args.cache.read_text(encoding="utf-8"))
    else:
        from audit.probing.trace import load_prompts

        prompts = load_prompts().neutral[:args.prompts]
        models = {"base": args.base, "finetuned": args.finetuned, "gemma": args.gemma or _gemma_default()}
        data = generate(models, prompts, args.samples, args.replicas, args.max_tokens, args.threads,
                        args.shared_seeds)
        if args.cache is not None:
            args.cache.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    analyse(data, args.samples, args.draws, args.repeats)


if __name__ == "__main__":
    main()
