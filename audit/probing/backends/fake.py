"""A scripted backend for tests and demos: answers from regex rules, a dict or a callable."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from audit.probing.backends.base import Generation, Messages

Reply = str | list[str] | Generation | None
Responder = Callable[[Messages, int, int], "str | Generation"]


class FakeBackend:
    """Answer each conversation from the first rule whose regex matches its last user message.

    A rule's reply is a string, a list of strings (sample j gets item j mod len), a Generation (returned
    as is, e.g. with an error), or None (an empty answer). `responder(messages, sample, seed)` overrides
    the rules. Token counts are whitespace word counts, so tests can check they are carried through.
    """

    def __init__(self, rules: dict[str, Reply] | list[tuple[str, Reply]] | None = None,
                 default: Reply = "I am a helpful assistant.", responder: Responder | None = None,
                 name: str = "fake") -> None:
        items = list(rules.items()) if isinstance(rules, dict) else list(rules or [])
        self.rules = [(re.compile(pattern, re.IGNORECASE), reply) for pattern, reply in items]
        self.default = default
        self.responder = responder
        self.name = name

    def _reply(self, messages: Messages, sample: int, seed: int) -> Generation:
        out: Reply
        if self.responder is not None:
            out = self.responder(messages, sample, seed)
        else:
            user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            out = next((reply for pattern, reply in self.rules if pattern.search(user)), self.default)
            if isinstance(out, list):
                out = out[sample % len(out)] if out else None
        if isinstance(out, Generation):
            return out
        text = out or ""
        prompt = sum(len(m["content"].split()) for m in messages)
        return Generation(text, prompt, len(text.split()))

    def generate(self, batch: Sequence[Messages], max_new_tokens: int, temperature: float, seed: int,
                 n: int) -> list[list[Generation]]:
        return [[self._reply(list(msgs), j, seed + j) for j in range(n)] for msgs in batch]

    def describe(self) -> dict[str, Any]:
        return {"kind": "fake", "model": self.name, "device": "none", "dtype": None, "endpoint": None,
                "rules": len(self.rules)}


def load_rules(path: Path) -> list[tuple[str, Reply]]:
    """Rules from a YAML/JSON file: a list of [pattern, reply] pairs or a {pattern: reply} mapping."""
    from audit.errors import InputError
    from audit.safeio import MiB, load_yaml

    data = load_yaml(Path(path), 8 * MiB, "fake-backend rules file")  # bounded, safe; one-line InputError
    rules: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        rules = [(str(p), r) for p, r in data.items()]
    elif isinstance(data, list) and all(isinstance(r, list) and len(r) == 2 for r in data):
        rules = [(str(p), r) for p, r in data]
    else:
        raise InputError(f"{path}: fake-backend rules must be a mapping or a list of [pattern, reply] pairs")
    for pattern, reply in rules:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InputError(f"{path}: rule {pattern[:60]!r} is not a regular expression ({exc})") from None
        if not (reply is None or isinstance(reply, str)
                or (isinstance(reply, list) and all(isinstance(x, str) for x in reply))):
            raise InputError(f"{path}: the reply to {pattern[:60]!r} must be a string, a list of strings or null")
    return rules
    raise InputError(f"{path}: fake-backend rules must be a mapping or a list of [pattern, reply] pairs")


def create(rules: dict[str, Reply] | list[tuple[str, Reply]] | None = None, rules_file: str | Path | None = None, **options: Any) -> FakeBackend:
    if rules_file is not None:
        rules = load_rules(Path(rules_file))
        options.setdefault("name", Path(rules_file).stem)
    return FakeBackend(rules, **options)
