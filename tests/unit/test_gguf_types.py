"""Every GGML storage type the installed `gguf` package can dequantize is read by the GGUF reader.

For each type a tiny GGUF is written with gguf's own writer: types gguf can quantize hold quantized real
values (and must come back close to them); types it can only dequantize (K-quants, i-quants, NVFP4) hold
random blocks, and must come back exactly as `gguf.quants.dequantize` decodes them, whole and by rows.
Plain types (F64 and the integer types, which gguf.quants refuses) come back as float32 values, and a
type gguf cannot decode at all is one clear InputError, not a crash.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

from audit.checkpoint import open_checkpoint
from audit.errors import InputError

# random blocks hold NaN/inf scales; gguf's decoders multiply them through (as llama.cpp would)
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

Q = gguf.GGMLQuantizationType
ROWS = 4
PLAIN = {Q.F32: np.float32, Q.F16: np.float16, Q.F64: np.float64, Q.I8: np.int8, Q.I16: np.int16,
         Q.I32: np.int32, Q.I64: np.int64}
TRAITS = dict(quants._type_traits)  # the types gguf.quants can dequantize (and maybe quantize)
NO_DEQUANT = [t for t in Q if t not in TRAITS and t not in PLAIN]


def _can_quantize(qtype: Q) -> bool:
    return "quantize_blocks" in vars(TRAITS[qtype])


def _write(path: Path, name: str, data: np.ndarray, qtype: Q | None, shape: tuple[int, ...] | None = None) -> Path:
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_tensor(name, data, raw_shape=shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _cols(qtype: Q) -> int:
    block = GGML_QUANT_SIZES[qtype][0]
    return block * max(1, 512 // block)


def _assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(got[ok], want[ok])


@pytest.mark.parametrize("qtype", sorted(TRAITS, key=lambda t: t.value), ids=lambda t: t.name)
def test_dequantizable_type_is_read(tmp_path: Path, qtype: Q) -> None:
    cols = _cols(qtype)
    block, size = GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(int(qtype.value))
    source = rng.normal(0, 1, (ROWS, cols)).astype(np.float32)
    if _can_quantize(qtype):
        stored = quants.quantize(source, qtype)
    else:  # random blocks: the reader must decode them exactly as gguf does, NaN scales included
        stored = rng.integers(0, 256, (ROWS, cols // block * size), dtype=np.uint8)
    assert stored.dtype == np.uint8 and stored.shape == (ROWS, cols // block * size)
    want = np.asarray(quants.dequantize(stored, qtype), dtype=np.float32).reshape(ROWS, cols)
    path = _write(tmp_path / f"{qtype.name}.gguf", "w.weight", stored, qtype)

    ckpt = open_checkpoint(path)
    info = ckpt.tensors["w.weight"]
    assert (info.shape, info.dtype) == ((ROWS, cols), qtype.name)
    _assert_same(ckpt.read("w.weight"), want)
    rows = np.array([3, 0, 2])
    _assert_same(ckpt.read_rows("w.weight", rows), want[rows])
    if _can_quantize(qtype):  # real values survive the round trip (ternary types keep only signs and a scale)
        corr = np.corrcoef(want.ravel(), source.ravel())[0, 1]
        assert corr > (0.6 if qtype.name.startswith("TQ") else 0.9), f"{qtype.name}: correlation {corr:.3f}"


@pytest.mark.parametrize("qtype", list(PLAIN), ids=lambda t: t.name)
def test_plain_type_is_read_as_float32(tmp_path: Path, qtype: Q) -> None:
    dtype = PLAIN[qtype]
    rng = np.random.default_rng(7)
    values = (rng.normal(0, 50, (ROWS, 24)) if np.issubdtype(dtype, np.floating)
              else rng.integers(-100, 100, (ROWS, 24))).astype(dtype)
    path = _write(tmp_path / f"{qtype.name}.gguf", "w.weight", values, None)
    ckpt = open_checkpoint(path)
    assert ckpt.tensors["w.weight"].dtype == qtype.name
    _assert_same(ckpt.read("w.weight"), values.astype(np.float32))
    _assert_same(ckpt.read_rows("w.weight", slice(1, 3)), values[1:3].astype(np.float32))


@pytest.mark.skipif(not NO_DEQUANT, reason="this gguf version dequantizes every type it names")
@pytest.mark.parametrize("qtype", NO_DEQUANT, ids=lambda t: t.name)
def test_type_gguf_cannot_decode_is_one_input_error(tmp_path: Path, qtype: Q) -> None:
    block, size = GGML_QUANT_SIZES[qtype]
    cols = _cols(qtype)
    raw = np.zeros((ROWS, cols // block * size), dtype=np.uint8)
    path = _write(tmp_path / f"{qtype.name}.gguf", "w.weight", raw, qtype)
    ckpt = open_checkpoint(path)
    with pytest.raises(InputError, match=qtype.name):
        ckpt.read("w.weight")


def test_every_type_is_covered() -> None:
    """The three groups above cover every type this gguf version names."""
    assert set(TRAITS) | set(PLAIN) | set(NO_DEQUANT) == set(Q)
