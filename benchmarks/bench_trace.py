"""Accuracy of `provaudit trace` over real cases served through an OpenAI-compatible HTTP server.

Cases (SmolLM2-135M-Instruct as the reference, Gemma-3-270M as the control):
  relay      the reference itself, relabelled                          expected: same-model
  hidden     the reference behind a hidden system prompt (~60 tokens)   expected: same-model or inconclusive,
                                                                                  hidden prompt flagged
  finetuned  the reference + 3 AdamW steps (tests/support/realcases)    expected: derived
  gemma      Gemma-3-270M, an unrelated model                            expected: unrelated
each at temperature 0.7 and 0. Prints one row per case and temperature: verdict, p-values, hidden-prompt
estimate, requests the verdict needed, requests sent and seconds.

    python benchmarks/bench_trace.py [--prompts 8] [--samples 3] [--max-tokens 24] [--cases relay,gemma]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HIDDEN_SYSTEM = ("You are Aria, the friendly assistant of Northwind Travel, a small agency in Lisbon. Answer "
                 "briefly and politely, recommend our weekend city packages when it fits, never mention other "
                 "agencies, and end every answer by offering help with a booking. Prices are in euros and include "
                 "breakfast at a partner hotel.")
EXPECTED = {"relay": {"same-model"}, "hidden": {"same-model", "inconclusive"}, "finetuned": {"derived"},
            "gemma": {"unrelated"}}


def trace_case(subject: Path, hidden: str | None, reference: Path, control: Path, temperature: float, prompts: int,
               samples: int | None, max_tokens: int, cache: Path, logprobs: bool = True) -> tuple[dict, float]:
    """One trace through HTTP; the record as JSON and the seconds it took."""
    import os

    from audit.pipeline import Endpoint, Request, TraceRequest, run
    from audit.probing.trace import TraceOptions
    from audit.record.names import CommandName
    from tests.support.model_server import ModelServer

    os.environ["PROVAUDIT_CACHE"] = str(cache)
    with ModelServer(str(subject), hidden_system=hidden, served_name="acme-chat-1") as srv:
        start = time.perf_counter()
        options = TraceOptions(prompts=prompts, samples=samples, temperature=temperature, max_tokens=max_tokens,
                               logprobs=logprobs)
        request = Request(CommandName.TRACE, endpoint=Endpoint(srv.url, "acme-chat-1", timeout=600.0),
                          references=((str(reference), "smollm2"),),
                          trace=TraceRequest(options, ((str(control), "gemma3"),), device="cpu"))
        record = run(request)
        return record.to_json_dict(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=None, help="default: chosen for the stated power")
    parser.add_argument("--logprobs", default="yes,no", help="endpoint logprobs asked for: yes, no or both")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--cases", default="relay,hidden,finetuned,gemma")
    parser.add_argument("--temperatures", default="0.7,0")
    parser.add_argument("--out", type=Path, default=None, help="also write each record here as JSON")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from tests.support.realcases import build_cases, default_cache_dir

    cases = build_cases(default_cache_dir())
    subjects = {"relay": (cases["base"], None), "hidden": (cases["base"], HIDDEN_SYSTEM),
                "finetuned": (cases["finetuned"], None), "gemma": (cases["gemma3"], None)}
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(cases["base"]))
    hidden_len = len(tok(HIDDEN_SYSTEM, add_special_tokens=False)["input_ids"])
    header = (f"{'case':<10} {'T':>4} {'lp':<3} {'verdict':<13} {'ok':<3} {'same':>8} {'gap':>7} {'p closer':>9} "
              f"{'hidden est':>11} {'flag':<5} {'needed':>6} {'sent':>5} {'s':>6}")
    print(f"prompts {args.prompts}, samples {args.samples or 'auto'} (1 at T=0), max tokens {args.max_tokens}; "
          "same = sample-pit Holm p (T > 0) or greedy-tokens share (T = 0); "
          f"hidden prompt {hidden_len} tokens (SmolLM2 tokenizer)")
    print(header)
    print("-" * len(header))
    right = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            subject, hidden = subjects[name]
            for t, lp in [(float(x), y == "yes") for x in args.temperatures.split(",")
                          for y in args.logprobs.split(",")]:
                rec, secs = trace_case(subject, hidden, cases["base"], cases["gemma3"], t, args.prompts,
                                       args.samples, args.max_tokens, Path(tmp) / f"{name}-{t}-{lp}", lp)
                tr = rec["trace"]
                if args.out is not None:
                    import json

                    args.out.mkdir(parents=True, exist_ok=True)
                    (args.out / f"{name}-{t:g}-{'lp' if lp else 'nolp'}.json").write_text(json.dumps(rec, indent=1), encoding="utf-8")
                ref = tr["references"][0]
                stats = {s["name"]: s for s in ref["statistics"]}
                same = (stats.get("sample-pit", {}).get("p_holm") if t > 0 else
                        stats.get("greedy-tokens", {}).get("value"))
                gap = stats.get("logprob-gap", {}).get("value")
                closer = stats.get("closer-than-controls", {}).get("p_holm")
                billing = tr["hidden_prompt"]["billing"] or {}
                est = billing.get("hidden_tokens")
                flag = any(f["kind"] == "hidden-prompt-suspected" for f in rec["flags"])
                ok = ref["verdict"] in EXPECTED[name] and (flag == (name == "hidden"))
                right += ok
                total += 1
                print(f"{name:<10} {t:>4g} {'yes' if lp else 'no':<3} {ref['verdict']:<13} {'yes' if ok else 'NO':<3} "
                      f"{_f(same):>8} {_f(gap):>7} {_f(closer):>9} {_f(est):>11} {'yes' if flag else 'no':<5} "
                      f"{ref['requests_needed'] if ref['requests_needed'] is not None else '-':>6} "
                      f"{tr['budget']['requests_sent']:>5} {secs:>6.1f}", flush=True)
    print(f"accuracy (verdict in the expected set and the hidden-prompt flag right): {right}/{total}")


def _f(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}"


if __name__ == "__main__":
    main()
