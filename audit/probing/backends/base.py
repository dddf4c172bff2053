"""What every probe backend provides: batched chat generation with n seeded samples, and a description.
Local backends may also batch a whole run internally and score given completions teacher-forced."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

Messages = list[dict[str, str]]
TEMPERATURE_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)  # applied-temperature fit


@dataclass
class Generation:
    """One sampled answer. `error` is set (and `text` empty) when the backend could not produce one.

    `token_ids`, `tokens` and `logprobs` (the sampled tokens, end-of-turn token included, and their
    log-probabilities under the model at temperature 1) are filled only when asked for (`logprobs=True`)
    by a backend that can. `finish_reason`: "stop" (the model ended its turn), "length" (max tokens
    reached) or None when the backend did not say.
    """

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    token_ids: list[int] | None = None
    tokens: list[str] | None = None
    logprobs: list[float] | None = None
    finish_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Backend(Protocol):
    """A chat model that answers batches of conversations.

    `generate` returns one list per conversation with `n` generations each; sample j uses seed `seed + j`.
    Failures of single requests come back as Generation(error=...), never as exceptions.
    `describe` says what answered (kind, model, device, dtype, endpoint) and never includes a secret.
    Backends that can may also accept `logprobs=True` (keyword) and then fill Generation.token_ids/tokens/
    logprobs; callers check for support (TransformersBackend does; others may ignore or lack the keyword).
    """

    def generate(self, batch: Sequence[Messages], max_new_tokens: int, temperature: float, seed: int,
                 n: int) -> list[list[Generation]]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class TokenScores:
    """A given completion scored teacher-forced under a model: one entry per completion token.

    `logprobs`: natural-log probability of each token given the conversation and the tokens before it;
    `ranks`: 1 when the token was the model's most likely choice; `entropies`: entropy (nats) of the
    model's next-token distribution at that position; `top`: the k most likely (token id, logprob) per
    position when asked for. `error` is set (lists empty) when the completion could not be scored. `pit`:
    per token (and the end-of-turn token of a finished answer), what the same-model tests need under given
    sampling settings, when asked for (see transformers_local.pit_parts).
    """

    token_ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] | None = None
    prompt_tokens: int | None = None
    error: str | None = None
    pit: list[tuple[float, float, float, float, float]] | None = None
    temperature_ll: list[float] | None = None  # log-likelihood of the tokens at each TEMPERATURE_GRID value

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def total(self) -> float:
        """Log-probability of the whole completion."""
        return float(sum(self.logprobs))


@runtime_checkable
class BatchingBackend(Backend, Protocol):
    """A backend that batches prompts x samples itself (local models): the runner hands it a whole run.

    `on_prompt_done(i)` is called once conversation i has all its n samples (in any order), for progress.
    """

    batches_internally: bool

    def generate(self, batch: Sequence[Messages], max_new_tokens: int, temperature: float, seed: int,
                 n: int, *, logprobs: bool = False,
                 on_prompt_done: Callable[[int], None] | None = None) -> list[list[Generation]]: ...


def sample_seeds(seed: int, n: int) -> list[int]:
    """The seed used for each of the n samples of every prompt."""
    return [seed + j for j in range(n)]
