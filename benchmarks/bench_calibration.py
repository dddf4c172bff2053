"""Calibration of the lineage verdicts: false-positive rate on independent pairs, true-positive rate on derived ones.

Builds (once, cached) the pairs of benchmarks/calib_cases.py: over a hundred independent pairs (fresh random
inits of scaled-down Llama, Mistral, Qwen2/3, Gemma 1/2/3, GPT-2, GPT-NeoX and BERT configs from
fingerprints/architectures/*.yaml, two seeds of one config sharing one tokenizer, briefly trained on the same
text, across sizes and families; tests/support/tiny.py's synthetic models; SmolLM2-135M, Gemma-3-270M,
all-MiniLM-L6-v2 and fresh inits of SmolLM2's config) and derived pairs (SmolLM2 fine-tuned, permuted,
pruned, duplicated, vocabulary-extended, renamed, re-typed, quantized, and combinations). Each pair is audited
in-process through `audit.pipeline.run` (a compare of the candidate against the reference), then it prints:

  * the confusion table (true relation x verdict label), overall and per kind of pair;
  * for every statistic in the records (read by name, whatever statistics the tool reports), the
    distribution of its value, effect size z = (value - null mean) / null sd (or the record's own `z`) and
    log10 p over independent and over derived pairs;
  * the threshold table: the largest value / z and smallest log10 p any independent pair reached, the
    weakest derived pair, and the margin between them;
  * every misclassified pair, the real pairs one by one, and the time per pair.

Per-pair rows go to OUT/rows.jsonl and OUT/rows.csv, the tables to OUT/tables.txt and OUT/summary.json.

    python benchmarks/bench_calibration.py --quick            # 2 cores: ~5 minutes the first time, ~1 once built
    python benchmarks/bench_calibration.py                    # full: larger models, more real derivatives (~16 / ~4)
    python benchmarks/bench_calibration.py --only "gpt2" --list

Exit status 0 when no independent pair was called derived or fine-tuned, every derived pair was found
(derived or fine-tuned) and no audit failed; 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import calib_cases as cc  # noqa: E402

LABELS = ("original", "inconclusive", "fine-tuned", "derived", "error")
POSITIVE = ("derived", "fine-tuned")
LAYER_STAT = "layer-map-best-layer"  # pseudo-statistic: the best single layer's similarity against the layer null
QUANTILES = (("min", 0.0), ("q05", 0.05), ("q25", 0.25), ("median", 0.5), ("q75", 0.75), ("q95", 0.95), ("max", 1.0))


# --------------------------------------------------------------------------------------------------
# Reading a record (generically: statistics by name, optional fields tolerated)


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if not math.isnan(v) else None


def _log10_p(s: dict[str, Any]) -> float | None:
    lp = _num(s.get("log10_p"))
    if lp is not None:
        return lp
    p = _num(s.get("p_value"))
    if p is None:
        return None
    return math.log10(p) if p > 0 else -math.inf


def _effect(value: float | None, null: dict[str, Any]) -> float | None:
    mean, sd = _num(null.get("mean")), _num(null.get("sd"))
    if value is None or mean is None or not sd:
        return None
    return (value - mean) / sd


def read_statistics(comparison: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{statistic name: value, z, p_value, log10_p, null{...}, any other scalar field the record carries}."""
    out: dict[str, dict[str, Any]] = {}
    for s in comparison.get("statistics") or []:
        name = str(s.get("name"))
        null = s.get("null") if isinstance(s.get("null"), dict) else {}
        value = _num(s.get("value"))
        z_key = next((k for k in ("z", "effect", "effect_size") if _num(s.get(k)) is not None), None)
        z = _num(s.get(z_key)) if z_key else None
        row: dict[str, Any] = {"value": value, "z": z if z is not None else _effect(value, null),
                               "z_source": f"record:{z_key}" if z_key else "computed",
                               "p_value": _num(s.get("p_value")), "log10_p": _log10_p(s), "null": null}
        for k, v in s.items():
            if k not in row and k not in ("name", "meaning") and isinstance(v, (int, float, str, bool)):
                row[k] = v
        out[name] = row
    layer_map = comparison.get("layer_map") or []
    sims = [_num(r[2]) for r in layer_map if isinstance(r, (list, tuple)) and len(r) >= 3]
    sims = [s for s in sims if s is not None]
    if sims:
        best = max(sims)
        null = comparison.get("layer_null") if isinstance(comparison.get("layer_null"), dict) else {}
        lps = [_num(p) for p in comparison.get("layer_log10_p") or []]
        lps = [p for p in lps if p is not None]
        out[LAYER_STAT] = {"value": best, "z": _effect(best, null), "z_source": "computed", "p_value": None,
                           "log10_p": min(lps) if lps else None, "null": null}
    return out


def audit(pair: cc.Pair, store: cc.Store, seed: int) -> dict[str, Any]:
    """Build the pair (cached) and audit it in-process; one row of results."""
    from audit.pipeline import Request, run
    from audit.record.names import CommandName

    row: dict[str, Any] = {
        "pair": pair.name, "relation": pair.relation, "kind": pair.kind, "real": pair.real,
        "candidate": pair.candidate.key, "reference": pair.reference.key,
        "candidate_info": dict(pair.candidate.info), "reference_info": dict(pair.reference.info),
        "expected": pair.expect_label, "accept": list(pair.accept or (pair.expect_label,)),
        "expected_ops": list(pair.expect_ops),
    }
    t0 = time.perf_counter()
    try:
        cand, ref = store.get(pair.candidate), store.get(pair.reference)
    except Exception as exc:  # noqa: BLE001 - a failed build is a row, the benchmark goes on
        row.update(label="error", error=f"build: {type(exc).__name__}: {exc}", build_seconds=time.perf_counter() - t0,
                   audit_seconds=0.0, traceback=traceback.format_exc(limit=4))
        return _judge(row)
    row["build_seconds"] = round(time.perf_counter() - t0, 2)
    row["candidate_path"], row["reference_path"] = str(cand), str(ref)
    t1 = time.perf_counter()
    try:
        rec = run(Request(CommandName.COMPARE, model=str(cand), references=((str(ref), "ref"),), seed=seed))
        data = rec.model_dump(mode="json")
    except BaseException as exc:  # noqa: BLE001 - SystemExit from an input error included
        if isinstance(exc, KeyboardInterrupt):
            raise
        row.update(label="error", error=f"audit: {type(exc).__name__}: {exc}", audit_seconds=time.perf_counter() - t1,
                   traceback=traceback.format_exc(limit=6))
        return _judge(row)
    row["audit_seconds"] = round(time.perf_counter() - t1, 2)
    verdict = data.get("verdict") or {}
    comps = data.get("comparisons") or []
    comp = comps[0] if comps else {}
    layer_map = comp.get("layer_map") or []
    subject = (data.get("subject") or {}).get("architecture") or {}
    row.update(
        label=str(verdict.get("label")), parent=verdict.get("parent"), confidence=_num(verdict.get("confidence")),
        operations=[str(o) for o in verdict.get("operations") or []],
        packaging=[str(o) for o in verdict.get("packaging") or []],
        verdict={k: v for k, v in verdict.items()
                 if k not in ("label", "parent", "confidence", "operations", "packaging")},
        flags=[str(f.get("kind")) for f in data.get("flags") or [] if isinstance(f, dict)],
        statistics=read_statistics(comp),
        layers_compared=len(layer_map),
        layers_matched=sum(1 for r in layer_map if isinstance(r, (list, tuple)) and len(r) > 1 and r[1] is not None),
        layer_null=comp.get("layer_null"), alignment=comp.get("alignment"), tokenizer=comp.get("tokenizer"),
        detected=[{"name": o.get("name"), "detail": o.get("detail")} for o in comp.get("operations") or []],
        compare_seconds=_num(comp.get("seconds")),
        hidden=subject.get("hidden_size"), layers=subject.get("num_layers"), parameters=subject.get("parameters"),
        model_type=subject.get("model_type"),
    )
    return _judge(row)


def _judge(row: dict[str, Any]) -> dict[str, Any]:
    label = row.get("label", "error")
    if row["relation"] == "independent":
        row["false_positive"] = label in POSITIVE
        row["ok"] = label == "original"
    else:
        row["found"] = label in POSITIVE
        missing = sorted(set(row["expected_ops"]) - set(row.get("operations") or []) - set(row.get("packaging") or []))
        row["missing_ops"] = missing
        row["ok"] = label in (row.get("accept") or [row["expected"]]) and not missing
    return row


# --------------------------------------------------------------------------------------------------
# Tables


def fmt(x: Any, kind: str = "g") -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isinf(x):
            return "-inf" if x < 0 else "inf"
        if kind == "z" or kind == "p":
            return f"{x:.1f}" if abs(x) < 1e5 else f"{x:.3g}"
        if kind == "s":
            return f"{x:.1f}"
        return f"{x:.4g}"
    return str(x)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Sequence[int] = ()) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r).rstrip() for r in cells)])


def quantiles(values: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.clip(np.asarray(values, dtype=float), -1e308, 1e308)  # a p-value of 0 without log10_p is -inf
    return {name: float(np.quantile(a, q)) for name, q in QUANTILES}


def statistic_names(rows: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for r in rows:
        for n in r.get("statistics") or {}:
            names.setdefault(n, None)
    return [n for n in names if n != LAYER_STAT] + ([LAYER_STAT] if LAYER_STAT in names else [])


def confusion(rows: list[dict[str, Any]], key: str) -> str:
    groups: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for r in rows:
        groups[(r["relation"], r[key] if key != "relation" else "")][r.get("label", "error")] += 1
    out = []
    for (rel, group), cnt in sorted(groups.items(), key=lambda kv: (kv[0][0] != "independent", kv[0][1])):
        n = sum(cnt.values())
        if rel == "independent":
            rate = f"FP {sum(cnt[x] for x in POSITIVE)}/{n}"
        else:
            rate = f"found {sum(cnt[x] for x in POSITIVE)}/{n}"
        out.append([rel, group, n, *(cnt.get(lab, 0) or "." for lab in LABELS), rate])
    headers = ["relation", key if key != "relation" else "", "n", *LABELS, "rate"]
    if key == "relation":
        headers, out = [h for i, h in enumerate(headers) if i != 1], [[c for i, c in enumerate(r) if i != 1] for r in out]
    return table(headers, out, right=tuple(range(2 if key == "relation" else 3, 3 + len(LABELS))))


def distributions(rows: list[dict[str, Any]], measure: str) -> tuple[str, dict[str, Any]]:
    kind = {"value": "g", "z": "z", "log10_p": "p"}[measure]
    out, data = [], {}
    for name in statistic_names(rows):
        for rel in ("independent", "derived"):
            vals = [r["statistics"][name][measure] for r in rows
                    if r["relation"] == rel and name in (r.get("statistics") or {})
                    and r["statistics"][name].get(measure) is not None]
            if not vals:
                continue
            q = quantiles(vals)
            data.setdefault(name, {})[rel] = {"n": len(vals), **q}
            out.append([name, rel, len(vals), *(fmt(q[k], kind) for k, _ in QUANTILES)])
    return table(["statistic", "pairs", "n", *(k for k, _ in QUANTILES)], out, right=tuple(range(2, 3 + len(QUANTILES)))), data


def thresholds(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Per statistic and measure: the strongest independent pair, the weakest derived pair, the margin."""
    out, data = [], {}
    for name in statistic_names(rows):
        for measure in ("value", "z", "log10_p"):
            kind = {"value": "g", "z": "z", "log10_p": "p"}[measure]
            sign = -1.0 if measure == "log10_p" else 1.0  # evidence grows with value and z, shrinks with log10 p

            def pick(rel: str, *, name: str = name, measure: str = measure, sign: float = sign) -> list[tuple[float, str]]:
                return sorted((sign * r["statistics"][name][measure], r["pair"]) for r in rows
                              if r["relation"] == rel and name in (r.get("statistics") or {})
                              and r["statistics"][name].get(measure) is not None)
            ind, der = pick("independent"), pick("derived")
            if not ind and not der:
                continue
            worst_ind = ind[-1] if ind else None  # most evidence among independent pairs
            weak_der = der[0] if der else None  # least evidence among derived pairs
            margin = (weak_der[0] - worst_ind[0]) if worst_ind and weak_der else None
            entry = {"independent_extreme": sign * worst_ind[0] if worst_ind else None,
                     "independent_pair": worst_ind[1] if worst_ind else None,
                     "derived_extreme": sign * weak_der[0] if weak_der else None,
                     "derived_pair": weak_der[1] if weak_der else None, "margin": margin,
                     "separated": margin is not None and margin > 0}
            data.setdefault(name, {})[measure] = entry
            out.append([name, {"value": "value", "z": "z", "log10_p": "log10 p"}[measure],
                        ("max " if sign > 0 else "min ") + fmt(entry["independent_extreme"], kind),
                        ("min " if sign > 0 else "max ") + fmt(entry["derived_extreme"], kind),
                        fmt(margin, kind), fmt(entry["separated"]),
                        _short(entry["independent_pair"]), _short(entry["derived_pair"])])
    headers = ["statistic", "measure", "independent (strongest)", "derived (weakest)", "margin", "separated",
               "strongest independent pair", "weakest derived pair"]
    return table(headers, out, right=(2, 3, 4)), data


def _ops(r: dict[str, Any]) -> str:
    """Weight operations, then the packaging (when the record reports it apart) after a '|'."""
    ops, pkg = ",".join(r.get("operations") or []), ",".join(r.get("packaging") or [])
    return (ops or "-") + (f" | {pkg}" if pkg else "")


def _short(s: Any, n: int = 44) -> str:
    s = "-" if s is None else str(s)
    return s if len(s) <= n else s[: n - 1] + "…"


def pair_table(rows: list[dict[str, Any]], names: list[str]) -> str:
    out = []
    for r in rows:
        st = r.get("statistics") or {}
        cells = [_short(r["pair"], 52), r["relation"][:5], r["expected"], r.get("label", "error"),
                 _short(_ops(r), 40)]
        for n in names:
            s = st.get(n) or {}
            cells.append(f"{fmt(s.get('value'))}/{fmt(s.get('z'), 'z')}/{fmt(s.get('log10_p'), 'p')}" if s else "-")
        cells += [fmt(r.get("audit_seconds"), "s"), "ok" if r.get("ok") else ("FP" if r.get("false_positive") else
                  ("MISSED" if r["relation"] == "derived" and not r.get("found") else "off"))]
        out.append(cells)
    return table(["pair", "rel", "expected", "verdict", "operations | packaging", *(f"{n} v/z/lp" for n in names), "s", "ok"], out)


def timing(rows: list[dict[str, Any]]) -> str:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[f"{r['relation']}: {r['kind']}"].append(r)
    out = []
    for g, rs in sorted(groups.items()):
        aud = [r.get("audit_seconds") or 0.0 for r in rs]
        out.append([g, len(rs), fmt(sum(r.get("build_seconds") or 0.0 for r in rs), "s"), fmt(sum(aud) / len(aud), "s"),
                    fmt(max(aud), "s"), fmt(sum(aud), "s")])
    return table(["kind", "n", "build s (total)", "audit s (mean)", "audit s (max)", "audit s (total)"], out,
                 right=(1, 2, 3, 4, 5))


def misclassified(rows: list[dict[str, Any]]) -> str:
    bad = [r for r in rows if not r.get("ok")]
    if not bad:
        return "(none)"
    out = []
    for r in bad:
        why = r.get("error") or ""
        if not why and r["relation"] == "derived" and r.get("missing_ops"):
            why = "missing " + ",".join(r["missing_ops"])
        if not why:
            why = (r.get("verdict") or {}).get("summary", "")
        out.append([_short(r["pair"], 56), r["relation"], r["expected"], r.get("label", "error"),
                    _short(_ops(r), 36), _short(why, 120)])
    return table(["pair", "relation", "expected", "verdict", "operations | packaging", "why"], out)


# --------------------------------------------------------------------------------------------------
# Output files


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    names = statistic_names(rows)
    base = ["pair", "relation", "kind", "real", "expected", "label", "ok", "false_positive", "found", "parent",
            "confidence", "operations", "packaging", "missing_ops", "flags", "layers_compared", "layers_matched", "hidden", "layers",
            "parameters", "model_type", "build_seconds", "audit_seconds", "candidate", "reference", "error"]
    cols = base + [f"{n}:{m}" for n in names
                   for m in ("value", "z", "log10_p", "p_value", "null_mean", "null_sd", "null_n", "null_method")]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            line = []
            for c in base:
                v = r.get(c)
                line.append(";".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v))
            for n in names:
                s = (r.get("statistics") or {}).get(n) or {}
                null = s.get("null") or {}
                line += [s.get("value"), s.get("z"), s.get("log10_p"), s.get("p_value"), null.get("mean"),
                         null.get("sd"), null.get("n"), null.get("method")]
            w.writerow(["" if v is None else v for v in line])


def _json_default(x: Any) -> str:
    return str(x)


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny models (hidden <= 128) and the cheap real pairs")
    ap.add_argument("--out", type=Path, default=cc.REPO / "provaudit-runs" / "calibration",
                    help="where rows.jsonl, rows.csv, tables.txt and summary.json go")
    ap.add_argument("--cache", type=Path, default=None,
                    help="built checkpoints (default $PROVAUDIT_CACHE/calibration, else OUT/cache)")
    ap.add_argument("--real-cache", type=Path, default=None,
                    help="tests/support/realcases.py's cache (default $PROVAUDIT_TEST_CACHE or .cache/realcases)")
    ap.add_argument("--only", default="", help="comma-separated substrings: keep pairs whose name or kind has one")
    ap.add_argument("--no-real", action="store_true", help="skip pairs with real (SmolLM2/Gemma/MiniLM) checkpoints")
    ap.add_argument("--seed", type=int, default=0, help="the audit's seed")
    ap.add_argument("--list", action="store_true", help="list the pairs and exit")
    ap.add_argument("--all-pairs", action="store_true", help="print every pair's row, not only the real and wrong ones")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    cache = args.cache or (Path(os.environ["PROVAUDIT_CACHE"]) / "calibration" if os.environ.get("PROVAUDIT_CACHE")
                           else out / "cache")
    store = cc.Store(cache)
    catalog = cc.Catalog(store, args.real_cache)
    pairs = cc.pairs(catalog, args.quick, real=not args.no_real)
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        pairs = [p for p in pairs if any(k in p.name or k in p.kind for k in keys)]
    if args.list:
        print(table(["pair", "relation", "kind", "expected", "expected ops"],
                    [[p.name, p.relation, p.kind, p.expect_label, ",".join(p.expect_ops) or "-"] for p in pairs]))
        kinds = Counter((p.relation, p.kind) for p in pairs)
        print()
        print(table(["relation", "kind", "pairs"], [[r, k, n] for (r, k), n in sorted(kinds.items())], right=(2,)))
        return 0

    print(f"[calibration] {len(pairs)} pairs ({sum(p.relation == 'independent' for p in pairs)} independent, "
          f"{sum(p.relation == 'derived' for p in pairs)} derived); checkpoints in {cache}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    jsonl = out / "rows.jsonl"
    with jsonl.open("w", encoding="utf-8") as fh:
        for i, pair in enumerate(pairs, 1):
            row = audit(pair, store, args.seed)
            rows.append(row)
            fh.write(json.dumps(row, default=_json_default) + "\n")
            fh.flush()
            mark = "ok" if row.get("ok") else ("FALSE POSITIVE" if row.get("false_positive") else
                                               "MISSED" if row["relation"] == "derived" and not row.get("found") else "off")
            print(f"[{i}/{len(pairs)}] {pair.kind}: {pair.name} -> {row.get('label')} "
                  f"({fmt(row.get('build_seconds'), 's')} s build, {fmt(row.get('audit_seconds'), 's')} s audit) {mark}"
                  + (f" {row['error']}" if row.get("error") else ""), file=sys.stderr)
    write_csv(rows, out / "rows.csv")

    names = statistic_names(rows)
    sections: list[tuple[str, str]] = []
    sections.append(("Confusion: true relation x verdict", confusion(rows, "relation")))
    sections.append(("Confusion by kind of pair", confusion(rows, "kind")))
    dist_data = {}
    for measure, title in (("value", "value"), ("z", "effect size z = (value - null mean) / null sd"),
                           ("log10_p", "log10 p")):
        text, dist_data[measure] = distributions(rows, measure)
        sections.append((f"Distribution of each statistic's {title}", text))
    thr_text, thr_data = thresholds(rows)
    sections.append(("Thresholds: strongest independent pair vs weakest derived pair (margin > 0: separated)", thr_text))
    sections.append(("Misclassified pairs (independent not 'original'; derived without the expected label or operations)",
                     misclassified(rows)))
    shown = rows if args.all_pairs else [r for r in rows if r["real"] or not r.get("ok")]
    sections.append(("Pairs (real, and any not ok; --all-pairs for every pair): value/z/log10 p per statistic",
                     pair_table(shown, names)))
    sections.append(("Time per pair", timing(rows)))
    wall = time.perf_counter() - t_start
    n_ind = sum(r["relation"] == "independent" for r in rows)
    n_der = len(rows) - n_ind
    fp = sum(bool(r.get("false_positive")) for r in rows)
    not_orig = sum(r["relation"] == "independent" and r.get("label") != "original" for r in rows)
    found = sum(bool(r.get("found")) for r in rows)
    exact = sum(r["relation"] == "derived" and bool(r.get("ok")) for r in rows)
    errors = sum(r.get("label") == "error" for r in rows)
    headline = (f"independent pairs: {n_ind}, called derived/fine-tuned: {fp} (FP rate {fp / max(n_ind, 1):.3f}), "
                f"not 'original': {not_orig}\n"
                f"derived pairs: {n_der}, found (derived/fine-tuned): {found} (TP rate {found / max(n_der, 1):.3f}), "
                f"expected label and operations: {exact}\n"
                f"errors: {errors}; wall time {wall:.0f} s ({'quick' if args.quick else 'full'} mode)")
    sections.append(("Summary", headline))
    text = "\n\n".join(f"== {title}\n{body}" for title, body in sections)
    print(text)
    (out / "tables.txt").write_text(text + "\n", encoding="utf-8")
    summary = {"mode": "quick" if args.quick else "full", "pairs": len(rows), "independent": n_ind, "derived": n_der,
               "false_positives": fp, "independent_not_original": not_orig, "derived_found": found,
               "derived_exact": exact, "errors": errors, "wall_seconds": round(wall, 1), "statistics": names,
               "distributions": dist_data, "thresholds": thr_data,
               "confusion": {rel: dict(Counter(r.get("label") for r in rows if r["relation"] == rel))
                             for rel in ("independent", "derived")}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default), encoding="utf-8")
    print(f"\nrows: {jsonl}, {out / 'rows.csv'}; tables: {out / 'tables.txt'}; summary: {out / 'summary.json'}",
          file=sys.stderr)
    return 0 if fp == 0 and found == n_der and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
