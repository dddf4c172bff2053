"""Copy a GGUF file with rewritten metadata (what a repackager does to hide where a model came from).

The tensors are copied byte for byte; `set_` replaces or adds metadata (a value's Python type picks its GGUF
type: `add_value`), and keys starting with any of `drop` are left out (e.g. ``general.base_model.`` to remove
the declared base).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def add_value(writer: Any, key: str, value: object) -> None:
    """Write one metadata value: str -> string, float -> float32, list -> array, anything else -> uint32."""
    if isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, list):
        writer.add_array(key, value)
    else:
        writer.add_uint32(key, int(value))  # type: ignore[call-overload]


def rewrite_gguf(src: Path, dst: Path, set_: Mapping[str, object], drop: Sequence[str] = ()) -> Path:
    import gguf

    reader = gguf.GGUFReader(src, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    assert arch is not None, f"{src}: no general.architecture"
    tmp = dst.with_name(dst.name + ".part")
    writer = gguf.GGUFWriter(tmp, arch=str(arch.contents()), endianess=reader.endianess)
    pending = dict(set_)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        if any(field.name.startswith(prefix) for prefix in drop) and field.name not in pending:
            continue
        if field.name in pending:
            add_value(writer, field.name, pending.pop(field.name))
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for key, value in pending.items():
        add_value(writer, key, value)
    for tensor in reader.tensors:
        writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                               tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    tmp.replace(dst)
    return dst
