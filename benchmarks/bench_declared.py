"""How long reading a model's declarations takes: read_declared_files + declared_claims on a real GGUF (SmolLM2,
when its asset is cached), and the card-prose scanner on typical and hostile cards of up to 1 MiB.

    python benchmarks/bench_declared.py            # 1 MB cards
    python benchmarks/bench_declared.py --mb 0.1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

TYPICAL = """Acme-7B-Chat is a chat model fine-tuned from [Qwen2.5-7B](https://huggingface.co/Qwen/Qwen2.5-7B) with
SFT and DPO. It is compared with Llama-3.1-8B and Mistral-7B on MMLU and GSM8K below.

| Model | MMLU | GSM8K |
|---|---|---|
| Llama-3.1-8B | 66.7 | 84.5 |

本模型基于Qwen2.5-7B微调，支持中英文对话。请遵守通义千问许可协议。

```python
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained("acme/acme-7b-chat")
```

"""


def cards(size: int) -> dict[str, str]:
    return {
        "typical card": TYPICAL,
        "typical card, repeated": TYPICAL * (size // len(TYPICAL)),
        "one phrase repeated": "This model is trained from scratch and based on Llama 3.1 8B. " * (size // 62),
        "one claim per line": "\n".join(["Fine-tuned from Qwen/Qwen2.5-7B, a merge of org/a and org/b. "
                                         "本模型基于Qwen2.5-7B微调。"] * (size // 90)),
        "a list of 60k models": "a merge of " + " and ".join(["Qwen2.5-7B"] * (size // 15)),
        "models, no phrase": ", ".join(["Qwen2.5-7B"] * (size // 12)) + " 微调",
        "one 1 MB word": "based on " + "a" * size,
        "fillers": "based on " + "the " * (size // 4) + "Llama",
        "Chinese, no punctuation": "基于" + "的" * size,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=1.0, help="size of the hostile cards in MB (default 1)")
    args = ap.parse_args()
    from audit.claims.declared import declared_claims, load_phrases, prose_claims

    t = time.perf_counter()
    load_phrases()
    print(f"{'load and compile claim-phrases.yaml':44s} {time.perf_counter() - t:7.3f} s")
    gguf = Path.home() / ".cache" / "provaudit" / "assets" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if gguf.is_file():
        from audit.checkpoint import open_checkpoint
        from audit.checkpoint.declarations import read_declared_files

        ckpt = open_checkpoint(gguf)
        t = time.perf_counter()
        files = read_declared_files(ckpt)
        claims = declared_claims(files)
        print(f"{'SmolLM2 GGUF: read + claims':44s} {time.perf_counter() - t:7.3f} s  {len(claims)} claims")
    for name, text in cards(int(args.mb * 1_000_000)).items():
        lines = list(enumerate(text.splitlines(), start=1))
        t = time.perf_counter()
        found = prose_claims(lines)
        print(f"{name + f' ({len(text) / 1e6:.2f} MB)':44s} {time.perf_counter() - t:7.3f} s  {len(found)} claims")


if __name__ == "__main__":
    main()
