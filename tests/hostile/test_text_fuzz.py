"""Property-based fuzzing of the text and structured inputs, in-process: config.json, tokenizer files,
manifests, records, probe suites and registry entries.

Each test mutates a valid file (wrong types, impossible sizes, truncation, nesting, bytes that are not
UTF-8) and feeds it to the reader the CLI uses. The only acceptable outcomes are a result or an
`InputError` (exit 2 with one line); anything else would reach the user as an internal error (exit 1).
Hypothesis runs derandomized with a fixed number of examples, so CI is reproducible.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.errors import InputError
from tests.support import tiny

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "records_v1"

@pytest.fixture(scope="module", autouse=True)
def _bounded_memory() -> Iterator[None]:
    """An unbounded allocation fails the test with MemoryError instead of exhausting the machine: the soft
    address-space limit is this process's current size plus 3 GiB while the module runs."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = next((int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                 if line.startswith("VmSize:")), None) if Path("/proc/self/status").exists() else None
    if size is None:
        yield
        return
    limit = size + (3 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# ---------------------------------------------------------------------------------------------- values

#: Hostile scalars: wrong types, zero and negatives, sizes far past any model, floats at the edges.
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
    st.sampled_from([0, -1, 1, 2 ** 31, 2 ** 63, 10 ** 12, 10 ** 300, 10 ** 399]),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -1e308, 5e-324, 0.5]),
    st.text(max_size=12), st.sampled_from(["", "4096", "\n", "\x1b[31m", "../../etc/passwd"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)

#: Byte-level damage of a whole file.
def _damage(data: bytes, how: str, at: int, blob: bytes) -> bytes:
    cut = at % (len(data) + 1)
    if how == "truncate":
        return data[:cut]
    if how == "insert":
        return data[:cut] + blob + data[cut:]
    if how == "overwrite":
        return data[:cut] + blob + data[cut + len(blob):]
    if how == "latin1":
        return data.decode("utf-8", "replace").encode("latin-1", "replace") + b"\xff\xfe"
    if how == "nest":  # deep nesting spliced in
        return data[:cut] + b"[" * 5000 + b"]" * 5000 + data[cut:]
    return data + b"\x00" * (at % 7)


DAMAGE = st.tuples(st.sampled_from(["truncate", "insert", "overwrite", "latin1", "nest", "nul"]),
                   st.integers(min_value=0, max_value=10 ** 6), st.binary(max_size=24))


def _set_path(doc: Any, path: list[Any], value: Any) -> Any:
    """`doc` with the node at `path` (keys or indexes, taken modulo the size) replaced by `value`."""
    if not path or not isinstance(doc, (dict, list)) or not doc:
        return value
    out = copy.copy(doc)
    if isinstance(out, dict):
        key = path[0] if isinstance(path[0], str) and path[0] in out else \
            sorted(out, key=str)[len(str(path[0])) % len(out)]
        out[key] = _set_path(out[key], path[1:], value)
    else:
        i = (path[0] if isinstance(path[0], int) else len(str(path[0]))) % len(out)
        out[i] = _set_path(out[i], path[1:], value)
    return out


PATHS = st.lists(st.one_of(st.integers(min_value=0, max_value=50), st.text(max_size=6)), min_size=0, max_size=5)


# ---------------------------------------------------------------------------------------------- config.json


@pytest.fixture(scope="module")
def good_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.save_hf(tiny.make_llama(0, layers=2), tmp_path_factory.mktemp("fuzz") / "good")


CONFIG_KEYS = ["hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size", "num_hidden_layers",
               "vocab_size", "rope_theta", "rms_norm_eps", "max_position_embeddings", "tie_word_embeddings",
               "model_type", "architectures", "n_embd", "dim", "n_head", "head_dim", "auto_map"]


@FUZZ
@given(edits=st.dictionaries(st.sampled_from(CONFIG_KEYS), VALUES, min_size=1, max_size=5))
def test_config_fields_are_typed_or_refused(edits: dict[str, Any]) -> None:
    """Any value in any config field the tool uses: typed values within their ranges, or an InputError."""
    from audit.fingerprinting.architecture import CONFIG_RANGES, config_fields

    ckpt = SimpleNamespace(path=Path("/nonexistent/model.safetensors"), config=edits)
    try:
        fields = config_fields(ckpt)  # type: ignore[arg-type]
    except InputError as exc:
        assert "\n" not in str(exc) and "model.safetensors" in str(exc)
        return
    for key, (lo, hi) in CONFIG_RANGES.items():
        value = fields[key]
        assert value is None or (isinstance(value, (int, float)) and lo <= value <= hi), (key, value)
    assert fields["model_type"] is None or isinstance(fields["model_type"], str)


@FUZZ
@given(edits=st.dictionaries(st.sampled_from(CONFIG_KEYS), VALUES, max_size=4), damage=st.one_of(st.none(), DAMAGE))
def test_config_file_through_open_and_describe(good_model: Path, tmp_path_factory: pytest.TempPathFactory,
                                               edits: dict[str, Any], damage: tuple[str, int, bytes] | None) -> None:
    """A mutated config.json opened, described and validated into the record as the CLI does."""
    from audit.checkpoint import open_checkpoint
    from audit.fingerprinting.describe import model_info
    from audit.fingerprinting.view import ModelView

    folder = tmp_path_factory.mktemp("cfg") / "m"
    shutil.copytree(good_model, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(edits)
    data = json.dumps(cfg).encode()
    if damage is not None:
        data = _damage(data, *damage)
    (folder / "config.json").write_bytes(data)
    try:
        view = ModelView(open_checkpoint(str(folder)))
        model_info(view, [])
    except InputError as exc:
        assert "\n" not in str(exc)


# ---------------------------------------------------------------------------------------------- tokenizers

TOKENIZER = {"version": "1.0", "added_tokens": [{"id": 3, "content": "<s>", "special": True}],
             "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<s>": 3}, "merges": ["a b"]}}
TOKENIZER_PATHS = st.sampled_from([[], ["model"], ["model", "vocab"], ["model", "vocab", "a"], ["model", "type"],
                                   ["model", "merges"], ["model", "merges", 0], ["added_tokens"],
                                   ["added_tokens", 0], ["added_tokens", 0, "id"], ["added_tokens", 0, "content"],
                                   ["added_tokens", 0, "special"]])


def _check_tokenizer(folder: Path) -> None:
    from audit.checkpoint.tokenizer_files import MAX_VOCAB, load_tokenizer
    from audit.fingerprinting.tokenizer import tokenizer_summary

    try:
        tok = load_tokenizer(folder)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    if tok is not None:
        assert len(tok.tokens) <= MAX_VOCAB and all(isinstance(t, str) for t in tok.tokens)
        tokenizer_summary(tok)


@FUZZ
@given(where=TOKENIZER_PATHS, value=VALUES, damage=st.one_of(st.none(), DAMAGE))
def test_tokenizer_json_mutations(tmp_path_factory: pytest.TempPathFactory, where: list[Any], value: Any,
                                  damage: tuple[str, int, bytes] | None) -> None:
    folder = tmp_path_factory.mktemp("tok")
    data = json.dumps(_set_path(TOKENIZER, where, value)).encode()
    (folder / "tokenizer.json").write_bytes(_damage(data, *damage) if damage else data)
    _check_tokenizer(folder)


@FUZZ
@given(name=st.sampled_from(["tokenizer_config.json", "special_tokens_map.json", "vocab.json"]),
       doc=VALUES, damage=st.one_of(st.none(), DAMAGE), vocab_txt=st.binary(max_size=64))
def test_tokenizer_side_files(tmp_path_factory: pytest.TempPathFactory, name: str, doc: Any,
                              damage: tuple[str, int, bytes] | None, vocab_txt: bytes) -> None:
    """tokenizer_config.json / special_tokens_map.json / vocab.json of any shape, vocab.txt / merges.txt of any
    bytes (not UTF-8 included)."""
    folder = tmp_path_factory.mktemp("side")
    if name == "vocab.json":
        (folder / "merges.txt").write_bytes(vocab_txt)
    else:
        (folder / "vocab.txt").write_bytes(vocab_txt)
    data = json.dumps({"bos_token": doc, "eos_token": {"content": doc}} if isinstance(doc, str) else doc).encode()
    (folder / name).write_bytes(_damage(data, *damage) if damage else data)
    _check_tokenizer(folder)


# ---------------------------------------------------------------------------------------------- manifests

CSV_CELLS = st.one_of(st.text(max_size=10), st.sampled_from(["good", "ghost", "good;good", "#c", "a,b", '"x', "\n",
                                                             "model", "references", "", "../../x"]))


@FUZZ
@given(header=st.lists(st.sampled_from(["model", "references", "probes", "declared", "name", "colour", "MODEL", ""]),
                       max_size=6),
       rows=st.lists(st.lists(CSV_CELLS, max_size=6), max_size=8), suffix=st.sampled_from([".csv", ".yaml", ".yml"]),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_manifest_mutations(good_model: Path, tmp_path_factory: pytest.TempPathFactory, header: list[str],
                            rows: list[list[str]], suffix: str, raw: bytes | None) -> None:
    from audit.batch.manifest import MAX_REPORTED, read_manifest

    folder = tmp_path_factory.mktemp("man")
    (folder / "good").symlink_to(good_model)
    if suffix == ".csv":
        text = "\n".join(",".join(r) for r in [header, *rows])
    else:
        text = json.dumps([dict(zip(header, r, strict=False)) if header else (r[0] if r else None) for r in rows])
    path = folder / f"m{suffix}"
    path.write_bytes(text.encode() + (raw or b""))
    try:
        read_manifest(path)
    except InputError as exc:
        lines = getattr(exc, "lines", None) or [str(exc)]
        assert len(lines) <= MAX_REPORTED + 2
        assert all("\n" not in ln for ln in lines)


# ---------------------------------------------------------------------------------------------- records

RECORDS = sorted(FIXTURES.glob("*.json"))


@FUZZ
@given(which=st.sampled_from(RECORDS), where=PATHS, value=VALUES, damage=st.one_of(st.none(), DAMAGE))
def test_record_mutations_load_and_render(tmp_path_factory: pytest.TempPathFactory, which: Path, where: list[Any],
                                          value: Any, damage: tuple[str, int, bytes] | None) -> None:
    """A record with any node replaced by any value (or its bytes damaged): loaded and rendered as
    `provaudit report` does (console and HTML), or refused with one line."""
    from audit.record.io import load_record
    from audit.reporting.console import print_summary
    from audit.reporting.html import render_html

    doc = json.loads(which.read_text(encoding="utf-8"))
    data = json.dumps(_set_path(doc, where, value)).encode()
    path = tmp_path_factory.mktemp("rec") / "r.json"
    path.write_bytes(_damage(data, *damage) if damage else data)
    try:
        record = load_record(str(path))
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    render_html(record)
    print_summary(record)


def _leaves(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in _leaves(v, (*at, k))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in _leaves(v, (*at, i))]
    return [at]


def _same_kind(value: Any, data: st.DataObject) -> Any:
    """A hostile value of the leaf's own JSON type: the record stays well-typed, its numbers and texts extreme."""
    if isinstance(value, bool):
        return data.draw(st.booleans())
    if isinstance(value, int):
        return data.draw(st.sampled_from([0, -1, 9_999, 10_000, 2 ** 31, 2 ** 53, 2 ** 62, -(2 ** 62), 10 ** 12]))
    if isinstance(value, float):
        return data.draw(st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 1e-300, 2.0, -1.0, 0.999999]))
    if isinstance(value, str):
        return data.draw(st.sampled_from(["", "<script>alert(1)</script>", "\n\x1b[31m", "x" * 5000, "ü" * 3,
                                     "fine-tuned", "original", "{{ 7*7 }}", "</svg>"]))
    return value


@FUZZ
@given(which=st.sampled_from(RECORDS), data=st.data())
def test_record_leaf_mutations_render(which: Path, data: st.DataObject) -> None:
    """Well-typed records with extreme numbers and texts (counts of 10^12, floats at the edges, markup in names):
    loaded and rendered, or refused with one line; the HTML never carries the markup unescaped."""
    from audit.record.io import parse_record
    from audit.reporting.console import print_summary
    from audit.reporting.html import render_html

    doc = json.loads(which.read_text(encoding="utf-8"))
    leaves = _leaves(doc)
    for path in data.draw(st.lists(st.sampled_from(leaves), min_size=1, max_size=6)):
        node = doc
        for part in path[:-1]:
            node = node[part]
        if path:
            node[path[-1]] = _same_kind(node[path[-1]], data)
    try:
        record = parse_record(doc, "r.json")
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    html = render_html(record)
    assert "<script>alert(1)" not in html
    print_summary(record)


# ---------------------------------------------------------------------------------------------- probe suites

SUITE = """kind: suite
suite: fuzz
version: 1
description: a suite to mutate
detectors: [self-identity]
probes:
  - {id: a, language: en, prompt: "Who are you?"}
  - id: b
    language: en
    messages: [{role: system, content: "Be brief."}, {role: user, content: "Which company made you?"}]
"""


@FUZZ
@given(where=PATHS, value=VALUES, damage=st.one_of(st.none(), DAMAGE))
def test_suite_mutations(tmp_path_factory: pytest.TempPathFactory, where: list[Any], value: Any,
                         damage: tuple[str, int, bytes] | None) -> None:
    import yaml

    from audit.probing.suite import load_suite_file

    doc = yaml.safe_load(SUITE)
    data = yaml.safe_dump(_set_path(doc, where, value), allow_unicode=True).encode()
    path = tmp_path_factory.mktemp("suite") / "s.yaml"
    path.write_bytes(_damage(data, *damage) if damage else data)
    try:
        suite = load_suite_file(path)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert suite.probes


# ---------------------------------------------------------------------------------------------- registry entries


@FUZZ
@given(kind=st.sampled_from(["tokenizers", "architectures"]), where=PATHS, value=VALUES,
       damage=st.one_of(st.none(), DAMAGE))
def test_registry_entry_mutations(tmp_path_factory: pytest.TempPathFactory, kind: str, where: list[Any], value: Any,
                                  damage: tuple[str, int, bytes] | None) -> None:
    """A user registry entry mutated: loaded, or listed among the registry's errors; never raised."""
    import yaml

    from audit.fingerprinting.registry import load_registry
    from audit.paths import data_dir

    bundled = sorted((data_dir("fingerprints") / kind).glob("*.json" if kind == "tokenizers" else "*.yaml"))[0]
    root = tmp_path_factory.mktemp("reg")
    (root / kind).mkdir()
    if kind == "tokenizers":
        data = json.dumps(_set_path(json.loads(bundled.read_text()), where, value)).encode()
    else:
        data = yaml.safe_dump(_set_path(yaml.safe_load(bundled.read_text()), where, value)).encode()
    (root / kind / bundled.name).write_bytes(_damage(data, *damage) if damage else data)
    reg = load_registry(extra=[root], bundled=False, user=False)
    assert len(reg.entries) + len(reg.errors) == 1
    assert all("\n" not in problem for _, problem in reg.errors)
    for entry in reg.entries:  # what an audit does with an entry that loaded
        if entry.kind == "architecture":
            from audit.fingerprinting.arch_match import rank_architectures
            from audit.fingerprinting.arch_schema import iter_signatures

            cand = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 160,
                    "vocab_size": 512, "rope_theta": 10000.0, "tied_embeddings": False}
            rank_architectures(cand, [{"family": entry.family, "models": iter_signatures([entry.data])}])
        else:
            from audit.checkpoint.model import TokenizerData
            from audit.fingerprinting.tokenizer_sketch import compare_to_fingerprint

            compare_to_fingerprint(TokenizerData("bpe", tiny.default_tokens(300)), entry.data)
