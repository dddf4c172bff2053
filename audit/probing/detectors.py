"""Detectors that read one response: identity claims (vendor/model, negation-aware, English and Chinese),
teacher-style boilerplate phrases, and knowledge-cutoff dates.

A mention of a vendor counts as a *claim* only in a self-referential frame ("I am ChatGPT", "I was trained
by OpenAI", "我是通义千问", "我由百度开发") and only when no negation or comparison stands between the frame
and the name ("I am not ChatGPT", "unlike Claude", "我不是ChatGPT", "类似GPT-4"). Third-person talk about
other models ("ChatGPT is made by OpenAI") is not a claim. The rules lean towards missing a claim rather
than inventing one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

DECLARED = "declared"

# ---------------------------------------------------------------- lexicon


@dataclass(frozen=True)
class Mention:
    vendor: str
    model: str | None
    alias: str
    start: int
    end: int


@dataclass(frozen=True)
class Claim:
    """A self-claim of a vendor (and, when named, one of its models) found in a response."""

    vendor: str
    model: str | None
    alias: str
    sentence: str

    def as_dict(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "model": self.model, "alias": self.alias}


@dataclass
class Lexicon:
    """Vendor and model names compiled for matching; `declared` vendors are the model's own names."""

    vendors: dict[str, str]  # id -> display name
    declared: frozenset[str] = frozenset()
    _entries: list[tuple[str, str, str | None, bool]] = field(default_factory=list)  # alias, vendor, model, cs
    _patterns: list[re.Pattern[str]] = field(default_factory=list, repr=False)
    _lookup: dict[tuple[bool, str], tuple[str, str | None, str]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_data(cls, data: dict[str, Any], declared: Iterable[str] = ()) -> Lexicon:
        """Build from lexicon.yaml data. Declared names that match a vendor's or model's alias mark that
        whole vendor as declared; other declared names become the synthetic vendor 'declared'."""
        lex = cls({})
        for v in data["vendors"]:
            lex.vendors[v["id"]] = v["name"]
            cs = set(v.get("case_sensitive") or ())
            for alias in _aliases(v, v["name"]):  # a vendor's name always matches
                lex._entries.append((alias, v["id"], None, alias in cs))
            for m in v.get("models") or []:
                mcs = set(m.get("case_sensitive") or ())
                for alias in _aliases(m):  # a model's display name matches only when listed as an alias
                    lex._entries.append((alias, v["id"], m["name"], alias in mcs))
        own: set[str] = set()
        extra: list[str] = []
        names = [(alias, vid) for alias, vid, _, _ in lex._entries]
        names += [(m["name"], v["id"]) for v in data["vendors"] for m in v.get("models") or []]
        for name in declared:
            name = name.strip()
            if not name:
                continue
            hits = {vid for alias, vid in names if _norm(alias) == _norm(name)}
            if hits:
                own |= hits
            else:
                extra.append(name)
        if extra:
            lex.vendors[DECLARED] = ", ".join(extra)
            own.add(DECLARED)
            lex._entries += [(name, DECLARED, None, False) for name in extra]
        lex.declared = frozenset(own)
        lex._compile()
        return lex

    def _compile(self) -> None:
        for case_sensitive in (True, False):
            items = sorted({a for a, _, _, cs in self._entries if cs == case_sensitive}, key=len, reverse=True)
            for alias, vendor, model, cs in self._entries:
                if cs == case_sensitive:
                    key = (cs, alias if cs else alias.casefold())
                    # the first entry for a name wins; a model entry beats a vendor entry for the same name
                    if key not in self._lookup or (model is not None and self._lookup[key][1] is None):
                        self._lookup[key] = (vendor, model, alias)
            if items:
                flags = 0 if case_sensitive else re.IGNORECASE
                self._patterns.append(re.compile("|".join(_alias_regex(a) for a in items), flags))
            else:
                self._patterns.append(re.compile(r"(?!x)x"))

    def mentions(self, text: str) -> list[Mention]:
        """Every vendor/model name in `text`; overlapping matches resolved longest first."""
        found: list[Mention] = []
        for case_sensitive, pattern in zip((True, False), self._patterns, strict=True):
            for m in pattern.finditer(text):
                matched = re.sub(r"\s+", " ", m.group(0))
                key = (case_sensitive, matched if case_sensitive else matched.casefold())
                hit = self._lookup.get(key) or self._fuzzy(case_sensitive, matched)
                if hit is not None:
                    found.append(Mention(hit[0], hit[1], hit[2], m.start(), m.end()))
        found.sort(key=lambda x: (x.start, -(x.end - x.start)))
        out: list[Mention] = []
        for mention in found:
            if out and mention.start < out[-1].end:
                continue
            out.append(mention)
        return out

    def _fuzzy(self, case_sensitive: bool, matched: str) -> tuple[str, str | None, str] | None:
        """Look an alias up ignoring separators ('Open  AI' vs 'Open AI', 'GPT 4' vs 'GPT-4')."""
        target = _norm(matched)
        for (cs, name), hit in self._lookup.items():
            if cs == case_sensitive and _norm(name) == target:
                return hit
        return None

    def name(self, vendor: str) -> str:
        return self.vendors.get(vendor, vendor)

    def vendor_of(self, name: str) -> str | None:
        """The vendor whose name, model or alias is exactly `name` (ignoring case and separators)."""
        target = _norm(name)
        for (_, alias), (vendor, _, _) in self._lookup.items():
            if _norm(alias) == target and vendor != DECLARED:
                return vendor
        return None


def _aliases(entry: dict[str, Any], name: str | None = None) -> list[str]:
    out = [name] if name else []
    for names in (entry.get("aliases") or {}).values():
        out += [a for a in names if a not in out]
    return out


def _norm(text: str) -> str:
    return re.sub(r"[\s\-_]+", "", text).casefold()


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _alias_regex(alias: str) -> str:
    body = r"\s+".join(re.escape(part) for part in alias.split())
    left = r"(?<![A-Za-z0-9])" if _is_word_char(alias[0]) else ""
    right = r"(?![A-Za-z0-9])" if _is_word_char(alias[-1]) else ""
    return f"{left}{body}{right}"


# ---------------------------------------------------------------- identity claims

_SENTENCE = re.compile(r"(?<=[.!?])\s+|[。！？!?\n]+")
_SEGMENT = re.compile(
    r"[,，;；、]|\s[-–—]\s|\b(?:but|however|whereas|although|though|yet|instead)\b|但是|但|不过|然而|而是|可是",
    re.IGNORECASE,
)
_ACTION = r"(?:created|developed|trained|built|made|designed|fine-?tuned|programmed|released|produced|engineered)"
_EN_ANCHOR = re.compile(
    r"\b(?:i\s+am|i'm|i’m|i\s+was|i've\s+been|i’ve\s+been|i\s+have\s+been|my\s+name\s+is|my\s+name's|call\s+me"
    r"|i\s+(?:belong|come|originate)\s+(?:to|from)|i\s+run\s+on|(?:introduce|present)\s+myself(?:\s+as)?"
    r"|my\s+(?:creators?|developers?|makers?|trainers?|vendor|provider|base\s+model|underlying\s+model|model"
    r"|architecture|parent\s+company|company|origin)\s+(?:is|are|was|were|would\s+be)"
    r"|you(?:'re|’re|\s+are)\s+(?:currently\s+)?(?:talking|speaking|chatting|interacting|communicating)\s+(?:to|with)"
    r"|you(?:'re|’re|\s+are)\s+(?:currently\s+)?using"
    r"|(?:this|the)\s+(?:api|service|assistant|chatbot|model)\s+(?:you(?:'re|\s+are)\s+using\s+)?(?:is|belongs\s+to))\b",
    re.IGNORECASE,
)
_ZH_ANCHOR = re.compile(r"我(?:[^，。,；;：:]{0,4}?)(?:是|叫|由|来自|属于|基于|运行在|的名字|的开发者|的创造者|的训练者)|你(?:正在|现在)?(?:在)?(?:与|和|跟)|本(?:模型|助手)")
_EN_PASSIVE = re.compile(rf"\b(?:{_ACTION}|powered|provided|offered|owned|maintained|operated)\s+by\s+(?:the\s+)?(?:\S+\s+){{0,3}}$|\b(?:from|at|based\s+on|built\s+on|named|called|known\s+as)\s+(?:the\s+)?$", re.IGNORECASE)
_ZH_PASSIVE = re.compile(r"(?:由|来自|基于|属于)\s*$")
_EN_ACTIVE_ME = re.compile(rf"^\s*(?:has\s+|have\s+|had\s+|originally\s+)?{_ACTION}\s+me\b", re.IGNORECASE)
_ZH_ACTIVE_ME = re.compile(r"^.{0,6}?(?:开发|训练|创造|打造|研发|创建)(?:了)?我")
_EN_AS = re.compile(r"\bas\s+(?:an?\s+|the\s+)?(?:\S+\s+){0,3}$", re.IGNORECASE)
_ZH_AS = re.compile(r"作为.{0,8}$")
_FIRST_PERSON = re.compile(r"^\s*(?:i\b|i'm|i’m|my\b|我)", re.IGNORECASE)
_EN_CUE = re.compile(
    r"\b(?:not|never|no|nor|neither|without|unlike|like|similar|such\s+as|including|than|versus|vs\.?|compared"
    r"|comparison|about|between|whether|if|other|instead|rather|different|distinct|independent|unaffiliated"
    r"|competitor|competitors|alternative|alternatives|e\.g\.|maybe|perhaps|might|pretend|pretending|imagine)\b|n't|n’t",
    re.IGNORECASE,
)
_ZH_CUE = re.compile(r"不|没|并非|而非|无关|除了|类似|像|比|例如|关于|对比|相比|如同|假装|扮演|假如|如果|也许|可能")
MAX_EN_WORDS = 12
MAX_ZH_CHARS = 24


def _segments(sentence: str) -> list[tuple[int, int]]:
    cuts = [0]
    for m in _SEGMENT.finditer(sentence):
        cuts += [m.start(), m.end()]
    cuts.append(len(sentence))
    return [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]


def _negated(text: str) -> bool:
    return bool(_EN_CUE.search(text) or _ZH_CUE.search(text))


def _near(between: str) -> bool:
    cjk = sum(1 for ch in between if "\u3400" <= ch <= "\u9fff")
    return len(between.split()) <= MAX_EN_WORDS and cjk <= MAX_ZH_CHARS


def _is_claim(sentence: str, seg: tuple[int, int], m: Mention, segs: list[tuple[int, int]]) -> bool:
    pre = sentence[seg[0]:m.start]
    post = sentence[m.end:seg[1]]
    if _negated(pre):
        return False
    anchors = [a.end() for a in _EN_ANCHOR.finditer(pre)] + [a.end() for a in _ZH_ANCHOR.finditer(pre)]
    if anchors and _near(pre[max(anchors):]):
        return True  # "I am ChatGPT", "I was trained by OpenAI", "我是通义千问"
    if (_EN_ACTIVE_ME.search(post) or _ZH_ACTIVE_ME.search(post)) and not _negated(post.split("me")[0]):
        return True  # "OpenAI trained me", "OpenAI开发了我"
    earlier = sentence[:seg[0]]
    if (_EN_PASSIVE.search(pre) or _ZH_PASSIVE.search(pre)) and (_EN_ANCHOR.search(earlier) or _ZH_ANCHOR.search(earlier)):
        return True  # "I am an AI assistant, developed by OpenAI"
    if _EN_AS.search(pre) or _ZH_AS.search(pre):
        nxt = [s for s in segs if s[0] >= seg[1]]
        if nxt and _FIRST_PERSON.search(sentence[nxt[0][0]:nxt[0][1]]):
            return True  # "As ChatGPT, I cannot ..."
    return False


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text) if s and s.strip()]


def extract_claims(text: str, lexicon: Lexicon) -> list[Claim]:
    """Self-claims of vendors/models in `text`, in order, negation-aware (English and Chinese)."""
    claims: list[Claim] = []
    for sentence in sentences(text):
        found = lexicon.mentions(sentence)
        if not found:
            continue
        segs = _segments(sentence)
        for m in found:
            seg = next((s for s in segs if s[0] <= m.start < s[1]), None)
            if seg is not None and _is_claim(sentence, seg, m, segs):
                claims.append(Claim(m.vendor, m.model, m.alias, sentence.strip()))
    return claims


# ---------------------------------------------------------------- boilerplate and cutoff


@dataclass
class Boilerplate:
    """Teacher-style phrases compiled from boilerplate.yaml."""

    phrases: list[tuple[str, str, tuple[str, ...], list[re.Pattern[str]]]]

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Boilerplate:
        return cls([(p["id"], p["language"], tuple(p.get("typical_of") or ()),
                     [re.compile(x, re.IGNORECASE | re.MULTILINE) for x in p["patterns"]]) for p in data["phrases"]])

    def detect(self, text: str) -> list[str]:
        """Ids of the phrases found in `text`."""
        return [pid for pid, _, _, pats in self.phrases if any(p.search(text) for p in pats)]

    def typical_of(self, phrase_id: str) -> tuple[str, ...]:
        return next((t for pid, _, t, _ in self.phrases if pid == phrase_id), ())


_MONTHS = {m: i + 1 for i, m in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"])}
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())})
_CUTOFF_WORDS = re.compile(r"cut-?off|knowledge|training data|trained (?:on|up)|as of|up to|until|last update|截止|截至|知识|训练数据|更新", re.IGNORECASE)
_EN_DATE = re.compile(r"\b(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?\s+(?:of\s+)?((?:19|20)\d\d)\b|\b((?:19|20)\d\d)\b", re.IGNORECASE)
_ZH_DATE = re.compile(r"((?:19|20)\d\d)\s*年\s*(?:(\d{1,2})\s*月)?")


def detect_cutoff(text: str) -> list[str]:
    """Dates ('2021-09' or '2023') stated next to knowledge-cutoff wording, in order of appearance."""
    out: list[str] = []
    for sentence in sentences(text):
        if not _CUTOFF_WORDS.search(sentence):
            continue
        spans: list[tuple[int, str]] = []
        for m in _ZH_DATE.finditer(sentence):
            spans.append((m.start(), f"{m.group(1)}-{int(m.group(2)):02d}" if m.group(2) else m.group(1)))
        taken = {s for s, _ in spans}
        for m in _EN_DATE.finditer(sentence):
            if any(abs(m.start() - s) < 6 for s in taken):
                continue
            if m.group(1):
                spans.append((m.start(), f"{m.group(2)}-{_MONTHS[m.group(1).lower()]:02d}"))
            elif not any(m.start() >= s and m.start() <= s + 20 for s, d in spans if "-" in d):
                spans.append((m.start(), m.group(3)))
        out += [d for _, d in sorted(spans) if d not in out]
    return out


# ---------------------------------------------------------------- registry of detectors


@lru_cache(maxsize=1)
def default_boilerplate() -> Boilerplate:
    from audit.probing.suite import boilerplate_data

    return Boilerplate.from_data(boilerplate_data())


def default_lexicon(declared: tuple[str, ...] = ()) -> Lexicon:
    from audit.probing.suite import lexicon_data

    return Lexicon.from_data(lexicon_data(), declared)


def run_detectors(text: str, names: Iterable[str], lexicon: Lexicon, boilerplate: Boilerplate) -> dict[str, Any]:
    """Apply the named detectors to one response; {detector: findings}."""
    out: dict[str, Any] = {}
    for name in names:
        if name == "identity":
            out["claims"] = [c.as_dict() for c in extract_claims(text, lexicon)]
        elif name == "boilerplate":
            out["boilerplate"] = boilerplate.detect(text)
        elif name == "cutoff":
            out["cutoff"] = detect_cutoff(text)
        else:
            raise ValueError(f"unknown detector {name!r}")
    return out
