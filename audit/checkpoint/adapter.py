"""PEFT LoRA / DoRA adapter folders (adapter_config.json + adapter_model.safetensors), read and validated.

An adapter is not a model: it holds, for each adapted module of a base model, two low-rank factors
lora_A (r, in) and lora_B (out, r) (DoRA adds a magnitude vector (out,)), and the merged weight is
W + scaling * B @ A with scaling = lora_alpha / r (lora_alpha / sqrt(r) with rsLoRA). `locate` opens the
folder as a Checkpoint of format "adapter" whose config is the adapter config; `read_adapter` validates it
(config fields and types, tensor names, shapes and dtypes, counts and sizes capped) into an `Adapter`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.checkpoint.model import Checkpoint, TensorInfo
from audit.errors import InputError
from audit.safeio import display_path

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
ADAPTER_FORMAT = "adapter"
MAX_CONFIG_BYTES = 1 << 20
MAX_RANK = 1 << 16
MAX_MODULES = 100_000
MAX_TARGETS = 10_000
MAX_NAME = 1_000
MAX_PATTERNS = 10_000
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "float64", "float32", "float16", "bfloat16"}
PREFIX = "base_model.model."
_SUFFIX = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A\.weight|lora_B\.weight|lora_embedding_A|lora_embedding_B|"
                     r"lora_magnitude_vector(?:\.weight)?)$")


@dataclass(frozen=True)
class AdapterModule:
    """One adapted module of the base: its PEFT name (without `base_model.model.`) and its factors."""

    name: str
    a: TensorInfo  # lora_A.weight (r, in) | lora_embedding_A (r, num_embeddings)
    b: TensorInfo  # lora_B.weight (out, r) | lora_embedding_B (embedding_dim, r)
    magnitude: TensorInfo | None = None  # DoRA: (out,)
    embedding: bool = False

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """The (out, in) shape of the base weight this module adapts, in the base's stored orientation
        ((num_embeddings, embedding_dim) for an embedding)."""
        if self.embedding:
            return int(self.a.shape[1]), int(self.b.shape[0])
        return int(self.b.shape[0]), int(self.a.shape[1])


@dataclass
class Adapter:
    """A validated PEFT LoRA / DoRA adapter."""

    checkpoint: Checkpoint
    peft_type: str
    dora: bool
    rank: int
    alpha: float
    rslora: bool
    target_modules: list[str] | str | None  # a list of module-name suffixes, or one regular expression
    base_model: str | None
    modules: dict[str, AdapterModule]
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    extra_tensors: list[str] = field(default_factory=list)  # modules_to_save, biases: saved whole, not low-rank

    @property
    def kind(self) -> str:
        return "DoRA" if self.dora else "LoRA"

    @property
    def name(self) -> str:
        return self.checkpoint.name

    def targets(self) -> list[str]:
        """The distinct module kinds adapted (last name component: q_proj, down_proj, ...), sorted."""
        return sorted({m.rsplit(".", 1)[-1] for m in self.modules})

    def scaling(self, module: str) -> float:
        """The factor the product B @ A is scaled by for `module` (alpha / r, or alpha / sqrt(r) with rsLoRA)."""
        mod = self.modules[module]
        alpha = next((v for k, v in self.alpha_pattern.items() if _pattern_matches(k, module)), self.alpha)
        r = mod.rank
        return float(alpha / math.sqrt(r) if self.rslora else alpha / r)

    def delta(self, module: str, rows: np.ndarray | None = None) -> np.ndarray:
        """scaling * B @ A for `module` in the base weight's (out, in) orientation, or only output rows `rows`
        (reads the two small factors, never the base). DoRA's magnitude rescaling is not included."""
        mod = self.modules[module]
        ckpt = self.checkpoint
        a, b = ckpt.read(mod.a.name), ckpt.read(mod.b.name)
        if mod.embedding:  # (embedding_dim, r) @ (r, num) -> transpose to (num, dim)
            full = (b @ a).T
            out = full if rows is None else full[np.asarray(rows)]
        else:
            out = (b if rows is None else b[np.asarray(rows)]) @ a
        return (self.scaling(module) * out).astype(np.float32)


def is_adapter_folder(folder: Path) -> bool:
    """A folder holding adapter_config.json (and, to be read, adapter_model.safetensors or .bin); a FIFO or
    directory under that name counts too, so that reading it refuses it."""
    return folder.is_dir() and (folder / ADAPTER_CONFIG).exists()


def adapter_weights_file(folder: Path) -> Path:
    """The adapter's weights file; InputError when there is none."""
    for name in ADAPTER_WEIGHTS:
        if (folder / name).exists():  # a FIFO or directory there is refused when opened
            return folder / name
    raise InputError(f"{folder}: {ADAPTER_CONFIG} but no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """adapter_config.json as a JSON object, its size capped (a FIFO or directory there is refused)."""
    import json

    from audit.safeio import read_text, regular_file

    path = folder / ADAPTER_CONFIG
    size = regular_file(path, "adapter config").st_size
    if size > MAX_CONFIG_BYTES:
        raise InputError(f"{display_path(path)}: {size} bytes, more than an adapter config holds ({MAX_CONFIG_BYTES})")
    text = read_text(path, MAX_CONFIG_BYTES, "adapter config")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{display_path(path)}: not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{display_path(path)}: expected a JSON object")
    return data


def read_adapter(ckpt: Checkpoint) -> Adapter:
    """Validate an adapter checkpoint (config = adapter_config.json) into an Adapter; InputError when unusable."""
    where = str(ckpt.folder or ckpt.path)
    cfg = ckpt.config
    peft_type = cfg.get("peft_type")
    if not isinstance(peft_type, str) or peft_type.upper() != "LORA":
        raise InputError(f"{where}: adapter peft_type {str(peft_type)[:40]!r} is not supported (LoRA and DoRA only)")
    rank = _int(cfg.get("r", 8), "r", where)
    alpha = _number(cfg.get("lora_alpha", 8), "lora_alpha", where)
    dora = _bool(cfg.get("use_dora", False), "use_dora", where)
    rslora = _bool(cfg.get("use_rslora", False), "use_rslora", where)
    targets = _targets(cfg.get("target_modules"), where)
    base = cfg.get("base_model_name_or_path")
    if base is not None and (not isinstance(base, str) or len(base) > MAX_NAME):
        raise InputError(f"{where}: base_model_name_or_path must be a string of at most {MAX_NAME} characters")
    rank_pattern = {k: _int(v, f"rank_pattern[{k[:40]!r}]", where) for k, v in _pattern(cfg, "rank_pattern", where).items()}
    alpha_pattern = {k: _number(v, f"alpha_pattern[{k[:40]!r}]", where)
                     for k, v in _pattern(cfg, "alpha_pattern", where).items()}
    if len(ckpt.tensors) > 4 * MAX_MODULES:
        raise InputError(f"{where}: {len(ckpt.tensors)} tensors, more than an adapter holds ({4 * MAX_MODULES})")
    parts: dict[str, dict[str, TensorInfo]] = {}
    extra: list[str] = []
    for tname, info in ckpt.tensors.items():
        m = _SUFFIX.match(tname)
        if m is None:
            extra.append(tname)
            continue
        if str(info.dtype) not in FLOAT_DTYPES:
            raise InputError(f"{where}: adapter tensor {tname!r} has dtype {info.dtype}, not a float type")
        module = m.group("module").removeprefix(PREFIX)
        part = m.group("part").split(".")[0]
        parts.setdefault(module, {})[part] = info
    if not parts:
        raise InputError(f"{where}: the adapter holds no lora_A / lora_B tensors")
    modules: dict[str, AdapterModule] = {}
    ranks = {rank, *rank_pattern.values()}
    for module, got in sorted(parts.items()):
        modules[module] = _module(module, got, dora, ranks, where)
    return Adapter(ckpt, "LORA", dora, rank, alpha, rslora, targets, base, modules, rank_pattern, alpha_pattern,
                   sorted(extra))


def _module(module: str, got: dict[str, TensorInfo], dora: bool, ranks: set[int], where: str) -> AdapterModule:
    embedding = "lora_embedding_A" in got or "lora_embedding_B" in got
    a = got.get("lora_embedding_A" if embedding else "lora_A")
    b = got.get("lora_embedding_B" if embedding else "lora_B")
    if a is None or b is None:
        raise InputError(f"{where}: module {module[:120]!r} has {' and '.join(sorted(got))} but not both lora_A and "
                         "lora_B")
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise InputError(f"{where}: module {module[:120]!r}: lora_A {list(a.shape)} and lora_B {list(b.shape)} must "
                         "be matrices (only linear and embedding adapters are read)")
    r = int(a.shape[0])
    if int(b.shape[1]) != r:
        raise InputError(f"{where}: module {module[:120]!r}: lora_A {list(a.shape)} and lora_B {list(b.shape)} do "
                         "not share a rank")
    if r not in ranks or r <= 0:
        raise InputError(f"{where}: module {module[:120]!r} has rank {r}, not the configured r "
                         f"({', '.join(map(str, sorted(ranks)))})")
    mag = got.get("lora_magnitude_vector")
    if dora and mag is None and not embedding:
        raise InputError(f"{where}: use_dora is set but module {module[:120]!r} has no lora_magnitude_vector")
    if mag is not None:
        if not dora:
            raise InputError(f"{where}: module {module[:120]!r} has a DoRA magnitude vector but use_dora is not set")
        out = int(b.shape[0])
        if tuple(int(x) for x in mag.shape) not in ((out,), (1, out), (out, 1)):
            raise InputError(f"{where}: module {module[:120]!r}: magnitude {list(mag.shape)} does not match "
                             f"lora_B's {out} outputs")
    return AdapterModule(module, a, b, mag, embedding)


def _pattern_matches(pattern: str, module: str) -> bool:
    try:
        return re.search(rf"(^|\.){pattern}$", module) is not None
    except re.error:
        return False


def _int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_RANK:
        raise InputError(f"{where}: adapter {key} must be an integer in 1..{MAX_RANK}, not {str(value)[:40]!r}")
    return value


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0 \
            or value > 1e9:
        raise InputError(f"{where}: adapter {key} must be a positive number, not {str(value)[:40]!r}")
    return float(value)


def _bool(value: Any, key: str, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InputError(f"{where}: adapter {key} must be true or false, not {str(value)[:40]!r}")
    return value


def _targets(value: Any, where: str) -> list[str] | str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > MAX_NAME:
            raise InputError(f"{where}: adapter target_modules is longer than {MAX_NAME} characters")
        return value
    if not isinstance(value, list) or len(value) > MAX_TARGETS or \
            not all(isinstance(v, str) and 0 < len(v) <= MAX_NAME for v in value):
        raise InputError(f"{where}: adapter target_modules must be a list of at most {MAX_TARGETS} module names "
                         "or one pattern")
    return sorted(set(value))


def _pattern(cfg: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = cfg.get(key) or {}
    if not isinstance(value, dict) or len(value) > MAX_PATTERNS or \
            not all(isinstance(k, str) and len(k) <= MAX_NAME for k in value):
        raise InputError(f"{where}: adapter {key} must be an object of at most {MAX_PATTERNS} module patterns")
    return value
