"""Read ONNX model files: float initializers as tensors, with names and orientation recovered from the graph.

The graph is parsed with `onnx.load(..., load_external_data=False)`: initializers stored inside the file
are kept as the bytes protobuf parsed (one tensor is converted at a time), and external data files are
memory-mapped only when a tensor is read. External files must sit inside the model's folder.

Exporters rename and re-lay-out weights, so each initializer is traced through the graph:

* `MatMul(x, W)` stores W as (in, out) and `Gemm(x, W, transB=0)` too: W is transposed to (out, in).
* int8/uint8 weights are dequantized when the graph says how: `DequantizeLinear(q, scale, zero_point)`,
  `Mul(Cast(q), scale)` (optionally `Sub` of a zero point before the `Mul`), or `MatMulInteger(x, q)` with
  `<q>_scale` / `<q>_zero_point` initializers (onnxruntime's dynamic quantization). Other int8 weights
  and every non-float initializer (shapes, indices, masks) are skipped.
* Opaque names (`onnx::MatMul_123`, `val_49`) are replaced by the name of the bias added to the product
  (`...query.bias` -> `...query.weight`), the dequantized value's name, or the path in the consumer
  node's name (`/model/layers.0/self_attn/q_proj/MatMul` -> `model.layers.0.self_attn.q_proj.weight`).
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.checkpoint.model import TensorInfo
from audit.errors import InputError

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto, TensorProto

MAX_ONNX_BYTES = 2 * 1024**3  # protobuf cannot hold more; larger models keep their weights in external files
MAX_DIMS = 8
MAX_ELEMENTS = 1 << 36
MAX_TRACE = 4  # pass-through nodes followed from an initializer to the node that uses it

# ONNX TensorProto.DataType -> (storage dtype label, numpy dtype of the stored bits)
_FLOAT = {1: ("F32", np.float32), 10: ("F16", np.float16), 16: ("BF16", np.uint16), 11: ("F64", np.float64)}
_QUANT = {3: ("I8", np.int8), 2: ("U8", np.uint8)}
_PASS_THROUGH = {"Identity", "Cast", "Transpose"}
_OPAQUE = re.compile(r"^(onnx::.*|val_\d+|_v_\d+|\d+|.*_output_\d+)$")


@dataclass
class _Plan:
    """How to produce one tensor: the stored initializer, its dequantization and orientation."""

    init: str
    shape: tuple[int, ...]  # as returned (after the transpose)
    dtype: str
    transpose: bool = False
    scale: str | None = None
    zero_point: str | None = None
    axis: int | None = None  # DequantizeLinear axis for a 1-D scale; None: numpy broadcasting
    notes: list[str] = field(default_factory=list)


class ONNXFile:
    """An opened .onnx file: its graph, and a plan that maps recovered tensor names to initializers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        from audit.safeio import regular_file

        size = regular_file(path, "ONNX file").st_size
        if size > MAX_ONNX_BYTES:
            raise InputError(f"{path}: {size} bytes is more than an ONNX protobuf can hold (2 GiB); "
                             "large models keep weights in external data files")
        try:
            import onnx
        except ImportError:
            raise InputError(f"{path}: reading ONNX needs the `onnx` package (pip install 'provaudit[onnx]')") from None
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # DecodeError, RuntimeWarning-as-error, truncated files
            raise InputError(f"{path}: corrupt or truncated ONNX file ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
        if not model.HasField("graph"):
            raise InputError(f"{path}: not an ONNX model (no graph)")
        self.graph: GraphProto = model.graph
        self.producer = f"{model.producer_name} {model.producer_version}".strip()
        self.metadata = {p.key: p.value for p in model.metadata_props}
        self._inits: dict[str, TensorProto] = {}
        for t in self.graph.initializer:
            self._inits[t.name] = t
        self.external_files: list[Path] = []
        self.skipped: dict[str, str] = {}  # initializer -> why it is not a tensor of the checkpoint
        self.plans: dict[str, _Plan] = {}
        self._build_plans()

    # ---------------------------------------------------------------- planning

    def _build_plans(self) -> None:
        consumers: dict[str, list[tuple[NodeProto, int]]] = defaultdict(list)
        producer: dict[str, NodeProto] = {}
        for node in self.graph.node:
            for i, name in enumerate(node.input):
                if name:
                    consumers[name].append((node, i))
            for name in node.output:
                producer[name] = node
        self._consumers = consumers
        self._producer = producer

        used_as_aux: set[str] = set()  # scales and zero points: read with their weight, not tensors themselves
        plans: list[tuple[str, _Plan]] = []
        for name, t in self._inits.items():
            shape = self._validated_shape(t)
            if t.data_type in _QUANT:
                plan = self._plan_quantized(name, t, shape)
                if plan is None:
                    self.skipped[name] = "integer initializer without a recognisable scale"
                    continue
                used_as_aux.update(x for x in (plan.scale, plan.zero_point) if x)
            elif t.data_type in _FLOAT:
                plan = _Plan(name, shape, _FLOAT[t.data_type][0])
            else:
                self.skipped[name] = f"non-float initializer (ONNX data type {t.data_type})"
                continue
            if math.prod(shape) <= 1:
                self.skipped[name] = "scalar constant"
                continue
            plans.append((name, plan))

        taken: set[str] = set()
        for name, plan in plans:
            if name in used_as_aux:
                continue
            for part in (plan.init, plan.scale, plan.zero_point):
                if part:
                    self._stored(part)  # validates the stored size (and external location) before any use
            value = self._dequant_output(name, plan)
            out_name, transpose, bias = self._orientation(value)
            if transpose and len(plan.shape) == 2:
                plan.transpose = True
                plan.shape = (plan.shape[1], plan.shape[0])
            final = self._recover_name(name, plan, value, out_name, bias)
            if final != name and (final in taken or final in self._inits):
                final = name
            if final in taken:
                raise InputError(f"{self.path}: two weights resolve to the name {final!r}")
            taken.add(final)
            self.plans[final] = plan

    def _validated_shape(self, t: TensorProto) -> tuple[int, ...]:
        dims = tuple(int(d) for d in t.dims)
        if len(dims) > MAX_DIMS or any(d < 0 for d in dims):
            raise InputError(f"{self.path}: initializer {t.name!r} has an invalid shape {list(dims)}")
        if math.prod(dims) > MAX_ELEMENTS:
            raise InputError(f"{self.path}: initializer {t.name!r} claims {math.prod(dims)} elements")
        return dims

    def _plan_quantized(self, name: str, t: TensorProto, shape: tuple[int, ...]) -> _Plan | None:
        label = _QUANT[t.data_type][0]
        for node, idx in self._consumers.get(name, []):
            if node.op_type == "DequantizeLinear" and idx == 0 and len(node.input) >= 2:
                scale = node.input[1]
                zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
                if not self._is_float_init(scale) or (zp is not None and zp not in self._inits):
                    continue
                axis = _int_attr(node, "axis", 1)
                return _Plan(name, shape, label, scale=scale, zero_point=zp,
                             axis=axis if len(self._inits[scale].dims) == 1 and len(shape) > 1 else None)
            if node.op_type == "Cast" and idx == 0:
                nxt = self._consumers.get(node.output[0], [])
                zp = None
                if len(nxt) == 1 and nxt[0][0].op_type == "Sub" and nxt[0][1] == 0:
                    sub = nxt[0][0]
                    zp = sub.input[1] if sub.input[1] in self._inits else None
                    nxt = self._consumers.get(sub.output[0], []) if zp else []
                for mul, j in nxt:
                    other = mul.input[1 - j] if mul.op_type == "Mul" and len(mul.input) == 2 else ""
                    if self._is_float_init(other):
                        return _Plan(name, shape, label, scale=other, zero_point=zp)
            if node.op_type == "MatMulInteger" and idx == 1:
                base = name.removesuffix("_quantized")
                scale = base + "_scale" if self._is_float_init(base + "_scale") else None
                zp = node.input[3] if len(node.input) > 3 and node.input[3] in self._inits else None
                if scale is not None:
                    return _Plan(name, shape, label, scale=scale, zero_point=zp, axis=1 if len(shape) == 2 else None)
        return None

    def _is_float_init(self, name: str) -> bool:
        return name in self._inits and self._inits[name].data_type in _FLOAT

    def _dequant_output(self, name: str, plan: _Plan) -> str:
        """The graph value that holds the float weight (the dequantizing node's output, or the initializer)."""
        if plan.scale is None:
            return name
        for node, idx in self._consumers.get(name, []):
            if node.op_type == "DequantizeLinear" and idx == 0:
                return node.output[0]
            if node.op_type == "Cast" and idx == 0:
                value = node.output[0]
                for _ in range(2):  # optional Sub, then Mul
                    nxt = self._consumers.get(value, [])
                    if len(nxt) != 1 or nxt[0][0].op_type not in ("Sub", "Mul"):
                        break
                    value = nxt[0][0].output[0]
                return value
        return name  # MatMulInteger consumes the quantized initializer itself

    def _orientation(self, value: str) -> tuple[str | None, bool, str | None]:
        """Follow `value` to its use: (consumer's output, stored as (in, out)?, name of a bias added to it)."""
        transposed = False
        for _ in range(MAX_TRACE):
            uses = self._consumers.get(value, [])
            gathers = [n for n, i in uses if n.op_type == "Gather" and i == 0]
            if gathers:
                return gathers[0].output[0], transposed, None
            mm = [(n, i) for n, i in uses if n.op_type in ("MatMul", "MatMulInteger", "Gemm")]
            if mm:
                node, i = mm[0]
                if node.op_type == "Gemm":
                    stored_in_out = (i == 1 and not _int_attr(node, "transB", 0)) or (i == 0 and bool(_int_attr(node, "transA", 0)))
                    bias = node.input[2] if len(node.input) > 2 and node.input[2] in self._inits else None
                else:
                    stored_in_out = i == 1
                    bias = self._added_bias(node.output[0])
                return node.output[0], stored_in_out != transposed, bias
            passes = [n for n, _ in uses if n.op_type in _PASS_THROUGH]
            if len(passes) != 1:
                return None, transposed, None
            node = passes[0]
            if node.op_type == "Transpose":
                perm = [int(p) for a in node.attribute if a.name == "perm" for p in a.ints]
                if perm not in ([], [1, 0]):
                    return None, transposed, None
                transposed = not transposed
            value = node.output[0]
        return None, transposed, None

    def _added_bias(self, value: str) -> str | None:
        """The initializer added to a MatMul's output (through a dequantizing Mul/Cast), if any."""
        for _ in range(3):
            uses = self._consumers.get(value, [])
            if len(uses) != 1:
                return None
            node, i = uses[0]
            if node.op_type == "Add" and len(node.input) == 2:
                other = node.input[1 - i]
                return other if self._is_float_init(other) else None
            if node.op_type not in ("Mul", "Cast"):
                return None
            value = node.output[0]
        return None

    def _recover_name(self, name: str, plan: _Plan, value: str, out_name: str | None, bias: str | None) -> str:
        base = _strip_quant_suffix(name) if plan.scale is not None else name
        if not _opaque(base):
            return base
        if bias is not None and bias.endswith(".bias") and not _opaque(bias):
            return bias[: -len(".bias")] + ".weight"
        if value != name and not _opaque(value):
            return value
        if out_name is not None:
            node_name = self._node_name_of(out_name)
            if node_name:
                return node_name
        return name

    def _node_name_of(self, output: str) -> str | None:
        node = self._producer.get(output)
        if node is None:
            return None
        parts = [p for p in node.name.strip("/").split("/") if p]
        path = ".".join(parts[:-1])
        if path and not _OPAQUE.match(path) and re.fullmatch(r"[A-Za-z_][\w.]*", path):
            return path + ".weight"
        return None

    # ---------------------------------------------------------------- reading

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"_source": "onnx-graph"}
        if self.producer:
            cfg["onnx_producer"] = self.producer
        return cfg

    def tensor_infos(self) -> dict[str, TensorInfo]:
        return {name: TensorInfo(name, p.shape, p.dtype, self.path) for name, p in self.plans.items()}

    def read(self, info: TensorInfo, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Return one tensor (or some of its rows) as float32 in (out, in) orientation."""
        plan = self.plans[info.name]
        stored = self._stored(plan.init)
        if rows is not None and not plan.transpose and plan.scale is None:
            return _to_float32(stored.reshape(self._validated_shape(self._inits[plan.init]))[rows],
                               self._inits[plan.init].data_type)
        arr = _to_float32(stored, self._inits[plan.init].data_type).reshape(self._validated_shape(self._inits[plan.init]))
        if plan.scale is not None:
            arr = self._dequantize(arr, plan)
        if plan.transpose:
            arr = np.ascontiguousarray(arr.T)
        return arr if rows is None else arr[rows]

    def _dequantize(self, q: np.ndarray, plan: _Plan) -> np.ndarray:
        assert plan.scale is not None
        scale = self._small(plan.scale)
        zp = self._small(plan.zero_point) if plan.zero_point else None
        try:
            if plan.axis is not None and scale.ndim == 1 and q.ndim > 1:
                shape = [1] * q.ndim
                shape[plan.axis % q.ndim] = -1
                scale = scale.reshape(shape)
                zp = zp.reshape(shape) if zp is not None and zp.ndim == 1 else zp
            if zp is not None:
                q = q - zp
            return np.asarray(q * scale, dtype=np.float32)
        except ValueError:
            raise InputError(f"{self.path}: scale {plan.scale!r} {list(scale.shape)} does not fit weight "
                             f"{plan.init!r} {list(q.shape)}") from None

    def _small(self, name: str) -> np.ndarray:
        t = self._inits[name]
        return _to_float32(self._stored(name), t.data_type).reshape(self._validated_shape(t))

    def _stored(self, name: str) -> np.ndarray:
        """The stored elements of an initializer as a flat array of its storage dtype (no conversion)."""
        from onnx import TensorProto

        t = self._inits[name]
        dims = self._validated_shape(t)
        count = math.prod(dims)
        np_dtype = (_FLOAT.get(t.data_type) or _QUANT[t.data_type])[1]
        nbytes = count * np.dtype(np_dtype).itemsize
        if t.data_location == TensorProto.EXTERNAL:
            return self._external(t, np_dtype, count, nbytes)
        if t.raw_data:
            if len(t.raw_data) != nbytes:
                raise InputError(f"{self.path}: initializer {name!r} holds {len(t.raw_data)} bytes, "
                                 f"{nbytes} needed for shape {list(dims)}: corrupt")
            return np.frombuffer(t.raw_data, dtype=np_dtype, count=count)
        if t.data_type == 1:
            typed: Any = t.float_data
        elif t.data_type == 11:
            typed = t.double_data
        else:
            typed = t.int32_data  # float16/bfloat16 bit patterns and int8/uint8 values
        if len(typed) != count:
            raise InputError(f"{self.path}: initializer {name!r} holds {len(typed)} values, {count} needed: corrupt")
        if t.data_type in (10, 16):  # 16-bit patterns stored in int32 fields
            bits = np.asarray(typed, dtype=np.int64).astype(np.uint16)
            return bits.view(np.float16) if t.data_type == 10 else bits
        return np.asarray(typed, dtype=np_dtype)

    def _external(self, t: TensorProto, np_dtype: Any, count: int, nbytes: int) -> np.ndarray:
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        folder = self.path.parent.resolve()
        target = (folder / location).resolve()
        if not location or os.path.isabs(location) or not target.is_relative_to(folder):
            raise InputError(f"{self.path}: initializer {t.name!r} points outside the model's folder ({location!r})")
        if not target.is_file():
            raise InputError(f"{self.path}: external data file {location!r} of {t.name!r} is missing")
        try:
            offset = int(info.get("offset", "0"))
            length = int(info.get("length", str(nbytes)))
        except ValueError:
            raise InputError(f"{self.path}: initializer {t.name!r} has a malformed external offset/length") from None
        size = target.stat().st_size
        if offset < 0 or length != nbytes or offset + length > size:
            raise InputError(f"{self.path}: initializer {t.name!r} claims bytes {offset}..{offset + length} of {location} "
                             f"({nbytes} needed; the file has {size}): truncated or corrupt")
        if target not in self.external_files:
            self.external_files.append(target)
        if count == 0:
            return np.zeros(0, dtype=np_dtype)
        return np.memmap(target, dtype=np_dtype, mode="r", offset=offset, shape=(count,))


def _to_float32(arr: np.ndarray, data_type: int) -> np.ndarray:
    if data_type == 16:  # bfloat16 bits -> float32
        return np.left_shift(arr.astype(np.uint32), 16).view(np.float32)
    return np.asarray(arr, dtype=np.float32)


def _int_attr(node: NodeProto, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _opaque(name: str) -> bool:
    return bool(_OPAQUE.match(name)) or "." not in name.strip(".")


def _strip_quant_suffix(name: str) -> str:
    for suffix in ("_quantized", "_q"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
