"""Read GGUF files with the `gguf` package: metadata as a config, tokenizer, tensors dequantized one at a time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.checkpoint.model import TensorInfo, TokenizerData
from audit.errors import InputError

if TYPE_CHECKING:
    from gguf.gguf_reader import ReaderField

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
# Types GGUFReader returns as typed numpy arrays (F64 and the integer types have no gguf.quants dequantizer).
_PLAIN_TYPES = {"F32", "F16", "F64", "I8", "I16", "I32", "I64"}
# llama.cpp's converter interleaves q/k rows for rotary embeddings in these architectures; undo it.
_ROPE_PERMUTED = {"llama", "mistral", "granite"}


class GGUFFile:
    """An opened GGUF file (memory-mapped by gguf.GGUFReader)."""

    def __init__(self, path: Path) -> None:
        import gguf

        try:
            self.reader = gguf.GGUFReader(str(path), "r")
        except Exception as exc:  # the reader raises ValueError/IndexError/struct errors on bad files
            raise InputError(f"{path}: corrupt or truncated GGUF file ({type(exc).__name__}: {exc})") from None
        self.path = path
        self.fields = {k: _field_value(f) for k, f in self.reader.fields.items() if not k.startswith("tokenizer.ggml.")}
        self.arch = str(self.fields.get("general.architecture", "unknown"))
        self._by_name = {t.name: t for t in self.reader.tensors}
        size = path.stat().st_size
        for t in self.reader.tensors:
            if t.data_offset + t.n_bytes > size:
                raise InputError(f"{path}: tensor {t.name!r} extends past the end of the file: truncated")

    def config(self) -> dict[str, Any]:
        prefix = self.arch + "."
        cfg: dict[str, Any] = {"model_type": self.arch, "_source": "gguf-metadata"}
        for key, value in self.fields.items():
            if key.startswith(prefix) and key[len(prefix):] in _CONFIG_KEYS:
                cfg[_CONFIG_KEYS[key[len(prefix):]]] = value
        tok = self.reader.fields.get("tokenizer.ggml.tokens")
        if tok is not None and "vocab_size" not in cfg:
            cfg["vocab_size"] = len(tok.data)
        cfg["general.name"] = self.fields.get("general.name")
        cfg["file_type"] = self.fields.get("general.file_type")
        return cfg

    def tensor_infos(self) -> dict[str, TensorInfo]:
        out = {}
        for t in self.reader.tensors:
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            out[t.name] = TensorInfo(t.name, shape, t.tensor_type.name, self.path)
        return out

    def read(self, info: TensorInfo, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Dequantize one tensor (or some of its rows; quantized blocks never span rows)."""
        t = self._by_name[info.name]
        if rows is not None:
            data = np.asarray(t.data).reshape(info.shape[0], -1)[rows]
            return self._dequantize(data, t.tensor_type, info.name).reshape(data.shape[0], *info.shape[1:])
        arr = self._dequantize(t.data, t.tensor_type, info.name).reshape(info.shape)
        if self.arch in _ROPE_PERMUTED and arr.ndim >= 1:
            if info.name.endswith("attn_q.weight") or info.name.endswith("attn_q.bias"):
                arr = _unpermute(arr, int(self.fields.get(f"{self.arch}.attention.head_count", 0)))
            elif info.name.endswith("attn_k.weight") or info.name.endswith("attn_k.bias"):
                heads = self.fields.get(f"{self.arch}.attention.head_count_kv") or self.fields.get(
                    f"{self.arch}.attention.head_count", 0)
                arr = _unpermute(arr, int(heads))
        return arr

    def _dequantize(self, data: np.ndarray, qtype: Any, name: str) -> np.ndarray:
        """float32 values of stored data: plain float/int types by a cast, the rest by gguf.quants."""
        from gguf import quants

        if qtype.name in _PLAIN_TYPES:  # the reader already typed these (F64 and integers: quants refuses them)
            return np.asarray(data, dtype=np.float32)
        try:
            return np.asarray(quants.dequantize(data, qtype), dtype=np.float32)
        except NotImplementedError:
            raise InputError(f"{self.path}: tensor {name!r} is stored as GGML type {qtype.name}, which this "
                             "version of the gguf package cannot dequantize") from None

    def tokenizer(self) -> TokenizerData | None:
        f = self.reader.fields
        if "tokenizer.ggml.tokens" not in f:
            return None
        tokens = [str(x) for x in f["tokenizer.ggml.tokens"].contents()]
        merges = [str(x) for x in f["tokenizer.ggml.merges"].contents()] if "tokenizer.ggml.merges" in f else []
        model = str(f["tokenizer.ggml.model"].contents()) if "tokenizer.ggml.model" in f else "unknown"
        special = {}
        # llama.cpp spells the separator key "seperator_token_id"
        for role, key_role in (("bos", "bos"), ("eos", "eos"), ("unknown", "unknown"), ("padding", "padding"),
                               ("sep", "seperator"), ("cls", "cls"), ("mask", "mask")):
            key = f"tokenizer.ggml.{key_role}_token_id"
            if key in f:
                idx = int(f[key].contents())
                if 0 <= idx < len(tokens):
                    special[role] = tokens[idx]
        kind = {"gpt2": "bpe", "llama": "sentencepiece", "bert": "wordpiece", "t5": "unigram"}.get(model, model)
        pre = str(f["tokenizer.ggml.pre"].contents()) if "tokenizer.ggml.pre" in f else None
        return TokenizerData(kind=kind, tokens=tokens, merges=merges, special=special, source="gguf", model=model, pre=pre)


def _field_value(field: ReaderField) -> Any:
    try:
        value = field.contents()
    except Exception:  # unreadable metadata is simply left out
        return None
    if isinstance(value, list) and len(value) > 64:
        return None
    return value


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Invert llama.cpp's rotary interleave of q/k rows (as transformers does when it loads GGUF)."""
    if n_head <= 0 or w.shape[0] % (2 * n_head):
        return w
    rest = w.shape[1:]
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)
