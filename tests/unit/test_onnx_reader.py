"""The ONNX reader: initializers come back bit for bit, MatMul weights in (out, in) orientation under
recovered names, int8 weights dequantized the way the graph says, and bad files are one InputError.

The models are built with the `onnx` helper API the way exporters lay them out: torch.onnx's TorchScript
exporter (`onnx::MatMul_N` initializers holding W.T, the bias added by name), its dynamo exporter with
int8 weights (`val_N_q` -> Cast -> Mul(`val_N_scale`)), DequantizeLinear and onnxruntime's dynamic
quantization (MatMulInteger), Gemm with and without transB, and node-path names without biases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from audit.checkpoint import open_checkpoint  # noqa: E402
from audit.errors import InputError  # noqa: E402
from audit.fingerprinting.roles import assign_roles  # noqa: E402
from tests.support import tiny  # noqa: E402

LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
           "intermediate.dense", "output.dense")
NORMS = ("attention.output.LayerNorm", "output.LayerNorm")


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    assert a.dtype == np.float32, a.dtype
    return a.view(np.uint32)


def _same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    np.testing.assert_array_equal(_bits(got), _bits(np.asarray(want, dtype=np.float32)))


class _Graph:
    """Collects initializers and nodes; `value` names are graph values, as in an exported model."""

    def __init__(self) -> None:
        self.inits: list[TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []
        self.n = 100

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], name: str = "", **attrs: object) -> str:
        self.n += 1
        out = f"{name or op}_output_{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name or f"{op}_{self.n}", **attrs))
        return out

    def save(self, path: Path, external: bool = False) -> Path:
        graph = helper.make_graph(self.nodes, "g", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 8])],
                                  [helper.make_tensor_value_info(self.nodes[-1].output[0], TensorProto.FLOAT, None)],
                                  self.inits)
        model = helper.make_model(graph, producer_name="pytorch", opset_imports=[helper.make_opsetid("", 17)])
        path.parent.mkdir(parents=True, exist_ok=True)
        if external:
            onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                            location="weights.bin", size_threshold=0)
        else:
            onnx.save_model(model, str(path))
        return path


def export_bert(m: tiny.TinyModel, path: Path, style: str = "torchscript", prefix: str = "model.0.auto_model.",
                external: bool = False) -> Path:
    """Write tiny BERT `m` as an exporter would. style: torchscript | castmul | dequantizelinear |
    matmulinteger | gemm-transb | gemm."""
    g = _Graph()
    t = m.tensors
    x = g.node("Gather", [g.init(prefix + "embeddings.word_embeddings.weight", t["embeddings.word_embeddings.weight"]),
                          "input_ids"], "/embeddings/word_embeddings/Gather")
    for extra in ("position_embeddings", "token_type_embeddings"):
        name = f"embeddings.{extra}.weight"
        x = g.node("Add", [x, g.node("Gather", [g.init(prefix + name, t[name]), "input_ids"])])
    x = g.node("LayerNormalization", [x, g.init(prefix + "embeddings.LayerNorm.weight", t["embeddings.LayerNorm.weight"]),
                                      g.init(prefix + "embeddings.LayerNorm.bias", t["embeddings.LayerNorm.bias"])])
    for i in range(tiny.layer_count(m)):
        for lin in LINEARS:
            hf = f"encoder.layer.{i}.{lin}"
            w, b = t[hf + ".weight"], t[hf + ".bias"]
            bias = g.init(prefix + hf + ".bias", b)
            g.n += 1
            if style == "torchscript":
                y = g.node("MatMul", [x, g.init(f"onnx::MatMul_{g.n}", w.T)], f"/{hf.replace('.', '/')}/MatMul")
                x = g.node("Add", [bias, y])
            elif style in ("gemm", "gemm-transb"):
                stored = w if style == "gemm-transb" else w.T
                x = g.node("Gemm", [x, g.init(f"onnx::MatMul_{g.n}", stored), bias],
                           transB=1 if style == "gemm-transb" else 0)
            elif style == "castmul":  # per-output-column scale over W.T (in, out)
                q, scale = _sym_int8(w.T, axis=0)
                wq = g.node("Mul", [g.node("Cast", [g.init(f"val_{g.n}_q", q)], to=TensorProto.FLOAT),
                                    g.init(f"val_{g.n}_scale", scale)])
                x = g.node("Add", [g.node("MatMul", [x, wq]), bias])
            elif style == "dequantizelinear":  # uint8 with a zero point, per output column (axis 1)
                q, scale, zp = _asym_uint8(w.T, axis=0)
                wq = g.node("DequantizeLinear", [g.init(f"onnx::MatMul_{g.n}_quantized", q),
                                                 g.init(f"onnx::MatMul_{g.n}_scale", scale.ravel()),
                                                 g.init(f"onnx::MatMul_{g.n}_zero_point", zp.ravel())], axis=1)
                x = g.node("Add", [g.node("MatMul", [x, wq]), bias])
            elif style == "matmulinteger":  # onnxruntime quantize_dynamic, per-tensor
                q, scale, zp = _asym_uint8(w.T, axis=None)
                base = f"onnx::MatMul_{g.n}"
                xq = g.node("DynamicQuantizeLinear", [x])
                mm = g.node("MatMulInteger", [xq, g.init(base + "_quantized", q), "", g.init(base + "_zero_point", zp)])
                y = g.node("Mul", [g.node("Cast", [mm], to=TensorProto.FLOAT), g.init(base + "_scale", scale)])
                x = g.node("Add", [y, bias])
            else:
                raise ValueError(style)
        for norm in NORMS:
            hf = f"encoder.layer.{i}.{norm}"
            x = g.node("LayerNormalization", [x, g.init(prefix + hf + ".weight", t[hf + ".weight"]),
                                              g.init(prefix + hf + ".bias", t[hf + ".bias"])])
    g.init("shape_const", np.array([1, 8, -1], dtype=np.int64))  # non-float initializers are not weights
    return g.save(path, external)


def _sym_int8(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    scale = (np.abs(w).max(axis=axis, keepdims=True) / 127).astype(np.float32)
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale


def _asym_uint8(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = w.min(axis=axis, keepdims=axis is not None), w.max(axis=axis, keepdims=axis is not None)
    scale = np.asarray((hi - lo) / 255, dtype=np.float32)
    zp = np.asarray(np.clip(np.round(-lo / scale), 0, 255), dtype=np.uint8)
    return np.clip(np.round(w / scale) + zp, 0, 255).astype(np.uint8), scale, zp


@pytest.fixture(scope="module")
def bert() -> tiny.TinyModel:
    return tiny.make_bert(0, hidden=32, layers=2, ff=64, vocab=300, positions=16)


def _hf(name: str, prefix: str = "model.0.auto_model.") -> str:
    return name.removeprefix(prefix)


@pytest.mark.parametrize("style", ["torchscript", "gemm", "gemm-transb"])
def test_float_export_reads_back_bit_identical_in_hf_orientation(tmp_path: Path, bert: tiny.TinyModel, style: str) -> None:
    ckpt = open_checkpoint(export_bert(bert, tmp_path / "m.onnx", style))
    assert ckpt.format == "onnx"
    names = {_hf(n) for n in ckpt.tensors}
    want = {n for n in bert.tensors if not n.startswith("pooler.")}
    assert names == want, "every float weight, under its HF name; the int64 constant is skipped"
    for name, info in ckpt.tensors.items():
        assert info.dtype == "F32"
        _same_bits(ckpt.read(name), bert.tensors[_hf(name)])
    roles = assign_roles(ckpt.tensors)
    assert roles.scheme == "onnx-export" and not roles.unmatched and roles.layers() == [0, 1]


def test_rows_of_a_transposed_weight_are_rows_of_the_hf_matrix(tmp_path: Path, bert: tiny.TinyModel) -> None:
    ckpt = open_checkpoint(export_bert(bert, tmp_path / "m.onnx"))
    name = "model.0.auto_model.encoder.layer.1.intermediate.dense.weight"
    rows = np.array([5, 0, 63, 5])
    assert ckpt.tensors[name].shape == (64, 32)
    _same_bits(ckpt.read_rows(name, rows), bert.tensors["encoder.layer.1.intermediate.dense.weight"][rows])
    emb = "model.0.auto_model.embeddings.word_embeddings.weight"
    _same_bits(ckpt.read_rows(emb, slice(3, 40, 7)), bert.tensors["embeddings.word_embeddings.weight"][3:40:7])


@pytest.mark.parametrize("style,dtype", [("castmul", "I8"), ("dequantizelinear", "U8"), ("matmulinteger", "U8")])
def test_int8_weights_are_dequantized_as_the_graph_says(tmp_path: Path, bert: tiny.TinyModel, style: str, dtype: str) -> None:
    ckpt = open_checkpoint(export_bert(bert, tmp_path / "m.onnx", style))
    for i in range(2):
        for lin in LINEARS:
            hf = f"encoder.layer.{i}.{lin}.weight"
            info = ckpt.tensors["model.0.auto_model." + hf]
            w = bert.tensors[hf]
            assert (info.shape, info.dtype) == (w.shape, dtype)
            if style == "castmul":
                q, scale = _sym_int8(w.T, axis=0)
                want = (q.astype(np.float32) * scale).T
            else:
                q, scale, zp = _asym_uint8(w.T, axis=0 if style == "dequantizelinear" else None)
                want = ((q.astype(np.float32) - zp.astype(np.float32)) * scale).T
            got = ckpt.read(info.name)
            _same_bits(got, want)
            assert np.abs(got - w).max() <= np.abs(w).max() / 100, "dequantized close to the source weight"
    assert not any(n.endswith(("_scale", "_zero_point", "_q", "_quantized")) for n in ckpt.tensors)


def test_fp16_bf16_and_typed_storage_read_back_bit_identical(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    f16 = rng.normal(0, 2, (6, 10)).astype(np.float16)
    f16[0, :4] = [0.0, -0.0, np.inf, np.nan]
    f32 = rng.normal(0, 2, (6, 10)).astype(np.float32)
    bf16_bits = (rng.normal(0, 2, (6, 10)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    bf16 = (bf16_bits.astype(np.uint32) << 16).view(np.float32)
    g = _Graph()
    g.inits += [
        numpy_helper.from_array(f16, "a.raw_f16.weight"),
        helper.make_tensor("a.raw_bf16.weight", TensorProto.BFLOAT16, f16.shape, bf16_bits.tobytes(), raw=True),
        helper.make_tensor("a.typed_f32.weight", TensorProto.FLOAT, f32.shape, f32.ravel().tolist()),
        helper.make_tensor("a.typed_f16.weight", TensorProto.FLOAT16, f16.shape, f16.astype(np.float32).ravel().tolist()),
        helper.make_tensor("a.typed_bf16.weight", TensorProto.BFLOAT16, f16.shape, bf16.ravel().tolist()),
    ]
    typed = {t.name: t for t in g.inits}
    # the helper stores 16-bit types as bit patterns in int32_data (guards the fixture)
    assert list(typed["a.typed_f16.weight"].int32_data) == f16.view(np.uint16).ravel().tolist()
    assert list(typed["a.typed_bf16.weight"].int32_data) == bf16_bits.ravel().tolist()
    g.node("Identity", ["a.raw_f16.weight"])
    ckpt = open_checkpoint(g.save(tmp_path / "t.onnx"))
    expect = {"a.raw_f16.weight": (f16, "F16"), "a.raw_bf16.weight": (bf16, "BF16"), "a.typed_f32.weight": (f32, "F32"),
              "a.typed_f16.weight": (f16, "F16"), "a.typed_bf16.weight": (bf16, "BF16")}
    assert set(ckpt.tensors) == set(expect)
    for name, (want, dtype) in expect.items():
        assert ckpt.tensors[name].dtype == dtype
        _same_bits(ckpt.read(name), want)


def test_opaque_names_without_bias_come_from_the_node_path(tmp_path: Path) -> None:
    """Decoder exports have no biases: `/model/layers.0/mlp/down_proj/MatMul` names the weight."""
    m = tiny.make_llama(0, hidden=32, layers=2, heads=4, kv_heads=2, ff=48, vocab=200)
    g = _Graph()
    x = g.node("Gather", [g.init("model.embed_tokens.weight", m.tensors["model.embed_tokens.weight"]), "input_ids"])
    linears = {n: w for n, w in m.tensors.items() if w.ndim == 2 and (".layers." in n or n == "lm_head.weight")}
    for name, w in linears.items():
        path = "/" + name.removesuffix(".weight").replace(".", "/").replace("layers/", "layers.")
        g.n += 1
        x = g.node("MatMul", [x, g.init(f"onnx::MatMul_{g.n}", w.T)], path + "/MatMul")
    ckpt = open_checkpoint(g.save(tmp_path / "m.onnx"))
    assert "lm_head.weight" in linears
    for name, w in linears.items():
        _same_bits(ckpt.read(name), w)
    assert assign_roles(ckpt.tensors).scheme == "hf-llama"


def test_external_data_inside_the_folder_is_read_and_listed(tmp_path: Path, bert: tiny.TinyModel) -> None:
    path = export_bert(bert, tmp_path / "ext" / "m.onnx", external=True)
    assert (tmp_path / "ext" / "weights.bin").stat().st_size > path.stat().st_size
    ckpt = open_checkpoint(path)
    assert [p.name for p in ckpt.files] == ["m.onnx", "weights.bin"]
    _same_bits(ckpt.read("model.0.auto_model.encoder.layer.0.output.dense.weight"),
               bert.tensors["encoder.layer.0.output.dense.weight"])


def _rewrite_external(path: Path, location: str | None = None, length: int | None = None) -> None:
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if location is not None and e.key == "location":
                e.value = location
            if length is not None and e.key == "length":
                e.value = str(length)
    onnx.save_model(model, str(path))


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path: Path, bert: tiny.TinyModel, location: str) -> None:
    path = export_bert(bert, tmp_path / "ext" / "m.onnx", external=True)
    (tmp_path / "secret.bin").write_bytes(b"\0" * 10**6)
    _rewrite_external(path, location=location)
    with pytest.raises(InputError, match="outside the model's folder"):
        open_checkpoint(path)


def test_truncated_external_data_is_an_input_error(tmp_path: Path, bert: tiny.TinyModel) -> None:
    path = export_bert(bert, tmp_path / "ext" / "m.onnx", external=True)
    data = tmp_path / "ext" / "weights.bin"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(InputError, match="truncated or corrupt"):
        open_checkpoint(path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "raw-length", "negative-dim", "missing-external"])
def test_malformed_file_is_one_input_error(tmp_path: Path, bert: tiny.TinyModel, damage: str) -> None:
    path = export_bert(bert, tmp_path / "m.onnx")
    raw = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x08\x07" + bytes(range(256)) * 40)
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        model = onnx.load(str(path))
        t = next(t for t in model.graph.initializer if t.name.startswith("onnx::MatMul"))
        if damage == "raw-length":
            t.raw_data = t.raw_data[:-4]
        elif damage == "negative-dim":
            t.dims[0] = -3
        else:
            t.data_location = TensorProto.EXTERNAL
            t.raw_data = b""
            t.external_data.add(key="location", value="nowhere.bin")
        onnx.save_model(model, str(path))
    with pytest.raises(InputError) as err:
        open_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("where", ["model.onnx", "onnx/model.onnx"])
def test_hf_folder_with_only_an_onnx_export(tmp_path: Path, bert: tiny.TinyModel, where: str) -> None:
    folder = tiny.save_hf(bert, tmp_path / "hf")
    for st in folder.glob("*.safetensors"):
        st.unlink()
    export_bert(bert, folder / where)
    ckpt = open_checkpoint(folder)
    assert ckpt.format == "onnx" and ckpt.path == folder
    assert ckpt.config["model_type"] == "bert" and ckpt.tokenizer is not None
    assert ckpt.tokenizer.tokens == bert.tokens


def test_compare_onnx_export_with_its_hf_folder(tmp_path: Path, bert: tiny.TinyModel) -> None:
    """`provaudit compare model.onnx hf_folder` runs: the export is not original and names its parent;
    an independent model's export is not derived."""
    from audit.pipeline import Request, run
    from audit.record.names import CommandName

    big = tiny.make_bert(0, hidden=64, layers=4)
    other = tiny.make_bert(1, hidden=64, layers=4)
    ref = tiny.save_hf(big, tmp_path / "ref")
    for name, model in (("export", big), ("other", other)):
        onnx_path = export_bert(model, tmp_path / f"{name}.onnx", "castmul")
        record = run(Request(CommandName.COMPARE, model=str(onnx_path), references=((str(ref), "ref"),)))
        label = record.verdict.label.value
        if name == "export":
            assert label != "original" and record.verdict.parent == "ref", record.verdict.summary
        else:
            assert label not in ("derived", "fine-tuned"), record.verdict.summary
