"""Probe data files: bundled suites validate, say what the issue asks for, and bad files fail in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.probing.detectors import default_boilerplate, default_lexicon
from audit.probing.schema import validate
from audit.probing.suite import (
    SuiteError,
    boilerplate_data,
    lexicon_data,
    list_suites,
    load_suite_file,
    resolve_suite,
    resolve_suites,
    schema,
)

GOOD = """\
kind: suite
suite: mine
description: A user's own suite.
detectors: [identity]
probes:
  - {id: a, language: en, prompt: "Who are you?"}
  - id: b
    language: zh
    detectors: [identity, boilerplate]
    messages:
      - {role: system, content: "你是助手。"}
      - {role: user, content: "你是谁？"}
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_suites_validate() -> None:
    suites = {s.name: s for s in list_suites()}
    assert {"self-identity", "distillation-leak"} <= set(suites)
    for suite in suites.values():
        assert suite.source.startswith("bundled:")
        assert len(suite.sha256) == 64
        assert all(p.detectors for p in suite.probes)


def test_self_identity_covers_languages_and_phrasings() -> None:
    suite = resolve_suite("self-identity")
    for lang in ("en", "zh"):
        probes = [p for p in suite.probes if p.language == lang]
        assert len(probes) >= 5
        assert {"direct", "indirect", "role-play", "system-override"} <= {p.category for p in probes}
    assert any(p.messages[0][0] == "system" for p in suite.probes)
    assert any("API" in p.messages[-1][1] for p in suite.probes)


def test_distillation_leak_covers_teacher_signals() -> None:
    suite = resolve_suite("distillation-leak")
    assert {"cutoff", "refusal", "boilerplate", "teacher-knowledge"} <= {p.category for p in suite.probes}
    assert {"identity", "boilerplate", "cutoff"} <= set(suite.detectors())


def test_prompts_never_name_a_vendor() -> None:
    """An answer that names a vendor must be the model's own idea, not an echo of the prompt."""
    lex = default_lexicon()
    for suite in list_suites():
        for probe in suite.probes:
            for _, text in probe.messages:
                assert lex.mentions(text) == [], (suite.name, probe.id, text)


def test_lexicon_has_the_vendors_asked_for() -> None:
    lex = default_lexicon()
    for vendor in ("openai", "anthropic", "google", "meta", "mistral", "alibaba", "baidu", "zhipu", "moonshot",
                   "deepseek", "01-ai", "baichuan", "minimax", "bytedance", "iflytek", "tencent", "huggingface",
                   "microsoft"):
        assert vendor in lex.vendors
    expect = {"通义千问": "alibaba", "文心一言": "baidu", "智谱": "zhipu", "ChatGLM": "zhipu", "零一万物": "01-ai",
              "百川": "baichuan", "豆包": "bytedance", "讯飞星火": "iflytek", "混元": "tencent", "Kimi": "moonshot",
              "GPT-4": "openai", "Bard": "google", "PaLM": "google", "Llama": "meta", "SmolLM": "huggingface"}
    for alias, vendor in expect.items():
        found = lex.mentions(f"x {alias} x")
        assert [m.vendor for m in found] == [vendor], alias


def test_boilerplate_has_teacher_phrases() -> None:
    bp = default_boilerplate()
    assert "as-an-ai-language-model" in bp.detect("As an AI language model, I cannot do that.")
    assert "sorry-cannot" in bp.detect("I'm sorry, but I can't help with that.")
    assert "zh-as-ai-language-model" in bp.detect("作为一个人工智能语言模型，我没有个人观点。")
    assert bp.detect("The weather is nice today.") == []
    assert "openai" in bp.typical_of("as-an-ai-language-model")


def test_data_files_match_schema() -> None:
    assert validate(lexicon_data(), schema()) == []
    assert validate(boilerplate_data(), schema()) == []


def test_user_suite_file_loads(tmp_path: Path) -> None:
    suite = resolve_suite(str(write(tmp_path, GOOD)))
    assert suite.name == "mine" and suite.languages == ("en", "zh")
    a, b = suite.probes
    assert a.detectors == ("identity",) and a.message_list() == [{"role": "user", "content": "Who are you?"}]
    assert b.detectors == ("identity", "boilerplate") and b.messages[0] == ("system", "你是助手。")


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.replace("language: en", "language: 7"), "probes[0].language"),
    (lambda t: t.replace("detectors: [identity]\n", "detectors: [telepathy]\n"), "telepathy"),
    (lambda t: t.replace("description: A user's own suite.\n", ""), "missing required field 'description'"),
    (lambda t: t.replace("{id: a, language: en,", "{id: a, language: en, colour: red,"), "unknown field 'colour'"),
    (lambda t: t.replace("kind: suite", "kind: recipe"), "field 'kind' must be one of"),
    (lambda t: t.replace("role: system", "role: narrator"), "narrator"),
    (lambda t: t.replace("id: b", "id: a"), "duplicate probe id"),
    (lambda t: t.replace('prompt: "Who are you?"', 'prompt: "Hi", messages: [{role: user, content: x}]'),
     "exactly one of 'prompt' or 'messages'"),
    (lambda t: t.replace("probes:\n", "probes: []\nx:\n"), ""),
    (lambda t: t + "  - {id: c, language: en, prompt: [\n", "not valid YAML (line"),
])
def test_bad_suite_is_one_line_error(tmp_path: Path, mutate, message: str) -> None:
    path = write(tmp_path, mutate(GOOD))
    with pytest.raises(SuiteError) as err:
        load_suite_file(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and message in text


def test_unknown_suite_and_missing_file() -> None:
    with pytest.raises(SuiteError, match="unknown suite 'nope'"):
        resolve_suite("nope")
    with pytest.raises(SuiteError, match="no such file"):
        resolve_suite("missing/suite.yaml")
    with pytest.raises(SuiteError, match="given twice"):
        resolve_suites(["self-identity", "self-identity"])


def test_a_lexicon_is_not_a_suite() -> None:
    from audit.probing.suite import probes_dir

    with pytest.raises(SuiteError, match="not a suite"):
        load_suite_file(probes_dir() / "lexicon.yaml")
