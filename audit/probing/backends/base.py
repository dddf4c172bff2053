"""What every probe backend provides: batched chat generation with n seeded samples, and a description."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

Messages = list[dict[str, str]]


@dataclass
class Generation:
    """One sampled answer. `error` is set (and `text` empty) when the backend could not produce one."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None

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
    """

    def generate(self, batch: Sequence[Messages], max_new_tokens: int, temperature: float, seed: int,
                 n: int) -> list[list[Generation]]: ...

    def describe(self) -> dict[str, Any]: ...


def sample_seeds(seed: int, n: int) -> list[int]:
    """The seed used for each of the n samples of every prompt."""
    return [seed + j for j in range(n)]
