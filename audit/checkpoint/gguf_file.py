"""Read GGUF files over any byte source: the header alone for metadata, tokenizer and tensor infos; rows by range.

gguf's own GGUFReader maps the whole file and builds numpy views of every metadata item (tens of seconds on a
262k-token vocabulary), so the header is parsed here from the documented layout, with gguf's constants
(GGUFValueType, GGMLQuantizationType, GGML_QUANT_SIZES): magic, version, tensor and KV counts, the KV pairs,
the tensor infos, then the aligned data section. Every count and length is checked against the bytes left in
the file before anything is allocated. Tensor data is decoded by `gguf.quants.dequantize`; quantization blocks
run along rows, so the rows of any tensor are byte ranges.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from audit.checkpoint.model import RowLayout, TensorInfo, TokenizerData, read_layout
from audit.checkpoint.source import ByteSource, LocalFileSource
from audit.errors import InputError
from audit.safeio import display_path

# GGUF metadata key suffix -> HF config key
_CONFIG_KEYS = {
    "embedding_length": "hidden_size",
    "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "context_length": "max_position_embeddings",
    "rope.freq_base": "rope_theta",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "attention.layer_norm_epsilon": "layer_norm_eps",
    "attention.key_length": "head_dim",
    "vocab_size": "vocab_size",
    "expert_count": "num_local_experts",
}
# Stored types read by a plain cast (F64 and the integer types have no gguf.quants dequantizer).
_PLAIN_TYPES = {"F32": "f4", "F16": "f2", "F64": "f8", "I8": "i1", "I16": "i2", "I32": "i4", "I64": "i8"}
# llama.cpp's converter interleaves q/k rows for rotary embeddings in these architectures; undo it.
_ROPE_PERMUTED = {"llama", "mistral", "granite"}

FIRST_READ = 1 << 20  # header bytes asked for first over HTTP; later reads double, up to MAX_READ
FIRST_READ_LOCAL = 64 << 10
MAX_READ = 64 << 20
MAX_KEY = 1 << 16
# Caps beyond "what the file can hold" (a 100 GB file could claim a billion empty strings): the largest published
# headers (262k-token vocabularies with merges, thousands of tensors) take ~30 MB and ~1M array items.
MAX_HEADER_BYTES = 512 << 20
MAX_ITEMS = 1 << 24  # items in one metadata array
MAX_ENTRIES = 1 << 20  # tensors, and metadata keys (published files have a few thousand at most)
MAX_DIMS = 8
MAX_DEPTH = 3  # arrays of arrays of ...


class GGUFFile:
    """An opened GGUF file: metadata, tokenizer and tensor infos parsed from the header; rows read by range."""

    def __init__(self, source: Path | ByteSource) -> None:
        src = LocalFileSource(source) if isinstance(source, Path) else source
        self.source = src
        self.path = Path(src.name)
        try:
            self.metadata, self._tensors, self._data_start, self._order = _parse(src)
        except _Truncated as exc:
            raise InputError(f"{display_path(src.name)}: corrupt or truncated GGUF file ({_line(str(exc))})") from None
        self.fields = {k: _small(v) for k, v in self.metadata.items() if not k.startswith("tokenizer.ggml.")}
        _check_types(self.metadata, display_path(src.name))
        self.arch = str(self.fields.get("general.architecture", "unknown"))

    def config(self) -> dict[str, Any]:
        prefix = self.arch + "."
        cfg: dict[str, Any] = {"model_type": self.arch, "_source": "gguf-metadata"}
        for key, value in self.fields.items():
            if key.startswith(prefix) and key[len(prefix):] in _CONFIG_KEYS and _is_number(value):
                cfg[_CONFIG_KEYS[key[len(prefix):]]] = value  # per-layer arrays (OpenELM) are left out
        tok = self.metadata.get("tokenizer.ggml.tokens")
        if isinstance(tok, list) and "vocab_size" not in cfg:
            cfg["vocab_size"] = len(tok)
        cfg["general.name"] = self.fields.get("general.name")
        cfg["file_type"] = self.fields.get("general.file_type")
        return cfg

    def tensor_infos(self) -> dict[str, TensorInfo]:
        return {name: TensorInfo(name, t.shape, t.qtype.name, self.path) for name, t in self._tensors.items()}

    def layout(self, info: TensorInfo) -> RowLayout:
        """Where the rows of a tensor are, how to decode them, and (llama q/k) in which order they are stored."""
        t = self._tensors[info.name]
        n_rows = t.shape[0] if t.shape else 1
        row_bytes = t.n_bytes // n_rows if n_rows else 0
        return RowLayout(self.source, self._data_start + t.offset, n_rows, row_bytes, t.shape[1:],
                         _decoder(t.qtype, self._order, self.source.name, info.name), self._rope_order(info.name, n_rows))

    def read(self, info: TensorInfo, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Dequantize one tensor, or some of its rows (in HF order for llama q/k)."""
        lay = self.layout(info)
        return read_layout(lay, rows, None) if rows is not None else read_layout(lay, slice(None), info.shape)

    def _rope_order(self, name: str, n_rows: int) -> np.ndarray | None:
        if self.arch not in _ROPE_PERMUTED:
            return None
        if name.endswith(("attn_q.weight", "attn_q.bias")):
            heads = self.fields.get(f"{self.arch}.attention.head_count")
        elif name.endswith(("attn_k.weight", "attn_k.bias")):
            heads = (self.fields.get(f"{self.arch}.attention.head_count_kv")
                     or self.fields.get(f"{self.arch}.attention.head_count"))
        else:
            return None
        n_head = int(heads) if isinstance(heads, (int, float)) and not isinstance(heads, bool) else 0
        if n_head <= 0 or n_rows % (2 * n_head):
            return None
        return _unpermute(np.arange(n_rows, dtype=np.int64), n_head)

    def tokenizer(self) -> TokenizerData | None:
        m = self.metadata
        tokens = m.get("tokenizer.ggml.tokens")
        if not isinstance(tokens, list):
            return None
        merges_v = m.get("tokenizer.ggml.merges")
        merges = [str(x) for x in merges_v] if isinstance(merges_v, list) else []
        model = str(m["tokenizer.ggml.model"]) if "tokenizer.ggml.model" in m else "unknown"
        special = {}
        # llama.cpp spells the separator key "seperator_token_id"
        for role, key_role in (("bos", "bos"), ("eos", "eos"), ("unknown", "unknown"), ("padding", "padding"),
                               ("sep", "seperator"), ("cls", "cls"), ("mask", "mask")):
            idx = m.get(f"tokenizer.ggml.{key_role}_token_id")
            if isinstance(idx, int) and not isinstance(idx, bool) and 0 <= idx < len(tokens):
                special[role] = tokens[idx]
        kind = {"gpt2": "bpe", "llama": "sentencepiece", "bert": "wordpiece", "t5": "unigram"}.get(model, model)
        pre = str(m["tokenizer.ggml.pre"]) if "tokenizer.ggml.pre" in m else None
        return TokenizerData(kind=kind, tokens=tokens, merges=merges, special=special, source="gguf", model=model, pre=pre)


# ------------------------------------------------------------------------------------------ header parsing


class _Truncated(Exception):
    """The header claims more than the file holds, or is malformed."""


class _Tensor:
    __slots__ = ("n_bytes", "offset", "qtype", "shape")

    def __init__(self, shape: tuple[int, ...], qtype: Any, offset: int, n_bytes: int) -> None:
        self.shape, self.qtype, self.offset, self.n_bytes = shape, qtype, offset, n_bytes


class _Cursor:
    """Sequential reads over a byte source, buffered in growing chunks (few requests over HTTP)."""

    def __init__(self, src: ByteSource) -> None:
        self.src = src
        self.size = src.size
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.pos = 0  # read position in buf
        self.chunk = FIRST_READ if src.remote else FIRST_READ_LOCAL

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def left(self) -> int:
        return self.size - self.offset

    def ensure(self, n: int) -> None:
        if self.pos + n <= len(self.buf):
            return
        if n > self.left():
            raise _Truncated(f"needs {n} bytes at offset {self.offset}, the file has {self.left()} left")
        if self.offset + n > MAX_HEADER_BYTES:
            raise _Truncated(f"a header of more than {MAX_HEADER_BYTES >> 20} MiB")
        have = len(self.buf) - self.pos
        want = min(max(n, self.chunk), self.left())
        self.chunk = min(self.chunk * 2, MAX_READ)
        more = self.src.read(self.base + len(self.buf), want - have)
        self.buf = self.buf[self.pos:] + more
        self.base += self.pos
        self.pos = 0

    def take(self, n: int) -> bytes:
        self.ensure(n)
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: struct.Struct) -> Any:
        self.ensure(fmt.size)
        (value,) = fmt.unpack_from(self.buf, self.pos)
        self.pos += fmt.size
        return value


def _parse(src: ByteSource) -> tuple[dict[str, Any], dict[str, _Tensor], int, str]:
    from gguf.constants import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGMLQuantizationType

    cur = _Cursor(src)
    if src.size < 24:
        raise _Truncated("shorter than a GGUF header")
    magic = struct.unpack("<I", cur.take(4))[0]
    if magic != GGUF_MAGIC:
        raise _Truncated("no GGUF magic")
    raw_version = cur.take(4)
    order = "<" if struct.unpack("<I", raw_version)[0] & 0xFFFF else ">"  # as gguf's reader tells byte order
    version = struct.unpack(order + "I", raw_version)[0]
    if version not in (2, 3):
        raise _Truncated(f"GGUF version {version} is not supported (2 and 3 are)")
    u32, u64 = struct.Struct(order + "I"), struct.Struct(order + "Q")
    n_tensors, n_kv = cur.unpack(u64), cur.unpack(u64)
    if n_kv > MAX_ENTRIES or n_tensors > MAX_ENTRIES:
        raise _Truncated(f"claims {n_tensors} tensors and {n_kv} metadata entries (at most {MAX_ENTRIES} each)")
    if n_kv > cur.left() // 13:  # a KV pair takes at least 8 (key length) + 1 + 4 (type) + 0 bytes
        raise _Truncated(f"claims {n_kv} metadata entries")
    if n_tensors > cur.left() // 24:  # a tensor info takes at least 8 + 4 + 4 + 8 bytes
        raise _Truncated(f"claims {n_tensors} tensors")
    reader = _ValueReader(cur, order)
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = reader.string(MAX_KEY)
        vtype = cur.unpack(u32)
        metadata[key] = reader.value(vtype, 0)
    infos: list[tuple[str, tuple[int, ...], Any, int]] = []
    for _ in range(n_tensors):
        name = reader.string(MAX_KEY)
        n_dims = cur.unpack(u32)
        if n_dims > MAX_DIMS:
            raise _Truncated(f"tensor {name!r} claims {n_dims} dimensions")
        dims = struct.unpack(f"{order}{n_dims}Q", cur.take(8 * n_dims))
        type_id = cur.unpack(u32)
        try:
            qtype = GGMLQuantizationType(type_id)
        except ValueError:
            raise _Truncated(f"tensor {name!r} has unknown GGML type {type_id}") from None
        infos.append((name, tuple(int(d) for d in dims), qtype, cur.unpack(u64)))
    alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment & (alignment - 1):
        raise _Truncated(f"invalid general.alignment {alignment!r}")
    data_start = -(-cur.offset // alignment) * alignment
    tensors: dict[str, _Tensor] = {}
    for name, dims, qtype, offset in infos:
        block, type_size = GGML_QUANT_SIZES[qtype]
        n_elems = int(np.prod(dims, dtype=object)) if dims else 1
        if dims and dims[0] % block:
            raise _Truncated(f"tensor {name!r}: row length {dims[0]} is not a multiple of the {qtype.name} block ({block})")
        n_bytes = n_elems // block * type_size
        if data_start + offset + n_bytes > src.size:
            raise InputError(f"{display_path(src.name)}: tensor {_line(repr(name))} extends past the end of the file: truncated")
        if name in tensors:
            raise _Truncated(f"tensor {name!r} appears twice")
        tensors[name] = _Tensor(tuple(reversed(dims)), qtype, offset, n_bytes)
    return metadata, tensors, data_start, order


class _ValueReader:
    """GGUF values: scalars, strings and (nested) arrays; numeric arrays as numpy, string arrays as lists."""

    def __init__(self, cur: _Cursor, order: str) -> None:
        from gguf.constants import GGUFValueType as V

        self.cur, self.order, self.V = cur, order, V
        self.u64 = struct.Struct(order + "Q")
        self.scalars: dict[int, str] = {
            int(V.UINT8): "B", int(V.INT8): "b", int(V.UINT16): "H", int(V.INT16): "h", int(V.UINT32): "I",
            int(V.INT32): "i", int(V.FLOAT32): "f", int(V.BOOL): "?", int(V.UINT64): "Q", int(V.INT64): "q",
            int(V.FLOAT64): "d",
        }
        self.structs = {k: struct.Struct(order + c) for k, c in self.scalars.items()}

    def string(self, limit: int | None = None) -> str:
        n = self.cur.unpack(self.u64)
        if n > self.cur.left() or (limit is not None and n > limit):
            raise _Truncated(f"string of {n} bytes at offset {self.cur.offset}")
        return self.cur.take(n).decode("utf-8", errors="replace")

    def value(self, vtype: int, depth: int) -> Any:
        V = self.V
        if vtype in self.structs:
            return self.cur.unpack(self.structs[vtype])
        if vtype == V.STRING:
            return self.string()
        if vtype == V.ARRAY:
            if depth >= MAX_DEPTH:
                raise _Truncated("arrays nested too deep")
            item = self.cur.unpack(struct.Struct(self.order + "I"))
            count = self.cur.unpack(self.u64)
            if count > MAX_ITEMS:
                raise _Truncated(f"array of {count} items at offset {self.cur.offset} (at most {MAX_ITEMS} allowed)")
            if item in self.structs:
                itemsize = self.structs[item].size
                if count > self.cur.left() // itemsize:
                    raise _Truncated(f"array of {count} items at offset {self.cur.offset}")
                raw = self.cur.take(count * itemsize)
                return np.frombuffer(raw, dtype=np.dtype(self.order + self.scalars[item]))
            if item == V.STRING:
                return self.strings(count)
            if count > self.cur.left() // 12:
                raise _Truncated(f"array of {count} items at offset {self.cur.offset}")
            return [self.value(item, depth + 1) for _ in range(count)]
        raise _Truncated(f"unknown metadata value type {vtype}")

    def strings(self, count: int) -> list[str]:
        """`count` length-prefixed strings: the hot loop of a tokenizer's vocabulary."""
        cur = self.cur
        if count > cur.left() // 8:
            raise _Truncated(f"array of {count} strings at offset {cur.offset}")
        unpack = self.u64.unpack_from
        out: list[str] = []
        append = out.append
        buf, pos = cur.buf, cur.pos
        for _ in range(count):
            if pos + 8 > len(buf):
                cur.pos = pos
                cur.ensure(8)
                buf, pos = cur.buf, cur.pos
            (n,) = unpack(buf, pos)
            end = pos + 8 + n
            if end > len(buf):
                cur.pos = pos
                if n > cur.left() - 8:
                    raise _Truncated(f"string of {n} bytes at offset {cur.offset}")
                cur.ensure(8 + n)
                buf, pos = cur.buf, cur.pos
                end = pos + 8 + n
            append(buf[pos + 8:end].decode("utf-8", errors="replace"))
            pos = end
        cur.pos = pos
        return out


def _line(text: str) -> str:
    """Text for an error line: control characters escaped, at most 300 characters."""
    text = display_path(text)
    return text if len(text) <= 300 else text[:300] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _check_types(m: dict[str, Any], where: str) -> None:
    """The metadata the reader uses must have the type the GGUF spec gives it: InputError naming the key when a
    token list is numbers, a head count a string, a special-token id a float, ..."""
    arch = m.get("general.architecture", "unknown")
    expect: list[tuple[str, str, Callable[[Any], bool]]] = [
        ("general.architecture", "a string", lambda v: isinstance(v, str)),
        ("general.name", "a string", lambda v: isinstance(v, str)),
        ("general.alignment", "an integer", _is_int),
        ("general.file_type", "an integer", _is_int),
        ("tokenizer.ggml.tokens", "an array of strings", _is_str_list),
        ("tokenizer.ggml.merges", "an array of strings", _is_str_list),
        ("tokenizer.ggml.model", "a string", lambda v: isinstance(v, str)),
        ("tokenizer.ggml.pre", "a string", lambda v: isinstance(v, str)),
    ]
    expect += [(f"tokenizer.ggml.{r}_token_id", "an integer", _is_int)
               for r in ("bos", "eos", "unknown", "padding", "seperator", "cls", "mask")]
    if isinstance(arch, str):
        for suffix, hf in _CONFIG_KEYS.items():
            if hf in ("rope_theta", "rms_norm_eps", "layer_norm_eps"):
                expect.append((f"{arch}.{suffix}", "a number", _is_number))
            else:  # counts and lengths: an integer, or one per layer
                expect.append((f"{arch}.{suffix}", "an integer", lambda v: _is_int(v) or (
                    isinstance(v, np.ndarray) and v.dtype.kind in "iu")))
    for key, what, ok in expect:
        if key in m and not ok(m[key]):
            raise InputError(f"{where}: GGUF metadata {key} must be {what}, found {_describe(m[key])}")


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of {value.size} {value.dtype} values"
    if isinstance(value, list):
        kinds = sorted({type(x).__name__ for x in value[:1000]})
        return f"an array of {len(value)} ({', '.join(kinds) or 'empty'})"
    return f"{type(value).__name__} {_line(repr(value))[:60]}"


def _small(value: Any) -> Any:
    """A metadata value as a config value: numpy arrays as lists; arrays longer than 64 items left out."""
    if isinstance(value, np.ndarray):
        return None if value.size > 64 else value.tolist()
    if isinstance(value, list):
        return None if len(value) > 64 else [_small(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------ tensor data


def _decoder(qtype: Any, order: str, where: str, name: str) -> Callable[[np.ndarray], np.ndarray]:
    """(k, row_bytes) uint8 -> float32 (k, row elements): plain types by a cast, the rest by gguf.quants."""
    plain = _PLAIN_TYPES.get(qtype.name)

    def decode(raw: np.ndarray) -> np.ndarray:
        k = raw.shape[0]
        if plain is not None:
            return raw.reshape(-1).view(np.dtype(order + plain)).astype(np.float32).reshape(k, -1)
        from gguf import quants

        try:
            out = quants.dequantize(raw, qtype)
        except NotImplementedError:
            raise InputError(f"{where}: tensor {name!r} is stored as GGML type {qtype.name}, which this "
                             "version of the gguf package cannot dequantize") from None
        return np.asarray(out, dtype=np.float32).reshape(k, -1)

    return decode


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Invert llama.cpp's rotary interleave of q/k rows (as transformers does when it loads GGUF)."""
    if n_head <= 0 or w.shape[0] % (2 * n_head):
        return w
    rest = w.shape[1:]
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)
