"""Read tokenizer vocabularies from HF tokenizer files (tokenizer.json, vocab.json + merges.txt, vocab.txt).

The files are untrusted: each is read as a bounded regular file (`audit.safeio`), its shape checked before
use (a tokenizer.json that is a list, added tokens that are numbers, ids of 10^12, a vocabulary larger than
any real tokenizer's), and every problem is an InputError naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audit.checkpoint.model import TokenizerData
from audit.errors import InputError
from audit.safeio import MiB, display_path, load_json, read_text

#: Largest tokenizer.json read (Gemma 3's is ~33 MB) and largest vocabulary or merge list accepted (the largest
#: published vocabularies have ~262k tokens).
MAX_TOKENIZER_BYTES = 128 * MiB
MAX_VOCAB = 1 << 22
MAX_MERGES = 1 << 23
SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "pad_token", "cls_token", "sep_token", "mask_token")


def load_tokenizer(folder: Path) -> TokenizerData | None:
    """Return the tokenizer found in an HF folder, or None when the folder holds none."""
    tj = folder / "tokenizer.json"
    if tj.exists():  # a FIFO or a folder named tokenizer.json is refused, not skipped
        return _from_tokenizer_json(tj)
    vocab_json, merges_txt = folder / "vocab.json", folder / "merges.txt"
    if vocab_json.exists():
        vocab = _vocab_map(_load_object(vocab_json), vocab_json, "vocab")
        merges: list[str] = []
        if merges_txt.exists():
            merges = [ln for ln in _lines(merges_txt, MAX_MERGES) if ln and not ln.startswith("#version")]
        return TokenizerData("bpe", _ordered(vocab), merges, _special(folder), "vocab.json")
    vocab_txt = folder / "vocab.txt"
    if vocab_txt.exists():
        return TokenizerData("wordpiece", _lines(vocab_txt, MAX_VOCAB), [], _special(folder), "vocab.txt")
    return None


def _load_object(path: Path) -> dict[str, Any]:
    data = load_json(path, MAX_TOKENIZER_BYTES, "tokenizer file")
    if not isinstance(data, dict):
        raise InputError(f"{display_path(path)}: expected a JSON object, found a JSON {_kind(data)}")
    return data


def _lines(path: Path, limit: int) -> list[str]:
    lines = read_text(path, MAX_TOKENIZER_BYTES, "tokenizer file").splitlines()
    if len(lines) > limit:
        raise InputError(f"{display_path(path)}: {len(lines):,} lines, more than the {limit:,} a tokenizer may have")
    return lines


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _bad(path: Path, field: str, expected: str, value: Any) -> InputError:
    shown = repr(value) if isinstance(value, (int, float, bool, type(None))) else f"a JSON {_kind(value)}"
    return InputError(f"{display_path(path)}: {field} must be {expected}, got {shown[:60]}")


def _token_id(value: Any, path: Path, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(path, field, "a token id (an integer)", value)
    if not 0 <= value < MAX_VOCAB:
        raise InputError(f"{display_path(path)}: {field} is {str(value)[:30]}, outside 0..{MAX_VOCAB - 1:,} "
                         "(no tokenizer has that many tokens)")
    return value


def _at_most(items: list[Any] | dict[str, Any], cap: int, path: Path, field: str, unit: str) -> None:
    """InputError when a list or object field holds more than `cap` items (checked before looping over it)."""
    if len(items) > cap:
        raise InputError(f"{display_path(path)}: {field} has {len(items):,} {unit}, more than {cap:,}")


def _vocab_map(vocab: Any, path: Path, field: str) -> dict[str, int]:
    if not isinstance(vocab, dict):
        raise _bad(path, field, "an object of token -> id", vocab)
    _at_most(vocab, MAX_VOCAB, path, field, "tokens")
    for tok, idx in vocab.items():
        _token_id(idx, path, f"{field}[{tok[:40]!r}]")
    return vocab


def _ordered(vocab: dict[str, int]) -> list[str]:
    size = max(vocab.values(), default=-1) + 1
    tokens = [""] * size
    for tok, idx in vocab.items():
        if 0 <= idx < size:
            tokens[idx] = tok
    return tokens


def _from_tokenizer_json(path: Path) -> TokenizerData:
    data = _load_object(path)
    model = data.get("model")
    if model is None:
        model = {}
    if not isinstance(model, dict):
        raise _bad(path, "model", "an object", model)
    mtype = model.get("type", "")
    if not isinstance(mtype, str):
        raise _bad(path, "model.type", "a string", mtype)
    kind = {"BPE": "bpe", "WordPiece": "wordpiece", "Unigram": "unigram"}.get(mtype, "unknown")
    vocab = model.get("vocab")
    added = _added_tokens(data.get("added_tokens"), path)
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        _at_most(vocab, MAX_VOCAB, path, "model.vocab", "pieces")
        tokens = []
        for i, piece in enumerate(vocab):
            if not isinstance(piece, list) or not piece or not isinstance(piece[0], str):
                raise _bad(path, f"model.vocab[{i}]", "a [piece, score] pair", piece)
            tokens.append(piece[0])
    else:
        table = dict(_vocab_map(vocab if vocab is not None else {}, path, "model.vocab"))
        for content, idx, _ in added:
            table.setdefault(content, idx)
        tokens = _ordered(table)
    special = {f"added:{idx}": content for content, idx, is_special in added if is_special}
    special.update(_special(path.parent))
    return TokenizerData(kind, tokens, _merges(model.get("merges"), path), special, "tokenizer.json")


def _added_tokens(items: Any, path: Path) -> list[tuple[str, int, bool]]:
    """(content, id, special) of each added token."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise _bad(path, "added_tokens", "a list", items)
    _at_most(items, MAX_VOCAB, path, "added_tokens", "entries")
    out = []
    for i, a in enumerate(items):
        if not isinstance(a, dict):
            raise _bad(path, f"added_tokens[{i}]", "an object with content and id", a)
        content = a.get("content", "")
        if not isinstance(content, str):
            raise _bad(path, f"added_tokens[{i}].content", "a string", content)
        special = a.get("special", False)
        if not isinstance(special, bool):
            raise _bad(path, f"added_tokens[{i}].special", "true or false", special)
        out.append((content, _token_id(a.get("id"), path, f"added_tokens[{i}].id"), special))
    return out


def _merges(merges: Any, path: Path) -> list[str]:
    if merges is None:
        return []
    if not isinstance(merges, list):
        raise _bad(path, "model.merges", "a list", merges)
    _at_most(merges, MAX_MERGES, path, "model.merges", "entries")
    out = []
    for i, m in enumerate(merges):
        if isinstance(m, str):
            out.append(m)
        elif isinstance(m, list) and all(isinstance(x, str) for x in m):
            out.append(" ".join(m))
        else:
            raise _bad(path, f"model.merges[{i}]", "a string or a pair of strings", m)
    return out


def _special(folder: Path) -> dict[str, str]:
    """bos/eos/unk/pad tokens named in tokenizer_config.json or special_tokens_map.json (a value that is neither
    a string nor an object with a string content is ignored: these names are descriptive, never used as ids)."""
    out: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        f = folder / name
        if not f.exists():
            continue
        data = _load_object(f)
        for role in SPECIAL_ROLES:
            value = data.get(role)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                out.setdefault(role.removesuffix("_token"), value[:1000])
    return out

