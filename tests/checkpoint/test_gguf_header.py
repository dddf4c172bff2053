"""The GGUF header reader: the same metadata as gguf's own reader, in a fraction of the time, and hostile
headers refused before anything big is allocated."""

from __future__ import annotations

import struct
import time
import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.constants import GGUFValueType as V

from audit.checkpoint import open_checkpoint
from audit.checkpoint.gguf_file import GGUFFile
from audit.errors import InputError


def _reader_values(path: Path) -> dict:
    """Every KV pair as gguf.GGUFReader decodes it (its own GGUF.* pseudo-keys left out)."""
    r = gguf.GGUFReader(str(path), "r")
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}


def _mine(path: Path) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in GGUFFile(path).metadata.items()}


@pytest.fixture(scope="module")
def rich_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GGUF with every metadata value type, string arrays with non-ASCII tokens, and a few tensors."""
    path = tmp_path_factory.mktemp("gg") / "rich.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 1e-6)
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", 3.141592653589793)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo ✓")
    w.add_array("t.ints", [1, 2, 3, 70000])
    w.add_array("t.floats", [0.5, -1.25])
    w.add_array("t.empty", [])
    w.add_block_count(2)
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i}" for i in range(300)] + ["Ġthe", "日本", ""])
    w.add_token_merges(["a b", "Ġ t"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(302)
    rng = np.random.default_rng(0)
    w.add_tensor("blk.0.attn_q.weight", rng.normal(size=(64, 64)).astype(np.float32))
    w.add_tensor("blk.0.ffn_down.weight", rng.normal(size=(64, 160)).astype(np.float16))
    w.add_tensor("output_norm.weight", rng.normal(size=(64,)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_metadata_is_what_ggufs_reader_reads(rich_gguf: Path) -> None:
    assert _mine(rich_gguf) == _reader_values(rich_gguf)


def test_tensor_infos_and_tokenizer_agree_with_ggufs_reader(rich_gguf: Path) -> None:
    g = GGUFFile(rich_gguf)
    r = gguf.GGUFReader(str(rich_gguf), "r")
    infos = g.tensor_infos()
    assert [t.name for t in r.tensors] == list(infos)
    for t in r.tensors:
        assert infos[t.name].shape == tuple(int(d) for d in reversed(t.shape.tolist()))
        assert infos[t.name].dtype == t.tensor_type.name
    tok = g.tokenizer()
    assert tok is not None and tok.tokens == r.fields["tokenizer.ggml.tokens"].contents()
    assert tok.merges == ["a b", "Ġ t"] and tok.special == {"bos": "tok1", "eos": ""} and tok.kind == "bpe"
    assert g.config()["num_hidden_layers"] == 2 and g.config()["vocab_size"] == 303


def test_opening_reads_the_header_only(rich_gguf: Path) -> None:
    ckpt = open_checkpoint(rich_gguf)
    assert ckpt.io is not None and ckpt.io.bytes_total == rich_gguf.stat().st_size
    header_end = GGUFFile(rich_gguf)._data_start
    assert header_end <= ckpt.io.bytes_read < header_end + (64 << 10)  # at most one read-ahead chunk past it
    before = ckpt.io.bytes_read
    ckpt.read("output_norm.weight")
    assert ckpt.io.bytes_read - before == 64 * 4


# ------------------------------------------------------------------------------------------ hostile headers


def _header(n_tensors: int, kvs: bytes, n_kv: int, tail: bytes = b"", version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + kvs + tail


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    return _s(key) + struct.pack("<I", vtype) + payload


HOSTILE = {
    "kv-count": _header(0, b"", 1 << 60),
    "tensor-count": _header(1 << 60, b"", 0),
    "string-length": _header(0, _kv("k", V.STRING, struct.pack("<Q", 1 << 60)), 1),
    "key-length": _header(0, struct.pack("<Q", 1 << 40), 1),
    "array-count": _header(0, _kv("k", V.ARRAY, struct.pack("<IQ", V.UINT32, 1 << 60)), 1),
    "string-array-count": _header(0, _kv("k", V.ARRAY, struct.pack("<IQ", V.STRING, 1 << 58)), 1),
    "nested-arrays": _header(0, _kv("k", V.ARRAY, struct.pack("<IQ", V.ARRAY, 1) + struct.pack("<IQ", V.ARRAY, 1)
                                     + struct.pack("<IQ", V.ARRAY, 1) + struct.pack("<IQ", V.ARRAY, 1)
                                     + struct.pack("<IQ", V.UINT8, 0)), 1),
    "value-type": _header(0, _kv("k", 99, b""), 1),
    "alignment": _header(0, _kv("general.alignment", V.UINT32, struct.pack("<I", 3)), 1),
    "dims": _header(1, b"", 0, _s("w") + struct.pack("<I", 9) + b"\0" * 80),
    "ggml-type": _header(1, b"", 0, _s("w") + struct.pack("<IQIQ", 1, 32, 9999, 0)),
    "tensor-past-end": _header(1, b"", 0, _s("w") + struct.pack("<IQIQ", 1, 1 << 40, 0, 0)),
    "version": _header(0, b"", 0, version=7),
    "magic": b"GGML" + b"\0" * 60,
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_header_is_one_input_error_without_big_allocations(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.gguf"
    path.write_bytes(HOSTILE[case] + b"\0" * 256)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"\.gguf"):
            open_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{case}: {peak} bytes allocated while refusing a {path.stat().st_size}-byte file"


# ------------------------------------------------------------------------------------------ real files


@pytest.mark.real
def test_gemma3_metadata_in_well_under_a_second() -> None:
    """Gemma-3-270M (262k-token vocabulary): gguf's reader needs seconds to tens of seconds; this needs well
    under one, and reads the same metadata, tokenizer and tensor table."""
    from audit.assets import fetch

    path = fetch("gemma3")
    t0 = time.perf_counter()
    g = GGUFFile(path)
    tok, cfg, infos = g.tokenizer(), g.config(), g.tensor_infos()
    seconds = time.perf_counter() - t0
    assert seconds < 1.0, f"{seconds:.2f} s"
    assert tok is not None and len(tok.tokens) == 262144 and cfg["model_type"] == "gemma3"
    assert _mine(path) == _reader_values(path)
    assert len(infos) == len(gguf.GGUFReader(str(path), "r").tensors)
