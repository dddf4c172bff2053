"""Synthetic Llama-2-shaped sharded bf16 checkpoints, and disguised derivatives of them, written shard by shard.

    python benchmarks/large_synth.py base --size 7b --out DIR [--seed 0]          # ~13.5 GB, 7 shards
    python benchmarks/large_synth.py derivative --base DIR --out DIR2 [--seed 1]  # a disguised copy of DIR
    python benchmarks/large_synth.py sizes                                        # the shapes and their sizes

A base model is a Hugging Face folder: config.json (LlamaForCausalLM), model.safetensors.index.json,
model-0000K-of-0000N.safetensors of at most ~2 GB each (bf16), tokenizer.json and tokenizer_config.json. The
tokenizer is the real Llama-2 SentencePiece vocabulary (32,000 pieces, 61,249 merges) converted with
transformers' GGUF converter from `ggml-vocab-llama-spm.gguf` of the llama-cpp-python sdist (the same file
scripts/build_tokenizer_registry.py fetches from PyPI and caches); without it a made-up 32,000-token vocabulary
is built with `tokenizers` (synth.json says which).

Weights have some structure, so that comparing two models means something: per hidden unit a scale shared by
every tensor that reads the residual stream (lognormal), per layer a rank-8 input basis shared by q/k/v/gate/up
and a rank-8 output basis shared by o/down, per head and per MLP neuron a row scale, plus iid Gaussian noise;
RMSNorm weights near a per-layer mean with a per-unit profile. Everything is seeded: the same seed writes the
same bytes. Another seed is an independent model of the same shape.

A derivative reads the base tensor by tensor and writes, under another naming scheme ("madeup":
transformer.blocks.N.attention.wq.weight, ..., model_type "acme-lm"), the same weights with the hidden units
permuted consistently everywhere (embedding and lm_head columns, norms, q/k/v/gate/up columns, o/down rows), the
MLP neurons permuted per layer (gate/up rows, down columns) and Gaussian noise of `noise` times each tensor's
RMS added (a "fine-tune"). It is function-preserving up to that noise. `derivative_permutations` returns the
permutations, so a test can undo them.

Memory: generation works on row chunks of <= 4M elements; a derivative holds one base tensor (uint16) at a time
(the largest is the 32000 x 4096 embedding, 262 MB). Each folder is written as `<out>.partial` and renamed into
place when complete, so an interrupted run leaves no half-written model under the final name.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.tiny import LLAMA_SCHEMES  # noqa: E402

SHARD_BYTES = 2_000_000_000
CHUNK_ELEMENTS = 1 << 22  # rows are processed in chunks of at most this many elements (16 MB as float32)
VOCAB_GGUF = "ggml-vocab-llama-spm.gguf"
TOKENIZER_CACHE = ROOT / ".cache" / "tokenizer-registry"
RANK = 8


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def tensors(self) -> list[tuple[str, int, tuple[int, ...]]]:
        """(role, layer or -1, shape) in the order the shards hold them (HF Llama order)."""
        h, kv, ff = self.hidden, self.kv_heads * self.head_dim, self.intermediate
        out: list[tuple[str, int, tuple[int, ...]]] = [("embed", -1, (self.vocab, h))]
        for i in range(self.layers):
            out += [("attn_norm", i, (h,)), ("q", i, (h, h)), ("k", i, (kv, h)), ("v", i, (kv, h)), ("o", i, (h, h)),
                    ("mlp_norm", i, (h,)), ("gate", i, (ff, h)), ("up", i, (ff, h)), ("down", i, (h, ff))]
        return out + [("final_norm", -1, (h,)), ("lm_head", -1, (self.vocab, h))]

    @property
    def params(self) -> int:
        return sum(math.prod(s) for _, _, s in self.tensors())

    @property
    def nbytes(self) -> int:
        return 2 * self.params

    def config(self) -> dict[str, Any]:
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": self.hidden,
            "intermediate_size": self.intermediate, "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads, "num_key_value_heads": self.kv_heads, "head_dim": self.head_dim,
            "vocab_size": self.vocab, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "hidden_act": "silu", "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
            "initializer_range": 0.02, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None,
            "torch_dtype": "bfloat16",
        }


SIZES: dict[str, Shape] = {
    # TinyLlama-1.1B's shape (Llama-2 architecture with GQA): 1.10e9 parameters, 2.2 GB
    "1b": Shape("1b", hidden=2048, layers=22, intermediate=5632, heads=32, kv_heads=4, vocab=32000),
    # OpenLLaMA-3B's shape: 3.43e9 parameters, 6.9 GB
    "3b": Shape("3b", hidden=3200, layers=26, intermediate=8640, heads=32, kv_heads=32, vocab=32000),
    # Llama-2-7B exactly: 6.74e9 parameters, 13.5 GB
    "7b": Shape("7b", hidden=4096, layers=32, intermediate=11008, heads=32, kv_heads=32, vocab=32000),
}

# the naming schemes are the tests' (tests/support/tiny.py): "hf" for the base, "madeup" for the disguise
SCHEMES: dict[str, dict[str, str]] = {k: LLAMA_SCHEMES[k] for k in ("hf", "madeup")}
MADEUP_CONFIG = {"model_type": "acme-lm", "architectures": ["AcmeForCausalLM"]}

# which axis of each role's tensor runs over hidden units (residual stream) and over MLP neurons
HIDDEN_AXIS = {"embed": 1, "lm_head": 1, "q": 1, "k": 1, "v": 1, "gate": 1, "up": 1, "o": 0, "down": 0,
               "attn_norm": 0, "mlp_norm": 0, "final_norm": 0}
NEURON_AXIS = {"gate": 0, "up": 0, "down": 1}


def tensor_name(scheme: str, role: str, layer: int) -> str:
    return SCHEMES[scheme][role].format(i=layer)


# ------------------------------------------------------------------------------------------------ writing


def shard_plan(shape: Shape, shard_bytes: int = SHARD_BYTES) -> list[list[int]]:
    """Indices into shape.tensors(), greedily packed in order into shards of at most shard_bytes (or one tensor)."""
    shards: list[list[int]] = [[]]
    used = 0
    for k, (_, _, s) in enumerate(shape.tensors()):
        n = 2 * math.prod(s)
        if shards[-1] and used + n > shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(k)
        used += n
    return shards


class ShardWriter:
    """Streams one bf16 safetensors file: the header first (all shapes are known), then the tensors' bytes in order.

    safetensors' own writers take whole tensors in memory; a 2 GB shard is written here in chunks instead.
    """

    def __init__(self, path: Path, tensors: list[tuple[str, tuple[int, ...]]]) -> None:
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset = 0
        self.expected: list[tuple[str, int]] = []
        for name, shape in tensors:
            n = 2 * math.prod(shape)
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
            self.expected.append((name, n))
            offset += n
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.path = path
        self.total = 8 + len(raw) + offset
        self.fh = path.open("wb")
        self.fh.write(struct.pack("<Q", len(raw)) + raw)

    def write(self, bits: np.ndarray) -> None:
        self.fh.write(np.ascontiguousarray(bits, dtype=np.uint16).data)

    def close(self) -> None:
        size = self.fh.tell()
        self.fh.close()
        if size != self.total:
            raise RuntimeError(f"{self.path}: wrote {size} bytes, expected {self.total}")


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), truncated."""
    return (np.ascontiguousarray(x, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def from_bf16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


_NORMAL_LUT: np.ndarray | None = None


def _normal_lut() -> np.ndarray:
    """65,536 quantiles of N(0, 1): LUT[uniform uint16] is a (16-bit resolution) standard normal draw."""
    global _NORMAL_LUT
    if _NORMAL_LUT is None:
        from scipy.special import ndtri

        _NORMAL_LUT = ndtri((np.arange(65536, dtype=np.float64) + 0.5) / 65536).astype(np.float32)
    return _NORMAL_LUT


def normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """float32 N(0, scale^2) draws, from random 16-bit integers through a quantile table (fast)."""
    n = math.prod(shape)
    raw = rng.integers(0, (1 << 64) - 1, (n + 3) // 4, dtype=np.uint64, endpoint=True).view(np.uint16)[:n]
    return (_normal_lut() * np.float32(scale))[raw].reshape(shape)


def _rows(n_rows: int, n_cols: int) -> Iterator[tuple[int, int]]:
    step = max(1, CHUNK_ELEMENTS // max(1, n_cols))
    for s in range(0, n_rows, step):
        yield s, min(n_rows, s + step)


def _lognormal(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    return np.exp(rng.normal(0.0, sigma, size=n)).astype(np.float32)


def _factor(rng: np.random.Generator, n: int, rank: int) -> np.ndarray:
    """(n, rank) factor with a decaying spectrum, scaled so that factor @ N(0,1)-basis has unit-variance entries."""
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(rank))
    return (rng.standard_normal((n, rank)) * (spectrum / np.sqrt(np.sum(spectrum**2)))).astype(np.float32)


class _BaseModel:
    """The deterministic recipe of one base model: model-level and per-layer structure from the seed."""

    def __init__(self, shape: Shape, seed: int) -> None:
        self.shape, self.seed = shape, seed
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xBA5E]))
        h = shape.hidden
        self.unit = _lognormal(rng, h, 0.35)  # per hidden unit, shared by every tensor reading the residual
        self.norm_profile = _lognormal(rng, h, 0.12)
        self.embed_basis = rng.standard_normal((2 * RANK, h)).astype(np.float32)
        self.in_basis = [rng.standard_normal((RANK, h)).astype(np.float32) for _ in range(shape.layers)]
        self.out_basis = [_factor(rng, h, RANK) for _ in range(shape.layers)]
        self.norm_means = [(rng.uniform(0.5, 1.3), rng.uniform(0.6, 1.4)) for _ in range(shape.layers)]
        self.final_mean = float(rng.uniform(0.8, 2.0))

    def neuron_scale(self, layer: int) -> np.ndarray:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x4E, layer]))
        return _lognormal(rng, self.shape.intermediate, 0.3)

    def write(self, k: int, role: str, layer: int, shp: tuple[int, ...], out: ShardWriter) -> None:
        """Write tensor number k of the plan in row chunks."""
        s, h = self.shape, self.shape.hidden
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1 + k]))
        if len(shp) == 1:
            if role == "final_norm":
                mean = self.final_mean
            else:
                mean = self.norm_means[layer][0 if role == "attn_norm" else 1]
            out.write(to_bf16(mean * self.norm_profile * _lognormal(rng, h, 0.08)))
            return
        rows, cols = shp
        depth = 1.0 + 0.15 * max(layer, 0) / max(1, s.layers - 1)
        col_scale: np.ndarray | None = None
        row_scale: np.ndarray | None = None
        if role in ("embed", "lm_head"):
            left, basis = _factor(rng, rows, 2 * RANK), self.embed_basis
            std, col_scale = (0.02 if role == "embed" else 1.0 / math.sqrt(h)), self.unit
        elif role in ("o", "down"):
            left, basis = self.out_basis[layer], rng.standard_normal((RANK, cols)).astype(np.float32)
            std, row_scale = depth / math.sqrt(cols), 1.0 / np.sqrt(self.unit)
            if role == "down":  # the same per-neuron scale as the rows of gate and up
                col_scale = self.neuron_scale(layer)
        else:  # q, k, v, gate, up: read the residual stream
            left, basis = _factor(rng, rows, RANK), self.in_basis[layer]
            std, col_scale = depth / math.sqrt(h), self.unit
            if role in ("q", "k", "v"):  # per attention head
                row_scale = np.repeat(_lognormal(rng, rows // s.head_dim, 0.2), s.head_dim)
            else:
                row_scale = self.neuron_scale(layer)
        w_std = np.float32(0.7 * std)
        left = left * w_std
        for a, b in _rows(rows, cols):
            w = normal(rng, (b - a, cols), float(w_std))
            w += left[a:b] @ basis
            if row_scale is not None:
                w *= row_scale[a:b, None]
            if col_scale is not None:
                w *= col_scale
            out.write(to_bf16(w))


def _check_space(folder: Path, nbytes: int) -> None:
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < nbytes + (256 << 20):
        raise SystemExit(f"not enough disk space under {probe}: {nbytes / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free")


def _prepare(out: Path) -> Path:
    if out.exists():
        raise SystemExit(f"{out} exists; delete it first")
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _write_shards(tmp: Path, shape: Shape, scheme: str, shard_bytes: int,
                  write_tensor: Callable[[int, str, int, tuple[int, ...], ShardWriter], None],
                  progress: Callable[[str], None] | None) -> dict[str, Any]:
    plan = shard_plan(shape, shard_bytes)
    specs = shape.tensors()
    weight_map: dict[str, str] = {}
    for j, shard in enumerate(plan):
        fname = f"model-{j + 1:05d}-of-{len(plan):05d}.safetensors"
        names = [(tensor_name(scheme, specs[k][0], specs[k][1]), specs[k][2]) for k in shard]
        writer = ShardWriter(tmp / fname, names)
        t0 = time.perf_counter()
        for k in shard:
            role, layer, shp = specs[k]
            write_tensor(k, role, layer, shp, writer)
        writer.close()
        weight_map.update({n: fname for n, _ in names})
        if progress:
            progress(f"{fname}: {writer.total / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s")
    index = {"metadata": {"total_size": shape.nbytes}, "weight_map": weight_map}
    (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return index


def write_base(out: Path, shape: Shape, seed: int = 0, *, shard_bytes: int = SHARD_BYTES, tokenizer: str = "auto",
               progress: Callable[[str], None] | None = None) -> Path:
    """Write a base model (or, with another seed, an independent one) to the folder `out`."""
    _check_space(out.parent, shape.nbytes)
    tmp = _prepare(out)
    model = _BaseModel(shape, seed)
    _write_shards(tmp, shape, "hf", shard_bytes, model.write, progress)
    (tmp / "config.json").write_text(json.dumps(shape.config(), indent=2))
    source = write_tokenizer(tmp, shape.vocab, tokenizer)
    meta = {"kind": "base", "seed": seed, "shape": asdict(shape), "params": shape.params, "bytes": shape.nbytes,
            "tokenizer": source, "generator": "benchmarks/large_synth.py"}
    (tmp / "synth.json").write_text(json.dumps(meta, indent=2))
    tmp.rename(out)
    return out


# ------------------------------------------------------------------------------------------------ derivative


def read_header(path: Path) -> tuple[int, dict[str, Any]]:
    with path.open("rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        return 8 + n, json.loads(fh.read(n))


class SafetensorsFolder:
    """Reads whole bf16 tensors of a sharded folder as uint16 arrays (plain reads, no mmap)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        self.where: dict[str, tuple[Path, int, dict[str, Any]]] = {}
        headers: dict[str, tuple[int, dict[str, Any]]] = {}
        for name, fname in index["weight_map"].items():
            if fname not in headers:
                headers[fname] = read_header(folder / fname)
            start, header = headers[fname]
            self.where[name] = (folder / fname, start, header[name])

    def bits(self, name: str) -> np.ndarray:
        path, start, info = self.where[name]
        if info["dtype"] != "BF16":
            raise ValueError(f"{name}: {info['dtype']}, expected BF16")
        a, b = info["data_offsets"]
        with path.open("rb") as fh:
            fh.seek(start + a)
            arr = np.fromfile(fh, dtype=np.uint16, count=(b - a) // 2)
        return arr.reshape(info["shape"])


def derivative_permutations(shape: Shape, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(hidden-unit permutation, per-layer MLP neuron permutations) a derivative with this seed applies.

    Derivative tensor index j holds the base's index perm[j] along that axis.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD1FF]))
    hidden = rng.permutation(shape.hidden)
    return hidden, [rng.permutation(shape.intermediate) for _ in range(shape.layers)]


def write_derivative(base: Path, out: Path, seed: int = 1, *, noise: float = 0.05, scheme: str = "madeup",
                     shard_bytes: int = SHARD_BYTES, progress: Callable[[str], None] | None = None) -> Path:
    """Write a disguised derivative of the base model in `base` to `out` (see the module's docstring)."""
    meta = json.loads((base / "synth.json").read_text())
    shape = Shape(**meta["shape"])
    _check_space(out.parent, shape.nbytes)
    src = SafetensorsFolder(base)
    hidden_perm, neuron_perms = derivative_permutations(shape, seed)
    tmp = _prepare(out)

    def write(k: int, role: str, layer: int, shp: tuple[int, ...], writer: ShardWriter) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1 + k]))
        w = src.bits(tensor_name("hf", role, layer))
        perms: list[np.ndarray | None] = [None] * len(shp)
        perms[HIDDEN_AXIS[role]] = hidden_perm
        if role in NEURON_AXIS:
            perms[NEURON_AXIS[role]] = neuron_perms[layer]
        sample = from_bf16(w.reshape(-1)[:: max(1, w.size // 65536)])
        sigma = noise * float(np.sqrt(np.mean(np.square(sample, dtype=np.float64))))
        if len(shp) == 1:
            f = from_bf16(w[perms[0]])
            writer.write(to_bf16(f + normal(rng, f.shape, sigma)))
            return
        rows, cols = shp
        for a, b in _rows(rows, cols):
            block = w[perms[0][a:b]] if perms[0] is not None else w[a:b]
            if perms[1] is not None:
                block = np.take(block, perms[1], axis=1)
            f = from_bf16(block)
            f += normal(rng, f.shape, sigma)
            writer.write(to_bf16(f))

    _write_shards(tmp, shape, scheme, shard_bytes, write, progress)
    config = json.loads((base / "config.json").read_text())
    if scheme == "madeup":
        config.update(MADEUP_CONFIG)
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (base / name).is_file():
            shutil.copyfile(base / name, tmp / name)
    meta = {"kind": "derivative", "seed": seed, "base": str(base), "base_seed": meta["seed"], "noise": noise,
            "scheme": scheme, "shape": asdict(shape), "params": shape.params, "bytes": shape.nbytes,
            "operations": ["renamed-tensors", "hidden-permutation", "neuron-permutation", f"noise {noise} x RMS"],
            "tokenizer": meta.get("tokenizer"), "generator": "benchmarks/large_synth.py"}
    (tmp / "synth.json").write_text(json.dumps(meta, indent=2))
    tmp.rename(out)
    return out


# ------------------------------------------------------------------------------------------------ tokenizer


def llama_vocab_gguf(download: bool = True) -> Path | None:
    """The llama-cpp-python sdist's Llama-2 vocabulary GGUF (cached; fetched from PyPI with pip when allowed)."""
    env = os.environ.get("LARGE_SYNTH_VOCAB")
    if env:
        return Path(env) if Path(env).is_file() else None
    for found in sorted(TOKENIZER_CACHE.glob(f"vocab-*/{VOCAB_GGUF}")):
        return found
    if not download:
        return None
    try:
        sys.path.insert(0, str(ROOT))
        from scripts.build_tokenizer_registry import vocab_files
    except ImportError:
        return None
    path = vocab_files(download=True).get("llama-spm", (None, ""))[0]
    return path if path is not None and path.is_file() else None


def _synthetic_tokenizer(vocab: int) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["<unk>", "<s>", "</s>"]
    pieces = [f"<0x{b:02X}>" for b in range(256)]
    words: list[str] = []
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    i = 0
    while len(specials) + len(pieces) + len(words) < vocab:
        n, syl = i, []
        while True:  # a pronounceable made-up word per integer
            syl.append(consonants[n % len(consonants)] + vowels[(n // len(consonants)) % len(vowels)])
            n //= len(consonants) * len(vowels)
            if n == 0:
                break
        words.append(("\u2581" if i % 2 == 0 else "") + "".join(syl))
        i += 1
    table = {t: j for j, t in enumerate(specials + pieces + words)}
    tok = Tokenizer(models.WordLevel(table, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    return tok


def write_tokenizer(folder: Path, vocab: int, which: str = "auto") -> str:
    """Write tokenizer.json / tokenizer_config.json; return what it is.

    which: "llama" (the real Llama-2 vocabulary; fails when unobtainable), "synthetic", or "auto" (llama when
    the vocabulary has `vocab` tokens and can be had, else synthetic).
    """
    tok, source = None, ""
    if which in ("llama", "auto") and vocab == 32000:
        gguf_path = llama_vocab_gguf(download=True)
        if gguf_path is not None:
            try:
                from scripts.build_tokenizer_registry import gguf_tokenizer

                tok, _ = gguf_tokenizer(gguf_path)
                source = f"Llama-2 SentencePiece vocabulary ({gguf_path.name} of the llama-cpp-python sdist)"
            except ImportError:
                tok = None
    if tok is None and which == "llama":
        raise SystemExit("the Llama-2 vocabulary is not available here (needs transformers and the llama-cpp-python sdist)")
    if tok is None:
        tok, source = _synthetic_tokenizer(vocab), f"synthetic ({vocab} made-up tokens)"
    if tok.get_vocab_size() != vocab:
        raise SystemExit(f"tokenizer has {tok.get_vocab_size()} tokens, the model {vocab}")
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "model_max_length": 4096}, indent=2))
    return source


# ------------------------------------------------------------------------------------------------ CLI


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("base", help="write a base (or, with another seed, independent) model")
    b.add_argument("--size", choices=sorted(SIZES), required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--tokenizer", choices=("auto", "llama", "synthetic"), default="auto")
    b.add_argument("--shard-gb", type=float, default=SHARD_BYTES / 1e9)
    d = sub.add_parser("derivative", help="write a disguised derivative of a base model")
    d.add_argument("--base", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--noise", type=float, default=0.05, help="noise added, times each tensor's RMS")
    d.add_argument("--scheme", choices=sorted(SCHEMES), default="madeup")
    d.add_argument("--shard-gb", type=float, default=SHARD_BYTES / 1e9)
    sub.add_parser("sizes", help="list the shapes")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.cmd == "sizes":
        for s in SIZES.values():
            print(f"{s.name}: hidden {s.hidden}, {s.layers} layers, intermediate {s.intermediate}, heads "
                  f"{s.heads}/{s.kv_heads}, vocab {s.vocab}: {s.params / 1e9:.2f}e9 parameters, {s.nbytes / 1e9:.2f} GB, "
                  f"{len(shard_plan(s))} shards")
        return 0
    shard_bytes = int(args.shard_gb * 1e9)
    if args.cmd == "base":
        out = write_base(args.out, SIZES[args.size], args.seed, shard_bytes=shard_bytes, tokenizer=args.tokenizer,
                         progress=_progress)
    else:
        out = write_derivative(args.base, args.out, args.seed, noise=args.noise, scheme=args.scheme,
                               shard_bytes=shard_bytes, progress=_progress)
    _progress(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
