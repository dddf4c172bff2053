"""The progress interface long-running steps report to (the CLI draws it; library callers may pass None)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, description: str, total: int) -> None: ...

    def tick(self) -> None: ...
