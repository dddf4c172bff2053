"""The base-model catalog: the bundled file is valid and complete enough to cite; bad entries are one clear line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from audit.errors import InputError
from audit.fingerprinting.catalog import LICENCES, default_catalog_path, load_catalog
from audit.fingerprinting.registry import load_registry

# the families the catalog promises, by the key of their group in fingerprints/catalog.yaml
PROMISED = ["llama-1", "llama-2", "llama-3", "llama-3.1", "llama-3.2", "llama-3.3", "mistral", "mixtral", "qwen1.5",
            "qwen2", "qwen2.5", "qwen3", "gemma", "gemma-2", "gemma-3", "phi", "phi-3", "phi-4", "deepseek-llm",
            "deepseek-coder", "deepseek-v2", "deepseek-v3", "deepseek-r1-distill", "yi", "chatglm", "glm-4",
            "baichuan", "internlm", "minicpm", "falcon", "olmo", "gpt-2", "gpt-j", "gpt-neox", "pythia", "bloom",
            "opt", "smollm", "smollm2"]


def test_bundled_catalog_is_valid_and_covers_the_promised_families() -> None:
    cat = load_catalog()
    assert len(cat.entries) >= 150
    fams = cat.families()
    assert [f for f in PROMISED if f not in fams] == []
    assert len({e.hub_id.lower() for e in cat.entries}) == len(cat.entries)
    for e in cat.entries:
        assert e.license in LICENCES and e.vendor and e.architecture
        if e.kind in ("instruct", "chat") and e.base is not None:
            assert cat.get(e.base) is not None


def test_catalog_tokenizers_name_registry_tokenizers_and_shipped_weights_are_listed() -> None:
    """A catalog tokenizer is a real registry entry; every bundled weight fingerprint belongs to a catalog model."""
    from audit.fingerprinting.catalog import weight_owner

    cat, reg = load_catalog(), load_registry(user=False)
    tokenizers = {e.name for e in reg.of_kind("tokenizer")}
    assert {e.tokenizer for e in cat.entries if e.tokenizer} <= tokenizers
    weights = reg.of_kind("weights")
    assert weights
    assert [w.name for w in weights if weight_owner(w.data["reference"].stored, w.name, cat) is None] == []


def test_select_by_glob_substring_and_family() -> None:
    cat = load_catalog()
    assert {e.hub_id for e in cat.select("meta-llama/Llama-2-??b-hf")} == {
        "meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-70b-hf"}  # a glob matches the whole id, any case
    assert {e.hub_id for e in cat.select("META-LLAMA/llama-2-7b-*")} == {
        "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-chat-hf"}
    assert {e.family for e in cat.select("pythia")} == {"pythia"}
    assert cat.select("no-such-model-anywhere") == []
    assert len(cat.select(None)) == len(cat.entries)


# ---------------------------------------------------------------- bad catalogs: one line each


def _catalog(tmp_path: Path, models: list[dict], **family) -> Path:
    fam = {"vendor": "Acme", "released": "2024-01", "license": "apache-2.0", "architecture": "llama", **family,
           "models": models}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"schema": "provaudit.catalog/1", "families": {"acme": fam}}), encoding="utf-8")
    return path


GOOD = {"hub_id": "acme/acme-7b", "kind": "base", "params": "7.0e9"}
TOMORROW = (dt.date.today() + dt.timedelta(days=40)).strftime("%Y-%m")


@pytest.mark.parametrize(("models", "family", "expect"), [
    ([GOOD, GOOD], {}, "duplicate hub id"),
    ([GOOD, {**GOOD, "hub_id": "ACME/acme-7b"}], {}, "duplicate hub id"),
    ([{**GOOD, "license": "llama-2"}], {}, "unknown licence id 'llama-2'"),
    ([{**GOOD, "released": "2023-13"}], {}, "no such date"),
    ([{**GOOD, "released": TOMORROW}], {}, "in the future"),
    ([{**GOOD, "released": "last spring"}], {}, "released"),
    ([{**GOOD, "params": "seven billion"}], {}, "must be a number"),
    ([{**GOOD, "params": 12}], {}, "params"),
    ([{**GOOD, "params": "9e13"}], {}, "params"),
    ([{**GOOD, "base": "acme/acme-1b"}], {}, "base acme/acme-1b is not in the catalog"),
    ([{**GOOD, "released": "2023-01"}, {**GOOD, "hub_id": "acme/acme-7b-chat", "kind": "chat", "released": "2022-06",
                                          "base": "acme/acme-7b"}], {}, "before its base"),
    ([GOOD], {"released": None}, "no released"),
    ([{**GOOD, "licence": "mit"}], {}, "unknown field 'licence'"),
    ([{**GOOD, "hub_id": "acme-7b"}], {}, "hub_id"),
    ([{**GOOD, "kind": "foundation"}], {}, "kind"),
    ([GOOD, {**GOOD, "hub_id": "other/acme-7b"}], {}, "registry name 'acme-7b'"),
])
def test_bad_entries_are_rejected_with_one_line(tmp_path, models, family, expect) -> None:
    path = _catalog(tmp_path, models, **{k: v for k, v in family.items() if v is not None})
    if family.get("released", "x") is None:  # remove the family default
        data = yaml.safe_load(path.read_text())
        data["families"]["acme"].pop("released")
        path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError) as info:
        load_catalog(path)
    message = str(info.value)
    assert "\n" not in message
    assert expect in message, message
    assert message.startswith(str(path))


def test_a_good_small_catalog_applies_family_defaults(tmp_path) -> None:
    chat = {"hub_id": "acme/Acme-7B-Chat", "kind": "chat", "params": 7.0e9, "base": "acme/acme-7b",
            "license": "mit", "released": 2024 - 1}  # a number is not a date
    with pytest.raises(InputError):
        load_catalog(_catalog(tmp_path, [GOOD, chat]))
    chat["released"] = "2024-03-05"
    cat = load_catalog(_catalog(tmp_path, [GOOD, chat], tokenizer="llama-spm"))
    base, tuned = cat.entries
    assert (base.released, base.license, base.params, base.name, base.tokenizer) == (
        "2024-01", "apache-2.0", 7.0e9, "acme-7b", "llama-spm")
    assert (tuned.released, tuned.license, tuned.name, tuned.base) == ("2024-03-05", "mit", "acme-7b-chat", "acme/acme-7b")


def test_unreadable_or_missing_catalog_is_one_line(tmp_path) -> None:
    bad = tmp_path / "catalog.yaml"
    bad.write_text("schema: [unclosed\n", encoding="utf-8")
    for path in (bad, tmp_path / "absent.yaml"):
        with pytest.raises(InputError) as info:
            load_catalog(path)
        assert "\n" not in str(info.value)


def test_bundled_catalog_is_found_from_the_package() -> None:
    assert default_catalog_path().name == "catalog.yaml" and default_catalog_path().is_file()
