"""Read .safetensors files over any byte source (a local file or an HTTP range source), row by row.

The `safetensors` package's numpy backend cannot return bfloat16 and needs the whole file, so we parse the
(tiny, documented) header ourselves: 8 bytes of little-endian header length, a JSON header, then the data.
Every offset is checked against the file size before anything is allocated; tensor rows are then plain byte
ranges (`layout`), which the Checkpoint reads only where asked.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from audit.checkpoint.model import RowLayout
from audit.checkpoint.source import ByteSource, LocalFileSource
from audit.errors import InputError

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
    "F8_E4M3": np.uint8, "F8_E5M2": np.uint8,
}
MAX_HEADER = 100 * 1024 * 1024
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
    size, where = src.size, src.name
    if size < 8:
        raise InputError(f"{where}: not a safetensors file (shorter than 8 bytes)")
    first = src.read(0, min(size, FIRST_READ if src.remote else 8))  # over HTTP, guess the header in one request
    (n,) = struct.unpack("<Q", first[:8])
    if n > MAX_HEADER or n + 8 > size:
        raise InputError(f"{where}: corrupt safetensors header (claims {n} header bytes, file has {size})")
    raw = first[8:8 + n] if 8 + n <= len(first) else first[8:] + src.read(len(first), 8 + n - len(first))
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{where}: corrupt safetensors header ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise InputError(f"{where}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    data_len = size - 8 - n
    for name, info in header.items():
        try:
            dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{where}: corrupt safetensors entry for tensor {name!r}") from None
        if dtype not in _DTYPES:
            raise InputError(f"{where}: tensor {name!r} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or any((not isinstance(d, int)) or isinstance(d, bool) or d < 0 for d in shape):
            raise InputError(f"{where}: tensor {name!r} has an invalid shape {shape!r}")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
            raise InputError(f"{where}: tensor {name!r} has invalid data offsets")
        expected = int(np.prod(shape, dtype=object)) * np.dtype(_DTYPES[dtype]).itemsize
        if not (0 <= start <= end <= data_len) or end - start != expected:
            raise InputError(
                f"{where}: tensor {name!r} claims bytes {start}..{end} ({expected} needed) "
                f"but the file holds {data_len} data bytes: truncated or corrupt"
            )
    return header, 8 + n


def _decoder(dtype: str, where: str, name: str) -> Callable[[np.ndarray], np.ndarray]:
    np_dtype = np.dtype(_DTYPES[dtype]).newbyteorder("<")

    def decode(raw: np.ndarray) -> np.ndarray:
        k = raw.shape[0]
        if dtype.startswith("F8"):
            raise InputError(f"{where}: tensor {name!r} is float8, which is not supported yet")
        arr = raw.reshape(-1).view(np_dtype)
        if dtype == "BF16":
            out = np.left_shift(arr, 16, dtype=np.uint32).view(np.float32)  # one pass, one allocation
        else:
            out = arr.astype(np.float32)
        return out.reshape(k, -1)

    return decode
