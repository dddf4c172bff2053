"""Crafted hostile weight files through the CLI (a subprocess with a time and memory limit): code-executing
pickles, FIFOs, traversal in shard indexes, directories where files belong, GGUF count bombs and wrong-type
metadata, corrupt safetensors headers, truncated files, NaN/Inf/all-zero weights. Each must end in exit 0 or 2
(one line), run nothing, write nothing half-done."""

from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.hostile.conftest import assert_clean_exit, run_cli
from tests.support import tiny
from tests.support.gguf_rewrite import rewrite_gguf

COMMANDS = ("fingerprint", "compare", "audit")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    m = tiny.make_llama(0, hidden=32, layers=2, heads=2, kv_heads=1, ff=64)
    tiny.save_hf(m, root / "clean")
    tiny.save_hf(m, root / "sharded", shards=2)
    tiny.save_gguf(m, root / "clean.gguf", quant="F32")
    return root


def run_all(model: Path | str, corpus: Path, out: Path, *extra: str,
            commands: tuple[str, ...] = COMMANDS) -> list[tuple[int, str, str]]:
    """fingerprint, compare with the clean copy, and audit against it (or the `commands` given); each must exit
    cleanly and, on exit 2, leave no output file behind."""
    results = []
    for cmd in commands:
        target = out / f"{cmd}.json"
        if cmd == "fingerprint":
            args = ["fingerprint", model, "-o", target, "-q", *extra]
        elif cmd == "compare":
            args = ["compare", model, corpus / "clean", "--json", target, "-q", *extra]
        else:
            args = ["audit", model, "--no-registry", "-r", f"clean={corpus / 'clean'}", "--json", target, "-q", *extra]
        result = run_cli(*args)
        assert_clean_exit(result)
        if result[0] == 2:
            assert not target.exists(), f"{cmd}: exit 2 but {target.name} was written"
        results.append(result)
    return results


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


# ------------------------------------------------------------------------------------------ pickles


class _Marker:
    """Unpickling this runs code that writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("flavour", ["torch-zip", "raw-pickle", "state-dict-with-payload"])
@pytest.mark.parametrize("allow", [False, True])
def test_code_executing_pickle_is_refused_and_runs_nothing(corpus: Path, tmp_path: Path, flavour: str,
                                                           allow: bool) -> None:
    import torch

    marker = tmp_path / "PWNED"
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text((corpus / "clean" / "config.json").read_text())
    payload: object = _Marker(marker)
    if flavour == "state-dict-with-payload":
        payload = {"model.embed_tokens.weight": torch.zeros(4, 4), "x": _Marker(marker)}
    if flavour == "raw-pickle":
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, folder / "pytorch_model.bin")
    code, _out, err = run_cli("fingerprint", folder, "-q", *(["--allow-pickle"] if allow else []))
    assert_clean_exit((code, _out, err))
    assert code == 2, err
    assert not marker.exists(), "unpickling ran the payload"
    assert ("--allow-pickle" in err) != allow


# ------------------------------------------------------------------------------------------ FIFOs, directories


@pytest.mark.parametrize("where", ["model.safetensors", "shard", "file-argument", "gguf-argument", "config.json"])
def test_fifo_where_a_weight_file_belongs_is_refused_without_hanging(corpus: Path, tmp_path: Path, where: str) -> None:
    import shutil

    if where == "file-argument":
        model = _fifo(tmp_path / "model.safetensors")
    elif where == "gguf-argument":
        model = _fifo(tmp_path / "model.gguf")
    elif where == "shard":
        model = tmp_path / "m"
        shutil.copytree(corpus / "sharded", model)
        shard = sorted(model.glob("model-*.safetensors"))[-1]
        shard.unlink()
        _fifo(shard)
    else:
        model = tmp_path / "m"
        shutil.copytree(corpus / "clean", model)
        (model / where).unlink()
        _fifo(model / where)
    for code, _out, err in run_all(model, corpus, tmp_path, commands=COMMANDS if where == "model.safetensors" else ("fingerprint",)):
        assert code == 2 and ("FIFO" in err or "not a regular file" in err), err


@pytest.mark.parametrize("name", ["model.safetensors", "x.gguf", "model.safetensors.index.json", "config.json"])
def test_directory_where_a_file_belongs(corpus: Path, tmp_path: Path, name: str) -> None:
    import shutil

    model = tmp_path / "m"
    shutil.copytree(corpus / "clean", model)
    if (model / name).exists():
        (model / name).unlink()
    (model / name).mkdir()
    (model / name / "inner").write_text("x")
    target = model / name if name == "x.gguf" else model
    for code, _out, err in run_all(target, corpus, tmp_path, commands=("fingerprint",)):
        assert code == 2, err


# ------------------------------------------------------------------------------------------ shard index


@pytest.mark.parametrize("entry", ["../outside.safetensors", "ABSOLUTE", "sub/../../outside.safetensors", "SYMLINK",
                                   7, None, ["a"], "a\nb.safetensors"])
def test_shard_index_pointing_outside_or_of_the_wrong_type(corpus: Path, tmp_path: Path, entry: object) -> None:
    import shutil

    model = tmp_path / "m"
    shutil.copytree(corpus / "sharded", model)
    outside = tmp_path / "outside.safetensors"
    shutil.copy(sorted(model.glob("model-*.safetensors"))[0], outside)
    index = json.loads((model / "model.safetensors.index.json").read_text())
    if entry == "ABSOLUTE":
        entry = str(outside)
    elif entry == "SYMLINK":
        (model / "link.safetensors").symlink_to(outside)
        entry = "link.safetensors"
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = entry
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    for code, _out, err in run_all(model, corpus, tmp_path, commands=COMMANDS if entry == "SYMLINK" else ("fingerprint",)):
        assert code == 2, err
        assert "outside" not in err or "inside the checkpoint folder" in err or "outside the checkpoint" in err


# ------------------------------------------------------------------------------------------ safetensors headers


def _forge_header(src: Path, dst: Path, edit: Callable[[dict], object]) -> Path:
    blob = src.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(struct.pack("<Q", len(raw)) + raw + blob[8 + n:])
    return dst


def _first(header: dict) -> dict:
    return header[next(k for k in header if k != "__metadata__")]


HEADER_EDITS = {
    "dtype-list": lambda h: _first(h).__setitem__("dtype", ["F32"]),
    "shape-int": lambda h: _first(h).__setitem__("shape", 7),
    "shape-negative": lambda h: _first(h).__setitem__("shape", [-1, 4]),
    "shape-huge": lambda h: _first(h).__setitem__("shape", [10**30, 10**30]),
    "offsets-strings": lambda h: _first(h).__setitem__("data_offsets", ["0", "4"]),
    "offsets-reversed": lambda h: _first(h).__setitem__("data_offsets", _first(h)["data_offsets"][::-1]),
    "offsets-past-end": lambda h: _first(h).__setitem__("data_offsets", [0, 2**62]),
    "entry-null": lambda h: h.__setitem__(next(k for k in h if k != "__metadata__"), None),
    "metadata-nested": lambda h: h.__setitem__("__metadata__", {"a": {"b": 1}}),
}


@pytest.mark.parametrize("edit", sorted(HEADER_EDITS))
def test_safetensors_header_fields_of_the_wrong_type(corpus: Path, tmp_path: Path, edit: str) -> None:
    import shutil

    model = tmp_path / "m"
    shutil.copytree(corpus / "clean", model)
    _forge_header(corpus / "clean" / "model.safetensors", model / "model.safetensors", HEADER_EDITS[edit])
    for code, _out, err in run_all(model, corpus, tmp_path, commands=("fingerprint",)):
        assert code == 2 and "model.safetensors" in err, err


@pytest.mark.parametrize("kind", ["safetensors", "gguf"])
@pytest.mark.parametrize("keep", [0.3, 0.999])
def test_truncated_weight_files(corpus: Path, tmp_path: Path, kind: str, keep: float) -> None:
    src = corpus / "clean" / "model.safetensors" if kind == "safetensors" else corpus / "clean.gguf"
    blob = src.read_bytes()
    model = tmp_path / f"cut.{kind}"
    model.write_bytes(blob[:int(len(blob) * keep)])
    for code, _out, err in run_all(model, corpus, tmp_path, commands=("fingerprint",)):
        assert code == 2, err


# ------------------------------------------------------------------------------------------ GGUF


def _gguf_with(path: Path, m: tiny.TinyModel, extra: dict[str, object]) -> Path:
    """The tiny model as GGUF with some metadata overwritten."""
    tiny.save_gguf(m, path, quant="F32")
    return rewrite_gguf(path, path, extra)


@pytest.mark.parametrize("key,value", [
    ("tokenizer.ggml.tokens", [1, 2, 3]),
    ("llama.attention.head_count", "four"),
    ("tokenizer.ggml.bos_token_id", 1.5),
    ("llama.context_length", "long"),
    ("tokenizer.ggml.merges", [0.5]),
])
def test_gguf_metadata_of_the_wrong_type(corpus: Path, tmp_path: Path, key: str, value: object) -> None:
    m = tiny.make_llama(0, hidden=32, layers=2, heads=2, kv_heads=1, ff=64)
    model = _gguf_with(tmp_path / "m.gguf", m, {key: value})
    for code, _out, err in run_all(model, corpus, tmp_path, commands=("fingerprint",)):
        assert code == 2 and key in err, err


def test_gguf_array_claiming_2_40_elements(corpus: Path, tmp_path: Path) -> None:
    blob = bytearray((corpus / "clean.gguf").read_bytes())
    at = blob.find(b"tokenizer.ggml.tokens") + len(b"tokenizer.ggml.tokens") + 8  # value type, item type
    blob[at:at + 8] = struct.pack("<Q", 2**40)
    model = tmp_path / "bomb.gguf"
    model.write_bytes(bytes(blob))
    for code, _out, err in run_all(model, corpus, tmp_path):
        assert code == 2 and "1099511627776" in err, err


def test_gguf_tensor_count_and_kv_count_forged(corpus: Path, tmp_path: Path) -> None:
    blob = bytearray((corpus / "clean.gguf").read_bytes())
    for offset in (8, 16):  # tensor count, then KV count
        forged = bytearray(blob)
        forged[offset:offset + 8] = struct.pack("<Q", 2**62)
        model = tmp_path / f"count{offset}.gguf"
        model.write_bytes(bytes(forged))
        for code, _out, err in run_all(model, corpus, tmp_path, commands=("fingerprint",)):
            assert code == 2, err


# ------------------------------------------------------------------------------------------ NaN / Inf / zero


def _variant(corpus: Path, tmp_path: Path, what: str) -> Path:
    m = tiny.load_hf(corpus / "clean")
    t = {k: v.copy() for k, v in m.tensors.items()}
    for k in t:
        if what == "nan" and "up_proj" in k:
            t[k][:3] = np.nan
        elif what == "inf" and "down_proj" in k:
            t[k][:3] = np.inf
        elif what == "huge" and "down_proj" in k:
            t[k][:3] = 3e38  # finite, but its products overflow float32
        elif what == "zero" and "o_proj" in k:
            t[k][...] = 0
        elif what == "all-nan":
            t[k][...] = np.nan
    return tiny.save_hf(m.replace(tensors=t), tmp_path / what)


@pytest.mark.parametrize("what", ["nan", "inf", "huge", "zero"])
def test_nan_inf_and_zero_weights_are_flagged_and_the_rest_compared(corpus: Path, tmp_path: Path, what: str) -> None:
    model = _variant(corpus, tmp_path, what)
    results = run_all(model, corpus, tmp_path)
    assert [r[0] for r in results] == [0, 0, 0], [r[2] for r in results]
    for cmd in ("compare", "audit"):
        record = json.loads((tmp_path / f"{cmd}.json").read_text())
        flag = [f for f in record["flags"] if f["kind"] == "non-finite-weights"]
        assert flag, record["flags"]
        used = flag[0]["evidence"]["models"][0]
        assert used["model"] == what and (used["tensors_all_zero"] if what == "zero" else used["tensors_nonfinite"]) == 2
        assert "Left out of the comparison" in record["verdict"]["summary"]
        assert record["verdict"]["parent"] == "clean"  # the finite rows still show the parent


def test_all_nan_model_ends_with_one_clear_line(corpus: Path, tmp_path: Path) -> None:
    model = _variant(corpus, tmp_path, "all-nan")
    fingerprint, compare, audit = run_all(model, corpus, tmp_path)
    for code, _out, err in (compare, audit):
        assert code == 2 and "finite" in err, err


# ------------------------------------------------------------------------------------------ the Hub


def _hub_env(tmp_path: Path, url: str) -> dict[str, str]:
    return {"HF_ENDPOINT": url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"), "PROVAUDIT_CACHE": str(tmp_path / "pa"),
            "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": ""}


@pytest.mark.parametrize("case", ["index-traversal", "index-numbers", "header-length-30MB"])
def test_hostile_hub_repository(corpus: Path, tmp_path: Path, case: str) -> None:
    from tests.support.hub_server import HubRepo, HubTestServer

    files = {p.name: p for p in (corpus / "sharded").iterdir()}
    index = json.loads((corpus / "sharded" / "model.safetensors.index.json").read_text())
    first = next(iter(index["weight_map"]))
    if case == "header-length-30MB":
        blob = bytearray(files[index["weight_map"][first]].read_bytes())
        blob[:8] = struct.pack("<Q", 30_000_000)
        files[index["weight_map"][first]] = tmp_path / "forged.safetensors"
        files[index["weight_map"][first]].write_bytes(bytes(blob))
    else:
        index["weight_map"][first] = "../../secret.safetensors" if case == "index-traversal" else 12
        (tmp_path / "index.json").write_text(json.dumps(index))
        files["model.safetensors.index.json"] = tmp_path / "index.json"
    with HubTestServer({"org/hostile": HubRepo(files)}) as hub:
        code, _out, err = run_cli("fingerprint", "hf:org/hostile", "-q", "-o", tmp_path / "fp.json",
                                  env=_hub_env(tmp_path, hub.url))
    assert_clean_exit((code, _out, err))
    expected = {"index-traversal": "inside the checkpoint folder", "index-numbers": "not a shard file name",
                "header-length-30MB": "more than the 25,000,000"}[case]
    assert code == 2 and expected in err, err
    assert not (tmp_path / "fp.json").exists()


@pytest.mark.parametrize("body", ['[1, 2]', '{"sha": 5, "siblings": "x"}', 'not json', '{"id": null}'])
def test_hub_api_answers_of_the_wrong_shape(tmp_path: Path, body: str) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_HEAD = _answer  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        code, _out, err = run_cli("fingerprint", "hf:org/odd", "-q",
                                  env=_hub_env(tmp_path, f"http://127.0.0.1:{httpd.server_address[1]}"))
    finally:
        httpd.shutdown()
    assert_clean_exit((code, _out, err))
    assert code == 2, err


# ------------------------------------------------------------------------------------------ ONNX, adapters


@pytest.mark.parametrize("case", ["garbage", "fifo", "external-traversal"])
def test_hostile_onnx_files(corpus: Path, tmp_path: Path, case: str) -> None:
    model = tmp_path / "m" / "model.onnx"
    model.parent.mkdir()
    if case == "garbage":
        model.write_bytes(b"\x08\x07" + os.urandom(4096))
    elif case == "fifo":
        _fifo(model)
    else:
        import onnx
        from onnx import TensorProto, helper

        w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4], data_location=TensorProto.EXTERNAL)
        for key, value in (("location", "../../outside.bin"), ("offset", "0"), ("length", "64")):
            entry = w.external_data.add()
            entry.key, entry.value = key, value
        graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
        onnx.save(helper.make_model(graph), str(model))
        (tmp_path / "outside.bin").write_bytes(b"\0" * 64)
    code, _out, err = run_cli("fingerprint", model, "-q", "-o", tmp_path / "fp.json")
    assert_clean_exit((code, _out, err))
    assert code == 2 and not (tmp_path / "fp.json").exists(), err
    if case == "external-traversal":
        assert "outside the model's folder" in err


@pytest.mark.parametrize("case", ["weights-fifo", "config-directory"])
def test_hostile_adapter_folders(corpus: Path, tmp_path: Path, case: str) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    if case == "weights-fifo":
        (folder / "adapter_config.json").write_text(json.dumps(
            {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"],
             "base_model_name_or_path": "x"}))
        _fifo(folder / "adapter_model.safetensors")
    else:
        (folder / "adapter_config.json").mkdir()
        (folder / "adapter_model.safetensors").write_bytes((corpus / "clean" / "model.safetensors").read_bytes())
    code, _out, err = run_cli("fingerprint", folder, "-q", "-o", tmp_path / "fp.json")
    assert_clean_exit((code, _out, err))
    assert code == 2, err
