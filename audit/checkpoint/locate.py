"""Resolve a MODEL argument (folder, file, hub id in the local cache) to an opened Checkpoint."""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from audit.checkpoint import safetensors_file
from audit.checkpoint.gguf_file import GGUFFile
from audit.checkpoint.model import Checkpoint, TensorInfo, TokenizerData
from audit.checkpoint.onnx_file import ONNXFile
from audit.checkpoint.tokenizer_files import load_tokenizer
from audit.errors import InputError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def open_checkpoint(model: str | os.PathLike, allow_pickle: bool = False, name: str | None = None) -> Checkpoint:
    """Open a checkpoint for lazy reading. Raises InputError for anything unusable."""
    path = _resolve(str(model))
    if path.is_dir():
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
    if not ckpt.tensors:
        raise InputError(f"{path}: the checkpoint holds no tensors")
    return ckpt


def _default_name(path: Path) -> str:
    if path.is_dir() and path.parent.name == "snapshots":  # HF cache snapshot: models--org--name/snapshots/rev
        return path.parent.parent.name.removeprefix("models--").replace("--", "/")
    return path.stem if path.is_file() else path.name


def _resolve(model: str) -> Path:
    path = Path(model).expanduser()
    if path.exists():
        return path.resolve()
    if model.count("/") == 1 and not model.startswith((".", "/")):
        cached = _hub_cache_snapshot(model)
        if cached is not None:
            return cached
        raise InputError(f"{model}: no such file or folder, and not found in the local Hugging Face cache (no download is attempted)")
    raise InputError(f"{model}: no such file or folder")


def _hub_cache_snapshot(repo_id: str) -> Path | None:
    """Find a hub id in the local HF cache (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)."""
    roots = [os.environ.get("HF_HUB_CACHE"), os.environ.get("HF_HOME") and str(Path(os.environ["HF_HOME"]) / "hub"),
             str(Path.home() / ".cache" / "huggingface" / "hub")]
    for root in filter(None, roots):
        repo = Path(root) / ("models--" + repo_id.replace("/", "--"))
        snaps = repo / "snapshots"
        if not snaps.is_dir():
            continue
        ref = repo / "refs" / "main"
        if ref.is_file() and (snaps / ref.read_text().strip()).is_dir():
            return (snaps / ref.read_text().strip()).resolve()
        found = sorted(snaps.iterdir(), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1].resolve()
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _sibling_config(path: Path) -> dict[str, Any]:
    cfg = path.parent / "config.json"
    return _read_json(cfg) if cfg.is_file() else {}


def _open_folder(folder: Path, allow_pickle: bool) -> Checkpoint:
    config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    tokenizer = load_tokenizer(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise InputError(f"{index}: no weight_map")
        shards = sorted({folder / f for f in weight_map.values()})
        missing = [s.name for s in shards if not s.is_file()]
        if missing:
            raise InputError(f"{index}: shard(s) missing: {', '.join(missing)}")
        return _open_safetensors(shards, folder, config, tokenizer, "hf-folder")
    st = sorted(folder.glob("*.safetensors"))
    if st:
        return _open_safetensors(st, folder, config, tokenizer, "hf-folder")
    ggufs = sorted(folder.glob("*.gguf"))
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
    tensors: dict[str, TensorInfo] = {}
    headers: dict[str, tuple[Path, dict[str, Any]]] = {}
    for f in files:
        for tname, info in safetensors_file.read_header(f).items():
            tensors[tname] = TensorInfo(tname, tuple(info["shape"]), info["dtype"], f)
            headers[tname] = (f, info)
    cache: dict[Path, int] = {}

    def reader(info: TensorInfo, rows: np.ndarray | slice | None = None) -> np.ndarray:
        f, h = headers[info.name]
        return safetensors_file.read_tensor(f, cache, h, rows)

    return Checkpoint(path, fmt, list(files), dict(config), tensors, tokenizer, reader, _row_reader=reader)


def _open_gguf(path: Path) -> Checkpoint:
    g = GGUFFile(path)
    return Checkpoint(path, "gguf", [path], g.config(), g.tensor_infos(), g.tokenizer(), g.read, _row_reader=g.read)


def _open_onnx(path: Path, folder: Path | None) -> Checkpoint:
    """An .onnx file; config and tokenizer come from its folder (or the HF folder above an `onnx/` one)."""
    o = ONNXFile(path)
    home = folder or (path.parent.parent if path.parent.name == "onnx" and (path.parent.parent / "config.json").is_file()
                      else path.parent)
    config = o.config()
    if (home / "config.json").is_file():
        config.update(_read_json(home / "config.json"))
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
        try:
            loaded = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:
            raise InputError(f"{f}: cannot load pickle safely ({type(exc).__name__}: {str(exc)[:200]})") from None
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
