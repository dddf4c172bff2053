"""Local models for `provaudit trace`: seeded batched generation (the backend's decode loop), teacher-forced
scoring of completions (with what the same-model tests need at given sampling settings), token counts for the
billing audit. Loaded models are kept per process (benchmarks, tests).

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from audit.errors import InputError
from audit.probing.backends.base import Messages
from audit.safeio import write_text_atomic


@dataclass(frozen=True)
class Scored:
    """Teacher-forced scores of one completion under one model (natural-log probabilities)."""

    pieces: list[str]  # the completion's tokens, decoded one by one
    logprobs: list[float]  # log p(token | prefix)
    top_logprobs: list[float]  # log p of the model's most likely token at each position
    argmax: list[bool]  # the token is the model's most likely one
    nbytes: int  # UTF-8 bytes of the completion text
    pit: list[tuple[float, float, float, float, float]] | None = None  # see transformers_local.pit_parts
    temperature_ll: list[float] | None = None  # log-likelihood at each backends.base.TEMPERATURE_GRID value

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else 0.0

    @property
    def bits_per_byte(self) -> float:
        """-log2 p(text) / bytes: comparable between tokenizers."""
        return -sum(self.logprobs) / math.log(2) / self.nbytes if self.nbytes else 0.0


class LocalModel:
    """A causal LM (folder or GGUF) with the checkpoint's own chat template; see module docstring."""

    def __init__(self, path: str, device: str = "auto") -> None:
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError:
            raise InputError("trace runs references locally and needs torch and transformers: "
                             "pip install 'provaudit[ml]'") from None
        from audit.probing.backends import create_backend

        backend: Any = create_backend("transformers", model=path, device=device)
        self.backend = backend
        self.path = str(path)
        self.identity = _identity(Path(self.backend.path))

    # ---------------------------------------------------------------- text

    def render(self, messages: Messages) -> str:
        return cast(str, self.backend.render(messages))

    def count(self, text: str) -> int:
        """Tokens of a piece of text (no special tokens)."""
        return len(self.backend._canonical_ids(text))

    def prompt_count(self, messages: Messages) -> int:
        """Tokens of the templated conversation, as the backend (and a server) builds and bills it."""
        return len(self.backend._prompt_ids(messages))

    # ---------------------------------------------------------------- generation

    def generate_many(self, messages: Messages, max_tokens: int, temperature: float, seed: int, n: int,
                      top_p: float | None = None) -> list[tuple[str, list[int]]]:
        """n completions of one conversation in one batch (sample j seeded `seed + j`; one at temperature 0)."""
        gens = self.backend.generate([messages], max_tokens, temperature, seed, n if temperature > 0 else 1,
                                     logprobs=True, top_p=top_p)[0]
        return [(g.text, [t for t in (g.token_ids or []) if t not in self.backend._stops]) for g in gens]

    # ---------------------------------------------------------------- scoring

    def score(self, messages: Messages, completion: str) -> Scored:
        """Teacher-forced log-probabilities of `completion` (re-tokenized) after the templated conversation."""
        return self.score_many([(messages, completion)])[0]

    def score_many(self, pairs: list[tuple[Messages, str]], pit: tuple[float, float | None] | None = None,
                   stopped: list[bool] | None = None) -> list[Scored]:
        """Score many (conversation, completion) pairs teacher-forced, batched; `pit=(temperature, top_p)` and
        `stopped` as in TransformersBackend.score. A pair that cannot be scored is an InputError."""
        if not pairs:
            return []
        out = []
        scored = self.backend.score([m for m, _ in pairs], [c for _, c in pairs], pit=pit, stopped=stopped)
        for (_conv, text), ts in zip(pairs, scored, strict=True):
            if not ts.ok:
                raise InputError(f"{self.path}: could not score a completion ({ts.error})")
            out.append(Scored(list(ts.tokens), list(ts.logprobs), [], [r == 1 for r in ts.ranks],
                              len(text.encode("utf-8")), ts.pit, ts.temperature_ll))
        return out


def _identity(path: Path) -> str:
    """A cheap identity of a checkpoint for cache keys: file names, sizes and modification times."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    blob = json.dumps([(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files])
    return hashlib.sha256(f"{path.resolve()}|{blob}".encode()).hexdigest()[:32]


@lru_cache(maxsize=6)
def load_local(path: str, device: str = "auto") -> LocalModel:
    """A LocalModel, loaded once per process."""
    return LocalModel(path, device)


class GenerationCache:
    """Local completions on disk, keyed by model identity and request (a rerun regenerates nothing)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def _path(self, key: dict[str, Any]) -> Path | None:
        if self.root is None:
            return None
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.json"

    def get(self, key: dict[str, Any]) -> list[str] | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("texts")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None

    def put(self, key: dict[str, Any], texts: list[str]) -> None:
        path = self._path(key)
        if path is None:
            return
        try:
            write_text_atomic(path, json.dumps({"texts": texts}, ensure_ascii=False))
        except OSError:
            pass


def _key(model: LocalModel, messages: Messages, max_tokens: int, temperature: float, seed: int, n: int,
         top_p: float | None) -> dict[str, Any]:
    return {"model": model.identity, "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
            "seed": seed, "n": n, "top_p": top_p, "sampler": "decode-loop/1"}


def sample(model: LocalModel, cache: GenerationCache, messages: Messages, max_tokens: int, temperature: float,
           seed: int, n: int, top_p: float | None = None) -> list[str]:
    """n completions (one batch, seeded with `seed`) through the on-disk cache."""
    key = _key(model, messages, max_tokens, temperature, seed, n, top_p)
    hit = cache.get(key)
    if hit is not None:
        return hit
    texts = [t for t, _ in model.generate_many(messages, max_tokens, temperature, seed, n, top_p)]
    cache.put(key, texts)
    return texts


def greedy_all(model: LocalModel, cache: GenerationCache, convs: list[Messages], max_tokens: int,
               seed: int) -> list[str]:
    """The greedy answer to every conversation, the ones not in the on-disk cache decoded in one batch."""
    keys = [_key(model, msgs, max_tokens, 0.0, seed, 1, None) for msgs in convs]
    answers: list[str | None] = [hit[0] if hit else None for hit in map(cache.get, keys)]
    todo = [i for i, a in enumerate(answers) if a is None]
    if todo:
        rows = model.backend.generate([convs[i] for i in todo], max_tokens, 0.0, seed, 1)
        for i, row in zip(todo, rows, strict=True):
            answers[i] = row[0].text
            cache.put(keys[i], [row[0].text])
    return [a or "" for a in answers]
