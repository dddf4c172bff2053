"""The subprocess CLI runner shared by the hostile-input tests.

`run_cli(*args)` runs `python -m audit ARGS...` in a fresh interpreter with a wall-clock timeout and an
address-space limit (RLIMIT_AS), so a hang or an unbounded allocation fails the test instead of the machine.
`assert_clean_exit(result)` checks the contract every hostile input must keep: exit 0 or 2, and on 2 exactly
one line on stderr (`provaudit: error: ...`), no traceback, no third-party warning lines.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

GiB = 1 << 30
ROOT = Path(__file__).resolve().parents[2]


def _limits(memory_gib: float) -> Callable[[], None]:
    """A preexec_fn: the address-space limit, and no core files."""

    def apply() -> None:
        limit = int(memory_gib * GiB)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_cli(*args: object, timeout: float = 60, memory_gib: float = 4,
            cwd: Path | str | None = None, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `provaudit ARGS...` in a subprocess limited to `timeout` seconds and `memory_gib` GiB of address
    space; return (returncode, stdout, stderr). A timeout fails the calling test (a hang is a bug). `env`: extra
    environment variables (e.g. HF_ENDPOINT for a test Hub; the Hub is offline unless HF_HUB_OFFLINE is given)."""
    env = {**os.environ, **(env or {})}
    env.pop("PROVAUDIT_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["COLUMNS"] = "200"
    try:
        proc = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "audit", *(str(a) for a in args)],
            capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT, env=env,
            preexec_fn=_limits(memory_gib), stdin=subprocess.DEVNULL, check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"provaudit {' '.join(map(str, args))} did not finish within {timeout} s (a hang)")
    return proc.returncode, proc.stdout, proc.stderr


def assert_clean_exit(result: tuple[int, str, str], allowed: tuple[int, ...] = (0, 2)) -> None:
    """Exit status in `allowed` (0 or 2); on 2 stderr is exactly one `provaudit: error:` line."""
    code, _out, err = result
    assert code in allowed, f"exit {code} (expected one of {allowed}); stderr:\n{err[-3000:]}"
    if code == 2:
        lines = err.strip("\n").split("\n")
        assert len(lines) == 1, f"stderr is {len(lines)} lines, expected one:\n{err[-3000:]}"
        assert lines[0].startswith("provaudit: error: ") or lines[0].startswith("Error: "), lines[0]
        assert "Traceback" not in err
