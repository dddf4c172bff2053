"""Benchmark `provaudit fingerprint` on a synthetic multi-GB sharded safetensors checkpoint.

Targets: fingerprinting within 2x the time of a plain sequential read of the same files, and peak RSS
under 2 GiB whatever the model size.

    python benchmarks/bench_fingerprint.py                 # Llama-3.2-1B-like, ~2.5 GB, 2 shards
    python benchmarks/bench_fingerprint.py --size 3b       # Llama-3.2-3B-like, ~6.4 GB, 3 shards
    python benchmarks/bench_fingerprint.py --repeat 3      # best of 3 of every measurement
    python benchmarks/bench_fingerprint.py --profile       # plus an in-process breakdown of the time/memory

The checkpoint is generated once (tensor by tensor, so generation stays low-memory) and cached under
`<repo>/.cache/bench/`. Cold-cache numbers need root (`/proc/sys/vm/drop_caches`, which empties the
page cache of the whole machine); without it the pages of the checkpoint files are evicted with
posix_fadvise(DONTNEED), which works for clean pages. Wall times are only meaningful on a quiet machine:
the load average is printed, and user/sys CPU seconds are shown because they suffer less from contention.
A warm-cache read runs at memory-copy speed (5-30 GB/s), faster than one core can SHA-256 (~1-2 GB/s),
so the "floor" row (read + SHA-256) is shown: the warm ratio cannot reach 2x while files are hashed.
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


def sha256_read(files: list[Path]) -> float:
    """Seconds to read and SHA-256 the files (16 MiB chunks, one thread): the floor for anything that hashes them."""
    import hashlib

    buf = bytearray(CHUNK)
    view = memoryview(buf)
    t0 = time.perf_counter()
    for f in files:
        h = hashlib.sha256()
        with f.open("rb", buffering=0) as fh:
            while n := fh.readinto(view):
                h.update(view[:n])
    return time.perf_counter() - t0


FINGERPRINT_IMPORTS = ("audit.cli", "audit.cli.fingerprint_cmd", "audit.checkpoint", "audit.fingerprinting.fingerprint",
                       "audit.reporting.writer")


def import_seconds() -> float:
    """Wall seconds of a fresh interpreter importing the modules `provaudit fingerprint` needs."""
    code = "import " + ", ".join(FINGERPRINT_IMPORTS)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def provaudit_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("provaudit")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "audit"]


def run_child(cmd: list[str], env: dict | None = None) -> tuple[float, float, float, float]:
    """(wall s, user CPU s, sys CPU s, peak RSS GiB) of a child process.

    The child runs under /usr/bin/time when there is one: the kernel's max-RSS of a process started from
    this one also counts this process's RSS at the fork, which /usr/bin/time (a tiny parent) keeps out.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        timer = ["/usr/bin/time", "-f", "%U %S %M", "-o", tf.name] if Path("/usr/bin/time").is_file() else []
        t0 = time.perf_counter()
        proc = subprocess.Popen([*timer, *cmd], env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed with exit status {proc.returncode}")
        if timer:
            user, system, kib = tf.read().split()[-3:]
            return wall, float(user), float(system), int(kib) * 1024 / GIB
    return wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss * 1024 / GIB  # ru_maxrss: KiB on Linux


def run_fingerprint(folder: Path, out: Path) -> tuple[float, float, float, float]:
    """`provaudit fingerprint DIR -o OUT -q` as a child process: see run_child."""
    return run_child([*provaudit_cmd(), "fingerprint", str(folder), "-o", str(out), "-q"])


def _cpu() -> tuple[float, float]:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def profile_in_process(folder: Path) -> None:
    """Where fingerprinting spends time and memory: phases, cProfile, the costliest tensors, whole-tensor ops."""
    import cProfile
    import pstats
    import resource
    import tracemalloc

    import audit.fingerprinting.weights as weights
    from audit.checkpoint import open_checkpoint
    from audit.checkpoint.hashing import sha256_file
    from audit.fingerprinting.view import ModelView

    files = weight_files(folder)
    gb = sum(f.stat().st_size for f in files) / 1e9
    print("\n== in-process breakdown (warm page cache; audit/fingerprinting/weights.py as it is now) ==")
    (u0, s0), t0 = _cpu(), time.perf_counter()
    for f in files:
        sha256_file(f)
    (u1, s1), t_hash = _cpu(), time.perf_counter() - t0
    print(f"sha256 of all files, alone (1 thread): {t_hash:6.2f} s  ({gb / t_hash:.2f} GB/s; user {u1 - u0:.1f} s, "
          f"sys {s1 - s0:.1f} s)")
    view = ModelView(open_checkpoint(folder))
    prof = cProfile.Profile()
    (u0, s0), t0 = _cpu(), time.perf_counter()
    prof.enable()
    weights.weight_statistics(view)
    prof.disable()
    (u1, s1), t_stats = _cpu(), time.perf_counter() - t0
    print(f"weight_statistics, alone (no hasher):  {t_stats:6.2f} s  ({gb / t_stats:.2f} GB/s; user {u1 - u0:.1f} s, "
          f"sys {s1 - s0:.1f} s: sys is page faults on freshly allocated temporaries)")
    print("\ncProfile of weight_statistics, top 12 by total time:")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(12)

    tracemalloc.start()  # numpy reports its allocations to tracemalloc
    biggest = sorted(view.ckpt.tensors, key=lambda n: -int(np.prod(view.ckpt.tensors[n].shape)))
    print("per-tensor cost of weights.tensor_statistics on the largest tensors ('peak': numpy memory it held):")
    for name in biggest[:3]:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        (u0, s0), t = _cpu(), time.perf_counter()
        weights.tensor_statistics(view, name)
        (u1, s1), t = _cpu(), time.perf_counter() - t
        peak = (tracemalloc.get_traced_memory()[1] - base) / GIB
        print(f"  {name:40s} {str(view.ckpt.tensors[name].shape):16s} {t:6.2f} s (user {u1 - u0:.2f}, "
              f"sys {s1 - s0:.2f})  peak {peak:5.2f} GiB")

    name = biggest[0]
    shape = view.ckpt.tensors[name].shape
    print(f"\nwhole-tensor operations (as the original one-tensor-at-a-time weights.py did them) on {name} "
          f"{shape}, {int(np.prod(shape)) * 2 / 1e6:.0f} MB bf16; 'peak' = extra numpy memory:")
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
    step("max(arr.max(), -arr.min())", lambda: max(float(arr.max()), -float(arr.min())))
    step("np.dot(arr, arr) (float32 BLAS)", lambda: float(np.dot(arr, arr)))
    step("np.quantile(sample, 9 quantiles)", lambda: np.quantile(sample, weights.QUANTILES))
    tracemalloc.stop()
    for label, secs, peak in ops:
        print(f"  {label:50s} {secs:7.3f} s   +{peak:5.2f} GiB")
    print(f"  (the f32 array itself: {arr.nbytes / GIB:.2f} GiB; this process's peak RSS: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024:.2f} GiB)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SPECS), default="1b")
    ap.add_argument("--cache-dir", type=Path, default=CACHE)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-cache runs")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each measurement (the fastest is reported)")
    ap.add_argument("--profile", action="store_true", help="also break down time and memory in-process")
    args = ap.parse_args(argv)

    spec = SPECS[args.size]
    folder = args.cache_dir / spec.name
    generate(spec, folder)
    files = weight_files(folder)
    gb = sum(f.stat().st_size for f in files) / 1e9
    print(f"checkpoint: {folder}  {len(files)} shards, {len(spec.tensors())} tensors, {gb:.2f} GB; "
          f"{os.cpu_count()} CPUs", flush=True)

    runners = [("provaudit", run_fingerprint)]
    rows: list[tuple[str, str, float, tuple[float, float, float, float]]] = []  # what, cache, raw s, run
    load0 = os.getloadavg()[0]
    outputs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for what, runner in runners:
            out = Path(tmp) / f"{what}.json"
            if not args.no_cold:
                how = drop_cache(files)
                if how is None:
                    print("cold runs skipped: cannot evict the page cache here")
                else:
                    raw_cold, runs = [], []
                    for _ in range(max(1, args.repeat)):
                        drop_cache(files)
                        raw_cold.append(raw_read(files))
                        drop_cache(files)
                        runs.append(runner(folder, out))
                    rows.append((what, f"cold ({how})", min(raw_cold), min(runs)))
            raw_read(files)  # make sure the cache is warm
            raw_warm = min(raw_read(files) for _ in range(2))
            rows.append((what, "warm", raw_warm, min(runner(folder, out) for _ in range(max(1, args.repeat)))))
            outputs[what] = json.loads(out.read_text())

    raw_read(files)
    hash_floor = min(sha256_read(files) for _ in range(2))
    startup = min(import_seconds() for _ in range(3))
    print(f"\nfingerprint of {spec.name}: {len(outputs['provaudit']['weights'])} tensors with statistics")
    load1 = os.getloadavg()[0]
    print(f"(1-min load average {load0:.1f} before, {load1:.1f} after, on {os.cpu_count()} CPUs: "
          f"{'other work was running, wall times are inflated' if max(load0, load1) > 1.5 else 'quiet'})")
    print(f"{'':10s} {'page cache':18s} {'files GB':>8s} {'raw read s':>10s} {'GB/s':>6s} {'fingerprint s':>13s} "
          f"{'user s':>6s} {'sys s':>6s} {'ratio':>6s} {'peak RSS GiB':>12s}")
    for what, label, raw, (secs, user, system, rss) in rows:
        print(f"{what:10s} {label:18s} {gb:8.2f} {raw:10.2f} {gb / raw:6.2f} {secs:13.2f} {user:6.1f} {system:6.1f} "
              f"{secs / raw:6.2f} {rss:12.2f}")
    print(f"{'':10s} {'floor: read + sha256':18s} {gb:8.2f} {'':10s} {'':6s} {hash_floor:13.2f}   "
          f"(warm; one thread; GB/s {gb / hash_floor:.2f}; {hash_floor / rows[-1][2]:.1f}x the warm raw read)")
    print(f"{'':10s} {'start-up (imports)':18s} {'':8s} {'':10s} {'':6s} {startup:13.2f}   "
          f"(importing what `provaudit fingerprint` imports, in a fresh interpreter)")
    for what in outputs:
        mine = [r for r in rows if r[0] == what]
        cold = [run[0] / raw for _, label, raw, run in mine if label.startswith("cold")]
        warm = [run[0] / raw for _, label, raw, run in mine if label == "warm"]
        rss = max(run[3] for *_, run in mine)
        verdict = (f"cold ratio {cold[0]:.2f}x ({'met' if cold[0] <= RATIO_TARGET else 'MISSED'}), " if cold else "")
        print(f"{what}: target <= {RATIO_TARGET:.0f}x a plain read: {verdict}warm ratio {warm[0]:.2f}x "
              f"({'met' if warm[0] <= RATIO_TARGET else 'MISSED'}); peak RSS < {RSS_TARGET_GIB:.0f} GiB: "
              f"{'met' if rss < RSS_TARGET_GIB else 'MISSED'} ({rss:.2f} GiB)")
    if args.profile:
        profile_in_process(folder)


if __name__ == "__main__":
    main()
