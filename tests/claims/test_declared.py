"""What a model declares about itself, read from real-looking folders, files and Hub references: the card's front
matter and prose (English and Chinese), GGUF general.* metadata, safetensors __metadata__, config.json,
adapter_config.json, the command line; and the files that must not stop an audit (malformed, huge, a FIFO)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from audit.checkpoint import open_checkpoint
from audit.checkpoint.declarations import MAX_CARD_BYTES, DeclaredFiles, read_declared_files
from audit.claims.declared import (
    declared_claims,
    normalise_licence,
    parse_cli_claim,
    parse_cli_licence,
    prose_claims,
)
from audit.errors import InputError
from audit.record.models import DeclaredClaim
from tests.support import tiny


def hf_folder(folder: Path, files: dict[str, str] | None = None, config: dict | None = None) -> Path:
    """A tiny Llama HF folder with extra small files (card, licence, ...) and config.json fields."""
    tiny.save_hf(tiny.make_llama(0, layers=2, hidden=32, ff=64), folder)
    if config:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        cfg.update(config)
        (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    for name, text in (files or {}).items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def claims_of(path: Path | str) -> tuple[DeclaredFiles, list[DeclaredClaim]]:
    files = read_declared_files(open_checkpoint(path))
    return files, declared_claims(files)


def pairs(claims: list[DeclaredClaim], kind: str | None = None) -> list[tuple[str, str]]:
    return [(c.kind.value, c.value) for c in claims if kind is None or c.kind.value == kind]


def prose(text: str) -> list[DeclaredClaim]:
    return prose_claims(list(enumerate(text.splitlines(), start=1)))


# ---------------------------------------------------------------------------------------------- model cards

CARD = """---
license: other
license_name: llama3.1
base_model:
- meta-llama/Llama-3.1-8B
- https://huggingface.co/Qwen/Qwen2.5-7B
base_model_relation: merge
model_name: acme-chat
---
# Acme chat

Acme-chat is a merge of [Llama 3.1 8B](https://huggingface.co/meta-llama/Llama-3.1-8B)
and Qwen2.5-7B, made with mergekit.

```python
# based on Llama 2: the loader below
model = AutoModelForCausalLM.from_pretrained("acme/acme-chat")
```

| Model | MMLU |
|---|---|
| fine-tuned from Llama-2-7B | 45.3 |
| Acme-chat | 61.0 |

Compared with Llama-2 and other models trained from scratch, ours is smaller.
"""


def test_card_front_matter_and_prose_with_their_lines(tmp_path) -> None:
    files, claims = claims_of(hf_folder(tmp_path / "acme-chat", {"README.md": CARD}))
    assert files.notes == [] and "README.md" in files.sources
    fm = [c for c in claims if c.source.key is not None and c.source.file == "README.md"]
    by_key = {(c.source.key, c.value): c.source.line for c in fm}
    assert by_key[("base_model", "meta-llama/Llama-3.1-8B")] == 5
    assert by_key[("base_model", "Qwen/Qwen2.5-7B")] == 6  # a Hub URL read as its Hub id
    assert by_key[("base_model_relation", "merge")] == 7
    assert by_key[("model_name", "acme-chat")] == 8
    licences = [c.value for c in claims if c.kind.value == "license"]
    assert licences == [normalise_licence("llama3.1")] and "other" not in licences
    body = [c for c in claims if c.source.key is None]
    assert pairs(body) == [("base", "meta-llama/Llama-3.1-8B"), ("base", "Qwen2.5-7B"), ("relation", "merge")]
    assert {c.source.line for c in body} == {12} and all(c.language == "en" for c in body)
    assert body[0].source.text.startswith("Acme-chat is a merge of [Llama 3.1 8B]")
    # the code block, the benchmark table and the comparison sentence say nothing about this model
    assert not [c for c in claims if c.kind.value == "origin" or "Llama-2" in c.value or "Llama 2" in c.value]


def test_chinese_cards_claim_origin_and_base(tmp_path) -> None:
    own = "---\nlicense: apache-2.0\n---\n# 星河大模型\n\n本模型为自主研发，从零训练的大语言模型。\n"
    _, claims = claims_of(hf_folder(tmp_path / "own", {"README.md": own}))
    origin = [c for c in claims if c.kind.value == "origin"]
    assert [(c.value, c.language, c.source.line) for c in origin] == [("original", "zh", 6)]
    assert origin[0].source.text == "本模型为自主研发，从零训练的大语言模型。"
    derived = "# 星河-对话\n\n本模型基于Qwen2.5-7B微调，使用了十万条中文指令数据。\n"
    _, claims = claims_of(hf_folder(tmp_path / "ft", {"README.md": derived}))
    assert pairs(claims) == [("base", "Qwen2.5-7B"), ("relation", "finetune")]
    assert {(c.language, c.source.line) for c in claims} == {("zh", 3)}


@pytest.mark.parametrize("text", [
    "This model was not trained from scratch.",
    "It is NOT self-developed: we started from an open model.",
    "本模型不是从零训练的。",
    "本模型并非自主研发。",
    "It isn't based on Llama 2.",
    "Our model, unlike many models based on Llama, uses a new tokenizer.",
    "Compared with models trained from scratch, fine-tuning is cheaper.",
    "与其他自主研发的模型相比，本模型更小。",
    "It is based on the Llama architecture and tokenizer.",
    "Fine-tuned on GPT-4 generated conversations.",
    "Quantized with llama.cpp, built with LLaMA-Factory, based on user feedback.",
    "Our philosophy is based on openness.",
    "Smith et al. (2023) fine-tuned from Llama-2-7B in their paper.",
    "Fine-tuned on HuggingFaceH4/ultrachat_200k for two epochs.",
])
def test_negations_comparisons_and_non_models_claim_nothing(text) -> None:
    assert prose(text) == []


@pytest.mark.parametrize("text, want", [
    ("Acme-7B is trained from scratch on 3T tokens.", [("origin", "original")]),
    ("A self-developed foundation model.", [("origin", "original")]),
    ("本模型从头训练，拥有自主知识产权。", [("origin", "original")]),
    ("Fine-tuned from Qwen/Qwen2.5-7B-Instruct with DPO.", [("base", "Qwen/Qwen2.5-7B-Instruct"), ("relation", "finetune")]),
    ("This model is based on Llama 3.1 8B.", [("base", "Llama 3.1 8B")]),
    ("Built on top of Meta's Llama-3-8B-Instruct.", [("base", "Llama-3-8B-Instruct")]),
    ("A merge of mistralai/Mistral-7B-v0.1 and HuggingFaceH4/zephyr-7b-beta.",
     [("base", "mistralai/Mistral-7B-v0.1"), ("base", "HuggingFaceH4/zephyr-7b-beta"), ("relation", "merge")]),
    ("该模型在Llama-2-13B的基础上继续预训练。", [("base", "Llama-2-13B"), ("relation", "finetune")]),
    ("我们以Qwen2.5-72B为基座进行训练。", [("base", "Qwen2.5-72B")]),
])
def test_prose_claims_in_english_and_chinese(text, want) -> None:
    assert pairs(prose(text)) == want


def test_names_listed_as_datasets_are_never_a_base(tmp_path) -> None:
    card = ("---\ndatasets:\n- HuggingFaceH4/ultrachat_200k\n---\n"
            "Built on HuggingFaceH4/ultrachat_200k and Qwen/Qwen2.5-0.5B.\n")
    _, claims = claims_of(hf_folder(tmp_path / "d", {"README.md": card}))
    assert pairs(claims) == [("base", "Qwen/Qwen2.5-0.5B")]


def test_malformed_front_matter_is_a_note_and_the_prose_is_still_read(tmp_path) -> None:
    card = "---\nbase_model: [unclosed\nlicense: mit\n---\nThis model is trained from scratch.\n"
    files, claims = claims_of(hf_folder(tmp_path / "m", {"README.md": card}))
    assert files.front_matter == {}
    assert [(n.file, n.level) for n in files.notes] == [("README.md", "warning")]
    assert "front matter" in files.notes[0].message
    assert pairs(claims) == [("origin", "original")] and claims[0].source.line == 5


def test_a_huge_card_is_refused_without_stopping_the_rest(tmp_path) -> None:
    big = "---\nbase_model: org/base\n---\n" + "trained from scratch. " * (2 * MAX_CARD_BYTES // 22)
    assert len(big) > 2 * 1000 * 1000
    files, claims = claims_of(hf_folder(tmp_path / "big", {"README.md": big},
                                        config={"_name_or_path": "org/parent"}))
    assert "README.md" not in files.sources and files.prose == [] and files.front_matter == {}
    assert "bytes" in files.notes[0].message and files.notes[0].file == "README.md"
    assert pairs(claims) == [("base", "org/parent")]  # config.json was still read


def test_a_fifo_named_readme_is_skipped_not_waited_on(tmp_path) -> None:
    folder = hf_folder(tmp_path / "fifo", config={"_name_or_path": "org/parent"})
    os.mkfifo(folder / "README.md")
    os.mkfifo(folder / "LICENSE")
    ckpt = open_checkpoint(folder)
    got: list[DeclaredFiles] = []
    worker = threading.Thread(target=lambda: got.append(read_declared_files(ckpt)), daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "reading declarations hung on a FIFO"
    files = got[0]
    assert {n.file for n in files.notes} == {"README.md", "LICENSE"}
    assert all("not a regular file" in n.message for n in files.notes)
    assert pairs(declared_claims(files)) == [("base", "org/parent")]


# ---------------------------------------------------------------------------------------------- config and adapter


@pytest.mark.parametrize("name_or_path, folder, want", [
    ("/home/me/checkpoints/step-1000", "mine", []),
    ("./out/final", "mine", []),
    ("Qwen/Qwen2.5-0.5B", "mine", [("base", "Qwen/Qwen2.5-0.5B")]),
    ("Qwen/Qwen2.5-0.5B", "Qwen2.5-0.5B", []),  # a downloaded copy names itself
])
def test_config_name_or_path_is_a_weak_base_claim_only_as_a_hub_id(tmp_path, name_or_path, folder, want) -> None:
    _, claims = claims_of(hf_folder(tmp_path / folder, config={"_name_or_path": name_or_path}))
    assert pairs(claims) == want
    for c in claims:
        assert (c.source.file, c.source.key) == ("config.json", "_name_or_path") and name_or_path in c.source.text


def adapter_folder(folder: Path, base: str, card: str | None = None) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "base_model_name_or_path": base, "r": 4, "lora_alpha": 8,
        "target_modules": ["q_proj"]}), encoding="utf-8")
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file({f"{prefix}.lora_A.weight": np.zeros((4, 32), np.float32),
               f"{prefix}.lora_B.weight": np.zeros((32, 4), np.float32)}, str(folder / "adapter_model.safetensors"))
    if card is not None:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def test_adapter_folder_declares_its_base(tmp_path) -> None:
    files, claims = claims_of(adapter_folder(tmp_path / "lora", "HuggingFaceTB/SmolLM2-135M-Instruct"))
    assert files.adapter_config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert pairs(claims) == [("base", "HuggingFaceTB/SmolLM2-135M-Instruct"), ("relation", "adapter")]
    assert claims[0].source.file == "adapter_config.json"


def test_local_paths_as_bases_name_nothing(tmp_path) -> None:
    """PEFT writes the path the base was loaded from into adapter_config.json and the card's base_model."""
    path = "/home/me/models/base"
    _, claims = claims_of(adapter_folder(tmp_path / "lora", path, f"---\nbase_model: {path}\n---\n"))
    assert pairs(claims) == [("relation", "adapter")]


# ---------------------------------------------------------------------------------------------- weight metadata


def write_gguf(path: Path, meta: dict[str, str]) -> Path:
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    for key, value in meta.items():
        w.add_string(key, value)
    w.add_uint32("general.base_model.count", 1)
    w.add_tensor("token_embd.weight", np.arange(8 * 32, dtype=np.float32).reshape(8, 32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


GGUF_META = {
    "general.name": "Acme 7B Instruct",
    "general.organization": "Acme",
    "general.license": "apache-2.0",
    "general.url": "https://huggingface.co/acme/acme-7b-instruct-gguf",
    "general.base_model.0.name": "Qwen2.5 7B",
    "general.base_model.0.organization": "Qwen",
    "general.base_model.0.repo_url": "https://huggingface.co/Qwen/Qwen2.5-7B",
    "general.source.repo_url": "https://huggingface.co/Qwen/Qwen2.5-7B-Instruct",
}


def test_gguf_general_metadata_and_the_card_beside_it(tmp_path) -> None:
    path = write_gguf(tmp_path / "acme-7b-instruct-Q8_0.gguf", GGUF_META)
    (tmp_path / "README.md").write_text("---\nbase_model: Qwen/Qwen2.5-7B-Instruct\nbase_model_relation: "
                                        "quantized\n---\n", encoding="utf-8")
    files, claims = claims_of(path)
    assert files.gguf_file == path.name and files.gguf["general.name"] == "Acme 7B Instruct"
    assert files.sources == ["README.md", f"GGUF metadata ({path.name})"]
    gguf_claims = [c for c in claims if c.source.file == "GGUF metadata"]
    assert [(c.kind.value, c.value, c.source.key) for c in gguf_claims] == [
        ("base", "Qwen/Qwen2.5-7B", "general.base_model.0.repo_url"),
        ("base", "Qwen/Qwen2.5-7B-Instruct", "general.source.repo_url"),
        ("relation", "quantized", "general.source.repo_url"),
        ("license", normalise_licence("apache-2.0"), "general.license"),
        ("name", "Acme 7B Instruct", "general.name"),
        ("vendor", "Acme", "general.organization"),
    ]
    assert pairs([c for c in claims if c.source.file == "README.md"]) == [
        ("base", "Qwen/Qwen2.5-7B-Instruct"), ("relation", "quantized")]


def test_gguf_source_that_is_the_model_itself_and_a_base_without_url(tmp_path) -> None:
    meta = {**GGUF_META, "general.source.repo_url": "https://huggingface.co/acme/acme-7b-instruct-gguf"}
    del meta["general.base_model.0.repo_url"]
    _, claims = claims_of(write_gguf(tmp_path / "own.gguf", meta))
    assert pairs(claims, "base") == [("base", "Qwen/Qwen2.5 7B")]  # organization/name, no Hub id to prefer
    assert pairs(claims, "relation") == []


def test_safetensors_metadata_of_a_single_file(tmp_path) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"model.embed_tokens.weight": np.ones((8, 16), np.float32)}, str(path),
              metadata={"format": "pt", "base_model": "org/base-7b", "license": "MIT"})
    files, claims = claims_of(path)
    assert files.safetensors_metadata == {"weights.safetensors": {"format": "pt", "base_model": "org/base-7b",
                                                                   "license": "MIT"}}
    assert sorted(pairs(claims)) == [("base", "org/base-7b"), ("license", normalise_licence("MIT"))]
    assert all(c.source.file == "safetensors metadata" for c in claims)


def test_chat_template_and_licence_file(tmp_path, monkeypatch) -> None:
    import types

    import audit.claims.declared as declared

    table = types.SimpleNamespace(normalise_licence=lambda text: "mit" if text.startswith("MIT License") else None)
    monkeypatch.setattr(declared, "_licences_module", lambda: table)
    template = ("{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are Qwen, created by "
                "Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{% endif %}")
    tokenizer_config = {"chat_template": template, "bos_token": "<|im_start|>", "added_tokens_decoder": {
        "0": {"content": "<|endoftext|>", "special": True}, "1": {"content": "<|Qwen_reserved|>", "special": True},
        "2": {"content": "<|DeepSeek|>", "special": False}}}
    folder = hf_folder(tmp_path / "t", {"tokenizer_config.json": json.dumps(tokenizer_config),
                                        "LICENSE": "MIT License\n\nCopyright (c) 2024 Acme\n\nPermission is "
                                                   "hereby granted, free of charge, to any person obtaining a copy\n"})
    files, claims = claims_of(folder)
    assert files.licence_files["LICENSE"][0] == "MIT License" and "LICENSE" in files.texts
    vendors = [c for c in claims if c.kind.value == "vendor"]
    assert [(c.value, c.source.file, c.source.key) for c in vendors] == [
        ("Alibaba Cloud", "tokenizer_config.json", "chat_template"),
        ("Alibaba Cloud", "tokenizer_config.json", "special tokens")]  # a special token naming Qwen; not a plain one
    assert files.special_tokens == ["<|im_start|>", "<|endoftext|>", "<|Qwen_reserved|>"]
    assert "You are Qwen, created by Alibaba Cloud" in vendors[0].source.text
    licence = [c for c in claims if c.kind.value == "license"]
    assert [(c.value, c.source.file, c.source.line, c.source.text) for c in licence] == [
        ("mit", "LICENSE", 1, "MIT License")]


# ---------------------------------------------------------------------------------------------- Hub references


def test_hub_reference_reads_the_card_hub_downloaded_and_fetches_nothing_more(tmp_path, monkeypatch) -> None:
    from tests.checkpoint.conftest import folder_files
    from tests.support.hub_server import HubRepo, HubTestServer

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("PROVAUDIT_HUB_CACHE", str(tmp_path / "ranges"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    local = hf_folder(tmp_path / "src", {"README.md": "---\nbase_model: org/parent\nlicense: mit\n---\n"
                                                      "Fine-tuned from org/parent on chat data.\n"})
    repo = HubRepo(folder_files(local))
    with HubTestServer({"acme/child": repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        ckpt = open_checkpoint("hf:acme/child")
        before = len(hub.log)
        files = read_declared_files(ckpt)
        claims = declared_claims(files)
        assert len(hub.log) == before  # the card came from the HF cache, the header from the range cache
    assert files.repo_id == "acme/child" and files.folder is not None and "hf-cache" in str(files.folder)
    assert files.sources[:2] == ["README.md", "config.json"]
    assert ("base", "org/parent") in pairs(claims) and ("relation", "finetune") in pairs(claims)


def test_hub_gguf_reference_reads_general_metadata_from_the_range_cache(tmp_path, monkeypatch) -> None:
    from tests.support.hub_server import HubRepo, HubTestServer

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("PROVAUDIT_HUB_CACHE", str(tmp_path / "ranges"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    gguf_path = write_gguf(tmp_path / "acme-Q8_0.gguf", GGUF_META)
    with HubTestServer({"acme/acme-7b-instruct-gguf": HubRepo({"acme-Q8_0.gguf": gguf_path})}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        ckpt = open_checkpoint("hf:acme/acme-7b-instruct-gguf")
        before = len(hub.log)
        files = read_declared_files(ckpt)
        assert len(hub.log) == before
    assert files.repo_id == "acme/acme-7b-instruct-gguf" and files.gguf_file == "acme-Q8_0.gguf"
    assert ("relation", "quantized") in pairs(declared_claims(files))


# ---------------------------------------------------------------------------------------------- command line


@pytest.mark.parametrize("text, want", [
    ("self-developed", [("origin", "original")]),
    ("Trained from scratch", [("origin", "original")]),
    ("自主研发", [("origin", "original")]),
    ("derived", [("origin", "derived")]),
    ("fine-tuned from Qwen2.5-7B", [("base", "Qwen2.5-7B"), ("relation", "finetune")]),
    ("finetune of hf:Qwen/Qwen2.5-7B@main", [("base", "Qwen/Qwen2.5-7B"), ("relation", "finetune")]),
    ("based on Llama 3.1 8B", [("base", "Llama 3.1 8B")]),
    ("derived from our-internal-base", [("base", "our-internal-base")]),
    ("quantized from meta-llama/Llama-3.1-8B", [("base", "meta-llama/Llama-3.1-8B"), ("relation", "quantized")]),
    ("merge of org/a and org/b", [("base", "org/a"), ("base", "org/b"), ("relation", "merge")]),
    ("adapter for HuggingFaceTB/SmolLM2-135M", [("base", "HuggingFaceTB/SmolLM2-135M"), ("relation", "adapter")]),
    ("Qwen/Qwen2.5-7B", [("base", "Qwen/Qwen2.5-7B")]),
    ("基于Qwen2.5-7B微调", [("base", "Qwen2.5-7B"), ("relation", "finetune")]),
    ("Qwen2.5-7B微调", [("base", "Qwen2.5-7B"), ("relation", "finetune")]),
    ("在Llama-2-13B基础上", [("base", "Llama-2-13B")]),
])
def test_cli_claims(text, want) -> None:
    claims = parse_cli_claim(text)
    assert pairs(claims) == want
    assert all(c.source.file == "command line" and c.source.key == "--claim" and c.source.text == text
               for c in claims)


@pytest.mark.parametrize("text", ["", "banana bread", "fine-tuned from", "merge of org/a", "x" * 400])
def test_cli_claims_not_understood_are_one_line_input_errors(text) -> None:
    with pytest.raises(InputError) as err:
        parse_cli_claim(text)
    msg = str(err.value)
    assert "\n" not in msg and "--claim" in msg and "fine-tuned from X" in msg


def test_cli_licence() -> None:
    c = parse_cli_licence("  Apache-2.0 ")
    assert (c.kind.value, c.value, c.source.key) == ("license", normalise_licence("Apache-2.0"), "--declared-license")
    with pytest.raises(InputError, match="--declared-license"):
        parse_cli_licence("   ")
