"""Name the tokenizer family an OpenAI-compatible endpoint bills with, from the prompt tokens it reports.

Method (``provaudit.tokcount/1``):

1. Send each probe string of ``probes/tokenizer-strings.yaml`` once, as the whole content of one user message
   (``count_fn`` does the request and returns ``usage.prompt_tokens``), plus one baseline request with an
   empty message. That is at most ``len(strings) + 1`` requests; sending stops early when the first few all
   come back without a count.
2. A chat endpoint bills the chat template too (role markers, a default system prompt, BOS), so the count
   of a string is ``observed(s) = overhead + tokens(s)``, where the overhead is the same for every string of
   one endpoint and unknown. For each registry tokenizer F with ``probe_counts`` (each string counted alone,
   without special tokens), the residuals ``observed(s) - expected_F(s)`` are computed and the overhead is
   estimated as their median (the lower one for an even number, so it is always an integer). The median,
   not the most frequent residual: the mode is the offset that maximizes matches, which would hand every
   wrong family its best chance alignment; the median is what a family whose counts are right on most
   strings gets exactly, and a wrong family gets no help from it. A string *matches* F when its residual
   equals that offset; F's score is the number of matching strings ``k`` of the ``n`` answered, with the
   mean absolute deviation from the offset (MAE) beside it. The baseline (the empty message's count) is
   reported beside the fitted offset: for clean templates they agree; it is not used to fit, because some
   templates merge their own text with the message's edges.
3. Chance: the same fit between the registry's own tokenizers. For every ordered pair (true A, candidate B)
   of entries of *different* families, A's counts play the endpoint and B is fitted to them; the number of
   exact matches over the same ``n`` strings is one null draw. The result carries that distribution
   ({mean, sd, n, max, max_pair}) and an empirical p-value, the share of null draws at least as high as ``k``.
4. Verdict: *identified* when at least ``min_share`` of the answered strings match, ``k`` is above every null
   draw (no two different registry families agree that well with each other) and above the best entry of
   any other family; otherwise *inconclusive*, with the reason (too few counts, no usage in the responses,
   a tokenizer outside the registry, two families tied). Entries whose counts are identical on the strings
   (byte-identical vocabularies such as qwen2/qwen35, gpt-neox/mpt) cannot be told apart and are listed in
   ``same_counts_as``.

Strings are chosen without leading or trailing whitespace, so that a template's text next to the message
rarely merges with it; where it does (plain-text templates such as ``"User: " + s``), that string misses and
the median offset is unaffected.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from audit.errors import InputError

METHOD = "provaudit.tokcount/1"
STRINGS_KIND = "tokenizer-strings"
MAX_STRING = 400
_SPECIAL_LOOKING = ("<|", "|>", "<s>", "</s>", "[INST]", "[/INST]", "<start_of_turn>", "<end_of_turn>", "<bos>",
                    "<eos>", "[CLS]", "[SEP]")

CountFn = Callable[[str], "int | None"]


def strings_file() -> Path:
    """The bundled probe strings (``probes/tokenizer-strings.yaml``)."""
    from audit.paths import data_dir

    return data_dir("probes") / "tokenizer-strings.yaml"


def load_probe_strings(path: Path | None = None) -> list[str]:
    """The probe strings of a ``kind: tokenizer-strings`` file, in file order; InputError if the file is unusable."""
    from audit.safeio import MiB, load_yaml

    path = Path(path) if path is not None else strings_file()
    data = load_yaml(path, 8 * MiB, "probe strings file")  # bounded, safe; one-line InputError
    if not isinstance(data, dict) or data.get("kind") != STRINGS_KIND or not isinstance(data.get("strings"), list):
        raise InputError(f"{path}: not a '{STRINGS_KIND}' file (needs kind: {STRINGS_KIND} and a list 'strings')")
    out: list[str] = []
    for i, item in enumerate(data["strings"]):
        text = item.get("text") if isinstance(item, dict) else item
        where = f"{path}: strings[{i}]"
        if not isinstance(text, str) or not text:
            raise InputError(f"{where}: needs a non-empty 'text'")
        if text != text.strip():
            raise InputError(f"{where}: {text[:40]!r} has leading or trailing whitespace")
        if len(text) > MAX_STRING:
            raise InputError(f"{where}: longer than {MAX_STRING} characters")
        if any(marker in text for marker in _SPECIAL_LOOKING):
            raise InputError(f"{where}: {text[:40]!r} looks like a special token")
        if text in out:
            raise InputError(f"{where}: {text[:40]!r} is listed twice")
        out.append(text)
    if not out:
        raise InputError(f"{path}: no strings")
    return out


# ---------------------------------------------------------------- fitting


def fit_offset(observed: Mapping[str, int], expected: Mapping[str, int], strings: Iterable[str]) -> dict[str, Any]:
    """Fit ``observed = offset + expected`` over `strings`: offset (lower median of the residuals), exact matches, MAE."""
    keys = [s for s in strings if s in observed and s in expected]
    residuals = [observed[s] - expected[s] for s in keys]
    if not residuals:
        return {"offset": None, "matched": 0, "of": 0, "mae": None}
    offset = statistics.median_low(residuals)
    dev = [abs(r - offset) for r in residuals]
    return {"offset": offset, "matched": sum(d == 0 for d in dev), "of": len(keys), "mae": sum(dev) / len(dev)}


def count_null(fps: Sequence[Mapping[str, Any]], strings: Sequence[str]) -> dict[str, Any]:
    """Exact matches when one registry tokenizer's counts are fitted to a different family's, over `strings`.

    Ordered pairs (true, candidate) of entries with probe_counts and different ``family`` labels; returns
    {mean, sd, n, max, max_pair, values} (values sorted, for p-values).
    """
    values: list[int] = []
    best: tuple[int, list[str] | None] = (-1, None)
    for a in fps:
        for b in fps:
            if a is b or a.get("family") == b.get("family"):
                continue
            k = fit_offset(a["probe_counts"], b["probe_counts"], strings)["matched"]
            values.append(k)
            if k > best[0]:
                best = (k, [str(a["name"]), str(b["name"])])
    n = len(values)
    mean = sum(values) / n if n else 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": round(mean, 4), "sd": round(sd, 4), "n": n, "max": max(values, default=0),
            "max_pair": best[1], "values": sorted(values)}


def _p_value(k: int, null_values: Sequence[int]) -> float:
    return round((1 + sum(v >= k for v in null_values)) / (len(null_values) + 1), 6)


# ---------------------------------------------------------------- requests


def backend_counter(backend: Any) -> CountFn:
    """A count_fn over a probe backend (``generate(batch, max_new_tokens, temperature, seed, n)`` returning
    Generations with ``prompt_tokens``): one user message, max_new_tokens=1, temperature 0, seed 0.

    A Generation with an error raises RuntimeError (recorded by infer_tokenizer_family as a failed string).
    """

    def count(text: str) -> int | None:
        gen = backend.generate([[{"role": "user", "content": text}]], max_new_tokens=1, temperature=0.0, seed=0,
                               n=1)[0][0]
        if getattr(gen, "error", None):
            raise RuntimeError(gen.error)
        return gen.prompt_tokens

    return count


def _ask(count_fn: CountFn, text: str) -> tuple[int | None, str | None]:
    """(count, problem): one request; exceptions and non-integer answers become problems, never raised."""
    try:
        value = count_fn(text)
    except Exception as exc:  # a probe records its failures; it never stops the audit
        return None, f"{type(exc).__name__}: {exc}"[:300]
    if value is None:
        return None, "no usage.prompt_tokens in the response"
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None, f"prompt_tokens is not a count: {value!r}"[:300]
    return value, None


def _inconclusive(base: dict[str, Any], reason: str) -> dict[str, Any]:
    base.update(status="inconclusive", reason=reason, summary=f"Tokenizer family not identified: {reason}.")
    return base


# ---------------------------------------------------------------- inference


def infer_tokenizer_family(count_fn: CountFn, fingerprints: Iterable[Mapping[str, Any]],
                           strings: Sequence[str] | None = None, *, baseline: bool = True, min_strings: int = 8,
                           min_share: float = 0.8, give_up_after: int = 3) -> dict[str, Any]:
    """Rank registry tokenizers by how exactly they reproduce the endpoint's prompt-token counts (see module doc).

    count_fn(text): ``usage.prompt_tokens`` of a one-message chat request with `text` as the user content
    (max_tokens=1), or None when the response has no usage; exceptions are recorded, not raised.
    fingerprints: tokenizer fingerprints (``provaudit.tokenizer/1``); those without ``probe_counts`` are listed
    in ``not_compared``. strings: defaults to the bundled probe strings; only strings every compared entry has
    counts for are sent. give_up_after: stop when this many strings in a row got no count and none has yet.
    """
    requested = list(strings) if strings is not None else load_probe_strings()
    result: dict[str, Any] = {"method": METHOD, "status": "inconclusive", "reason": None, "summary": "",
                              "family": None, "name": None, "model_family": None, "same_counts_as": [],
                              "matched": 0, "of": 0, "offset": None, "baseline_tokens": None,
                              "offset_minus_baseline": None, "p_value": None, "null": None, "ranking": [],
                              "mismatches": [], "not_compared": {}, "strings_skipped": 0,
                              "requests": {"sent": 0, "counted": 0, "failed": 0, "problems": []}, "observed": {}}
    from audit.fingerprinting.tokenizer_sketch import dedupe_fingerprints

    candidates: list[Mapping[str, Any]] = []
    for fp in dedupe_fingerprints(fingerprints):
        counts = fp.get("probe_counts")
        name = str(fp.get("name"))
        if not isinstance(counts, dict) or not counts:
            result["not_compared"][name] = "no probe_counts in its fingerprint"
        elif sum(s in counts for s in requested) * 2 < len(requested):
            result["not_compared"][name] = f"probe_counts cover {sum(s in counts for s in requested)} of {len(requested)} strings"
        else:
            candidates.append(fp)
    if not candidates:
        return _inconclusive(result, "no registry tokenizer has probe counts for these strings")
    used = [s for s in requested if all(s in fp["probe_counts"] for fp in candidates)]
    result["strings_skipped"] = len(requested) - len(used)
    if len(used) < min_strings:
        return _inconclusive(result, f"only {len(used)} strings have expected counts in the registry (need {min_strings})")

    # ---- requests: one baseline, one per string
    req = result["requests"]
    if baseline:
        value, problem = _ask(count_fn, "")
        req["sent"] += 1
        result["baseline_tokens"] = value
        if problem:
            req["problems"].append({"string": "", "problem": problem})
    observed: dict[str, int] = {}
    misses = 0
    for s in used:
        value, problem = _ask(count_fn, s)
        req["sent"] += 1
        if value is None:
            req["failed"] += 1
            misses += 1
            if len(req["problems"]) < 10:
                req["problems"].append({"string": s, "problem": problem})
            if not observed and misses >= give_up_after:
                break
        else:
            observed[s] = value
            misses = 0
    req["counted"] = len(observed)
    result["observed"] = observed
    answered = [s for s in used if s in observed]
    result["of"] = len(answered)
    if len(answered) < min_strings:
        why = (req["problems"][-1]["problem"] if req["problems"] else "no answers")
        if not answered:
            return _inconclusive(result, f"the endpoint returned no prompt-token count for {req['failed']} of "
                                         f"{req['sent'] - int(baseline)} requests ({why})")
        return _inconclusive(result, f"only {len(answered)} of {len(used)} strings got a prompt-token count "
                                     f"(need {min_strings}; last problem: {why})")

    # ---- fit every candidate; group entries whose counts are identical on these strings
    null = count_null(candidates, answered)
    null_values = null.pop("values")
    result["null"] = null
    rows = []
    for fp in candidates:
        fit = fit_offset(observed, fp["probe_counts"], answered)
        vector = tuple(fp["probe_counts"][s] for s in answered)
        rows.append({"name": str(fp["name"]), "family": fp.get("family"), "model_family": fp.get("model_family"),
                     **fit, "share": round(fit["matched"] / fit["of"], 4), "mae": round(fit["mae"], 4),
                     "p_value": _p_value(fit["matched"], null_values), "_vector": vector})
    rows.sort(key=lambda r: (-r["matched"], r["mae"], r["name"]))
    for i, row in enumerate(rows):
        row["rank"] = i + 1
        row["same_counts_as"] = [r["name"] for r in rows if r is not row and r["_vector"] == row["_vector"]]
    top = rows[0]
    other = next((r for r in rows[1:] if r["family"] != top["family"] and r["_vector"] != top["_vector"]), None)
    top_fp = next(fp for fp in candidates if str(fp["name"]) == top["name"])
    result["mismatches"] = [
        {"string": s, "observed": observed[s], "expected": top_fp["probe_counts"][s],
         "off_by": observed[s] - top_fp["probe_counts"][s] - top["offset"]}
        for s in answered if observed[s] - top_fp["probe_counts"][s] != top["offset"]][:20]
    result["ranking"] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    result.update(matched=top["matched"], offset=top["offset"], p_value=top["p_value"])
    if result["baseline_tokens"] is not None:
        result["offset_minus_baseline"] = top["offset"] - result["baseline_tokens"]

    k, n = top["matched"], len(answered)
    chance = (f"different registry tokenizers match each other on {null['mean']:.1f} of {n} on average "
              f"(max {null['max']}, {' vs '.join(null['max_pair'] or [])})")
    if k < min_share * n:
        return _inconclusive(result, f"the closest registry tokenizer, {top['name']}, matches only {k} of {n} "
                                     f"counts; {chance}: the endpoint's tokenizer is probably not in the registry")
    if k <= null["max"]:
        return _inconclusive(result, f"{top['name']} matches {k} of {n} counts, no more than {chance}")
    if other is not None and other["matched"] >= k:
        return _inconclusive(result, f"{top['name']} ({top['family']}) and {other['name']} ({other['family']}) "
                                     f"both match {k} of {n} counts")
    names = [top["name"], *top["same_counts_as"]]
    result.update(status="identified", reason=None, family=top["family"], name=top["name"],
                  model_family=top["model_family"], same_counts_as=top["same_counts_as"])
    lead = f" (next other family: {other['name']}, {other['matched']}/{n})" if other else ""
    result["summary"] = (f"The endpoint bills with the {top['family']} tokenizer family ({' = '.join(names)}): "
                         f"{k} of {n} prompt-token counts match exactly after a constant template overhead of "
                         f"{top['offset']}{lead}; {chance}: {k} is above all {null['n']} of those draws "
                         f"(p = {top['p_value']:.3g}, the smallest this null gives).")
    return result
