"""Read tokenizer vocabularies from HF tokenizer files (tokenizer.json, vocab.json + merges.txt, vocab.txt)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audit.checkpoint.model import TokenizerData
from audit.errors import InputError


def load_tokenizer(folder: Path) -> TokenizerData | None:
    """Return the tokenizer found in an HF folder, or None when the folder holds none."""
    tj = folder / "tokenizer.json"
    if tj.is_file():
        return _from_tokenizer_json(tj)
    vocab_json, merges_txt = folder / "vocab.json", folder / "merges.txt"
    if vocab_json.is_file():
        vocab = _load_json(vocab_json)
        merges = []
        if merges_txt.is_file():
            merges = [ln for ln in merges_txt.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#version")]
        return TokenizerData("bpe", _ordered(vocab), merges, _special(folder), "vocab.json")
    vocab_txt = folder / "vocab.txt"
    if vocab_txt.is_file():
        tokens = vocab_txt.read_text(encoding="utf-8").splitlines()
        return TokenizerData("wordpiece", tokens, [], _special(folder), "vocab.txt")
    return None


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def _ordered(vocab: dict[str, int]) -> list[str]:
    size = max(vocab.values(), default=-1) + 1
    tokens = [""] * size
    for tok, idx in vocab.items():
        if 0 <= idx < size:
            tokens[idx] = tok
    return tokens


def _from_tokenizer_json(path: Path) -> TokenizerData:
    data = _load_json(path)
    model = data.get("model") or {}
    kind = {"BPE": "bpe", "WordPiece": "wordpiece", "Unigram": "unigram"}.get(model.get("type", ""), "unknown")
    vocab = model.get("vocab") or {}
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        tokens = [str(p[0]) for p in vocab]
    else:
        vocab = dict(vocab)
        for added in data.get("added_tokens") or []:
            vocab.setdefault(added.get("content", ""), int(added.get("id", -1)))
        tokens = _ordered(vocab)
    merges = [m if isinstance(m, str) else " ".join(m) for m in (model.get("merges") or [])]
    special = {f"added:{a.get('id')}": a.get("content", "") for a in data.get("added_tokens") or [] if a.get("special")}
    special.update(_special(path.parent))
    return TokenizerData(kind, tokens, merges, special, "tokenizer.json")


def _special(folder: Path) -> dict[str, str]:
    """bos/eos/unk/pad tokens named in tokenizer_config.json or special_tokens_map.json."""
    out: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        f = folder / name
        if not f.is_file():
            continue
        data = _load_json(f)
        for role in ("bos_token", "eos_token", "unk_token", "pad_token", "cls_token", "sep_token", "mask_token"):
            value = data.get(role)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                out.setdefault(role.removesuffix("_token"), value)
    return out
