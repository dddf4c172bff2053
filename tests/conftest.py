"""Shared fixtures: a runner for the real CLI entry point (in-process) and tiny checkpoints on disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from audit.cli import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def record(self) -> dict:
        return json.loads(self.out)


@pytest.fixture(scope="session", autouse=True)
def records_match_the_published_schema():
    """Every record any test makes the tool write is checked against the JSON Schema of the record."""
    from audit.record.models import Record
    from tests.support.schema import schema_problems

    dump = Record.to_json_dict

    def checked(self: Record) -> dict:
        data = dump(self)
        problems = schema_problems(data)
        assert not problems, "record breaks the published schema: " + "; ".join(problems[:5])
        return data

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Record, "to_json_dict", checked)
        yield


@pytest.fixture
def run_cli(capsys):
    """Run `provaudit ARGS...` in-process; return exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def compare_record(run_cli, cand: Path, ref: Path, *extra: str, ref_name: str = "parent") -> dict:
    res = run_cli("compare", cand, ref, "--reference-name", ref_name, "--json", "-", "-q", *extra)
    assert res.code == 0, res.err
    return res.record()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny")
