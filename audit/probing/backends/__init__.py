"""Lazy registry of probe backends: a name maps to a module with `create(**options) -> Backend`.

Modules are imported only when their backend is asked for, so torch loads only for `transformers`.
"""

from __future__ import annotations

import importlib
from typing import Any

from audit.probing.backends.base import Backend, Generation, Messages

BACKENDS: dict[str, str] = {
    "transformers": "audit.probing.backends.transformers_local",
    "openai": "audit.probing.backends.openai_http",
    "fake": "audit.probing.backends.fake",
}

__all__ = ["BACKENDS", "Backend", "Generation", "Messages", "create_backend"]


def create_backend(name: str, **options: Any) -> Backend:
    """Instantiate the backend registered as `name` with its options."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r} (known: {', '.join(sorted(BACKENDS))})")
    return importlib.import_module(BACKENDS[name]).create(**options)
