"""Checkpoints over byte sources: safetensors files and GGUF files, local or remote (shared by locate and hub)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audit.checkpoint.gguf_file import GGUFFile
from audit.checkpoint.model import Checkpoint, RowLayout, TensorInfo, TokenizerData, read_layout
from audit.checkpoint.safetensors_file import SafetensorsFile
from audit.checkpoint.source import ByteSource, IOCounter
from audit.errors import InputError
from audit.safeio import display_path, load_json, load_json_object, regular_file


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
    """A small JSON file that must hold an object (config.json, an index): InputError when it does not (also for
    a FIFO or directory in its place, more than 64 MiB, nesting deeper than 64, numbers that do not fit)."""
    return load_json_object(path)


INDEX_NAME = "model.safetensors.index.json"
MAX_SHARDS = 10_000  # the largest published checkpoints have a few hundred shards


def index_shards(data: object, where: str) -> list[str]:
    """The shard file names of a parsed `model.safetensors.index.json`, validated: `weight_map` a non-empty
    map of tensor names to relative file names inside the checkpoint folder (no absolute path, no `..`, no
    backslash or control character), at most MAX_SHARDS distinct files. InputError naming the index otherwise."""
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputError(f"{where}: no weight_map (a map of tensor names to shard files)")
    shards: set[str] = set()
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise InputError(f"{where}: weight_map entry for {str(name)[:100]!r} is {str(shard)[:40]!r}, "
                             "not a shard file name")
        shards.add(shard)
        if len(shards) > MAX_SHARDS:
            raise InputError(f"{where}: weight_map names more than {MAX_SHARDS:,} shard files")
    for shard in shards:
        parts = shard.split("/")
        if (shard.startswith("/") or "\\" in shard or ".." in parts or "" in parts or not shard.isprintable()
                or (len(shard) > 1 and shard[1] == ":")):
            raise InputError(f"{where}: shard {shard[:200]!r} is not a file name inside the checkpoint folder")
    return sorted(shards)


def local_shards(folder: Path, index: Path) -> list[Path]:
    """The shard files of a local index, each a regular file inside `folder` once symlinks are resolved."""
    names = index_shards(load_json(index, what="shard index"), display_path(index))
    root = folder.resolve()
    out: list[Path] = []
    missing: list[str] = []
    for shard_name in names:
        path = folder / shard_name
        if not path.exists() and not path.is_symlink():
            missing.append(shard_name)
            continue
        if not path.resolve().is_relative_to(root):
            raise InputError(f"{display_path(index)}: shard {shard_name!r} resolves outside the checkpoint folder")
        regular_file(path, "shard file")
        out.append(path)
    if missing:
        raise InputError(f"{display_path(index)}: shard(s) missing: {', '.join(missing[:5])}"
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return out
