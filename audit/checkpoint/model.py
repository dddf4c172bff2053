"""The Checkpoint object: files, config, tokenizer data, and a lazy one-tensor-at-a-time reader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


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


@dataclass
class Checkpoint:
    """A model checkpoint opened for reading. Tensors are read one at a time, as float32."""

    path: Path
    format: str  # hf-folder | safetensors | gguf | pickle
    files: list[Path]
    config: dict[str, Any]
    tensors: dict[str, TensorInfo]
    tokenizer: TokenizerData | None
    _reader: Callable[[TensorInfo], np.ndarray]
    name: str = ""
    _row_reader: Callable[[TensorInfo, np.ndarray | slice], np.ndarray] | None = None

    def read(self, name: str) -> np.ndarray:
        """Return tensor `name` as a float32 array in (out, in) orientation."""
        return self._reader(self.tensors[name])

    def read_rows(self, name: str, rows: np.ndarray | slice) -> np.ndarray:
        """Return selected rows (ids or a slice) of a tensor without materialising the rest where possible."""
        info = self.tensors[name]
        if self._row_reader is not None:
            return self._row_reader(info, rows)
        return self._reader(info)[rows]

    @property
    def storage_dtypes(self) -> list[str]:
        return sorted({t.dtype for t in self.tensors.values()})
