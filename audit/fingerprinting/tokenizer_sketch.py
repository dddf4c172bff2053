"""Compact, shareable tokenizer fingerprints (hashes + a bottom-k sketch) and ranking of a vocabulary against them.

A fingerprint (schema ``provaudit.tokenizer/1``) never stores a vocabulary. It holds:

* exact hashes: SHA-256 of the ordered token list, of the token set, of all merges and of the first 1000
  merges (merge *order* is what a BPE training run produces, so two tokenizers trained separately on the
  same data still differ there);
* the special tokens by role (bos, eos, unk, pad, sep, cls, mask) and, where the file lists them, the
  added special tokens;
* a bottom-k sketch: the k smallest 64-bit BLAKE2b hashes of the token strings. Because every
  vocabulary is hashed with the same function, the sketches of two vocabularies are consistent samples
  of their union, which estimates Jaccard similarity and containment in both directions. A candidate's
  full vocabulary is at hand when it is audited, so candidate-vs-fingerprint estimates use the exact
  candidate hash set against the fingerprint's sample;
* ``distinct``: for registry entries whose vocabularies are near-duplicates of another entry's
  (Jaccard >= 0.9, e.g. llama-spm vs phi-3, starcoder vs refact), hashes of the tokens that one has and
  the other lacks (at most 512, a hash-ordered sample beyond that). A sketch samples too few of a few
  dozen differing tokens to separate such pairs; these lists tell on which side of the difference a
  candidate lies.

Tokens are compared as exact strings: SentencePiece's '▁' and byte-level BPE's 'Ġ' are conventions of
different families and are never merged. The one normalisation is a file-format one: llama.cpp writes
WordPiece (BERT) vocabularies into GGUF in a "phantom space" form ('▁the' for 'the', 'ing' for '##ing');
such vocabularies are mapped back to the Hugging Face '##' form so that a BERT model's GGUF and its
``vocab.txt`` compare as the same vocabulary.

Ranking score: the estimated Jaccard similarity of the candidate's token set with each entry's. Jaccard
punishes both missing and extra tokens, so a large vocabulary does not "contain" every small one and a
tiny vocabulary is not "contained" in every large one (containments are reported beside it). Each score
comes with its null: the same estimate between the registry's entries of *different* families, computed
pairwise from the fingerprints themselves, as {mean, sd, n} with a z-score and an empirical p-value.

Families that share much of a vocabulary (llama-bpe and qwen2 both descend from tiktoken-style BPE and
share 64% of their tokens; deepseek-coder's vocabulary is 97% inside deepseek-llm's) are still far apart in
Jaccard, so the score separates them. Near-duplicates are separated by, in order: an exact hash match of the
ordered vocabulary; the distinct-token lists; identical merges (all, then the first 1000: merge order is
the fingerprint of a training run); agreement of special tokens (phi-3's eos is '<|endoftext|>', Llama 2's
'</s>'); the tokenizer model id (GGUF ``tokenizer.ggml.model`` such as llama/gpt2/gemma4, or the
tokenizer.json model type; compared only within one file format and only when the caller passes it); the
pre-tokenizer id (GGUF ``tokenizer.ggml.pre``) when the caller passes it. These tie-breakers act only
between near-duplicate entries whose scores differ by less than 0.02; otherwise the score decides.
Entries that no evidence separates are reported as ties (``tied_with``), and entries with byte-identical
stored vocabularies are listed in ``identical_vocab_with`` whatever the candidate.

The null pools pairs of entries whose ``family`` labels differ, so a registry should label a borrowed
tokenizer with the family it came from (MPT's GPT-NeoX tokenizer is family gpt-neox) and keep the model
family that ships it in ``model_family``; otherwise the null holds copies and overstates chance overlap.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from audit.checkpoint.model import TokenizerData
from audit.errors import InputError
from audit.safeio import MiB, load_json

SCHEMA = "provaudit.tokenizer/1"
SKETCH_K = 4096
MERGES_HEAD = 1000
DISTINCT_CAP = 512
NEAR_DUPLICATE = 0.9  # Jaccard between two entries above which they get distinct-token lists
TIE_RESOLUTION = 0.02  # score gap below which near-duplicate entries are separated by tie-breakers
ROLES = ("bos", "eos", "unk", "pad", "sep", "cls", "mask")
_ROLE_ALIASES = {"unknown": "unk", "padding": "pad", "seperator": "sep", "separator": "sep"}
_HF_MODELS = {"BPE", "WordPiece", "WordLevel", "Unigram"}  # tokenizer.json model types; others are GGUF ids
_CONTROL = re.compile(r"^\[[^\[\]]+\]$")
REQUIRED_FIELDS = ("schema", "name", "family", "source", "kind", "model", "pre", "vocab_size", "vocab_sha256",
                   "merges_sha256", "merges_head_sha256", "special", "sketch")


# ---------------------------------------------------------------- hashing and sketches


def token_hash(token: str) -> int:
    """64-bit BLAKE2b hash of a token string (UTF-8, lone surrogates passed through), as an int."""
    digest = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def hash_set(tokens: Iterable[str]) -> np.ndarray:
    """Sorted unique uint64 hashes of the non-empty token strings."""
    values = np.fromiter((token_hash(t) for t in tokens if t), dtype=np.uint64)
    return np.unique(values)


def canonical_tokens(tok: TokenizerData) -> list[str]:
    """Token strings in id order, with GGUF's phantom-space WordPiece form mapped back to the '##' form."""
    tokens = tok.tokens
    if tok.kind != "wordpiece" or any(t.startswith("##") for t in tokens):
        return list(tokens)
    phantom = sum(1 for t in tokens if t.startswith("\u2581"))
    if phantom < 0.3 * max(len(tokens), 1):
        return list(tokens)
    out = []
    for t in tokens:
        if t.startswith("\u2581"):
            out.append(t[1:])
        elif not t or _CONTROL.match(t):
            out.append(t)
        else:
            out.append("##" + t)
    return out


def sketch(tokens: Iterable[str], k: int = SKETCH_K) -> dict[str, Any]:
    """Bottom-k sketch of a token set: the k smallest 64-bit hashes, as 16-digit hex strings."""
    hashes = hash_set(tokens)
    return {"method": "bottom-k", "hash": "blake2b-64", "k": k, "n": int(len(hashes)),
            "values": _to_hex(hashes[:k])}


def _to_hex(values: np.ndarray) -> list[str]:
    return [f"{int(v):016x}" for v in values]


def _from_hex(values: Iterable[str]) -> np.ndarray:
    return np.unique(np.fromiter((int(v, 16) for v in values), dtype=np.uint64))


def _sha(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogatepass")).hexdigest()


def normalized_special(special: Mapping[str, str]) -> dict[str, Any]:
    """Special tokens by canonical role (GGUF 'unknown'/'padding' -> 'unk'/'pad'), plus added specials."""
    roles: dict[str, str] = {}
    added: set[str] = set()
    for key, value in special.items():
        if not isinstance(value, str):
            continue
        if key.startswith("added:"):
            added.add(value)
            continue
        role = _ROLE_ALIASES.get(key, key).removesuffix("_token")
        if role in ROLES:
            roles.setdefault(role, value)
    return {"roles": {r: roles[r] for r in ROLES if r in roles}, "added": sorted(added)[:64]}


# ---------------------------------------------------------------- fingerprints


def tokenizer_fingerprint(tok: TokenizerData, name: str, family: str, source: dict, *, model: str | None = None,
                          pre: str | None = None, k: int = SKETCH_K, **extra: Any) -> dict[str, Any]:
    """The compact fingerprint of one tokenizer (see the module docstring). `extra` fields are kept as given."""
    tokens = canonical_tokens(tok)
    unique = sorted({t for t in tokens if t})
    fp: dict[str, Any] = {
        "schema": SCHEMA, "name": name, "family": family, **extra, "source": source,
        "kind": tok.kind, "model": model, "pre": pre,
        "vocab_size": len(tokens), "unique_tokens": len(unique),
        "vocab_sha256": _sha(tokens), "vocab_set_sha256": _sha(unique),
        "merges": len(tok.merges),
        "merges_sha256": _sha(tok.merges) if tok.merges else None,
        "merges_head_sha256": _sha(tok.merges[:MERGES_HEAD]) if tok.merges else None,
        "special": normalized_special(tok.special),
        "sketch": sketch(unique, k),
    }
    return fp


def add_distinct(fps: list[dict[str, Any]], toks: Mapping[str, TokenizerData], threshold: float = NEAR_DUPLICATE,
                 cap: int = DISTINCT_CAP) -> None:
    """Give each fingerprint the hashes of the tokens it has and each near-duplicate entry lacks (in place).

    `toks` maps fingerprint names to their full tokenizers; Jaccard is computed exactly from them.
    """
    hashes = {fp["name"]: hash_set(canonical_tokens(toks[fp["name"]])) for fp in fps}
    for fp in fps:
        mine = hashes[fp["name"]]
        distinct: dict[str, Any] = {}
        for other in fps:
            if other["name"] == fp["name"]:
                continue
            theirs = hashes[other["name"]]
            shared = len(np.intersect1d(mine, theirs, assume_unique=True))
            jac = shared / max(len(mine) + len(theirs) - shared, 1)
            if jac >= threshold:
                only = np.setdiff1d(mine, theirs, assume_unique=True)
                distinct[other["name"]] = {"jaccard": round(jac, 6), "n": int(len(only)), "values": _to_hex(only[:cap])}
        if distinct:
            fp["distinct"] = dict(sorted(distinct.items()))


def validate_fingerprint(fp: Any) -> list[str]:
    """Problems that make `fp` unusable as a registry entry (empty when it is fine)."""
    if not isinstance(fp, dict):
        return ["not a JSON object"]
    problems = [f"missing field {f!r}" for f in REQUIRED_FIELDS if f not in fp]
    if "schema" in fp and fp["schema"] != SCHEMA:
        problems.append(f"schema {fp['schema']!r}, expected {SCHEMA!r}")
    sk = fp.get("sketch")
    if isinstance(sk, dict):
        values = sk.get("values")
        if sk.get("method") != "bottom-k" or sk.get("hash") != "blake2b-64":
            problems.append("sketch is not a blake2b-64 bottom-k sketch")
        if not isinstance(values, list) or not values:
            problems.append("sketch has no values")
        else:
            try:
                arr = _from_hex(values)
            except (TypeError, ValueError, OverflowError):
                problems.append("sketch values are not 64-bit hex strings")
            else:
                if len(arr) != len(values):
                    problems.append("sketch values are not unique")
        for key in ("k", "n"):
            if key in sk and (not isinstance(sk[key], int) or isinstance(sk[key], bool) or not 0 <= sk[key] < 1 << 40):
                problems.append(f"sketch.{key} is not a count")
    elif "sketch" in fp:
        problems.append("sketch is not an object")
    distinct = fp.get("distinct", {})
    try:
        for d in distinct.values():
            _from_hex(d["values"])
            if not isinstance(d["n"], int) or isinstance(d["n"], bool):
                raise TypeError("n")
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
        problems.append("distinct lists are malformed")
    for key in ("name", "family"):
        if key in fp and not isinstance(fp.get(key), str):
            problems.append(f"{key} is not a string")
    return problems


def load_fingerprint_dir(folder: Path) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Every valid `*.json` fingerprint under `folder`, and (file, problem) for each one skipped."""
    fps: list[dict[str, Any]] = []
    errors: list[tuple[str, str]] = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            fp = load_json(path, 32 * MiB, "tokenizer fingerprint")
        except InputError as exc:
            errors.append((path.name, f"unreadable: {exc}"))
            continue
        problems = validate_fingerprint(fp)
        if problems:
            errors.append((path.name, "; ".join(problems[:3])))
        else:
            fps.append(fp)
    return fps, errors


def read_tokenizer_meta(path: Path) -> dict[str, str | None]:
    """Tokenizer model and pre-tokenizer ids of a GGUF file or HF folder ({"model": .., "pre": ..}; None if unknown).

    Pass them to rank_families/compare_to_fingerprint: they separate entries that only differ there.
    """
    import struct

    path = Path(path)
    try:
        if path.is_file() and path.suffix == ".gguf":
            found = _gguf_strings(path, ("tokenizer.ggml.model", "tokenizer.ggml.pre"))
            return {"model": found.get("tokenizer.ggml.model"), "pre": found.get("tokenizer.ggml.pre")}
        tj = path / "tokenizer.json" if path.is_dir() else path
        if tj.name == "tokenizer.json" and tj.is_file():
            data = load_json(tj, 128 * MiB, "tokenizer file")
            model = (data.get("model") or {}) if isinstance(data, dict) else {}
            mtype = model.get("type") if isinstance(model, dict) else None
            return {"model": mtype[:100] if isinstance(mtype, str) else None, "pre": None}
    except (OSError, ValueError, KeyError, AttributeError, struct.error, InputError):  # unknown ids
        pass
    return {"model": None, "pre": None}


_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _gguf_strings(path: Path, keys: tuple[str, ...]) -> dict[str, str]:
    """String metadata values of a GGUF file, read from its header without parsing the tensor data."""
    import mmap
    import struct

    out: dict[str, str] = {}
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if mm[:4] != b"GGUF" or struct.unpack_from("<I", mm, 4)[0] < 2:
            return out
        n_kv = struct.unpack_from("<Q", mm, 16)[0]
        pos = 24

        def string(at: int) -> tuple[str, int]:
            n = struct.unpack_from("<Q", mm, at)[0]
            return mm[at + 8: at + 8 + n].decode("utf-8", "replace"), at + 8 + n

        def skip(vtype: int, at: int) -> int:
            if vtype == 8:
                return at + 8 + struct.unpack_from("<Q", mm, at)[0]
            if vtype == 9:
                etype, count = struct.unpack_from("<IQ", mm, at)
                at += 12
                if etype in _GGUF_SIZES:
                    return at + count * _GGUF_SIZES[etype]
                for _ in range(count):
                    at = skip(etype, at)
                return at
            return at + _GGUF_SIZES[vtype]

        for _ in range(n_kv):
            key, pos = string(pos)
            vtype = struct.unpack_from("<I", mm, pos)[0]
            pos += 4
            if key in keys and vtype == 8:
                out[key], pos = string(pos)
                if len(out) == len(keys):
                    break
            else:
                pos = skip(vtype, pos)
    return out


# ---------------------------------------------------------------- estimates


class _Sketch:
    """A parsed fingerprint sketch: sorted uint64 values and whether they are the whole token set."""

    def __init__(self, fp: Mapping[str, Any]) -> None:
        sk = fp["sketch"]
        self.values = _from_hex(sk["values"])
        self.k = int(sk.get("k", len(self.values)))
        self.full = int(sk.get("n", len(self.values))) <= len(self.values) or not len(self.values)


def _member(sorted_unique: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Boolean mask: which of `values` occur in the sorted array (binary search, no re-sorting)."""
    if not len(sorted_unique):
        return np.zeros(len(values), dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_unique, values), len(sorted_unique) - 1)
    return sorted_unique[idx] == values


def _jaccard_full_vs_sketch(cand: np.ndarray, ref: _Sketch) -> tuple[float, int]:
    """Jaccard estimate from the bottom-k of (candidate set ∪ reference sketch), and the sample size (0: exact)."""
    if ref.full:
        inter = int(_member(cand, ref.values).sum())
        size = len(cand) + len(ref.values) - inter
        return (inter / size if size else 0.0), 0
    low = cand[: np.searchsorted(cand, ref.values[-1], side="right")]
    union = np.union1d(low, ref.values)[: len(ref.values)]
    both = ref.values[_member(low, ref.values)]
    return int(np.count_nonzero(both <= union[-1])) / len(union), len(union)


def _jaccard_sketches(a: _Sketch, b: _Sketch) -> float:
    union = np.union1d(a.values, b.values)
    sizes = [len(s.values) for s in (a, b) if not s.full]
    if sizes:
        union = union[: min(sizes)]
    if not len(union):
        return 0.0
    both = np.intersect1d(a.values, b.values, assume_unique=True)
    return int(np.count_nonzero(both <= union[-1])) / len(union)


def _containment_sketches(a: _Sketch, b: _Sketch) -> float:
    """Estimated share of A's tokens that are in B, from A's sample below B's sketch threshold."""
    sample = a.values if b.full else a.values[: np.searchsorted(a.values, b.values[-1], side="right")]
    return float(_member(b.values, sample).mean()) if len(sample) else 0.0


class _Candidate:
    """A candidate tokenizer prepared once: canonical tokens, exact hash set and exact hashes."""

    def __init__(self, tok: TokenizerData, model: str | None, pre: str | None) -> None:
        tokens = canonical_tokens(tok)
        unique = sorted({t for t in tokens if t})
        self.kind = tok.kind
        self.model = model
        self.pre = pre
        self.size = len(tokens)
        self.hashes = hash_set(unique)
        self.vocab_sha256 = _sha(tokens)
        self.vocab_set_sha256 = _sha(unique)
        self.merges_sha256 = _sha(tok.merges) if tok.merges else None
        self.merges_head_sha256 = _sha(tok.merges[:MERGES_HEAD]) if tok.merges else None
        self.special = normalized_special(tok.special)


def _special_agreement(a: Mapping[str, Any], b: Mapping[str, Any]) -> float | None:
    ra, rb = a.get("roles") or {}, b.get("roles") or {}
    common = [r for r in ra if r in rb]
    if common:
        return sum(ra[r] == rb[r] for r in common) / len(common)
    aa, ab = set(a.get("added") or []), set(b.get("added") or [])
    if aa and ab:
        return len(aa & ab) / len(aa | ab)
    return None


def _compare(cand: _Candidate, fp: Mapping[str, Any], ref: _Sketch) -> dict[str, Any]:
    jac, sample = _jaccard_full_vs_sketch(cand.hashes, ref)
    ref_in_cand = float(_member(cand.hashes, ref.values).mean()) if len(ref.values) else 0.0
    below = cand.hashes if ref.full else cand.hashes[: np.searchsorted(cand.hashes, ref.values[-1], side="right")]
    cand_in_ref = float(_member(ref.values, below).mean()) if len(below) else 0.0
    distinct: dict[str, float | None] = {}
    for other, d in (fp.get("distinct") or {}).items():
        if d.get("n"):
            distinct[other] = float(_member(cand.hashes, _from_hex(d["values"])).mean())
        else:
            distinct[other] = None
    fp_model = fp.get("model")
    model_match: bool | None = None
    if cand.model is not None and fp_model is not None and (cand.model in _HF_MODELS) == (fp_model in _HF_MODELS):
        model_match = cand.model == fp_model  # only ids of the same file format are comparable
    return {
        "name": fp.get("name"),
        "family": fp.get("family"),
        "jaccard": jac,
        "jaccard_sd": math.sqrt(jac * (1 - jac) / sample) if sample else 0.0,
        "containment_ref_in_candidate": ref_in_cand,
        "containment_candidate_in_ref": cand_in_ref,
        "exact": ref.full,
        "vocab_identical": cand.vocab_sha256 == fp.get("vocab_sha256"),
        "vocab_set_identical": fp.get("vocab_set_sha256") is not None and cand.vocab_set_sha256 == fp.get("vocab_set_sha256"),
        "merges_identical": cand.merges_sha256 is not None and cand.merges_sha256 == fp.get("merges_sha256"),
        "merges_head_identical": cand.merges_head_sha256 is not None and cand.merges_head_sha256 == fp.get("merges_head_sha256"),
        "special_agreement": _special_agreement(cand.special, fp.get("special") or {}),
        "model_match": model_match,
        "pre_match": (cand.pre == fp.get("pre")) if cand.pre is not None and fp.get("pre") is not None else None,
        "vocab_size": fp.get("vocab_size"),
        "candidate_vocab_size": cand.size,
        "distinct_present": distinct,
    }


def compare_to_fingerprint(tok: TokenizerData, fp: Mapping[str, Any], *, model: str | None = None,
                           pre: str | None = None) -> dict[str, Any]:
    """Estimated overlap of a tokenizer with one fingerprint, plus exact-hash and special-token evidence.

    jaccard: estimated |C∩R|/|C∪R| (exact when the fingerprint's sketch holds its whole vocabulary);
    containment_ref_in_candidate: share of the reference's tokens found in the candidate;
    containment_candidate_in_ref: share of the candidate's tokens found in the reference;
    vocab_identical / merges_identical: exact SHA-256 matches (ordered vocabulary; all merges).
    """
    row = _compare(_Candidate(tok, model, pre), fp, _Sketch(fp))
    row["score"] = row["jaccard"]
    return row


def compare_sketches(cand: Mapping[str, Any], ref: Mapping[str, Any]) -> dict[str, Any]:
    """Estimated overlap of two tokenizer fingerprints (exact when both sketches hold whole vocabularies)."""
    a, b = _Sketch(cand), _Sketch(ref)

    def same(key: str) -> bool:
        return cand.get(key) is not None and cand.get(key) == ref.get(key)

    return {"jaccard": _jaccard_sketches(a, b),
            "containment_ref_in_candidate": _containment_sketches(b, a),
            "containment_candidate_in_ref": _containment_sketches(a, b),
            "exact": a.full and b.full, "vocab_identical": same("vocab_sha256"),
            "merges_identical": same("merges_sha256"), "vocab_size": ref.get("vocab_size")}


# ---------------------------------------------------------------- null and ranking


def registry_null(fps: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Overlap between entries of different families, computed pairwise from their sketches.

    pooled: Jaccard over all such pairs ({mean, sd, n, values}); entries[name]: that entry's Jaccard with
    the other families ({mean, sd, n, max, max_with}) and its containment in them (``containment``: share
    of its tokens found in another family's vocabulary).
    """
    fps = dedupe_fingerprints(fps)
    parsed = [_Sketch(fp) for fp in fps]
    names = [str(fp["name"]) for fp in fps]
    pooled: list[float] = []
    per: dict[str, list[tuple[float, str]]] = {n: [] for n in names}
    inside: dict[str, list[tuple[float, str]]] = {n: [] for n in names}
    for i in range(len(fps)):
        for j in range(i + 1, len(fps)):
            if fps[i].get("family") == fps[j].get("family"):
                continue
            value = _jaccard_sketches(parsed[i], parsed[j])
            pooled.append(value)
            per[names[i]].append((value, names[j]))
            per[names[j]].append((value, names[i]))
            inside[names[i]].append((_containment_sketches(parsed[i], parsed[j]), names[j]))
            inside[names[j]].append((_containment_sketches(parsed[j], parsed[i]), names[i]))
    entries = {name: {**_described(per[name]), "containment": _described(inside[name])} for name in names}
    return {"pooled": {**_summary(pooled), "values": sorted(pooled)}, "entries": entries}


def _described(pairs: list[tuple[float, str]]) -> dict[str, Any]:
    top = max(pairs, default=(0.0, None))
    return {**_summary([v for v, _ in pairs]), "max": top[0], "max_with": top[1]}


def _summary(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n if n else 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "sd": sd, "n": n}


def _rounded(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in d.items()}


def dedupe_fingerprints(fps: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Drop repeated entries (same name and vocabulary), e.g. a tokenizer also embedded in a weight fingerprint."""
    seen: set[tuple[Any, Any]] = set()
    out = []
    for fp in fps:
        key = (fp.get("name"), fp.get("vocab_sha256"))
        if key not in seen:
            seen.add(key)
            out.append(fp)
    return out


def _near(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return b["name"] in a["_distinct_keys"] or a["name"] in b["_distinct_keys"]


def _side(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    """+1 when the candidate holds the tokens that set `a` apart from `b`, -1 for `b`'s, 0 when undecided."""
    fa, fb = a["distinct_present"].get(b["name"]), b["distinct_present"].get(a["name"])
    if fa is not None and fb is not None:
        return 1 if fa - fb > 0.2 else -1 if fb - fa > 0.2 else 0
    if fa is not None:
        return 1 if fa >= 0.5 else -1
    if fb is not None:
        return -1 if fb >= 0.5 else 1
    return 0


_TIE_BREAKERS = (("merges_identical", "merges-hash"), ("merges_head_identical", "merges-head-hash"),
                 ("special_agreement", "special-tokens"), ("model_match", "tokenizer-model"),
                 ("pre_match", "pre-tokenizer"))


def _decide(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[int, str]:
    """(-1 if a ranks before b, 1 if after, 0 if tied; the evidence that decided)."""
    if a["vocab_identical"] != b["vocab_identical"]:
        return (-1 if a["vocab_identical"] else 1), "vocab-hash"
    gap = a["jaccard"] - b["jaccard"]
    if not _near(a, b) or abs(gap) > TIE_RESOLUTION:
        if gap:
            return (-1 if gap > 0 else 1), "score"
    else:
        side = _side(a, b)
        if side:
            return -side, "distinct-tokens"
    for key, reason in _TIE_BREAKERS:
        va, vb = a[key], b[key]
        if va is None or vb is None or va == vb:
            continue
        return (-1 if va > vb else 1), reason
    if gap:
        return (-1 if gap > 0 else 1), "score"
    return 0, "tie"


def rank_families(tok: TokenizerData, fps: list[Mapping[str, Any]], *, model: str | None = None,
                  pre: str | None = None) -> list[dict[str, Any]]:
    """Every registry entry's evidence for `tok`, best first, each with its score's null.

    score: estimated Jaccard with the entry; null: the same estimate between entries of different families
    ({mean, sd, n}); z and p_value (empirical, one-sided: share of null pairs at least as high);
    entry_null: that entry's own overlaps with other families (max and with whom). confident: p <= 0.01,
    z >= 3 and the score above every overlap the entry has with another family. containment_null /
    containment_z: how much of this entry's vocabulary other families' vocabularies hold, against the share
    the candidate holds (a heavily extended vocabulary keeps containment near 1 while its Jaccard falls).
    ahead_of_next_by names the
    evidence that put the row above the next one; tied_with lists entries nothing here separates from it;
    identical_vocab_with lists entries whose stored vocabularies are byte-identical to this one's.
    """
    fps = dedupe_fingerprints(fp for fp in fps if not validate_fingerprint(fp))
    if not fps:
        return []
    cand = _Candidate(tok, model, pre)
    null = registry_null(fps)
    pooled = null["pooled"]
    null_values = pooled.pop("values")
    rows = []
    for fp in fps:
        row = _compare(cand, fp, _Sketch(fp))
        row["model_family"] = fp.get("model_family")
        row["_distinct_keys"] = set(fp.get("distinct") or {})
        row["_vocab"] = str(fp.get("vocab_sha256"))
        rows.append(row)
    rows.sort(key=lambda r: str(r["name"]))
    rows.sort(key=functools.cmp_to_key(lambda a, b: _decide(a, b)[0]))
    by_vocab: dict[str, list[str]] = {}
    for fp in fps:
        by_vocab.setdefault(str(fp.get("vocab_sha256")), []).append(str(fp["name"]))
    out = []
    for i, row in enumerate(rows):
        score = row["jaccard"]
        sd = pooled["sd"]
        z = (score - pooled["mean"]) / sd if sd > 0 else (math.inf if score > pooled["mean"] else 0.0)
        p = (1 + sum(v >= score for v in null_values)) / (len(null_values) + 1)
        entry = dict(null["entries"].get(str(row["name"]), {}))
        contained = entry.pop("containment", {})
        c_sd = contained.get("sd", 0.0)
        c_z = (row["containment_ref_in_candidate"] - contained.get("mean", 0.0)) / c_sd if c_sd > 0 else 0.0
        out.append({
            "rank": i + 1,
            "name": row["name"], "family": row["family"], "model_family": row["model_family"],
            "score": round(score, 6), "score_sd": round(row["jaccard_sd"], 6),
            "null": _rounded(pooled),
            "z": round(z, 3) if math.isfinite(z) else z, "p_value": round(p, 6),
            "entry_null": _rounded(entry),
            "confident": bool(p <= 0.01 and z >= 3 and score > entry.get("max", 0.0)),
            "containment_null": _rounded(contained), "containment_z": round(c_z, 3),
            **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()
               if k not in ("name", "family", "model_family", "jaccard_sd") and not k.startswith("_")},
            "ahead_of_next_by": _decide(row, rows[i + 1])[1] if i + 1 < len(rows) else None,
            "tied_with": [r["name"] for r in rows if r is not row and _decide(row, r)[0] == 0],
            "identical_vocab_with": [n for n in by_vocab.get(row["_vocab"], []) if n != row["name"]],
        })
    return out


# ---------------------------------------------------------------- test and benchmark helper


def simulate_derivation(tok: TokenizerData, drop: float = 0.05, add: int = 2000, seed: int = 0) -> TokenizerData:
    """A derived vocabulary: drop a share of the non-special tokens, append `add` new made-up tokens.

    Merges that mention a dropped token are removed; special tokens are kept. New tokens are random
    lowercase strings of 4-10 letters, half with the vocabulary's word-start marker ('Ġ' or '▁') if it has one.
    """
    rng = random.Random(seed)
    keep_always = set(tok.special.values())
    candidates = [i for i, t in enumerate(tok.tokens) if t and t not in keep_always]
    dropped_ids = set(rng.sample(candidates, int(round(drop * len(candidates)))))
    dropped = {tok.tokens[i] for i in dropped_ids}
    tokens = [t for i, t in enumerate(tok.tokens) if i not in dropped_ids]
    present = set(tokens)
    marker = max(("\u0120", "\u2581"), key=lambda m: sum(t.startswith(m) for t in tok.tokens[:5000]))
    if not any(t.startswith(marker) for t in tok.tokens[:5000]):
        marker = ""
    new: list[str] = []
    while len(new) < add:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 10)))
        if marker and rng.random() < 0.5:
            word = marker + word
        if word not in present:
            present.add(word)
            new.append(word)
    merges = [m for m in tok.merges if not (set(m.split(" ")) | {m.replace(" ", "")}) & dropped]
    return TokenizerData(tok.kind, tokens + new, merges, dict(tok.special), tok.source + "+derived")
