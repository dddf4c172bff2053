"""Identity extraction (English, Chinese, negation, several vendors, declared names), boilerplate, cutoff."""

from __future__ import annotations

import pytest

from audit.probing.detectors import DECLARED, default_lexicon, detect_cutoff, extract_claims, run_detectors

LEX = default_lexicon()


def vendors(text: str, lex=LEX) -> list[str]:
    return sorted({c.vendor for c in extract_claims(text, lex)})


@pytest.mark.parametrize("text, expected", [
    # English claims
    ("I am ChatGPT, a large language model trained by OpenAI.", ["openai"]),
    ("I was trained by OpenAI.", ["openai"]),
    ("I'm an AI assistant, developed by OpenAI.", ["openai"]),
    ("As ChatGPT, I cannot browse the internet.", ["openai"]),
    ("OpenAI trained me on a large dataset.", ["openai"]),
    ("Hello everyone! I'm Claude, an AI assistant made by Anthropic.", ["anthropic"]),
    ("My name is Gemini and I was built by Google.", ["google"]),
    ("You are talking to OpenAI's API.", ["openai"]),
    ("I'm a large language model developed by the Qwen team at Alibaba Cloud.", ["alibaba"]),
    ("I am GPT-4o.", ["openai"]),
    ("My developer is DeepSeek.", ["deepseek"]),
    # English non-claims: negation, comparison, third person, ordinary words
    ("I am not ChatGPT.", []),
    ("I'm not affiliated with OpenAI in any way.", []),
    ("I was not trained by OpenAI or Google.", []),
    ("OpenAI didn't train me.", []),
    ("ChatGPT is a chatbot made by OpenAI.", []),
    ("I am similar to GPT-4 in some ways.", []),
    ("Unlike ChatGPT, I have no internet access.", []),
    ("I can compare GPT-4 and Claude for you.", []),
    ("I'm happy to tell you about Gemini.", []),
    ("I don't know whether I am GPT-4.", []),
    ("I'm here to spark your creativity, like a llama in the meta verse.", []),
    # mixed: the negated vendor drops out, the affirmed one stays
    ("I'm Qwen, not ChatGPT.", ["alibaba"]),
    ("Unlike ChatGPT, I am Qwen, created by Alibaba Cloud.", ["alibaba"]),
    ("I am not Claude; I am ChatGPT.", ["openai"]),
    ("I'm not sure, but I believe I was trained by OpenAI.", ["openai"]),
])
def test_english(text: str, expected: list[str]) -> None:
    assert vendors(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("我是ChatGPT，由OpenAI开发的人工智能助手。", ["openai"]),
    ("我是通义千问，是阿里云推出的超大规模语言模型。", ["alibaba"]),
    ("我是一个AI助手，由百度开发。", ["baidu"]),
    ("我是文心一言。", ["baidu"]),
    ("作为OpenAI开发的模型，我无法回答这个问题。", ["openai"]),
    ("OpenAI开发了我。", ["openai"]),
    ("我的开发者是智谱AI，我是ChatGLM。", ["zhipu"]),
    ("你好！我叫豆包，是字节跳动开发的AI。", ["bytedance"]),
    ("我是讯飞星火认知大模型。", ["iflytek"]),
    ("我是腾讯混元大模型。", ["tencent"]),
    ("我是Kimi，由月之暗面科技有限公司开发。", ["moonshot"]),
    ("我是零一万物开发的Yi模型。", ["01-ai"]),
    # negation and comparison
    ("我不是ChatGPT。", []),
    ("我并非由OpenAI开发。", []),
    ("我可能是ChatGPT。", []),
    ("我和ChatGPT类似。", []),
    ("ChatGPT是OpenAI开发的聊天机器人。", []),
    ("我不是ChatGPT，我是通义千问。", ["alibaba"]),
    ("我是通义千问而不是ChatGPT。", ["alibaba"]),
])
def test_chinese(text: str, expected: list[str]) -> None:
    assert vendors(text) == expected


def test_claims_carry_model_and_alias() -> None:
    claims = extract_claims("I am ChatGPT, a large language model trained by OpenAI.", LEX)
    assert [(c.vendor, c.model, c.alias) for c in claims] == [("openai", "ChatGPT", "ChatGPT"),
                                                             ("openai", None, "OpenAI")]


def test_several_vendors_in_one_answer() -> None:
    text = "I am ChatGPT. Later I was fine-tuned by DeepSeek. 我也是通义千问。"
    assert vendors(text) == ["alibaba", "deepseek", "openai"]


def test_longest_name_wins() -> None:
    assert [(m.vendor, m.alias) for m in LEX.mentions("ChatGLM and GPT-4o")] == [("zhipu", "ChatGLM"),
                                                                                ("openai", "GPT-4o")]
    assert LEX.mentions("chatgpt") and not LEX.mentions("claude")  # Claude is case-sensitive, ChatGPT is not
    assert LEX.mentions("xChatGPTx") == []  # whole words only for Latin names


def test_declared_name_is_its_own_vendor() -> None:
    lex = default_lexicon(("Acme AI",))
    assert vendors("I am Acme AI, your assistant.", lex) == [DECLARED]
    assert lex.declared == {DECLARED}
    assert vendors("I am Acme AI, your assistant.") == []  # unknown without --declared


def test_declared_alias_marks_the_whole_vendor() -> None:
    lex = default_lexicon(("qwen",))
    assert lex.declared == {"alibaba"}
    assert vendors("I am Qwen, made by Alibaba Cloud.", lex) == ["alibaba"]  # still counted, flagged never
    lex = default_lexicon(("Acme AI", "Baidu"))
    assert lex.declared == {"baidu", DECLARED}


def test_cutoff_dates() -> None:
    assert detect_cutoff("My knowledge cutoff is September 2021.") == ["2021-09"]
    assert detect_cutoff("As of my last update in 2023, things changed.") == ["2023"]
    assert detect_cutoff("我的知识截止日期是2023年4月。") == ["2023-04"]
    assert detect_cutoff("The Eiffel Tower was finished in 1889.") == []


def test_run_detectors_only_runs_named() -> None:
    from audit.probing.detectors import default_boilerplate

    out = run_detectors("As an AI language model, I am ChatGPT.", ["identity"], LEX, default_boilerplate())
    assert set(out) == {"claims"} and out["claims"][0]["vendor"] == "openai"
    out = run_detectors("As an AI language model, I am ChatGPT.", ["boilerplate", "cutoff"], LEX,
                        default_boilerplate())
    assert out == {"boilerplate": ["as-an-ai-language-model"], "cutoff": []}


@pytest.mark.parametrize("text, expected", [
    ("It's a pleasure to introduce myself, a brilliant AI assistant named SmolLM.", ["huggingface"]),
    ("Let me introduce myself as Claude.", ["anthropic"]),
    ("I'm a helpful assistant, known as ChatGPT.", ["openai"]),
    ("There is an assistant named ChatGPT.", []),
    ("My creation, DeepMind, lets people learn.", []),
])
def test_naming_phrases(text: str, expected: list[str]) -> None:
    assert vendors(text) == expected
