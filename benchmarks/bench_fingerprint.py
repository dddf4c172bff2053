"""Benchmark `provaudit fingerprint` on a synthetic multi-GB sharded safetensors checkpoint.

Targets: fingerprinting within 2x the time of a plain sequential read of the same files, and peak RSS
under 2 GiB whatever the model size.

    python benchmarks/bench_fingerprint.py                 # Llama-3.2-1B-like, ~2.5 GB, 2 shards
    python benchmarks/bench_fingerprint.py --size 3b       # Llama-3.2-3B-like, ~6.4 GB
    python benchmarks/bench_fingerprint.py --profile       # plus an in-process breakdown of the time/memory

The checkpoint is generated once (tensor by tensor, so generation stays low-memory) and cached under
`<repo>/.cache/bench/`. Cold-cache numbers need root (`/proc/sys/vm/drop_caches`); without it the pages
of the checkpoint files are evicted with posix_fadvise(DONTNEED), which works for clean pages.
This prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "bench"
CHUNK = 16 * 1024 * 1024
GIB = 1024**3
RSS_TARGET_GIB = 2.0
RATIO_TARGET = 2.0


@dataclass(frozen=True)
class Spec:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    shards: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def tensors(self) -> list[tuple[str, tuple[int, ...], float]]:
        """(name, shape, init std) in HF Llama order; embeddings tied (no lm_head), as in Llama-3.2."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        out: list[tuple[str, tuple[int, ...], float]] = [("model.embed_tokens.weight", (self.vocab, h), 0.02)]
        for i in range(self.layers):
            p = f"model.layers.{i}."
            out += [
                (p + "input_layernorm.weight", (h,), 0.0),
                (p + "self_attn.q_proj.weight", (h, h), 0.02),
                (p + "self_attn.k_proj.weight", (kv, h), 0.02),
                (p + "self_attn.v_proj.weight", (kv, h), 0.02),
                (p + "self_attn.o_proj.weight", (h, h), 0.02),
                (p + "post_attention_layernorm.weight", (h,), 0.0),
                (p + "mlp.gate_proj.weight", (self.intermediate, h), 0.02),
                (p + "mlp.up_proj.weight", (self.intermediate, h), 0.02),
                (p + "mlp.down_proj.weight", (h, self.intermediate), 0.02),
            ]
        out.append(("model.norm.weight", (h,), 0.0))
        return out

    def config(self) -> dict:
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": self.hidden,
            "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads, "head_dim": self.head_dim,
            "intermediate_size": self.intermediate, "vocab_size": self.vocab, "hidden_act": "silu",
            "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "tie_word_embeddings": True, "torch_dtype": "bfloat16", "bos_token_id": 128000, "eos_token_id": 128001,
        }


SPECS = {
    "1b": Spec("llama-3.2-1b-like", 2048, 16, 32, 8, 8192, 128256, 2),
    "3b": Spec("llama-3.2-3b-like", 3072, 28, 24, 8, 8192, 128256, 3),
    "tiny": Spec("tiny-llama-like", 256, 4, 8, 4, 1024, 32000, 2),  # smoke test of this script
}


# ----------------------------------------------------------------------------------------------- generation


def _bf16_pool(n: int, seed: int = 0) -> np.ndarray:
    """n random N(0, 1) values as bfloat16 bit patterns (uint16), rounded to nearest even."""
    x = np.random.default_rng(seed).standard_normal(n, dtype=np.float32).view(np.uint32)
    x = (x + 0x7FFF + ((x >> 16) & 1)) >> 16
    return x.astype(np.uint16)


def _shard_plan(spec: Spec) -> list[list[tuple[str, tuple[int, ...], float]]]:
    """Split the tensors in order into `spec.shards` shards of about equal byte size."""
    tensors = spec.tensors()
    total = sum(2 * int(np.prod(s)) for _, s, _ in tensors)
    shards: list[list] = [[]]
    done = 0
    for t in tensors:
        if done >= total * len(shards) / spec.shards and len(shards) < spec.shards:
            shards.append([])
        shards[-1].append(t)
        done += 2 * int(np.prod(t[1]))
    return shards


def generate(spec: Spec, folder: Path) -> None:
    """Write the checkpoint tensor by tensor (in 16 MiB pieces) unless a complete one is cached."""
    marker = folder / ".complete"
    if marker.is_file() and marker.read_text() == repr(spec):
        return
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    pool = _bf16_pool(1 << 24)  # 32 MiB of random bf16 values; tensors are windows into it, scaled
    scales = {}
    plan = _shard_plan(spec)
    weight_map: dict[str, str] = {}
    total_size = 0
    rng = np.random.default_rng(1)
    for k, shard in enumerate(plan):
        fname = f"model-{k + 1:05d}-of-{len(plan):05d}.safetensors"
        header: dict[str, dict] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, shape, _ in shard:
            nbytes = 2 * int(np.prod(shape))
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            weight_map[name] = fname
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with (folder / fname).open("wb") as fh:
            fh.write(struct.pack("<Q", len(raw)))
            fh.write(raw)
            for _name, shape, std in shard:
                n = int(np.prod(shape))
                if std == 0.0:  # RMSNorm weights: near 1
                    vals = (1.0 + 0.05 * rng.standard_normal(n, dtype=np.float32)).view(np.uint32) >> 16
                    fh.write(vals.astype(np.uint16).tobytes())
                    continue
                key = std
                if key not in scales:  # scaling bf16 by a power of two only touches the exponent: exact
                    e = int(round(np.log2(std)))
                    scales[key] = (pool.astype(np.int32) + (e << 7)).astype(np.uint16)
                    scales[key][(pool & 0x7F80) == 0] = 0  # zeros/denormals stay zero
                src = scales[key]
                left = n
                while left:
                    start = int(rng.integers(0, len(src) - 1))
                    take = min(left, len(src) - start, CHUNK // 2)
                    fh.write(src[start:start + take].tobytes())
                    left -= take
        total_size += offset
    index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (folder / "config.json").write_text(json.dumps(spec.config(), indent=2))
    os.sync()
    marker.write_text(repr(spec))
    print(f"generated {folder} ({total_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.1f} s", flush=True)


# ----------------------------------------------------------------------------------------------- measuring


def weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def drop_cache(files: list[Path]) -> str | None:
    """Evict the files from the page cache; return how, or None when impossible."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "drop_caches"
    except OSError:
        pass
    if not hasattr(os, "posix_fadvise"):
        return None
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return "fadvise"


def raw_read(files: list[Path]) -> float:
    """Seconds to read the files sequentially in 16 MiB chunks into one reused buffer."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    t0 = time.perf_counter()
    for f in files:
        with f.open("rb", buffering=0) as fh:
            while fh.readinto(view):
                pass
    return time.perf_counter() - t0


def provaudit_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("provaudit")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "audit"]


def run_fingerprint(folder: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS GiB) of `provaudit fingerprint DIR -o OUT -q` as a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([*provaudit_cmd(), "fingerprint", str(folder), "-o", str(out), "-q"])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"provaudit fingerprint failed with exit status {proc.returncode}")
    return wall, usage.ru_maxrss * 1024 / GIB  # ru_maxrss is in KiB on Linux


def profile_in_process(folder: Path) -> None:
    """Where fingerprinting spends time and memory: phases, cProfile, and per-operation cost on the embedding."""
    import cProfile
    import pstats
    import resource
    import tracemalloc

    from audit.checkpoint import open_checkpoint
    from audit.checkpoint.hashing import sha256_file
    from audit.fingerprinting.weights import QUANTILES, weight_statistics
    from audit.lineage.view import ModelView

    files = weight_files(folder)
    print("\n== in-process breakdown (warm page cache) ==")
    t0 = time.perf_counter()
    for f in files:
        sha256_file(f)
    t_hash = time.perf_counter() - t0
    view = ModelView(open_checkpoint(folder))
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    weight_statistics(view)
    prof.disable()
    t_stats = time.perf_counter() - t0
    gb = sum(f.stat().st_size for f in files) / 1e9
    print(f"sha256 of all files, alone (1 thread): {t_hash:6.2f} s  ({gb / t_hash:.2f} GB/s)")
    print(f"weight_statistics, alone (no hasher):  {t_stats:6.2f} s  ({gb / t_stats:.2f} GB/s of bf16)")
    print("\ncProfile of weight_statistics, top 12 by total time:")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(12)

    # per-operation cost on the largest tensor, exactly as weights.py does it
    name = max(view.ckpt.tensors, key=lambda n: int(np.prod(view.ckpt.tensors[n].shape)))
    shape = view.ckpt.tensors[name].shape
    print(f"per-operation cost on the largest tensor {name} {shape} "
          f"({int(np.prod(shape)) * 2 / 1e6:.0f} MB bf16); 'peak' = numpy allocations traced by tracemalloc:")
    tracemalloc.start()
    ops: list[tuple[str, float, float]] = []

    def step(label, fn):
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        t = time.perf_counter()
        result = fn()
        ops.append((label, time.perf_counter() - t, (tracemalloc.get_traced_memory()[1] - base) / GIB))
        return result

    arr = step("read (mmap + bf16->f32: asarray(uint32) << 16)", lambda: view.ckpt.read(name).ravel())
    step_n = max(1, arr.size // (1 << 16))
    sample = step("sample = sort(arr[::step].astype(f64))", lambda: np.sort(arr[::step_n].astype(np.float64)))
    step("arr.mean(dtype=f64)", lambda: float(arr.mean(dtype=np.float64)))
    step("arr.std(dtype=f64)", lambda: float(arr.std(dtype=np.float64)))
    step("np.abs(arr).max()", lambda: float(np.abs(arr).max()))
    step("np.quantile(sample, 9 quantiles)", lambda: np.quantile(sample, QUANTILES))
    tracemalloc.stop()
    for label, secs, peak in ops:
        print(f"  {label:50s} {secs:7.3f} s   +{peak:5.2f} GiB")
    print(f"  (the f32 array itself: {arr.nbytes / GIB:.2f} GiB; the process's peak RSS so far: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024:.2f} GiB)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SPECS), default="1b")
    ap.add_argument("--cache-dir", type=Path, default=CACHE)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-cache runs")
    ap.add_argument("--repeat", type=int, default=1, help="warm fingerprint runs (the best is reported)")
    ap.add_argument("--profile", action="store_true", help="also break down time and memory in-process")
    args = ap.parse_args(argv)

    spec = SPECS[args.size]
    folder = args.cache_dir / spec.name
    generate(spec, folder)
    files = weight_files(folder)
    gb = sum(f.stat().st_size for f in files) / 1e9
    print(f"checkpoint: {folder}  {len(files)} shards, {len(spec.tensors())} tensors, {gb:.2f} GB; "
          f"{os.cpu_count()} CPUs", flush=True)

    rows: list[tuple[str, float, float, float]] = []  # cache, raw s, fingerprint s, rss
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fp.json"
        if not args.no_cold:
            how = drop_cache(files)
            if how is None:
                print("cold runs skipped: cannot evict the page cache here")
            else:
                raw_cold = raw_read(files)
                drop_cache(files)
                fp_cold, rss_cold = run_fingerprint(folder, out)
                rows.append((f"cold ({how})", raw_cold, fp_cold, rss_cold))
        raw_read(files)  # make sure the cache is warm
        raw_warm = min(raw_read(files) for _ in range(2))
        fp_warm, rss_warm = min(run_fingerprint(folder, out) for _ in range(max(1, args.repeat)))
        rows.append(("warm", raw_warm, fp_warm, rss_warm))
        n_stats = len(json.loads(out.read_text())["weights"])

    print(f"\nfingerprint of {spec.name}: {n_stats} tensors with statistics")
    print(f"{'page cache':22s} {'files GB':>8s} {'raw read s':>10s} {'GB/s':>6s} {'fingerprint s':>13s} "
          f"{'ratio':>6s} {'peak RSS GiB':>12s}")
    for label, raw, fp, rss in rows:
        print(f"{label:22s} {gb:8.2f} {raw:10.2f} {gb / raw:6.2f} {fp:13.2f} {fp / raw:6.2f} {rss:12.2f}")
    worst_ratio = max(fp / raw for _, raw, fp, _ in rows)
    worst_rss = max(rss for *_, rss in rows)
    print(f"\ntarget ratio <= {RATIO_TARGET:.1f}x: {'met' if worst_ratio <= RATIO_TARGET else 'MISSED'} "
          f"(worst {worst_ratio:.2f}x); target peak RSS < {RSS_TARGET_GIB:.0f} GiB: "
          f"{'met' if worst_rss < RSS_TARGET_GIB else 'MISSED'} (worst {worst_rss:.2f} GiB)")
    if args.profile:
        profile_in_process(folder)


if __name__ == "__main__":
    main()
