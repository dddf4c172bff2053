"""Real PEFT adapters trained on SmolLM2-135M-Instruct (the `base` real case), built once and cached on disk.

`build_adapter_cases(cache_dir)` returns {case name: path}; cases are built atomically like the real cases
(tests/support/realcases.py) under their own recipe folder, so the other caches stay valid.

Cases:
  lora         a LoRA (r=8, alpha=16, q_proj, v_proj, o_proj, down_proj) trained ADAPTER_STEPS AdamW steps
               and saved with peft's save_pretrained (adapter_config.json + adapter_model.safetensors)
  dora         the same targets as a DoRA (use_dora: a magnitude vector per adapted module), same steps
  lora_merged  base with the `lora` adapter merged in (merge_and_unload), saved as an HF folder
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import realcases

RECIPE = "adapters-v1"
CASES = ("lora", "dora", "lora_merged")
RANK, ALPHA = 8, 16
TARGETS = ("q_proj", "v_proj", "o_proj", "down_proj")
ADAPTER_STEPS = 3
ADAPTER_LR = 2e-3  # LoRA B starts at zero: a larger step than full fine-tuning so the update is visible
BASE_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SEED = 4321


def build_adapter_cases(cache_dir: Path | None = None) -> dict[str, Path]:
    """Build (once) every adapter case under `cache_dir`/RECIPE and return {case: path} (plus 'base')."""
    cases = realcases.build_cases(cache_dir)
    base = cases["base"]
    root = Path(cache_dir or realcases.default_cache_dir()) / RECIPE
    root.mkdir(parents=True, exist_ok=True)
    log = root / "build-seconds.json"
    paths = {name: root / name for name in CASES}

    def lora(out: Path) -> None:
        _trained_adapter(base, use_dora=False).save_pretrained(str(out))

    def dora(out: Path) -> None:
        _trained_adapter(base, use_dora=True).save_pretrained(str(out))

    def lora_merged(out: Path) -> None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(realcases._load_folder(base), str(paths["lora"]))
        realcases._save_torch(model.merge_and_unload(), realcases._load_tokenizer(base), out)

    for name, build in (("lora", lora), ("dora", dora), ("lora_merged", lora_merged)):
        realcases._build_atomic(paths[name], build, log)
    return {"base": base, **paths}


def _trained_adapter(base: Path, use_dora: bool) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(SEED)
    model = realcases._load_folder(base)
    tok = realcases._load_tokenizer(base)
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(TARGETS), lora_dropout=0.0,
                        use_dora=use_dora, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    peft_model.peft_config["default"].base_model_name_or_path = BASE_ID
    realcases._train(peft_model, tok, SEED, steps=ADAPTER_STEPS, lr=ADAPTER_LR)
    return peft_model
