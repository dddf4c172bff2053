"""Crafted hostile text and structured files, each run through the CLI in a subprocess with a time and a
memory limit (tests/hostile/conftest.py): exit 0 or 2, one line on stderr, nothing executed, nothing
half-written.

Cases: auto_map code in config.json (must never run), a YAML alias bomb (probe suite, manifest, fake rules),
100,000-deep JSON (config, record, tokenizer), 5,000-digit and 10^400 numbers, a record claiming 10^12
layers, FIFOs where a manifest / registry entry / suite / tokenizer.json / record belongs, vocab.txt that
is not UTF-8, a newline in a path, a folder where a file belongs, a manifest with 30 bad rows.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.hostile.conftest import assert_clean_exit, run_cli
from tests.support import tiny

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "records_v1"
MARKER_CODE = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.save_hf(tiny.make_llama(0, layers=2), tmp_path_factory.mktemp("corpus") / "good")


def _variant(good: Path, where: Path, config: dict | None = None,
             files: Mapping[str, str | bytes] | None = None) -> Path:
    shutil.copytree(good, where)
    if config is not None:
        cfg = json.loads((where / "config.json").read_text())
        cfg.update(config)
        (where / "config.json").write_text(json.dumps(cfg))
    for name, data in (files or {}).items():
        (where / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return where


def _fingerprint(model: Path, tmp_path: Path) -> tuple[int, str, str]:
    out = tmp_path / "fp.json"
    result = run_cli("fingerprint", model, "-o", out, "-q")
    assert_clean_exit(result)
    if result[0] != 0:
        assert not out.exists()
    return result


# ---------------------------------------------------------------------------------------------- nothing executed


def test_auto_map_code_never_runs(good: Path, tmp_path: Path) -> None:
    """A config whose auto_map names a module that writes a marker: fingerprint, compare and audit read the
    model as data; the module is never imported."""
    marker = tmp_path / "MARKER"
    model = _variant(good, tmp_path / "automap", config={
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"},
        "architectures": ["EvilModel"], "model_type": "evil"},
        files={"evil.py": MARKER_CODE.format(marker=str(marker)), "__init__.py": "import evil\n"})
    out = tmp_path / "r.json"
    for args in (("fingerprint", model, "-o", tmp_path / "fp.json", "-q"),
                 ("compare", model, good, "--json", out, "-q"),
                 ("audit", model, "--reference", good, "--no-registry", "--json", out, "-q")):
        result = run_cli(*args)
        assert_clean_exit(result, allowed=(0,))
    # probing loads the model with transformers: trust_remote_code=False refuses the custom code, in one line
    result = run_cli("probe", model, "--suite", "self-identity", "--samples", "1", "--max-new-tokens", "2", "-q",
                     timeout=120, memory_gib=8)
    assert_clean_exit(result, allowed=(2,))
    assert "custom code" in result[2]
    assert not marker.exists(), "auto_map code ran"


# ---------------------------------------------------------------------------------------------- sizes and depth


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("deep", "[" * 100_000 + "]" * 100_000, "nested"),
    ("digits5000", '{"hidden_size": ' + "9" * 5000 + "}", "number"),
    ("pow400", '{"hidden_size": 1' + "0" * 400 + "}", "number"),
    ("float400", '{"rope_theta": 1e400}', "float"),
    ("layers1e12", '{"num_hidden_layers": 1000000000000}', "num_hidden_layers"),
    ("negative", '{"intermediate_size": -160}', "intermediate_size"),
    ("heads_huge", '{"num_attention_heads": 10000000000000000000000}', "num_attention_heads"),
    ("list", "[1, 2, 3]", "object"),
])
def test_hostile_config_json(good: Path, tmp_path: Path, name: str, text: str, expected: str) -> None:
    model = _variant(good, tmp_path / name, files={"config.json": text})
    code, _, err = _fingerprint(model, tmp_path)
    assert code == 2 and expected in err and "config.json" in err


@pytest.mark.parametrize(("name", "files", "expected"), [
    ("tok_list", {"tokenizer.json": "[1, 2]"}, "expected a JSON object"),
    ("tok_deep", {"tokenizer.json": '{"model": ' + "[" * 100_000 + "]" * 100_000 + "}"}, "nested"),
    ("tok_id", {"tokenizer.json": json.dumps({"model": {"type": "BPE", "vocab": {"a": 10 ** 12}}})}, "outside"),
    ("tok_added_num", {"tokenizer.json": json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}},
                                                     "added_tokens": [5, 6]})}, "added_tokens[0]"),
    ("tok_model_str", {"tokenizer.json": json.dumps({"model": "BPE"})}, "model must be an object"),
    ("tcfg_list", {"tokenizer_config.json": "[]"}, "tokenizer_config.json"),
    ("stmap_num", {"special_tokens_map.json": "42"}, "special_tokens_map.json"),
])
def test_hostile_tokenizer_files(good: Path, tmp_path: Path, name: str, files: dict[str, str], expected: str) -> None:
    code, _, err = _fingerprint(_variant(good, tmp_path / name, files=files), tmp_path)
    assert code == 2 and expected in err


def test_vocab_txt_not_utf8(good: Path, tmp_path: Path) -> None:
    model = _variant(good, tmp_path / "wp")
    (model / "tokenizer.json").unlink()
    (model / "vocab.txt").write_bytes(b"[PAD]\n\xff\xfe\xfa not utf-8\n")
    code, _, err = _fingerprint(model, tmp_path)
    assert code == 2 and "vocab.txt" in err and "UTF-8" in err


# ---------------------------------------------------------------------------------------------- records


def _record() -> dict:
    return json.loads((FIXTURES / "compare.json").read_text(encoding="utf-8"))


def test_record_claiming_1e12_layers_is_refused_quickly(tmp_path: Path) -> None:
    """num_layers / reference_layers / layer indices of 10^12: refused, not rendered (the report used to
    allocate a set of 10^12 layer numbers)."""
    for field in ("num_layers", "reference_layers", "layer_map"):
        rec = _record()
        if field == "layer_map":
            rec["comparisons"][0]["layer_map"] = [[10 ** 12, 10 ** 12 - 1, 0.5]]
        elif field == "reference_layers":
            rec["comparisons"][0]["reference_layers"] = 10 ** 12
        else:
            rec["references"][0]["architecture"]["num_layers"] = 10 ** 12
        path = tmp_path / f"{field}.json"
        path.write_text(json.dumps(rec))
        result = run_cli("report", path, "--html", tmp_path / "r.html", timeout=60, memory_gib=3)
        assert_clean_exit(result)
        assert result[0] == 2 and "record" in result[2]
        assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(("name", "text"), [
    ("deep", "[" * 100_000 + "]" * 100_000),
    ("digits", '{"schema": "provaudit.record/1", "seed": ' + "7" * 5000 + "}"),
    ("pow400", None),
    ("nan", '{"schema": "provaudit.record/1", "x": NaN}'),
    ("latin1", b'{"schema": "provaudit.record/1", "name": "\xe9"}'),
])
def test_hostile_record_files(tmp_path: Path, name: str, text: str | bytes | None) -> None:
    path = tmp_path / f"{name}.json"
    if text is None:
        rec = _record()
        rec["subject"]["architecture"]["hidden_size"] = 10 ** 399
        path.write_text(json.dumps(rec))
    else:
        path.write_bytes(text.encode() if isinstance(text, str) else text)
    result = run_cli("report", path, "--json", tmp_path / "o.json", "--html", tmp_path / "o.html")
    assert_clean_exit(result)
    assert result[0] == 2 and not (tmp_path / "o.json").exists() and not (tmp_path / "o.html").exists()


# ---------------------------------------------------------------------------------------------- YAML


def test_alias_bomb_suite_manifest_and_rules(good: Path, tmp_path: Path) -> None:
    """9^9 expanded values from a 1 KB file: refused, in seconds and within the memory limit."""
    suite = tmp_path / "bomb.yaml"
    suite.write_text("kind: suite\nsuite: bomb\n" + ALIAS_BOMB)
    result = run_cli("probe", "--fake", suite, "--suite", suite, "-q", timeout=60, memory_gib=3)
    assert_clean_exit(result)
    assert result[0] == 2 and "bomb.yaml" in result[2]
    manifest = tmp_path / "bomb-manifest.yaml"
    manifest.write_text("bomb: " + ALIAS_BOMB.replace("\n", "\n  ").rstrip() + "\nmodels: [*i, *i, *i]\n")
    code, _, err = run_cli("batch", manifest, "--out", tmp_path / "out", "-q", timeout=60, memory_gib=3)
    lines = err.strip("\n").split("\n")  # a manifest lists its problems, one line each
    assert code == 2 and lines[0].startswith("provaudit: error: ") and len(lines) <= 22 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    rules = tmp_path / "bomb-rules.yaml"
    rules.write_text(ALIAS_BOMB)
    result = run_cli("probe", "--fake", rules, "-q", timeout=60, memory_gib=3)
    assert_clean_exit(result)
    assert result[0] == 2 and "bomb-rules.yaml" in result[2]


def test_deep_yaml_suite(tmp_path: Path) -> None:
    suite = tmp_path / "deep.yaml"
    suite.write_text("kind: suite\nprobes: " + "[" * 100_000 + "]" * 100_000 + "\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text("'.*': hello\n")
    result = run_cli("probe", "--fake", rules, "--suite", suite, "-q")
    assert_clean_exit(result)
    assert result[0] == 2 and "deep.yaml" in result[2]


# ---------------------------------------------------------------------------------------------- FIFOs and folders


def _mkfifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_fifo_where_files_belong(good: Path, tmp_path: Path) -> None:
    """A FIFO never blocks the tool: as a manifest, a registry entry, a suite, a tokenizer.json, a record."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("'.*': hello\n")
    manifest = _mkfifo(tmp_path / "manifest.csv")
    result = run_cli("batch", manifest, "--out", tmp_path / "out", "-q", timeout=30)
    assert_clean_exit(result)
    assert result[0] == 2

    suite = _mkfifo(tmp_path / "suite.yaml")
    result = run_cli("probe", "--fake", rules, "--suite", suite, "-q", timeout=30)
    assert_clean_exit(result)
    assert result[0] == 2 and "not a regular file" in result[2]

    record = _mkfifo(tmp_path / "record.json")
    result = run_cli("report", record, timeout=30)
    assert_clean_exit(result)
    assert result[0] == 2 and "not a regular file" in result[2]

    model = _variant(good, tmp_path / "fifotok")
    (model / "tokenizer.json").unlink()
    _mkfifo(model / "tokenizer.json")
    result = run_cli("fingerprint", model, "-o", tmp_path / "fp.json", "-q", timeout=30)
    assert_clean_exit(result)
    assert result[0] == 2 and "tokenizer.json" in result[2]

    registry = tmp_path / "registry"
    for sub, name in (("architectures", "x.yaml"), ("tokenizers", "x.json"), ("weights", "x.safetensors")):
        (registry / sub).mkdir(parents=True)
        _mkfifo(registry / sub / name)
    result = run_cli("refs", "list", "--registry", registry, timeout=60)
    assert_clean_exit(result)
    result = run_cli("audit", good, "--registry", registry, "--json", tmp_path / "a.json", "-q", timeout=120)
    assert_clean_exit(result, allowed=(0,))


def test_folder_where_a_file_belongs(good: Path, tmp_path: Path) -> None:
    folder = tmp_path / "folder.json"
    folder.mkdir()
    for args in (("report", folder), ("batch", folder), ("probe", "--fake", folder, "-q"),
                 ("compare", good, good, "--json", folder, "-q"), ("fingerprint", good, "-o", folder, "-q")):
        result = run_cli(*args)
        assert_clean_exit(result)
        assert result[0] == 2, args
    model = _variant(good, tmp_path / "dirtok")
    (model / "tokenizer.json").unlink()
    (model / "tokenizer.json").mkdir()
    code, _, err = _fingerprint(model, tmp_path)
    assert code == 2 and "is a directory" in err


def test_newline_and_escape_in_a_path_print_on_one_line(good: Path, tmp_path: Path) -> None:
    weird = tmp_path / "bad\nname\x1b[31m"
    weird.mkdir()
    (weird / "record.json").write_text("[]")
    result = run_cli("report", weird / "record.json")
    assert_clean_exit(result)
    assert result[0] == 2 and "bad\\nname\\x1b[31m" in result[2]
    result = run_cli("compare", weird / "missing", good, "-q")
    assert_clean_exit(result)
    assert "\\n" in result[2]


# ---------------------------------------------------------------------------------------------- manifests


def test_manifest_with_30_bad_rows_lists_20(good: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "bad.csv"
    manifest.write_text("model,references\n" + "".join(f"ghost{i},{good}\n" for i in range(30)))
    code, out, err = run_cli("batch", manifest, "--out", tmp_path / "out", "-q")
    assert code == 2 and "Traceback" not in err and not (tmp_path / "out").exists()
    lines = err.strip("\n").split("\n")
    assert lines[0].startswith("provaudit: error: ") and "30 problems" in lines[0]
    rows = [ln for ln in lines[1:] if "bad.csv:" in ln]
    assert len(rows) == 20 and all("ghost" in ln for ln in rows)
    assert lines[-1].strip() == "... and 10 more"
    assert len(lines) == 22
