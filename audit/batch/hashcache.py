"""File hashes memoised by (path, size, mtime_ns), in memory and on disk, and the files a model's audit reads."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from audit.reporting.writer import write_atomic

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".ot",
                   ".tflite", ".npz")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def model_files(path: Path) -> list[Path]:
    """The files whose content can change an audit of the model at `path` (a file or a folder).

    A folder: the weight files the checkpoint reader uses (index shards, else *.safetensors, else *.gguf,
    else pickles) plus every other top-level, non-hidden file (config, tokenizer, ...). A file: itself,
    the sibling config.json a .safetensors or pickle file is read with, and the sibling card, licence and
    template files its declarations are read from (claims vs evidence).
    """
    if path.is_file():
        from audit.checkpoint.declarations import SIBLING_FILES

        cfg = path.parent / "config.json"
        siblings = [path.parent / name for name in SIBLING_FILES]
        return [path] + ([cfg] if path.suffix != ".gguf" and cfg.is_file() and cfg != path else []) + \
            [f for f in siblings if f != path and f != cfg and f.is_file()]
    entries = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    others = [p for p in entries if p.suffix.lower() not in WEIGHT_SUFFIXES]
    return sorted(set(_weights(path, entries)) | set(others))


def _weights(folder: Path, entries: list[Path]) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        from audit.checkpoint.build import local_shards
        from audit.errors import InputError

        try:
            return local_shards(folder, index)  # confined to the folder, regular files only
        except InputError:
            pass  # the audit reports the broken index; hash every weight file meanwhile
    for suffix in (".safetensors", ".gguf"):
        found = [p for p in entries if p.suffix == suffix]
        if found:
            return found
    return [p for p in entries if p.suffix.lower() in WEIGHT_SUFFIXES]


class FileHasher:
    """SHA-256 of files, memoised by (absolute path, size, mtime_ns) in memory and under `memo_dir`.

    A memo entry that does not parse, or was written for another size or mtime, is ignored and rewritten.
    """

    def __init__(self, memo_dir: Path | None) -> None:
        self.memo_dir = Path(memo_dir) if memo_dir is not None else None
        self._memory: dict[tuple[str, int, int], str] = {}

    def _entry(self, abspath: str) -> Path | None:
        if self.memo_dir is None:
            return None
        h = hashlib.sha256(abspath.encode("utf-8", "surrogateescape")).hexdigest()
        return self.memo_dir / h[:2] / f"{h}.json"

    def known(self, path: Path) -> str | None:
        """The memoised digest of `path` as it is now on disk, or None (never reads the file itself)."""
        abspath = os.path.abspath(path)
        st = os.stat(abspath)
        key = (abspath, st.st_size, st.st_mtime_ns)
        if key in self._memory:
            return self._memory[key]
        entry = self._entry(abspath)
        if entry is None or not entry.is_file():
            return None
        try:
            data = json.loads(entry.read_text(encoding="utf-8"))
            ok = (data["path"], data["size"], data["mtime_ns"]) == key and _HEX64.fullmatch(data["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not ok:
            return None
        self._memory[key] = data["sha256"]
        return data["sha256"]

    def sha256(self, path: Path) -> str:
        """The digest of `path`: memoised, or read once and remembered (here, on disk and for the record)."""
        from audit.checkpoint import hashing

        digest = self.known(path)
        if digest is None:
            abspath = os.path.abspath(path)
            before = os.stat(abspath)
            digest = hashing.sha256_file(Path(abspath))
            after = os.stat(abspath)
            if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns):  # unchanged meanwhile
                key = (abspath, after.st_size, after.st_mtime_ns)
                self._memory[key] = digest
                entry = self._entry(abspath)
                if entry is not None:
                    text = json.dumps({"path": abspath, "size": key[1], "mtime_ns": key[2], "sha256": digest})
                    try:
                        write_atomic(entry, text + "\n")
                    except OSError:
                        pass  # a read-only cache still works, it just hashes again next time
        hashing.remember(Path(path), digest)
        return digest
