"""Read .safetensors files lazily through a memory map, validating the header against the file.

The `safetensors` package's numpy backend cannot return bfloat16, so we parse the (tiny, documented)
header ourselves and memory-map the data; every offset is checked against the file size first.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from audit.errors import InputError

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
    "F8_E4M3": np.uint8, "F8_E5M2": np.uint8,
}
MAX_HEADER = 100 * 1024 * 1024


def read_header(path: Path) -> dict[str, dict[str, Any]]:
    """Return {name: {dtype, shape, data_offsets}} after checking it fits the file."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise InputError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or n + 8 > size:
            raise InputError(f"{path}: corrupt safetensors header (claims {n} header bytes, file has {size})")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: corrupt safetensors header ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    data_len = size - 8 - n
    for name, info in header.items():
        try:
            dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: corrupt safetensors entry for tensor {name!r}") from None
        if dtype not in _DTYPES:
            raise InputError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
        if any((not isinstance(d, int)) or d < 0 for d in shape):
            raise InputError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
        expected = int(np.prod(shape, dtype=object)) * np.dtype(_DTYPES[dtype]).itemsize
        if not (0 <= start <= end <= data_len) or end - start != expected:
            raise InputError(
                f"{path}: tensor {name!r} claims bytes {start}..{end} ({expected} needed) "
                f"but the file holds {data_len} data bytes: truncated or corrupt"
            )
    return header


def read_tensor(path: Path, header_len_cache: dict[Path, int], info: dict[str, Any], rows: np.ndarray | slice | None = None) -> np.ndarray:
    """Memory-map one tensor and return it (or the given rows of it) as float32."""
    if path not in header_len_cache:
        with path.open("rb") as fh:
            header_len_cache[path] = struct.unpack("<Q", fh.read(8))[0]
    base = 8 + header_len_cache[path]
    start, end = info["data_offsets"]
    np_dtype = _DTYPES[info["dtype"]]
    count = (end - start) // np.dtype(np_dtype).itemsize
    arr = np.memmap(path, dtype=np_dtype, mode="r", offset=base + start, shape=(count,)) if count else np.zeros(0, np_dtype)
    shape = tuple(info["shape"])
    if rows is not None:
        arr = arr.reshape(shape)[rows]
        shape = arr.shape
    if info["dtype"] == "BF16":
        out = np.left_shift(arr, 16, dtype=np.uint32).view(np.float32)  # one pass, one allocation
    elif info["dtype"].startswith("F8"):
        raise InputError(f"{path}: float8 tensors are not supported yet")
    else:
        out = np.asarray(arr, dtype=np.float32)
    return out.reshape(shape)
