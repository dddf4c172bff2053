"""`provaudit probe` argument handling: --list, bad suites and bad combinations exit 2 with one line."""

from __future__ import annotations

from pathlib import Path


def test_probe_is_registered(run_cli) -> None:
    res = run_cli("--help")
    assert res.code == 0 and "probe" in res.out


def test_list(run_cli) -> None:
    res = run_cli("probe", "--list")
    assert res.code == 0
    lines = res.out.strip().splitlines()
    assert any(line.startswith("self-identity") for line in lines)
    assert any(line.startswith("distillation-leak") for line in lines)
    assert "en,zh" in res.out


def test_bad_suite_file_exits_2(run_cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: suite\nsuite: bad\ndescription: x\nprobes:\n  - {id: a, language: en}\n", encoding="utf-8")
    rules = tmp_path / "rules.yaml"
    rules.write_text('- [".", "hi"]\n', encoding="utf-8")
    res = run_cli("probe", "--fake", rules, "--suite", bad)
    assert res.code == 2
    assert res.err.count("\n") == 1 and "provaudit: error:" in res.err and str(bad) in res.err
    assert res.out == ""


def test_unknown_suite_exits_2(run_cli) -> None:
    res = run_cli("probe", "--endpoint", "http://127.0.0.1:1/v1", "--model", "x", "--suite", "nope")
    assert res.code == 2 and "unknown suite 'nope'" in res.err


def test_usage_errors_exit_2(run_cli, tmp_path: Path) -> None:
    assert run_cli("probe").code == 2
    assert run_cli("probe", "--endpoint", "http://127.0.0.1:1/v1").code == 2
    assert run_cli("probe", "--model", "gpt-x").code == 2
    assert run_cli("probe", tmp_path, "--endpoint", "http://127.0.0.1:1/v1", "--model", "x").code == 2
    assert run_cli("probe", tmp_path / "missing-model").code == 2
    assert run_cli("probe", "--endpoint", "http://127.0.0.1:1/v1", "--model", "x", "--samples", "0").code == 2
