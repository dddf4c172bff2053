"""Reading untrusted files within bounds: regular files only, capped sizes, JSON and YAML with depth, number and
alias limits, and paths printed on one line.

Every file provaudit reads may come from the people whose claims it checks. These helpers turn each way a file
can be hostile (a FIFO or device where a file belongs, a 10^400 or 5,000-digit number, 100,000 levels of
nesting, a YAML alias bomb, bytes that are not UTF-8) into an `InputError` naming the file, before anything is
allocated or looped over. They sit below every layer (they import only `audit.errors`).
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from audit.errors import InputError

MiB = 1 << 20
#: Default caps: a small JSON or YAML file (config, index, manifest, suite, record) and its nesting.
MAX_SMALL_FILE = 64 * MiB
MAX_DEPTH = 64
MAX_NUMBER_DIGITS = 400
MAX_YAML_ALIASES = 1000
MAX_YAML_NODES = 2_000_000


def display_path(path: object) -> str:
    """A path as one printable line: control characters (newlines, escapes) shown as \\n, \\x1b, ..."""
    text = str(path)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def regular_file(path: Path, what: str = "file") -> os.stat_result:
    """The stat of `path` when it is a regular file (following symlinks); InputError for a missing path, a
    directory, a FIFO, a socket or a device (opening those could hang or never end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{display_path(path)}: no such {what}") from None
    except OSError as exc:
        raise InputError(f"{display_path(path)}: cannot read {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{display_path(path)}: is a directory, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{display_path(path)}: not a regular file (a FIFO, socket or device); refusing to read it")
    return st


def is_regular_file(path: Path) -> bool:
    """True for an existing regular file (no FIFO, socket, device or directory); never raises."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def read_bytes(path: Path, max_bytes: int = MAX_SMALL_FILE, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `max_bytes` (checked before reading)."""
    st = regular_file(path, what)
    if st.st_size > max_bytes:
        raise InputError(f"{display_path(path)}: {st.st_size:,} bytes, more than the {max_bytes:,} a {what} may have")
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{display_path(path)}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > max_bytes:  # it grew while being read
        raise InputError(f"{display_path(path)}: more than the {max_bytes:,} bytes a {what} may have")
    return data


def read_text(path: Path, max_bytes: int = MAX_SMALL_FILE, what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most `max_bytes` (a leading BOM is dropped)."""
    return decode_utf8(read_bytes(path, max_bytes, what), path)


def decode_utf8(data: bytes, where: object) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{display_path(where)}: not UTF-8 text (byte {exc.start})") from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename, so a reader sees the
    old file or the new one, never half of one (OSError when it cannot be written; the temporary is removed)."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------- JSON


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} does not fit in a float")
    return value


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def _parse_constant(text: str) -> float:
    raise ValueError(f"{text} is not a JSON number")


def loads_json(text: str | bytes, where: object, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON from an untrusted source: NaN/Infinity, numbers that do not fit a float or have more than
    400 digits, and nesting deeper than `max_depth` are input errors naming `where`."""
    if isinstance(text, bytes):
        text = decode_utf8(text, where)
    try:
        data = json.loads(text, parse_float=_parse_float, parse_int=_parse_int, parse_constant=_parse_constant)
    except RecursionError:
        raise InputError(f"{display_path(where)}: JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{display_path(where)}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno})") from None
    except ValueError as exc:
        raise InputError(f"{display_path(where)}: unusable JSON number: {exc}") from None
    depth = nesting_depth(data, max_depth)
    if depth > max_depth:
        raise InputError(f"{display_path(where)}: JSON nested more than {max_depth} levels deep")
    return data


def load_json(path: Path, max_bytes: int = MAX_SMALL_FILE, what: str = "JSON file",
              max_depth: int = MAX_DEPTH) -> Any:
    """A bounded JSON file (regular file, size cap, depth and number limits)."""
    return loads_json(read_bytes(path, max_bytes, what), path, max_depth)


def load_json_object(path: Path, max_bytes: int = MAX_SMALL_FILE, what: str = "JSON file") -> dict[str, Any]:
    """A bounded JSON file that must hold an object."""
    data = load_json(path, max_bytes, what)
    if not isinstance(data, dict):
        raise InputError(f"{display_path(path)}: expected a JSON object, found {type(data).__name__}")
    return data


def nesting_depth(data: Any, limit: int = MAX_DEPTH) -> int:
    """Depth of nested lists and dicts (iterative, level by level: ~10x faster than a node stack on a 16 MB
    record of millions of small objects; stops counting past `limit` + 1)."""
    depth, frontier = 0, [data] if isinstance(data, (dict, list)) else []
    while frontier:
        depth += 1
        if depth > limit:
            return depth
        below: list[Any] = []
        for node in frontier:
            below.extend([c for c in (node.values() if isinstance(node, dict) else node) if isinstance(c, (dict, list))])
        frontier = below
    return depth


# ---------------------------------------------------------------------------------------------- YAML


def loads_yaml(text: str, where: object, max_depth: int = MAX_DEPTH, max_aliases: int = MAX_YAML_ALIASES) -> Any:
    """Parse YAML with the safe loader, refusing more than `max_aliases` aliases (alias bombs), nesting deeper
    than `max_depth`, and floats that overflow."""
    import yaml

    class _Bounded(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: ANN401 - yaml's own signature
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > max_aliases:
                    raise yaml.YAMLError(f"more than {max_aliases} aliases")
            depth = getattr(self, "_depth", 0) + 1
            if depth > max_depth:
                raise yaml.YAMLError(f"nested more than {max_depth} levels deep")
            self._depth = depth
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth = depth - 1

    try:
        data = yaml.load(text, Loader=_Bounded)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise InputError(f"{display_path(where)}: YAML nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{display_path(where)}: not usable YAML ({problem}{at})") from None
    except ValueError as exc:  # e.g. an integer with too many digits
        raise InputError(f"{display_path(where)}: unusable YAML value: {exc}") from None
    if expanded_size(data) > MAX_YAML_NODES:
        raise InputError(f"{display_path(where)}: YAML expands to more than {MAX_YAML_NODES:,} values "
                         "(aliases repeating aliases)")
    _check_numbers(data, where)
    return data


def expanded_size(data: Any) -> int:
    """Values in `data` counted as often as aliases repeat them (memoised over shared nodes; iterative)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, done = stack.pop()
        if not isinstance(node, (dict, list)) or (not done and id(node) in sizes):
            continue
        children = [c for c in (node.values() if isinstance(node, dict) else node) if isinstance(c, (dict, list))]
        if done:
            leaves = len(node) - len(children)
            sizes[id(node)] = 1 + leaves + sum(sizes.get(id(c), 0) for c in children)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes.get(id(data), 1)


def load_yaml(path: Path, max_bytes: int = MAX_SMALL_FILE, what: str = "YAML file", max_depth: int = MAX_DEPTH) -> Any:
    """A bounded YAML file (regular file, size cap, safe loader, alias and depth limits)."""
    return loads_yaml(read_text(path, max_bytes, what), path, max_depth)


E = TypeVar("E")
R = TypeVar("R")


def load_checked_yaml(path: Path, what: str, max_bytes: int,
                      validate: Callable[[Any], tuple[list[str], Sequence[E]]], build: Callable[[Sequence[E]], R],
                      cache: MutableMapping[tuple[str, int, int], R]) -> R:
    """A bundled or user data file (catalog, licences): read with libyaml's safe loader (fast; it caps nesting),
    refused past `max_bytes` or MAX_YAML_NODES values after alias expansion, checked by `validate` (problems as
    'where: what' lines, entries), built once per (path, size, mtime) into `cache`. InputError (one line,
    naming `what`) for a missing, unreadable, oversized or invalid file."""
    import yaml

    try:
        if not path.is_file():
            raise InputError(f"{path}: {what} not found")
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key in cache:
            return cache[key]
        if st.st_size > max_bytes:
            raise InputError(f"{path}: {what} larger than {max_bytes >> 20} MiB")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
        if expanded_size(data) > MAX_YAML_NODES:  # libyaml caps nesting; aliases are capped here
            raise InputError(f"{path}: {what} expands to more than {MAX_YAML_NODES:,} values (an alias bomb)")
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: unreadable {what} ({type(exc).__name__}: {first})") from None
    problems, entries = validate(data)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise InputError(f"{path}: {problems[0]}{more}")
    value = cache[key] = build(entries)
    return value


def _check_numbers(data: Any, where: object) -> None:
    stack, seen = [data], set()
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list)):
            if id(node) in seen:
                continue
            seen.add(id(node))
        if isinstance(node, float) and not math.isfinite(node):
            raise InputError(f"{display_path(where)}: a number that does not fit in a float ({node})")
        if isinstance(node, dict):
            stack.extend(node.values())
            stack.extend(k for k in node if isinstance(k, float))
        elif isinstance(node, list):
            stack.extend(node)
