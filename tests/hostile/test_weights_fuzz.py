"""Property-based mutations of weight files, run in-process against the readers: every mutated safetensors
header or file, GGUF header or metadata, and shard index either reads or raises InputError (one line), never
another exception, within bounded time and memory (counts are checked against the bytes left before looping)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.checkpoint.build import index_shards
from audit.checkpoint.gguf_file import GGUFFile
from audit.checkpoint.model import WeightQuality
from audit.checkpoint.safetensors_file import SafetensorsFile
from audit.errors import InputError
from tests.support.gguf_rewrite import add_value


class MemorySource:
    """A byte source over bytes in memory (what the readers see of a local file or an HTTP range source)."""

    remote = False

    def __init__(self, data: bytes, name: str = "mem.bin") -> None:
        self.data, self.name, self.size = data, name, len(data)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise InputError(f"{self.name}: read past the end")
        return self.data[offset:offset + length]


FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _one_line(exc: InputError) -> None:
    assert "\n" not in str(exc) and "\r" not in str(exc), repr(str(exc))
    assert len(str(exc)) < 2000


# ------------------------------------------------------------------------------------------ safetensors


def _safetensors(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _valid_header() -> tuple[dict, bytes]:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.ones(5, dtype=np.float16)
    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
              "b": {"dtype": "F16", "shape": [5], "data_offsets": [48, 58]}}
    return header, a.tobytes() + b.tobytes()


def _read_all_safetensors(blob: bytes) -> None:
    f = SafetensorsFile(MemorySource(blob, "fuzz.safetensors"))
    for name in f.header:
        lay = f.layout(name)
        if lay.n_rows and lay.row_bytes:
            raw = np.frombuffer(f.source.read(lay.offset, lay.row_bytes), dtype=np.uint8).reshape(1, -1)
            try:
                lay.decode(raw)
            except InputError as exc:  # float8: refused with one line
                _one_line(exc)


JSON_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(tensor=st.sampled_from(["a", "b", "__metadata__"]), field=st.sampled_from(["dtype", "shape", "data_offsets", None]),
       value=JSON_JUNK)
def test_safetensors_header_fields_of_any_type(tensor: str, field: str | None, value: object) -> None:
    header, data = _valid_header()
    if field is None or tensor == "__metadata__":
        header[tensor] = value
    else:
        header[tensor][field] = value
    try:
        _read_all_safetensors(_safetensors(header, data))
    except InputError as exc:
        _one_line(exc)


@FUZZ
@given(shape=st.lists(st.integers(0, 2**64), max_size=20), start=st.integers(-5, 2**64),
       end=st.integers(-5, 2**64), dtype=st.sampled_from(["F32", "BF16", "F8_E4M3", "I64", "BOOL", "X"]))
def test_safetensors_sizes_and_offsets(shape: list[int], start: int, end: int, dtype: str) -> None:
    header, data = _valid_header()
    header["a"] = {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}
    try:
        _read_all_safetensors(_safetensors(header, data))
    except InputError as exc:
        _one_line(exc)


@FUZZ
@given(data=st.data())
def test_safetensors_bytes_flipped_truncated_or_length_forged(data: st.DataObject) -> None:
    header, payload = _valid_header()
    blob = bytearray(_safetensors(header, payload))
    for _ in range(data.draw(st.integers(0, 6))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[:data.draw(st.integers(0, len(blob)))]
    if data.draw(st.booleans()) and len(blob) >= 8:
        blob[:8] = struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1)))
    try:
        _read_all_safetensors(bytes(blob))
    except InputError as exc:
        _one_line(exc)


def test_safetensors_overlapping_tensors_and_big_header_are_refused() -> None:
    header, data = _valid_header()
    header["b"]["data_offsets"] = [40, 50]
    header["b"]["shape"] = [5]
    with pytest.raises(InputError, match="overlap"):
        SafetensorsFile(MemorySource(_safetensors(header, data)))
    big = struct.pack("<Q", 30_000_000) + b" " * 64
    with pytest.raises(InputError, match="more than the 25,000,000"):
        SafetensorsFile(MemorySource(big))


# ------------------------------------------------------------------------------------------ GGUF


def _gguf_bytes(tmp: Path, kv: dict[str, object] | None = None) -> bytes:
    import gguf

    path = tmp / "fuzz.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("fuzz")
    w.add_block_count(1)
    w.add_head_count(2)
    w.add_context_length(64)
    w.add_token_list(["a", "b", "c", "d"])
    w.add_bos_token_id(1)
    for key, value in (kv or {}).items():
        add_value(w, key, value)
    w.add_tensor("blk.0.attn_q.weight", np.arange(64, dtype=np.float32).reshape(2, 32))
    w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


@pytest.fixture(scope="module")
def gguf_blob(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _gguf_bytes(tmp_path_factory.mktemp("gguf"))


def _read_all_gguf(blob: bytes) -> None:
    g = GGUFFile(MemorySource(blob, "fuzz.gguf"))
    g.config()
    g.tokenizer()
    for info in g.tensor_infos().values():
        try:
            g.read(info, np.arange(min(1, info.shape[0] if info.shape else 1)))
        except InputError as exc:
            _one_line(exc)


@FUZZ
@given(data=st.data())
def test_gguf_bytes_flipped_truncated_or_counts_forged(gguf_blob: bytes, data: st.DataObject) -> None:
    blob = bytearray(gguf_blob)
    for _ in range(data.draw(st.integers(0, 8))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):  # a forged 64-bit count or length somewhere in the header
        at = data.draw(st.integers(8, min(len(blob), 600) - 8))
        blob[at:at + 8] = struct.pack("<Q", data.draw(st.sampled_from([2**40, 2**63, 2**64 - 1, 10**6, 255])))
    if data.draw(st.booleans()):
        blob = blob[:data.draw(st.integers(0, len(blob)))]
    try:
        _read_all_gguf(bytes(blob))
    except InputError as exc:
        _one_line(exc)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["tokenizer.ggml.tokens", "llama.attention.head_count", "tokenizer.ggml.eos_token_id",
                            "llama.context_length", "general.architecture", "tokenizer.ggml.merges",
                            "llama.rope.freq_base", "general.alignment"]),
       value=st.one_of(st.text(max_size=5), st.floats(allow_nan=False, width=32), st.integers(0, 2**32 - 1),
                       st.lists(st.integers(0, 100), min_size=1, max_size=3)))
def test_gguf_metadata_of_the_wrong_type(tmp_path: Path, key: str, value: object) -> None:
    try:
        blob = _gguf_bytes(tmp_path, {key: value})
    except (ValueError, TypeError, struct.error, OverflowError):
        return  # the writer itself refuses it (a duplicate key it already wrote, ...)
    try:
        _read_all_gguf(blob)
    except InputError as exc:
        _one_line(exc)
        assert key in str(exc) or "alignment" in str(exc) or "corrupt" in str(exc), str(exc)


def test_gguf_array_claiming_2_40_elements_is_refused_at_once(gguf_blob: bytes) -> None:
    """A string array whose count says 2^40: refused from the bytes left, without looping."""
    blob = bytearray(gguf_blob)
    at = blob.find(b"tokenizer.ggml.tokens") + len(b"tokenizer.ggml.tokens") + 4 + 4  # key, value type, item type
    blob[at:at + 8] = struct.pack("<Q", 2**40)
    with pytest.raises(InputError, match="array of 1099511627776"):
        GGUFFile(MemorySource(bytes(blob), "bomb.gguf"))


# ------------------------------------------------------------------------------------------ shard index


@FUZZ
@given(weight_map=st.one_of(JSON_JUNK, st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.sampled_from(["../x.safetensors", "/etc/passwd", "a/../../b", "C:\\w.safetensors", "ok.safetensors",
                               "sub/ok.safetensors", "", "a\nb.safetensors", "..", "./ok.safetensors"]),
              JSON_JUNK), max_size=6)))
def test_shard_index_of_any_shape(weight_map: object) -> None:
    try:
        shards = index_shards({"weight_map": weight_map}, "model.safetensors.index.json")
    except InputError as exc:
        _one_line(exc)
        return
    for s in shards:
        assert isinstance(s, str) and not s.startswith("/") and ".." not in s.split("/") and s.isprintable()


# ------------------------------------------------------------------------------------------ NaN / Inf


@FUZZ
@given(rows=st.integers(1, 6), cols=st.integers(1, 6), data=st.data())
def test_rows_with_nan_inf_or_overflowing_values_are_zeroed_and_counted(rows: int, cols: int, data: st.DataObject) -> None:
    values = st.sampled_from([0.0, 1.5, -2.0, float("nan"), float("inf"), float("-inf"), 3e38, -1e20])
    arr = np.array(data.draw(st.lists(values, min_size=rows * cols, max_size=rows * cols)),
                   dtype=np.float32).reshape(rows, cols)
    q = WeightQuality()
    out = q.clean("w", arr.copy())
    assert np.isfinite(out).all()
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(arr) <= 1e15).all(axis=1)  # NaN, Inf, or values whose products would overflow
    assert (out[bad] == 0).all() and np.array_equal(out[~bad], arr[~bad])
    assert q.nonfinite_rows.get("w", 0) == int(bad.sum())
    assert ("w" in q.all_zero) == (not np.any(out) and not bad.any())
    assert q.usable() == bool(np.any(out))
