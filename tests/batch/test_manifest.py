"""Manifest parsing: CSV and YAML rows, and errors that name the line (nothing is run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.batch.manifest import read_manifest
from audit.errors import InputError


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_resolve_against_the_manifest_folder(models: Path) -> None:
    path = _write(models, "ok.csv", "# comment line\nmodel,references,probes,declared,name\n"
                                    "ft,base;ref=base,self-identity,Acme AI;Acme,my model\n\nft2,,,,\n")
    rows = read_manifest(path)
    assert [r.line for r in rows] == [3, 5]
    first = rows[0]
    assert first.path == str((models / "ft").resolve()) and first.model == "ft" and first.name == "my model"
    assert first.references == ((str((models / "base").resolve()), None), (str((models / "base").resolve()), "ref"))
    assert first.probes == ("self-identity",) and first.declared == ("Acme AI", "Acme")
    assert rows[1].references == () and rows[1].name is None


def test_yaml_rows_lists_and_bare_paths(models: Path) -> None:
    path = _write(models, "ok.yaml", "models:\n  - model: ft\n    references: [base]\n    declared: Acme\n  - ft2\n")
    rows = read_manifest(path)
    assert [(r.line, r.model, len(r.references), r.declared) for r in rows] == [(2, "ft", 1, ("Acme",)),
                                                                                 (5, "ft2", 0, ())]


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("unknown.csv", "model,refs\nft,base\n", "unknown.csv:1: unknown column 'refs'"),
    ("nomodel.csv", "references\nbase\n", "nomodel.csv:1: the header has no 'model' column"),
    ("missing.csv", "model,references\nft,base\n\nghost,base\n", "missing.csv:4: model ghost: no such file"),
    ("missingref.csv", "model,references\nft,base;nowhere\n", "missingref.csv:2: reference nowhere: no such file"),
    ("cells.csv", "model\nft,base\n", "cells.csv:2: 2 cells but the header names 1 columns"),
    ("empty.csv", "", "empty.csv:1: empty manifest"),
    ("unknown.yaml", "- model: ft\n  references: [base]\n- model: ft2\n  refs: base\n",
     "unknown.yaml:4: unknown column 'refs'"),
    ("missing.yaml", "- model: ft\n- model: ghost\n", "missing.yaml:2: model ghost: no such file"),
    ("badtype.yaml", "- model: [ft, ft2]\n", "badtype.yaml:1: model must be a string"),
    ("notyaml.yaml", "- model: ft\n  references: [base\n", "notyaml.yaml:"),
    ("nomodel.yaml", "- references: [base]\n", "nomodel.yaml:1: no model given"),
])
def test_bad_manifest_names_the_line(models: Path, name: str, text: str, expected: str) -> None:
    with pytest.raises(InputError) as info:
        read_manifest(_write(models, name, text))
    assert expected in str(info.value)


def test_every_bad_line_is_reported_at_once(models: Path) -> None:
    path = _write(models, "many.yaml", "- model: ghost1\n- model: ft\n  colour: red\n- model: ghost2\n")
    with pytest.raises(InputError) as info:
        read_manifest(path)
    text = str(info.value)
    assert "many.yaml:1: model ghost1" in text and "many.yaml:3: unknown column 'colour'" in text
    assert "many.yaml:4: model ghost2" in text


def test_cli_bad_manifest_exits_2_and_runs_nothing(run_cli, models: Path, tmp_path: Path) -> None:
    manifest = _write(models, "cli-bad.csv", "model,references\nft,base\nghost,base\n")
    out = tmp_path / "out"
    res = run_cli("batch", manifest, "--out", out, "--no-registry", "-q")
    assert res.code == 2 and "cli-bad.csv:3: model ghost: no such file or folder" in res.err
    assert not out.exists()
    res = run_cli("batch", _write(models, "cli-norefs.csv", "model\nft\n"), "--out", out, "--no-registry", "-q")
    assert res.code == 2 and "cli-norefs.csv:2: no references" in res.err and not out.exists()
    res = run_cli("batch", _write(models, "m.txt", "ft\n"), "--out", out, "-q")
    assert res.code == 2 and ".csv, .yaml or .yml" in res.err
