"""Checkpoints over byte sources: safetensors files and GGUF files, local or remote (shared by locate and hub)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audit.checkpoint.gguf_file import GGUFFile
from audit.checkpoint.model import Checkpoint, RowLayout, TensorInfo, TokenizerData, read_layout
from audit.checkpoint.safetensors_file import SafetensorsFile
from audit.checkpoint.source import ByteSource, IOCounter
from audit.errors import InputError


def safetensors_checkpoint(sources: Sequence[ByteSource], files: list[Path], path: Path, config: dict[str, Any],
                           tokenizer: TokenizerData | None, fmt: str, counter: IOCounter) -> Checkpoint:
    """A checkpoint over safetensors files read through byte sources (local or remote), `files` naming them."""
    tensors: dict[str, TensorInfo] = {}
    owner: dict[str, SafetensorsFile] = {}
    for src, f in zip(sources, files, strict=True):
        st = SafetensorsFile(src)
        for tname, info in st.header.items():
            tensors[tname] = TensorInfo(tname, tuple(info["shape"]), info["dtype"], f)
            owner[tname] = st

    def layout(info: TensorInfo) -> RowLayout:
        return owner[info.name].layout(info.name)

    def reader(info: TensorInfo) -> np.ndarray:
        return read_layout(layout(info), slice(None), info.shape)

    return Checkpoint(path, fmt, list(files), dict(config), tensors, tokenizer, reader, _layout=layout, io=counter)


def gguf_checkpoint(src: ByteSource, path: Path, counter: IOCounter) -> Checkpoint:
    """A checkpoint over one GGUF file read through a byte source; `path` names it."""
    g = GGUFFile(src)
    infos = {name: TensorInfo(name, t.shape, t.dtype, path) for name, t in g.tensor_infos().items()}

    def reader(info: TensorInfo) -> np.ndarray:
        return g.read(info)

    return Checkpoint(path, "gguf", [path], g.config(), infos, g.tokenizer(), reader, _layout=g.layout, io=counter)


def read_json_object(path: Path) -> dict[str, Any]:
    """A small JSON file that must hold an object (config.json, an index): InputError when it does not."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data
