"""Write records safely: atomic file replacement and strict, portable JSON."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from audit.errors import InputError
from audit.safeio import display_path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class OutputError(OSError, InputError):
    """An output path provaudit cannot write (a folder, a FIFO, no permission, disk full): exit 2 with one line,
    and still an OSError for callers that retry or skip writes."""


def write_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` so that readers see the old file or the whole new one, never a part.

    The text goes to a temporary file in the same folder, is fsynced, then renamed over `path`.
    Parent folders are created. On any error the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise OutputError(f"{display_path(path)}: is a directory, expected a file to write")
    if path.exists() and not path.is_file():
        raise OutputError(f"{display_path(path)}: not a regular file (a FIFO, socket or device); refusing to write it")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{path.name[:64]}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{display_path(path)}: cannot write here ({exc.strerror or type(exc).__name__})") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the result the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):  # disk full, permissions: the user's
            raise OutputError(f"{display_path(path)}: cannot write ({exc.strerror or type(exc).__name__})") from None
        raise
    _fsync_dir(parent)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (best effort: not every platform can open a folder)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _is_numpy(obj: Any) -> bool:
    return type(obj).__module__.split(".", 1)[0] == "numpy" and hasattr(obj, "tolist")


def _clean(obj: Any) -> Any:
    """Recursively replace non-finite floats with None and numpy scalars/arrays with Python values."""
    if isinstance(obj, float):  # includes numpy.float64
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {(_clean(k) if _is_numpy(k) else k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if _is_numpy(obj):
        return _clean(obj.tolist())
    return obj


def _default(obj: Any) -> Any:
    """json `default` hook: numpy values, paths and sets; anything else is an error."""
    if _is_numpy(obj):
        return _clean(obj.tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return _clean(sorted(obj, key=repr))
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def dumps_record(record: dict) -> str:
    """Serialise a record: UTF-8 text, indent 2, inf/nan as null, numpy values as plain numbers."""
    return json.dumps(_clean(record), ensure_ascii=False, indent=2, allow_nan=False, default=_default) + "\n"


def write_json(path_or_dash: str | os.PathLike[str], record: dict) -> None:
    """Write `record` as JSON to a file (atomically) or, for "-", to stdout.

    The record is fully serialised before anything is written, so a serialisation error
    leaves an existing file intact.
    """
    text = dumps_record(record)
    if str(path_or_dash) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    write_atomic(Path(path_or_dash), text)
