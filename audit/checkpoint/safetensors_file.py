"""Read .safetensors files over any byte source (a local file or an HTTP range source), row by row.

The `safetensors` package's numpy backend cannot return bfloat16 and needs the whole file, so we parse the
(tiny, documented) header ourselves: 8 bytes of little-endian header length, a JSON header, then the data.
Every offset is checked against the file size before anything is allocated; tensor rows are then plain byte
ranges (`layout`), which the Checkpoint reads only where asked.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from audit.checkpoint.model import RowLayout
from audit.checkpoint.source import ByteSource, LocalFileSource
from audit.errors import InputError
from audit.safeio import display_path, loads_json

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
    "F8_E4M3": np.uint8, "F8_E5M2": np.uint8,
}
# huggingface_hub refuses safetensors headers over 25 MB (constants.SAFETENSORS_MAX_HEADER_LENGTH = 25_000_000,
# used by HfApi.get_safetensors_metadata); the safetensors library's own cap is 100 MB (MAX_HEADER_SIZE). A header
# is ~150 bytes per tensor, so 25 MB is ~160,000 tensors in one file: far more than any published shard holds.
MAX_HEADER = 25_000_000
MAX_DIMS = 16  # the rank of a tensor (safetensors sets no limit; real weights have at most 5)
FIRST_READ = 64 << 10  # the first read takes the length and, usually, the whole header: one request over HTTP


class SafetensorsFile:
    """One opened .safetensors file: its validated header and where each tensor's data starts."""

    def __init__(self, source: ByteSource) -> None:
        self.source = source
        self.header, self.data_start = _parse_header(source)

    def layout(self, name: str) -> RowLayout:
        info = self.header[name]
        shape = tuple(int(d) for d in info["shape"])
        start, end = info["data_offsets"]
        n_rows = shape[0] if shape else 1
        row_bytes = (end - start) // n_rows if n_rows else 0
        return RowLayout(self.source, self.data_start + start, n_rows, row_bytes, shape[1:],
                         _decoder(info["dtype"], self.source.name, name))


def read_header(path: Path | ByteSource) -> dict[str, dict[str, Any]]:
    """Return {name: {dtype, shape, data_offsets}} after checking it fits the file."""
    src = LocalFileSource(path) if isinstance(path, Path) else path
    return _parse_header(src)[0]


def _parse_header(src: ByteSource) -> tuple[dict[str, dict[str, Any]], int]:
    """The validated header ({name: {dtype, shape, data_offsets}}) and where the data starts; InputError naming
    the file and the tensor or field for anything the format does not allow."""
    size, where = src.size, display_path(src.name)
    if size < 8:
        raise InputError(f"{where}: not a safetensors file (shorter than 8 bytes)")
    first = src.read(0, min(size, FIRST_READ if src.remote else 8))  # over HTTP, guess the header in one request
    (n,) = struct.unpack("<Q", first[:8])
    if n > MAX_HEADER:
        raise InputError(f"{where}: safetensors header of {n:,} bytes, more than the {MAX_HEADER:,} allowed")
    if n + 8 > size:
        raise InputError(f"{where}: corrupt safetensors header (claims {n} header bytes, file has {size})")
    raw = first[8:8 + n] if 8 + n <= len(first) else bytes(first[8:]) + bytes(src.read(len(first), 8 + n - len(first)))
    try:
        header = loads_json(bytes(raw), src.name, max_depth=4)
    except InputError as exc:
        raise InputError(f"{where}: corrupt safetensors header ({str(exc).removeprefix(where + ': ')})") from None
    if not isinstance(header, dict):
        raise InputError(f"{where}: corrupt safetensors header (a JSON {type(header).__name__}, not an object)")
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise InputError(f"{where}: safetensors __metadata__ must map strings to strings")
    data_len = size - 8 - n
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        start, end = _check_entry(where, name, info, data_len)
        if end > start:
            spans.append((start, end, name))
    spans.sort()
    for (_, end_a, a), (start_b, _, b) in zip(spans, spans[1:], strict=False):
        if start_b < end_a:
            raise InputError(f"{where}: tensors {_n(a)} and {_n(b)} overlap in the file (corrupt safetensors header)")
    return header, 8 + n


def _n(name: str) -> str:
    """A tensor name for an error line (quoted, control characters escaped, at most 100 characters)."""
    return repr(name if len(name) <= 100 else name[:100] + "...")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_entry(where: str, name: str, info: object, data_len: int) -> tuple[int, int]:
    """One tensor entry: dtype a known string, shape a short list of non-negative ints, data_offsets two ints in
    order inside the data section, holding exactly the bytes the shape and dtype need."""
    if not isinstance(info, dict):
        raise InputError(f"{where}: tensor {_n(name)}: entry is a JSON {type(info).__name__}, not an object")
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in info]
    if missing:
        raise InputError(f"{where}: tensor {_n(name)}: no {missing[0]}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise InputError(f"{where}: tensor {_n(name)}: unsupported dtype {str(dtype)[:40]!r}")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(d) and d >= 0 for d in shape):
        raise InputError(f"{where}: tensor {_n(name)}: shape must be a list of at most {MAX_DIMS} non-negative "
                         f"integers, found {str(shape)[:60]}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(x) for x in offsets)):
        raise InputError(f"{where}: tensor {_n(name)}: data_offsets must be two integers, found {str(offsets)[:60]}")
    start, end = offsets
    if not 0 <= start <= end <= data_len:
        raise InputError(f"{where}: tensor {_n(name)} claims bytes {start}..{end} but the file holds {data_len} data "
                         "bytes: truncated or corrupt")
    expected = math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize  # bounded: end - start <= data_len
    if end - start != expected:
        raise InputError(f"{where}: tensor {_n(name)}: shape {shape} of {dtype} needs {expected} bytes, its "
                         f"data_offsets hold {end - start}")
    return start, end


def _decoder(dtype: str, where: str, name: str) -> Callable[[np.ndarray], np.ndarray]:
    np_dtype = np.dtype(_DTYPES[dtype]).newbyteorder("<")

    def decode(raw: np.ndarray) -> np.ndarray:
        k = raw.shape[0]
        if dtype.startswith("F8"):
            raise InputError(f"{where}: tensor {_n(name)} is float8, which is not supported yet")
        arr = raw.reshape(-1).view(np_dtype)
        if dtype == "BF16":
            out = np.left_shift(arr, 16, dtype=np.uint32).view(np.float32)  # one pass, one allocation
        else:
            out = arr.astype(np.float32)
        return out.reshape(k, -1)

    return decode
