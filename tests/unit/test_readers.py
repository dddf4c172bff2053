"""The lazy checkpoint readers return exactly what was written, bit for bit, whole or by rows.

Values include the awkward ones (-0.0, ±inf, NaN, subnormals, the largest finite value); float32 results
are compared as uint32 bit patterns so that NaN and -0.0 count too.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize, quantize

from audit.checkpoint import open_checkpoint
from tests.support import tiny

ROWS = [np.array([5, 0, 8, 5, 2]), np.array([7]), slice(1, 9, 3), slice(None)]


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    assert a.dtype == np.float32, a.dtype
    return a.view(np.uint32)


def _assert_bit_identical(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    np.testing.assert_array_equal(_bits(got), _bits(want))


def _awkward(dtype, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random values of `dtype` with the special ones planted at the front."""
    info = np.finfo(dtype)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, info.max, -info.max, info.tiny, info.smallest_subnormal,
                        -info.smallest_subnormal, 1.0, -1.0], dtype=dtype)
    flat = np.random.default_rng(seed).normal(0, 3, int(np.prod(shape))).astype(dtype)
    flat[: len(special)] = special[: flat.size]
    return flat.reshape(shape)


SHAPES = {"matrix": (9, 13), "vector": (17,), "cube": (9, 4, 5)}


# ------------------------------------------------------------------------------------------ safetensors


def _write_bf16(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """BF16 bit patterns (uint16) -> .safetensors, laid out as the format documents."""
    header, blobs, offset = {}, [], 0
    for name, bits in tensors.items():
        blob = np.ascontiguousarray(bits, dtype="<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(bits.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


@pytest.fixture(scope="module")
def st_files(tmp_path_factory) -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
    """dtype -> (file, {name: expected float32})."""
    from safetensors.numpy import save_file

    d = tmp_path_factory.mktemp("st")
    out = {}
    for dtype, np_dtype in (("F32", np.float32), ("F16", np.float16)):
        arrays = {k: _awkward(np_dtype, s, i) for i, (k, s) in enumerate(SHAPES.items())}
        save_file(arrays, str(d / f"{dtype}.safetensors"))
        out[dtype] = (d / f"{dtype}.safetensors", {k: v.astype(np.float32) for k, v in arrays.items()})
    rng = np.random.default_rng(3)
    bits = {k: rng.integers(0, 2**16, size=s, dtype=np.uint16) for k, s in SHAPES.items()}
    bits["matrix"][0, :4] = [0x7FC1, 0xFF80, 0x8000, 0x0001]  # a NaN with payload, -inf, -0.0, smallest subnormal
    _write_bf16(d / "BF16.safetensors", bits)
    out["BF16"] = (d / "BF16.safetensors", {k: (v.astype(np.uint32) << 16).view(np.float32) for k, v in bits.items()})
    return out


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_safetensors_read_is_bit_identical(st_files, dtype) -> None:
    path, want = st_files[dtype]
    ckpt = open_checkpoint(path)
    assert set(ckpt.tensors) == set(want)
    for name, arr in want.items():
        info = ckpt.tensors[name]
        assert info.shape == arr.shape and info.dtype == dtype
        _assert_bit_identical(ckpt.read(name), arr)


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("rows", ROWS, ids=["ids", "one", "step-slice", "all"])
def test_safetensors_read_rows_is_bit_identical(st_files, dtype, rows) -> None:
    path, want = st_files[dtype]
    ckpt = open_checkpoint(path)
    for name in ("matrix", "cube"):
        _assert_bit_identical(ckpt.read_rows(name, rows), want[name][rows])


def test_bf16_upper_half_is_the_stored_pattern(st_files) -> None:
    path, want = st_files["BF16"]
    got = _bits(open_checkpoint(path).read("matrix"))
    assert (got & 0xFFFF == 0).all()
    assert [int(x) >> 16 for x in got[0, :4]] == [0x7FC1, 0xFF80, 0x8000, 0x0001]


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
def test_sharded_with_index_reads_the_same_as_unsharded(tmp_path, dtype) -> None:
    m = tiny.make_llama(0, layers=3)
    one = open_checkpoint(tiny.save_hf(m, tmp_path / "one", dtype=dtype))
    many = open_checkpoint(tiny.save_hf(m, tmp_path / "many", dtype=dtype, shards=3))
    assert (tmp_path / "many" / "model.safetensors.index.json").is_file()
    assert len(many.files) == 3 and len({t.file for t in many.tensors.values()}) == 3
    assert set(many.tensors) == set(one.tensors) == set(m.tensors)
    for name, w in m.tensors.items():
        assert many.tensors[name].shape == one.tensors[name].shape == w.shape
        assert many.tensors[name].dtype == one.tensors[name].dtype == dtype
        expected = w if dtype == "F32" else tiny.from_bf16_bits(tiny.to_bf16_bits(w))
        _assert_bit_identical(many.read(name), expected)
        _assert_bit_identical(one.read(name), expected)
    ids = np.array([511, 3, 200, 3])
    emb = "model.embed_tokens.weight"
    _assert_bit_identical(many.read_rows(emb, ids), one.read_rows(emb, ids))
    _assert_bit_identical(many.read_rows(emb, ids), many.read(emb)[ids])


# ------------------------------------------------------------------------------------------ GGUF

Q = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray], dict[str, str]]:
    """A GGUF of plain tensors (architecture "gpt2": no rotary re-interleaving applies)."""
    path = tmp_path_factory.mktemp("gguf") / "t.gguf"
    w = gguf.GGUFWriter(str(path), "gpt2")
    want: dict[str, np.ndarray] = {}
    types: dict[str, str] = {}

    def add(name: str, data: np.ndarray, qtype, expected: np.ndarray) -> None:
        w.add_tensor(name, data, raw_dtype=qtype if data.dtype == np.uint8 else None)
        want[name], types[name] = expected, qtype.name

    f32 = _awkward(np.float32, (9, 13), 0)
    add("f32.matrix", f32, Q.F32, f32)
    vec = _awkward(np.float32, (17,), 1)
    add("f32.vector", vec, Q.F32, vec)
    f16 = _awkward(np.float16, (9, 40), 2)
    add("f16.matrix", f16, Q.F16, f16.astype(np.float32))
    x = np.random.default_rng(4).normal(0, 1, (9, 96)).astype(np.float32)
    x[0, :32] = 0.0  # an all-zero block (scale 0)
    x[1, :32] = np.linspace(-1e-3, 1e-3, 32)
    q8 = quantize(x, Q.Q8_0)
    assert q8.dtype == np.uint8 and q8.shape == (9, 96 // 32 * 34)
    add("q8.matrix", q8, Q.Q8_0, np.asarray(dequantize(q8, Q.Q8_0), dtype=np.float32))
    want["q8.source"] = x  # not in the file: the values before quantization
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, want, types


def test_gguf_read_is_bit_identical(gguf_file) -> None:
    path, want, types = gguf_file
    ckpt = open_checkpoint(path)
    assert ckpt.format == "gguf"
    assert set(ckpt.tensors) == set(types)
    for name in types:
        arr = want[name]
        assert ckpt.tensors[name].shape == arr.shape
        assert ckpt.tensors[name].dtype == types[name]
        _assert_bit_identical(ckpt.read(name), arr)


@pytest.mark.parametrize("rows", ROWS, ids=["ids", "one", "step-slice", "all"])
def test_gguf_read_rows_is_bit_identical(gguf_file, rows) -> None:
    path, want, _ = gguf_file
    ckpt = open_checkpoint(path)
    for name in ("f32.matrix", "f16.matrix", "q8.matrix"):
        _assert_bit_identical(ckpt.read_rows(name, rows), want[name][rows])


def test_q8_0_dequantizes_close_to_the_source(gguf_file) -> None:
    """Guards the fixture: Q8_0 stores each block of 32 as int8 times one scale max|x|/127, so the error is
    at most half a step, and an all-zero block comes back as zeros."""
    path, want, _ = gguf_file
    got = open_checkpoint(path).read("q8.matrix")
    src = want["q8.source"]
    step = np.abs(src.reshape(9, -1, 32)).max(axis=2, keepdims=True) / 127
    err = np.abs(got - src).reshape(9, -1, 32)
    assert (err <= step / 2 * (1 + 1e-2) + 1e-7).all()
    assert (got[0, :32] == 0).all() and err.max() > 0


# llama-arch GGUF: q/k rows are stored interleaved (as llama.cpp's converter writes them) and read back in
# HF order; every other tensor is stored as is.


@pytest.fixture(scope="module")
def llama_gguf(tmp_path_factory) -> tuple[tiny.TinyModel, Path]:
    m = tiny.make_llama(0, layers=2)
    return m, tiny.save_gguf(m, tmp_path_factory.mktemp("lg") / "m.gguf", quant="F32")


def test_llama_gguf_reads_back_hf_weights_exactly(llama_gguf) -> None:
    m, path = llama_gguf
    ckpt = open_checkpoint(path)
    hf, gg = tiny.LLAMA_SCHEMES["hf"], tiny.LLAMA_SCHEMES["gguf"]
    for role, tmpl in hf.items():
        for i in range(2) if "{i}" in tmpl else [0]:
            _assert_bit_identical(ckpt.read(gg[role].format(i=i)), m.tensors[tmpl.format(i=i)])


@pytest.mark.parametrize("role", [r for r in tiny.LLAMA_SCHEMES["gguf"] if r not in ("attn_norm", "mlp_norm", "final_norm")])
def test_llama_gguf_read_rows_agrees_with_read(llama_gguf, role) -> None:
    _, path = llama_gguf
    ckpt = open_checkpoint(path)
    name = tiny.LLAMA_SCHEMES["gguf"][role].format(i=1)
    rows = np.array([0, 9, 3, 17, 30])
    _assert_bit_identical(ckpt.read_rows(name, rows), ckpt.read(name)[rows])
