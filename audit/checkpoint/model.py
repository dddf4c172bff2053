"""The Checkpoint object: files, config, tokenizer data, and lazy tensor readers that read rows, not files.

Safetensors and GGUF tensors are read through a `RowLayout`: where a tensor's stored rows lie in a byte source
and how to decode them. `Checkpoint.read_rows_many` plans every requested row of every requested tensor at
once, merges close byte runs and reads them (concurrently over HTTP), so a fingerprint costs the rows it
needs, not the model. Every read is counted in `Checkpoint.io`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.checkpoint.source import ByteSource, IOCounter, RangeData, read_ranges

Rows = np.ndarray | slice


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as stored: its name, shape in (out, in) order, storage dtype and file."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    file: Path


@dataclass
class TokenizerData:
    """What identifies a tokenizer: its vocabulary (id order), merges and special tokens."""

    kind: str  # bpe | wordpiece | unigram | unknown
    tokens: list[str]
    merges: list[str] = field(default_factory=list)
    special: dict[str, str] = field(default_factory=dict)
    source: str = ""
    model: str | None = None  # GGUF tokenizer.ggml.model or tokenizer.json model type
    pre: str | None = None  # GGUF pre-tokenizer id (tokenizer.ggml.pre), when known


@dataclass(frozen=True)
class RowLayout:
    """Where a tensor's rows (first axis) are stored: row i is bytes offset + i*row_bytes .. +row_bytes of
    `source`, and `decode` turns k such rows ((k, row_bytes) uint8) into float32 of shape (k, *row_shape).
    `order[i]` is the stored row holding logical row i, when they differ (GGUF's interleaved q/k rows)."""

    source: ByteSource
    offset: int
    n_rows: int
    row_bytes: int
    row_shape: tuple[int, ...]
    decode: Callable[[np.ndarray], np.ndarray]
    order: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class TensorPart:
    """A virtual tensor: some rows (axis 0) or columns (axis 1) of a stored 2-D tensor, e.g. the q rows of a
    fused qkv projection. Reading a row part reads only the parent's rows it names."""

    name: str
    parent: str
    axis: int  # 0: index picks the parent's stored rows; 1: it picks columns of each stored row
    index: np.ndarray  # parent row / column ids, in the part's order


@dataclass
class Checkpoint:
    """A model checkpoint opened for reading. Tensors are read as float32, whole or by rows."""

    path: Path
    format: str  # hf-folder | safetensors | gguf | onnx | pickle
    files: list[Path]
    config: dict[str, Any]
    tensors: dict[str, TensorInfo]
    tokenizer: TokenizerData | None
    _reader: Callable[[TensorInfo], np.ndarray]
    name: str = ""
    _row_reader: Callable[[TensorInfo, np.ndarray | slice], np.ndarray] | None = None
    _layout: Callable[[TensorInfo], RowLayout] | None = None
    io: IOCounter | None = None  # what the readers read (None: a format whose reads are not counted)
    folder: Path | None = None  # where the model's small files (card, config, tokenizer, licence) are
    parts: dict[str, TensorPart] = field(default_factory=dict)  # virtual tensors (also listed in `tensors`)
    quality: WeightQuality = field(default_factory=lambda: WeightQuality())  # NaN/Inf and all-zero reads seen
    #: True: rows holding NaN, Inf or |x| > 1e15 are read as zeros and counted in `quality` (what the comparison
    #: wants; ModelView sets it). False: reads return exactly the stored values, bit for bit.
    sanitize: bool = False

    @property
    def stored_tensors(self) -> list[str]:
        """Names of the tensors the files hold (the virtual parts left out)."""
        return [n for n in self.tensors if n not in self.parts]

    def add_parts(self, parts: Sequence[TensorPart]) -> None:
        """Register virtual tensors (row or column ranges of stored 2-D tensors) readable like stored ones."""
        for p in parts:
            if p.name in self.parts:
                continue
            parent = self.tensors[p.parent]
            if len(parent.shape) != 2 or p.axis not in (0, 1):
                raise ValueError(f"{p.name}: parts split 2-D tensors by rows or columns")
            if p.index.size and (int(p.index.min()) < 0 or int(p.index.max()) >= parent.shape[p.axis]):
                raise ValueError(f"{p.name}: index out of range for {p.parent} {parent.shape}")
            shape = (len(p.index), parent.shape[1]) if p.axis == 0 else (parent.shape[0], len(p.index))
            self.parts[p.name] = p
            self.tensors[p.name] = TensorInfo(p.name, shape, parent.dtype, parent.file)

    def read(self, name: str) -> np.ndarray:
        """Return tensor `name` as a float32 array in (out, in) orientation."""
        info = self.tensors[name]
        part = self.parts.get(name)
        if part is not None:
            if part.axis == 0:
                return self.read_rows_many([(part.parent, part.index)])[0].reshape(info.shape)
            return self.read(part.parent)[:, part.index]
        if self._layout is not None:
            return self.read_rows_many([(name, slice(None))])[0].reshape(info.shape)
        arr = np.asarray(self._reader(info))
        return self.quality.clean(name, arr) if self.sanitize else arr

    def read_rows(self, name: str, rows: Rows) -> np.ndarray:
        """Return selected rows (ids in any order, repeats allowed, or a slice) of a tensor: only their bytes
        are read where the format allows."""
        return self.read_rows_many([(name, rows)])[0]

    def read_rows_many(self, requests: Sequence[tuple[str, Rows]]) -> list[np.ndarray]:
        """Rows of several tensors at once: the byte runs of all of them are planned together, close runs are
        merged, and remote ones are fetched concurrently. Returns one float32 array per request."""
        if not self.parts:
            return self._read_stored_many(requests)
        stored: list[tuple[str, Rows]] = []
        columns: list[np.ndarray | None] = []
        for name, rows in requests:
            part = self.parts.get(name)
            if part is None:
                stored.append((name, rows))
                columns.append(None)
            elif part.axis == 0:
                stored.append((part.parent, part.index[rows]))
                columns.append(None)
            else:
                stored.append((part.parent, rows))
                columns.append(part.index)
        got = self._read_stored_many(stored)
        return [g if c is None else g[..., c] for g, c in zip(got, columns, strict=True)]

    def _read_stored_many(self, requests: Sequence[tuple[str, Rows]]) -> list[np.ndarray]:
        plans: list[_Plan | None] = []
        wanted: dict[int, tuple[ByteSource, list[tuple[int, int]]]] = {}
        for name, rows in requests:
            info = self.tensors[name]
            layout = self._layout(info) if self._layout is not None else None
            if layout is None:
                plans.append(None)
                continue
            plan = _plan(layout, rows)
            plans.append(plan)
            wanted.setdefault(id(layout.source), (layout.source, []))[1].extend(plan.ranges)
        data: dict[int, RangeData] = {}
        for key, (src, ranges) in wanted.items():
            data[key] = read_ranges(src, ranges)
        out = []
        for (name, rows), done in zip(requests, plans, strict=True):
            if done is None:
                info = self.tensors[name]
                out.append(self._row_reader(info, rows) if self._row_reader is not None else self._reader(info)[rows])
            else:
                out.append(done.assemble(data.get(id(done.layout.source))))
        if not self.sanitize:
            return out
        return [self.quality.clean(name, arr) for (name, _), arr in zip(requests, out, strict=True)]

    @property
    def storage_dtypes(self) -> list[str]:
        return sorted({t.dtype for t in self.tensors.values()})


#: Larger weights are no weights (real ones stay below ~1e4; fp16 tops out at 65504): rows holding them are treated
#: like NaN/Inf rows, so that no product or sum of squares in the comparison can overflow float32.
MAX_ABS = 1e15


@dataclass
class WeightQuality:
    """What a checkpoint's reads held that the comparison cannot use: rows with NaN, Inf or |x| > 1e15 (set to zero
    where read, so every statistic sees finite numbers and a zero row carries no signal) and tensors whose every
    row read was zero. Counted per stored tensor over the rows actually read."""

    nonfinite_rows: dict[str, int] = field(default_factory=dict)  # most NaN/Inf rows seen in one read
    rows_read: dict[str, int] = field(default_factory=dict)  # most rows seen in one read
    _zero: set[str] = field(default_factory=set)
    _nonzero: set[str] = field(default_factory=set)

    def clean(self, name: str, arr: np.ndarray) -> np.ndarray:
        """`arr` (rows of tensor `name`, row elements on the last axis) with rows holding NaN/Inf set to zero."""
        if arr.size == 0 or not np.issubdtype(arr.dtype, np.floating):
            return arr
        rows = arr.reshape(-1, arr.shape[-1]) if arr.ndim >= 2 else arr.reshape(-1, 1)
        n = rows.shape[0]
        self.rows_read[name] = max(self.rows_read.get(name, 0), n)
        # fast path without temporaries: max and min are NaN when any value is, and then the test fails
        if not (float(rows.max()) <= MAX_ABS and float(rows.min()) >= -MAX_ABS):
            with np.errstate(invalid="ignore"):
                bad = ~(np.abs(rows) <= MAX_ABS).all(axis=1)  # NaN and Inf fail the test too
            self.nonfinite_rows[name] = max(self.nonfinite_rows.get(name, 0), int(bad.sum()))
            rows = rows.copy() if not rows.flags.writeable or rows.base is not None else rows
            rows[bad] = 0.0
            arr = rows.reshape(arr.shape)
        if name not in self._nonzero:
            (self._nonzero if bool(np.any(rows)) else self._zero).add(name)
        return arr

    @property
    def all_zero(self) -> list[str]:
        """Tensors every read of which held only zeros (those zeroed for NaN/Inf rows are listed in `nonfinite`)."""
        return sorted(self._zero - self._nonzero - {n for n, k in self.nonfinite_rows.items() if k})

    @property
    def nonfinite(self) -> list[str]:
        return sorted(n for n, k in self.nonfinite_rows.items() if k)

    def usable(self) -> bool:
        """False when nothing read held a finite non-zero value (an all-NaN or all-zero model)."""
        return bool(self._nonzero) or not (self._zero or self.nonfinite_rows)


@dataclass
class _Plan:
    layout: RowLayout
    shape: tuple[int, ...]  # index shape of the request
    stored: np.ndarray  # distinct stored rows, ascending
    inverse: np.ndarray | None  # request position -> index into `stored` (None: identity)
    runs: list[tuple[int, int]]  # [first, last+1) runs of consecutive stored rows
    ranges: list[tuple[int, int]]  # their byte ranges

    def assemble(self, data: RangeData | None) -> np.ndarray:
        lay = self.layout
        k = len(self.stored)
        if k == 0 or lay.row_bytes == 0 or data is None or not self.ranges:
            rows = np.zeros((k, *lay.row_shape), np.float32)
        else:
            pieces = [data.view(a, b) for a, b in self.ranges]
            raw = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            rows = lay.decode(np.frombuffer(raw, dtype=np.uint8).reshape(k, lay.row_bytes))
            rows = rows.reshape(k, *lay.row_shape)
        if self.inverse is not None:
            rows = rows[self.inverse]
        elif not rows.flags.writeable:
            rows = rows.copy()
        return rows.reshape(*self.shape, *lay.row_shape)


def read_layout(lay: RowLayout, rows: Rows, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Rows of one tensor straight from its layout (whole when `rows` is slice(None); reshaped to `shape`)."""
    plan = _plan(lay, rows)
    out = plan.assemble(read_ranges(lay.source, plan.ranges) if plan.ranges else None)
    return out.reshape(shape) if shape is not None else out


def _plan(lay: RowLayout, rows: Rows) -> _Plan:
    n = lay.n_rows
    if isinstance(rows, slice):
        start, stop, step = rows.indices(n)
        if step == 1 and lay.order is None:  # a contiguous block: no sorting needed
            stored = np.arange(start, max(start, stop), dtype=np.int64)
            block = [(start, stop)] if stop > start else []
            return _Plan(lay, (len(stored),), stored, None, block, _byte_ranges(lay, block))
        ids = np.arange(start, stop, step, dtype=np.int64)
    else:
        arr = np.asarray(rows)
        if arr.dtype == np.bool_:
            if arr.shape != (n,):
                raise IndexError(f"boolean row mask of shape {arr.shape} for {n} rows")
            arr = np.flatnonzero(arr)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise IndexError(f"row ids must be integers, not {arr.dtype}")
        ids = arr.astype(np.int64, copy=True)
        if ids.size and (ids.min() < -n or ids.max() >= n):
            raise IndexError(f"row id out of range for a tensor of {n} rows")
        ids[ids < 0] += n
    shape = ids.shape
    flat = ids.ravel()
    if lay.order is not None:
        flat = lay.order[flat]
    if flat.size and (flat.size == 1 or bool(np.all(flat[1:] > flat[:-1]))):
        stored, inverse = flat, None
    else:
        stored, inv = np.unique(flat, return_inverse=True)
        inverse = inv.ravel()
    runs: list[tuple[int, int]] = []
    if stored.size:
        breaks = np.flatnonzero(np.diff(stored) != 1) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [stored.size]))
        runs = [(int(stored[a]), int(stored[b - 1]) + 1) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    return _Plan(lay, shape, stored, inverse, runs, _byte_ranges(lay, runs))


def _byte_ranges(lay: RowLayout, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    rb = lay.row_bytes
    return [(lay.offset + a * rb, lay.offset + b * rb) for a, b in runs] if rb else []

