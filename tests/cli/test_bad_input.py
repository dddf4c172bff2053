"""Unusable input gets one clear line on stderr, exit status 2, no traceback and no output files."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import tiny


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("good")
    return tiny.save_hf(tiny.make_llama(0, layers=3), d / "model")


def _assert_clean_failure(res, *outputs: Path) -> None:
    assert res.code == 2, (res.code, res.err)
    lines = [ln for ln in res.err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("provaudit: error:"), res.err
    assert "Traceback" not in res.err
    for out in outputs:
        assert not out.exists(), f"{out} was written despite the error"


def _run_failing(run_cli, tmp_path: Path, cand: Path, ref: Path, *extra: str):
    out_json, out_html = tmp_path / "out.json", tmp_path / "out.html"
    res = run_cli("compare", cand, ref, "--json", out_json, "--html", out_html, "-q", *extra)
    _assert_clean_failure(res, out_json, out_html)
    return res


def test_missing_path(run_cli, good, tmp_path):
    res = _run_failing(run_cli, tmp_path, tmp_path / "nope", good)
    assert "no such file" in res.err


def test_truncated_safetensors(run_cli, good, tmp_path):
    data = (good / "model.safetensors").read_bytes()
    bad = tmp_path / "trunc.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    res = _run_failing(run_cli, tmp_path, bad, good)
    assert "truncated" in res.err


def test_garbage_safetensors_header(run_cli, good, tmp_path):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(struct.pack("<Q", 20) + b"this is not json!!!!" + b"\0" * 64)
    _run_failing(run_cli, tmp_path, bad, good)


def test_header_claiming_absurd_sizes(run_cli, good, tmp_path):
    bad = tmp_path / "absurd.safetensors"
    bad.write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    _run_failing(run_cli, tmp_path, bad, good)
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 40, 1 << 20], "data_offsets": [0, 1 << 62]}}).encode()
    bad.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    _run_failing(run_cli, tmp_path, bad, good)


def test_config_not_json(run_cli, good, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    (broken / "config.json").write_text("{not json")
    res = _run_failing(run_cli, tmp_path, broken, good)
    assert "config.json" in res.err


def test_truncated_and_corrupt_gguf(run_cli, good, tmp_path):
    path = tiny.save_gguf(tiny.make_llama(0, layers=3), tmp_path / "m.gguf")
    data = path.read_bytes()
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(data[: len(data) * 2 // 3])
    _run_failing(run_cli, tmp_path, trunc, good)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\xff" * 200)
    _run_failing(run_cli, tmp_path, junk, good)


def test_pickle_needs_the_flag(run_cli, good, tmp_path):
    pytest.importorskip("torch")
    pkl = tiny.save_pickle(tiny.finetune(tiny.make_llama(0, layers=3), 0.05), tmp_path / "pytorch_model.bin")
    res = _run_failing(run_cli, tmp_path, pkl, good)
    assert "--allow-pickle" in res.err
    ok = run_cli("compare", pkl, good, "--allow-pickle", "--json", "-", "-q")
    assert ok.code == 0, ok.err
    assert ok.record()["verdict"]["label"] in ("fine-tuned", "derived")


def test_nothing_comparable(run_cli, good, tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    lonely = tmp_path / "lonely.safetensors"
    save_file({"bias": np.zeros(7, dtype=np.float32), "scale": np.ones(3, dtype=np.float32)}, str(lonely))
    res = _run_failing(run_cli, tmp_path, lonely, good)
    assert "nothing comparable" in res.err


def test_help_is_light():
    code = (
        "import sys\n"
        "from audit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY' if {'torch', 'transformers', 'scipy'} & set(sys.modules) else 'LIGHT')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Commands:" in out and out.strip().endswith("LIGHT")


def test_python_dash_m_entry_point(good):
    proc = subprocess.run([sys.executable, "-m", "audit", "compare", str(good), str(good), "--json", "-", "-q"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["verdict"]["label"] == "derived" and "exact-copy" in rec["verdict"]["operations"]
