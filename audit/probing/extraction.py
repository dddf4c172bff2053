"""Prompt-extraction answers: what a model wraps around a recovered prompt, and which answer to retest.

`provaudit trace` asks the subject the probes of probes/prompt-extraction.yaml. When billing shows a hidden
system prompt of about L tokens, an answer whose length fits L is retested as the reference's system prompt.
Small chat models rarely answer with the bare prompt: they fence it in code blocks, announce it ("Sure, here
is the text above:"), quote it, close with an offer of more help, fall into loops, or (base models) go on
writing the transcript. `clean_extraction` strips that wrapping; `best_candidate` picks the answer to retest
(among those that fit L: agreement between probes first, then length; replies in the assistant's own
voice, loops and echoes of the request left out), `rank_candidates` orders all of them; `recovery` scores
a candidate against the truth (benchmarks/bench_extraction.py measures all of it on real models).

Pure Python (difflib and re), no model needed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence

FIT_TOLERANCE = 0.3  # an answer fits the billed hidden-prompt length within this relative distance

_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n?(.*?)(?:\n?[ \t]*```|\Z)", re.DOTALL)
# a first line that announces what follows and ends with a colon: "Sure, here is the text above:"
_LEAD_IN = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|okay|ok|absolutely|here|below|the (?:text|words|prompt|instructions|"
    r"system (?:prompt|message)|answer|sentence)|my (?:instructions|system prompt)|i (?:was|am|have been) "
    r"(?:given|told|instructed))\b[^\n]{0,160}?[:：]|(?:好的|当然|以下|下面|这是|(?:你|我)(?:收到)?的(?:回答|系统|指令|提示))"
    r"[^\n]{0,80}?[:：])[ \t]*\n?",
    re.IGNORECASE)
# a lone acknowledgement line: "Sure!", "Certainly.", "好的。"
_ACK = re.compile(r"^\s*(?:sure|certainly|of course|okay|ok|absolutely|好的|当然)[!.,，。！\s]*\n", re.IGNORECASE)
# a closing offer or remark on the last line(s)
_TAIL = re.compile(
    r"(?:\n|(?<=[.!?。！？]))\s*(?:is there anything else|let me know|if you (?:have|need)|feel free|i hope|"
    r"hope this|how (?:can|may) i (?:help|assist)|please let me know|do you (?:need|want|have)|"
    r"如果(?:您|你)还有|还有什么|有什么(?:其他|可以))[^\n]*\s*\Z",
    re.IGNORECASE)
# a line where the model goes on writing the conversation: "User: ...", "Assistant: ...", "用户："
_ROLE = re.compile(r"(?:^|\n)[ \t]*(user|assistant|system|human|ai|bot|model|customer|agent|q|a|用户|助手|系统)"
                   r"[ \t]*[:：]", re.IGNORECASE)
_USER_ROLES = {"user", "human", "customer", "q", "用户"}
LOOP = 4  # a sentence equal to one of the last LOOP kept ones is a degenerate loop, not prompt text
# a sentence or line with the whitespace after it
_UNIT = re.compile(r"[^.!?。！？\n]*(?:[.!?。！？]+|\n|$)\s*")
# how a reply in the assistant's own voice starts (a system prompt speaks to the model, not as it)
_ASSISTANT_VOICE = re.compile(
    r"[\s\"'“‘「*]*(?:i(?:'m|’m| am| will|'ll| can| have|'ve| do| don't| cannot| can't| would)?\b|as an? (?:ai|language model|"
    r"assistant|chatbot)\b|sorry\b|hello\b|hi\b|thank|sure\b|certainly\b|我(?!们)|抱歉|对不起|您好|你好|谢谢)",
    re.IGNORECASE)
MIN_VARIETY = 0.5  # share of distinct words below which a long answer is a loop, not a prompt
AGREE = 0.5  # two answers agree when one reproduces at least half of the other (recovery)
ECHO = 0.8  # recovery against an extraction request above which an answer only repeats the request
_QUOTES = [('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("「", "」"), ("『", "』"), ("«", "»")]
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def clean_extraction(answer: str, probes: Sequence[str] = ()) -> str:
    """The answer without the wrapping models put around a recovered prompt.

    In order: keeps the inside of the longest fenced code block when there is one (an unterminated fence
    counts: the answer may be cut at the token limit); cuts the answer into turns where the model goes on
    writing the conversation ("User: ...", "Assistant: ...", a base model's habit) and keeps the first turn
    that is not the user's and not an echo of one of `probes` (the extraction requests); drops a lead-in
    line ("Sure, here is ...:", a lone "Certainly!") and a closing offer ("Is there anything else ...");
    collapses a degenerate loop (the same line or sentence repeated) to one copy; and removes quotes or
    Markdown emphasis around the whole text. Returns "" when nothing but an echo of a probe is left.
    """
    text = answer.replace("\ufffd", "").strip()  # a character cut in half at the token limit
    blocks = [b for b in (m.group(1).strip() for m in _FENCE.finditer(text)) if b]
    if blocks:
        text = max(blocks, key=len)
    text = _first_turn(text, probes)
    for _ in range(3):
        text = _ACK.sub("", text, count=1)
        text = _LEAD_IN.sub("", text, count=1).strip()
        text = _drop_echoed_lines(text, probes)
    text = _TAIL.sub("", text).strip()
    text = _unquote(_collapse_loops(text))
    return "" if _is_echo(text, probes) else text


def _is_echo(text: str, probes: Sequence[str]) -> bool:
    return bool(text) and any(recovery(text, p) >= ECHO for p in probes if p)


def _drop_echoed_lines(text: str, probes: Sequence[str]) -> str:
    """Without its first lines while they repeat (part of) an extraction request."""
    lines = text.splitlines()
    while lines and (not lines[0].strip() or _is_echo(lines[0], probes) or _inside_probe(lines[0], probes)):
        lines.pop(0)
    return "\n".join(lines).strip()


def _inside_probe(line: str, probes: Sequence[str]) -> bool:
    """A line of at least 8 characters that is a piece of a request (case, spacing and end marks aside)."""
    norm = _norm(line).strip(" .。!！?？\"'“”")
    return len(norm) >= 8 and any(norm in _norm(p) for p in probes)


def _first_turn(text: str, probes: Sequence[str]) -> str:
    """The first turn of a continued transcript that is not the user's and does not echo a probe."""
    parts = _ROLE.split(text)  # [unlabelled, label, text, label, text, ...]
    turns = [("", parts[0]), *zip(parts[1::2], parts[2::2], strict=True)]
    for label, body in turns:
        body = body.strip()
        if body and label.lower() not in _USER_ROLES and not _is_echo(body, probes):
            return body
    return ""


def _collapse_loops(text: str) -> str:
    """One copy of each run of repeated sentences or lines (a cycle of up to LOOP of them repeated counts
    too), without the cut-off start of another copy at the end."""
    kept: list[str] = []
    dropped = False
    for unit in _UNIT.findall(text):
        if not unit.strip():
            continue
        if any(_norm(unit) == _norm(k) for k in kept[-LOOP:]):  # a loop of up to LOOP sentences
            dropped = True
            continue
        kept.append(unit)
    if dropped and len(kept) >= 2:  # a loop cut at the token limit: "...story.\n\nYou "
        last = _norm(kept[-1])
        if any(_norm(k).startswith(last) and _norm(k) != last for k in kept[:-1]):
            kept.pop()
    return "".join(kept).strip()


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _unquote(text: str) -> str:
    changed = True
    while changed and len(text) >= 2:
        changed = False
        for opening, closing in [*_QUOTES, ("**", "**"), ("*", "*")]:
            if text.startswith(opening) and text.endswith(closing) and len(text) > len(opening) + len(closing):
                inner = text[len(opening):-len(closing)]
                if opening not in inner and closing not in inner:  # one quoted span, not two
                    text, changed = inner.strip(), True
    return text


def _tokens(text: str) -> list[str]:
    """Words and single punctuation marks; CJK text one character a token (no spaces to split on)."""
    out: list[str] = []
    for tok in _WORD.findall(text.lower()):
        out.extend(tok if any("\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" for ch in tok) else [tok])
    return out


def recovery(candidate: str, truth: str) -> float:
    """How much of `truth` `candidate` reproduces, in [0, 1]: difflib's ratio over word tokens (CJK by
    character), case-insensitive. 1.0 is verbatim up to case and spacing; a paraphrase scores low."""
    a, b = _tokens(candidate), _tokens(truth)
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def fits(tokens: int, target_tokens: float, tolerance: float = FIT_TOLERANCE) -> bool:
    """Whether a length of `tokens` is within `tolerance` (relative) of the billed hidden-prompt length."""
    return target_tokens > 0 and abs(tokens - target_tokens) <= tolerance * target_tokens


def degenerate(text: str) -> bool:
    """Text that goes round in circles: at least 20 tokens (`recovery`'s words) and fewer than
    MIN_VARIETY of them distinct. The hidden prompts of benchmarks/bench_extraction.py have 0.69-0.94."""
    tokens = _tokens(text)
    return len(tokens) >= 20 and len(set(tokens)) < MIN_VARIETY * len(tokens)


def support(candidate: str, others: Sequence[str], agree: float = AGREE) -> int:
    """How many of `others` reproduce `candidate` (recovery >= `agree`)."""
    return sum(1 for o in others if o and recovery(candidate, o) >= agree)


def rank_candidates(answers: Sequence[str], target_tokens: float, count: Callable[[str], int],
                    tolerance: float = FIT_TOLERANCE, probes: Sequence[str] = (), min_support: int = 0) -> list[str]:
    """The cleaned answers that could be the hidden system prompt, most likely first (see `best_candidate`)."""
    cleaned = [clean_extraction(a, probes) for a in answers]
    lengths = [count(c) if c else 0 for c in cleaned]
    fitting = [i for i, c in enumerate(cleaned)
               if c and not _ASSISTANT_VOICE.match(c) and not degenerate(c) and fits(lengths[i], target_tokens, tolerance)]
    step = max(1.0, 0.05 * target_tokens)
    keys: dict[int, tuple[int, float, float, int]] = {}
    for i in fitting:
        others = [o for j, o in enumerate(cleaned) if j != i and o]
        keys[i] = (-support(cleaned[i], others), round(abs(lengths[i] - target_tokens) / step),
                   -sum(recovery(cleaned[i], o) for o in others), i)
    ranked = sorted((i for i in fitting if -keys[i][0] >= min_support), key=keys.__getitem__)
    out: list[str] = []
    for i in ranked:  # the same text from two probes is one candidate
        if cleaned[i] not in out:
            out.append(cleaned[i])
    return out


def best_candidate(answers: Sequence[str], target_tokens: float, count: Callable[[str], int],
                   tolerance: float = FIT_TOLERANCE, probes: Sequence[str] = (), min_support: int = 0) -> str | None:
    """The cleaned answer to retest as the hidden system prompt, or None when none fits.

    Answers are cleaned first (`probes`, the extraction requests, drop answers that only echo one). An
    answer in the assistant's own voice ("I'm sorry ...", "I am here to help ...", "我是...") is a reply or a
    first-person paraphrase, not a prompt written to the model, and is left out, as is a `degenerate` one
    (a loop of a few words). The others whose length
    under `count` (the reference's tokenizer) is within `tolerance` of `target_tokens` compete. Agreement
    ranks first: the answer that most other probes' answers reproduce (`support`) wins, since text that
    several differently worded requests bring out is more likely the real prompt than one answer's
    invention; then the length closest to the target (in steps of 5% of it, the precision of a billing
    estimate), then the summed recovery against all other answers. With `min_support` > 0 an answer no
    other answer reproduces is never picked (fewer false fits, but fewer recoveries too: measured in
    benchmarks/bench_extraction.py, most verbatim recoveries come from a single probe).
    """
    ranked = rank_candidates(answers, target_tokens, count, tolerance, probes, min_support)
    return ranked[0] if ranked else None
