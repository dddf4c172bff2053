"""Session fixtures for the real-model tests: the cached SmolLM2-derived cases and an in-process CLI runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.realcases import build_cases, default_cache_dir

RealCli = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def real_cases() -> dict[str, Path]:
    """{case: path} for every real case (built once, cached across sessions)."""
    return build_cases(default_cache_dir())


@pytest.fixture(scope="session")
def real_cli(tmp_path_factory: pytest.TempPathFactory) -> RealCli:
    """Run `provaudit ARGS --json OUT -q` in-process; assert exit status 0; return the JSON record."""
    from audit.cli import main

    out_dir = tmp_path_factory.mktemp("records")
    counter = iter(range(10**6))

    def run(*args: str) -> dict[str, Any]:
        out = out_dir / f"record-{next(counter)}.json"
        argv = [*map(str, args), "--json", str(out), "-q"]
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code in (0, None), f"provaudit {' '.join(argv)} exited with {exc.code}"
        else:
            raise AssertionError("provaudit main() returned without sys.exit")
        return json.loads(out.read_text(encoding="utf-8"))

    return run


@pytest.fixture(scope="session")
def real_compare(real_cases: dict[str, Path], real_cli: RealCli) -> Callable[[str], dict[str, Any]]:
    """`provaudit compare CASE BASE --reference-name base`, memoised per case for the session."""
    memo: dict[str, dict[str, Any]] = {}

    def get(case: str) -> dict[str, Any]:
        if case not in memo:
            memo[case] = real_cli("compare", real_cases[case], real_cases["base"], "--reference-name", "base")
        return memo[case]

    return get
