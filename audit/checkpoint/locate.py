"""Resolve a MODEL argument (folder, file, Hub reference, hub id in the local cache) to an opened Checkpoint."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from audit.checkpoint.adapter import (
    ADAPTER_CONFIG,
    ADAPTER_FORMAT,
    Adapter,
    adapter_weights_file,
    is_adapter_folder,
    read_adapter,
    read_adapter_config,
)
from audit.checkpoint.build import gguf_checkpoint, local_shards, read_json_object, safetensors_checkpoint
from audit.checkpoint.model import Checkpoint, TensorInfo, TokenizerData
from audit.checkpoint.onnx_file import ONNXFile
from audit.checkpoint.source import IOCounter, LocalFileSource
from audit.checkpoint.tokenizer_files import load_tokenizer
from audit.errors import InputError
from audit.safeio import display_path, regular_file

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def open_checkpoint(model: str | os.PathLike, allow_pickle: bool = False, name: str | None = None) -> Checkpoint:
    """Open a checkpoint for lazy reading. Raises InputError for anything unusable.

    `hf:ORG/NAME[/FILE.gguf][@REV]` is read from the Hub by range requests; a plain `ORG/NAME` that is not a
    local path is taken from the local HF cache when it is there (no network), else from the Hub."""
    from audit.checkpoint import hub

    text = str(model)
    ref = hub.parse_hub_ref(text)
    plain = False
    if ref is None:
        path = _resolve_local(text)
        if path is None:
            if not hub.looks_like_repo_id(text):
                raise InputError(f"{text}: no such file or folder")
            ref, plain = hub.HubRef(text), True
    if ref is not None:
        try:
            ckpt = hub.open_hub(ref, name)
        except InputError as exc:
            if not plain:
                raise
            raise InputError(f"{text}: no such file or folder, not in the local Hugging Face cache, and not read "
                             f"from the Hub: {str(exc).removeprefix(str(ref) + ': ')}") from None
        if not ckpt.tensors:
            raise InputError(f"{ref}: the checkpoint holds no tensors")
        return ckpt
    assert path is not None
    if path.is_dir() and is_adapter_folder(path):
        ckpt = _open_adapter(path, allow_pickle)
    elif path.is_dir():
        ckpt = _open_folder(path, allow_pickle)
    elif path.suffix == ".safetensors":
        ckpt = _open_safetensors([path], path, {}, None, "safetensors")
        ckpt.config.update(_sibling_config(path))
    elif path.suffix == ".gguf":
        ckpt = _open_gguf(path)
    elif path.suffix == ".onnx":
        ckpt = _open_onnx(path, None)
    elif path.suffix in PICKLE_SUFFIXES:
        ckpt = _open_pickle([path], path, _sibling_config(path), None, allow_pickle)
    else:
        raise InputError(f"{path}: not a checkpoint (expected a folder, .safetensors, .gguf, .onnx, or a pickle with --allow-pickle)")
    ckpt.name = name or _default_name(path)
    if ckpt.folder is None:
        ckpt.folder = path if path.is_dir() else path.parent
    if not ckpt.tensors:
        raise InputError(f"{path}: the checkpoint holds no tensors")
    return ckpt


def _default_name(path: Path) -> str:
    if path.is_dir() and path.parent.name == "snapshots":  # HF cache snapshot: models--org--name/snapshots/rev
        return path.parent.parent.name.removeprefix("models--").replace("--", "/")
    return path.stem if path.is_file() else path.name


def _resolve_local(model: str) -> Path | None:
    """A local path, or a hub id whose weights are in the local HF cache; None when neither."""
    path = Path(model).expanduser()
    if path.exists():
        return path.resolve()
    if model.count("/") == 1 and not model.startswith((".", "/")):
        return _hub_cache_snapshot(model)
    return None


def _resolve(model: str) -> Path:
    """A model that must be on this machine (a path, or a hub id in the local HF cache)."""
    path = _resolve_local(model)
    if path is not None:
        return path
    if model.startswith("hf:") or (model.count("/") == 1 and not model.startswith((".", "/"))):
        raise InputError(f"{model}: not a local file or folder, and not in the local Hugging Face cache "
                         "(this needs the model's files: download them first)")
    raise InputError(f"{model}: no such file or folder")


def _hub_cache_snapshot(repo_id: str) -> Path | None:
    """Find a hub id whose weights are in the local HF cache (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub).

    A snapshot holding only the small files provaudit itself downloaded while reading the weights from the Hub
    (card, config, tokenizer) does not count: the weights are not there."""
    roots = [os.environ.get("HF_HUB_CACHE"), os.environ.get("HF_HOME") and str(Path(os.environ["HF_HOME"]) / "hub"),
             str(Path.home() / ".cache" / "huggingface" / "hub")]
    for root in filter(None, roots):
        repo = Path(root) / ("models--" + repo_id.replace("/", "--"))
        snaps = repo / "snapshots"
        if not snaps.is_dir():
            continue
        ref = repo / "refs" / "main"
        if ref.is_file() and _has_weights(snaps / ref.read_text().strip()):
            return (snaps / ref.read_text().strip()).resolve()
        found = sorted((p for p in snaps.iterdir() if _has_weights(p)), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1].resolve()
    return None


def _has_weights(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            return bool(local_shards(folder, index))
        except InputError:
            return False
    return any(p.is_file() and (p.suffix in (".safetensors", ".gguf", ".onnx", *PICKLE_SUFFIXES))
               for p in folder.iterdir()) or _folder_onnx(folder) is not None


def _sibling_config(path: Path) -> dict[str, Any]:
    cfg = path.parent / "config.json"
    return read_json_object(cfg) if cfg.exists() else {}  # a FIFO or directory there is refused


def _open_folder(folder: Path, allow_pickle: bool) -> Checkpoint:
    config = read_json_object(folder / "config.json") if (folder / "config.json").exists() else {}
    tokenizer = load_tokenizer(folder)
    index = folder / "model.safetensors.index.json"
    if index.exists():  # a FIFO or directory there is refused, not skipped
        return _open_safetensors(local_shards(folder, index), folder, config, tokenizer, "hf-folder")
    st = sorted(p for p in folder.glob("*.safetensors") if not p.is_dir() or regular_file(p, "weight file"))
    if st:
        return _open_safetensors(st, folder, config, tokenizer, "hf-folder")
    ggufs = sorted(p for p in folder.glob("*.gguf") if not p.is_dir() or regular_file(p, "weight file"))
    if len(ggufs) == 1:
        ckpt = _open_gguf(ggufs[0])
        ckpt.path = folder
        return ckpt
    onnx_model = _folder_onnx(folder)
    if onnx_model is not None:
        ckpt = _open_onnx(onnx_model, folder)
        ckpt.path = folder
        return ckpt
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if pickles:
        return _open_pickle(pickles, folder, config, tokenizer, allow_pickle)
    raise InputError(f"{folder}: no weights found (no .safetensors, single .gguf, model.onnx, or pickle files)")


def open_adapter(model: str | os.PathLike, allow_pickle: bool = False, name: str | None = None) -> Adapter:
    """Open and validate a PEFT adapter folder (LoRA / DoRA); InputError when it is not one or is unusable."""
    ckpt = open_checkpoint(model, allow_pickle=allow_pickle, name=name)
    if ckpt.format != ADAPTER_FORMAT:
        raise InputError(f"{model}: not a PEFT adapter folder (no {ADAPTER_CONFIG})")
    return read_adapter(ckpt)


def _open_adapter(folder: Path, allow_pickle: bool) -> Checkpoint:
    """A PEFT adapter folder: its weights file opened as a Checkpoint of format "adapter" whose config is
    adapter_config.json (validate it with audit.checkpoint.adapter.read_adapter)."""
    config = read_adapter_config(folder)
    weights = adapter_weights_file(folder)
    if weights.suffix == ".safetensors":
        ckpt = _open_safetensors([weights], folder, config, None, ADAPTER_FORMAT)
    else:
        ckpt = _open_pickle([weights], folder, config, None, allow_pickle)
        ckpt.format = ADAPTER_FORMAT
    return ckpt


def _folder_onnx(folder: Path) -> Path | None:
    """The ONNX export an HF / sentence-transformers folder holds: model.onnx, onnx/model.onnx, or a lone .onnx."""
    for candidate in (folder / "model.onnx", folder / "onnx" / "model.onnx"):
        if candidate.is_file():
            return candidate
    for sub in (folder, folder / "onnx"):
        found = sorted(sub.glob("*.onnx")) if sub.is_dir() else []
        if len(found) == 1 and found[0].is_file():
            return found[0]
    return None


def _open_safetensors(files: list[Path], path: Path, config: dict[str, Any], tokenizer: TokenizerData | None,
                      fmt: str) -> Checkpoint:
    counter = IOCounter(source="local")
    sources = [LocalFileSource(f, counter) for f in files]
    counter.bytes_total = sum(s.size for s in sources)
    return safetensors_checkpoint(sources, files, path, config, tokenizer, fmt, counter)


def _open_gguf(path: Path) -> Checkpoint:
    counter = IOCounter(source="local")
    src = LocalFileSource(path, counter)
    counter.bytes_total = src.size
    return gguf_checkpoint(src, path, counter)


def _open_onnx(path: Path, folder: Path | None) -> Checkpoint:
    """An .onnx file; config and tokenizer come from its folder (or the HF folder above an `onnx/` one)."""
    o = ONNXFile(path)
    home = folder or (path.parent.parent if path.parent.name == "onnx" and (path.parent.parent / "config.json").is_file()
                      else path.parent)
    config = o.config()
    if (home / "config.json").exists():
        config.update(read_json_object(home / "config.json"))
    tokenizer = load_tokenizer(home)
    files = [path, *o.external_files]
    return Checkpoint(path, "onnx", files, config, o.tensor_infos(), tokenizer, o.read, _row_reader=o.read)


def _open_pickle(files: list[Path], path: Path, config: dict[str, Any], tokenizer: TokenizerData | None,
                 allow_pickle: bool) -> Checkpoint:
    if not allow_pickle:
        raise InputError(
            f"{files[0]}: pickled weights are not loaded without --allow-pickle "
            "(even then only with torch.load(weights_only=True))"
        )
    import torch

    state: dict[str, tuple[torch.Tensor, Path]] = {}
    for f in files:
        regular_file(f, "pickle file")
        try:
            loaded = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:
            reason = " ".join(str(exc).split())[:200]  # torch's messages run over several lines
            raise InputError(f"{display_path(f)}: cannot load pickle safely ({type(exc).__name__}: {reason})") from None
        if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, dict):
            raise InputError(f"{f}: the pickle does not hold a state dict")
        for k, v in loaded.items():
            if isinstance(v, torch.Tensor):
                state[k] = (v, f)
    tensors = {k: TensorInfo(k, tuple(v.shape), str(v.dtype).removeprefix("torch."), f) for k, (v, f) in state.items()}

    def reader(info: TensorInfo) -> np.ndarray:
        return state[info.name][0].detach().to(torch.float32).numpy()

    return Checkpoint(path, "pickle", list(files), dict(config), tensors, tokenizer, partial(reader))
