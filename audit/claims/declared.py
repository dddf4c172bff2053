"""What a model declares about itself, as `DeclaredClaim`s: origin, base, relation, licence, name and vendor, each
with where it was read (file, key, line, the text as written).

Sources, strongest first: the card's front matter (`base_model`, `base_model_relation`, `license`, ...), an
adapter's `base_model_name_or_path`, GGUF `general.*` metadata, safetensors `__metadata__`, config.json
`_name_or_path` (weak: it is whatever path the model was last loaded from; its source key says so), the LICENSE
file, the chat template's default system prompt and vendor-named special tokens, then the card's prose, English
and Chinese, scanned with the phrase lists of `fingerprints/claim-phrases.yaml`. `parse_cli_claim` and
`parse_cli_licence` read what a user states on the command line (`--claim`, `--declared-license`).

GGUF: llama.cpp's converter copies the source model card's `base_model` into `general.base_model.N.*`, so in a
converted GGUF those name the *source model's* base (the grandparent of a quantized copy: Qwen2.5-7B for a
Qwen2.5-7B-Instruct GGUF); they are base claims all the same. `general.source.url` / `general.source.repo_url`
name the model the GGUF was converted from: when that is a Hub repository other than the model's own, it is a
base claim with relation `quantized` (the Hub's word for GGUF, GPTQ and AWQ copies, F16 conversions included).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from audit.checkpoint.declarations import CARD, DeclaredFiles
from audit.datafiles import FileModel, error_lines
from audit.errors import InputError
from audit.record.models import ClaimSource, DeclaredClaim
from audit.record.names import ClaimKind, Relation

MAX_TEXT = 300
CLAUSE_CHARS = 300  # how far back a negation or comparison is looked for
MAX_LIST = 8  # models captured from one list ("a merge of A, B and C")
MAX_PROSE_CLAIMS = 256  # claims kept from one card's prose (a card repeating a phrase 10,000 times says it once)
ANCHOR_WINDOW = 8 * 110  # characters before an anchor where the models it follows may start
PHRASES_FILE = "claim-phrases.yaml"

_RELATIONS = {r.value: r for r in Relation}
_HF_URL = re.compile(r"https?://(?:www\.)?(?:huggingface\.co|hf\.co|hf-mirror\.com)/(?:models/)?"
                     r"([A-Za-z0-9][A-Za-z0-9_.-]*)/([A-Za-z0-9][A-Za-z0-9_.-]*)([^\s)\]>\"']*)")
_NOT_REPOS = {"datasets", "spaces", "docs", "blog", "papers", "collections", "settings", "organizations", "api"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]*)(?:\s+\"[^\"]*\")?\)")
_CLAUSE_END = re.compile(r"[;!?。；！？，,:：()（）\[\]]|\.(?=\s|$)")
_LIST_SPLIT = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+|\s*[&+、]\s*|\s*(?:以及|和|与|及)\s*", re.I)
_CITATION = re.compile(r"^\s*(?:\[\d+\]|@\w+\s*\{|(?:title|author|journal|booktitle|year|eprint|url|publisher)\s*=)"
                       r"|et al\.|arxiv", re.I)
_NEXT_WORD = re.compile(r"\s*(?:'s\s+|的\s*)?([A-Za-z]+|[\u4e00-\u9fff]{1,2})")


# ---------------------------------------------------------------------------------------------- phrase data


class _Derived(FileModel):
    language: str
    relation: str | None
    pattern: str
    anchor: str | None = None


class _CliBase(FileModel):
    relation: str | None
    pattern: str


class _Cli(FileModel):
    original: list[str]
    derived: list[str]
    with_base: list[_CliBase]


class _PhraseFile(FileModel):
    kind: str
    version: int
    families: list[str]
    spaced_suffixes: list[str]
    exclude: list[str]
    fillers: dict[str, str]
    negations: dict[str, list[str]]
    comparisons: dict[str, list[str]]
    not_followed_by: dict[str, list[str]]
    original: dict[str, list[str]]
    derived: list[_Derived]
    template_vendor: list[str]
    token_vendors: dict[str, str]
    cli: _Cli


@dataclass(frozen=True)
class _Rule:
    language: str
    relation: Relation | None
    regex: re.Pattern[str]
    anchor: re.Pattern[str] | None = None  # the words after the model, for patterns that start with it

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        """The rule's matches in `text`; an anchored rule is tried only in the stretch before each anchor."""
        if self.anchor is None:
            yield from self.regex.finditer(text)
            return
        done = 0
        for a in self.anchor.finditer(text):
            start = max(done, a.start() - ANCHOR_WINDOW)
            for m in self.regex.finditer(text, start, a.end()):
                if m.end() == a.end():
                    yield m
                    break
            done = a.end()


@dataclass(frozen=True)
class Phrases:
    """The compiled phrase lists of fingerprints/claim-phrases.yaml."""

    model: re.Pattern[str]  # one model name: a Hub id or a family name with version / size
    exclude: frozenset[str]
    negations: dict[str, list[str]]
    comparisons: dict[str, list[str]]
    not_followed_by: frozenset[str]
    original: list[_Rule]
    derived: list[_Rule]
    template_vendor: list[re.Pattern[str]]
    token_vendor: re.Pattern[str]
    token_vendors: dict[str, str]
    cli_original: frozenset[str]
    cli_derived: frozenset[str]
    cli_with_base: list[_Rule]


@lru_cache(maxsize=1)
def load_phrases() -> Phrases:
    """fingerprints/claim-phrases.yaml, validated and compiled (once per process)."""
    from audit.paths import data_dir
    from audit.safeio import load_yaml

    path = data_dir("fingerprints") / PHRASES_FILE
    try:
        data = _PhraseFile.model_validate(load_yaml(path), strict=False)
    except ValidationError as exc:
        raise InputError(f"{path}: {error_lines(exc)[0]}") from None
    try:
        return _compile(data)
    except (re.error, KeyError) as exc:
        raise InputError(f"{path}: unusable pattern ({exc})") from None


def _compile(d: _PhraseFile) -> Phrases:
    fam = "|".join(re.escape(f) for f in sorted(set(d.families), key=len, reverse=True))
    spaced = "|".join(d.spaced_suffixes)
    # Every repetition is bounded (Hub names are at most 96 characters; at most MAX_LIST models in a list), so
    # no pattern can backtrack for long on a hostile card.
    hub = (r"(?<![A-Za-z0-9_./-])(?=[A-Za-z0-9_.-]{0,95}[A-Za-z][A-Za-z0-9_.-]{0,95}/)[A-Za-z0-9][A-Za-z0-9_.-]{0,95}"
           r"/[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?(?![A-Za-z0-9_/])")
    family = (rf"(?<![A-Za-z0-9_])(?:{fam})(?:[-_.]?[0-9](?:[A-Za-z0-9._-]{{0,60}}[A-Za-z0-9])?|[-_.][A-Za-z0-9]"
              rf"(?:[A-Za-z0-9._-]{{0,60}}[A-Za-z0-9])?)?(?:\s(?:{spaced})(?![A-Za-z0-9])){{0,4}}(?![A-Za-z])")
    model = rf"(?:{hub}|{family})"
    sep = r"(?:[ \t]{0,3},[ \t]{0,3}(?:and\s)?|\sand\s|[ \t]{0,3}[&+、][ \t]{0,3}|[ \t]{0,3}(?:以及|和|与|及)[ \t]{0,3})"
    models = rf"{model}(?:{sep}{model}){{0,{MAX_LIST - 1}}}"

    def derived(rule: _Derived) -> _Rule:
        filler = d.fillers.get(rule.language, "")
        text = rule.pattern.replace("{models}", f"{filler}(?P<models>{models})")
        anchor = re.compile(rule.anchor, re.I) if rule.anchor else None
        return _Rule(rule.language, _relation(rule.relation), re.compile(text, re.I), anchor)

    original = [_Rule(lang, None, re.compile(p, re.I)) for lang, pats in d.original.items() for p in pats]
    vendors = "|".join(re.escape(v) for v in sorted(d.token_vendors, key=len, reverse=True))
    return Phrases(
        model=re.compile(model, re.I),
        exclude=frozenset(x.lower() for x in d.exclude),
        negations={k: [x.lower() for x in v] for k, v in d.negations.items()},
        comparisons={k: [x.lower() for x in v] for k, v in d.comparisons.items()},
        not_followed_by=frozenset(x.lower() for v in d.not_followed_by.values() for x in v),
        original=original,
        derived=[derived(r) for r in d.derived],
        template_vendor=[re.compile(p) for p in d.template_vendor],
        token_vendor=re.compile(rf"(?<![A-Za-z])({vendors})(?![A-Za-z])", re.I),
        token_vendors={k.lower(): v for k, v in d.token_vendors.items()},
        cli_original=frozenset(x.lower() for x in d.cli.original),
        cli_derived=frozenset(x.lower() for x in d.cli.derived),
        cli_with_base=[_Rule("", _relation(r.relation), re.compile(r.pattern, re.I)) for r in d.cli.with_base],
    )


def _relation(value: str | None) -> Relation | None:
    if value is None:
        return None
    if value not in _RELATIONS:
        raise KeyError(f"relation {value!r} is not one of {', '.join(_RELATIONS)}")
    return _RELATIONS[value]


# ---------------------------------------------------------------------------------------------- helpers


def normalise_licence(text: str) -> str | None:
    """A licence id for `text` (audit.claims.licences.normalise_licence when present; else the lower-cased text)."""
    normalise = getattr(_licences_module(), "normalise_licence", None)
    if normalise is None:
        low = " ".join(text.split()).lower()
        return low or None
    try:
        value = normalise(text)
    except InputError:  # the licence table itself is unusable: that is reported where licences are judged
        return " ".join(text.split()).lower() or None
    return value if isinstance(value, str) and value else None


def _licence_value(text: str) -> str | None:
    """A declared licence as an id; the lower-cased text when it is no licence the table knows."""
    clean = " ".join(text.split())
    if not clean:
        return None
    return normalise_licence(clean) or clean.lower()


def hub_id(text: str) -> str | None:
    """'ORG/NAME' from a Hub id, an `hf:` reference or a huggingface.co URL; None for anything else."""
    t = text.strip().strip("'\"<>")
    m = _HF_URL.match(t)
    if m:
        return None if m.group(1) in _NOT_REPOS else f"{m.group(1)}/{m.group(2)}"
    t = t.removeprefix("hf:").split("@", 1)[0].rstrip("/")
    return t if _REPO_ID.match(t) and ".." not in t else None


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 3] + "..."


def _claim(kind: ClaimKind, value: str, file: str, key: str | None = None, line: int | None = None,
           text: str = "", language: str | None = None) -> DeclaredClaim:
    return DeclaredClaim(kind=kind, value=value, language=language,
                         source=ClaimSource(file=file, key=key, line=line, text=_clip(text or value)))


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9\u4e00-\u9fff]+", "", text.lower())


def _base_name(text: str) -> str | None:
    """A declared base as a Hub id when it is one (or a Hub URL); None for a local path (PEFT and trainers write
    the path the base was loaded from: it names nothing outside the machine it was on, and its last folder is
    as often 'base' or 'checkpoint-500' as a model name); else the text as written (a model name)."""
    t = text.strip()
    repo = hub_id(t)
    if repo:
        return repo
    if t.startswith(("/", ".", "~")) or "\\" in t or re.match(r"^[A-Za-z]:", t) or t.count("/") > 1:
        return None
    return t or None


def _own_names(files: DeclaredFiles) -> set[str]:
    """Normalised names the model itself goes by (Hub id, its last part, the checkpoint's and folder's names)."""
    names = {files.model, files.repo_id or "", files.folder.name if files.folder is not None else ""}
    out: set[str] = set()
    for n in names:
        if n:
            out |= {_norm(n), _norm(n.split("/")[-1])}
    return out - {""}


def _is_own(value: str, own: set[str]) -> bool:
    return _norm(value) in own or _norm(value.split("/")[-1]) in own


# ---------------------------------------------------------------------------------------------- declared_claims


def declared_claims(files: DeclaredFiles) -> list[DeclaredClaim]:
    """Every declaration the files make, strongest source first, each once per source."""
    phrases = load_phrases()
    claims: list[DeclaredClaim] = []
    claims += _front_matter(files)
    claims += _adapter(files)
    claims += _gguf(files)
    claims += _safetensors(files)
    claims += _config(files)
    claims += _licence_files(files)
    claims += _template_vendors(files, phrases)
    claims += prose_claims(files.prose, phrases, datasets=_strings(files.front_matter.get("datasets")))
    return _unique(claims)


def _unique(claims: Iterable[DeclaredClaim]) -> list[DeclaredClaim]:
    """Each claim once per source (file, key, line): two phrases of one line saying the same count once."""
    seen: set[tuple[str, str, str, str | None, int | None]] = set()
    out = []
    for c in claims:
        key = (c.kind.value, _norm(c.value), c.source.file, c.source.key, c.source.line)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _fm_line(files: DeclaredFiles, key: str, item: str | None = None) -> tuple[int | None, str]:
    """The 1-based README.md line of front-matter `key` (of `item` in its list when given), and its text."""
    start = files.front_matter_lines.get(key)
    if start is None:
        return None, ""
    lines = dict(files.front_matter_text)
    if item is not None:
        for line_no, text in files.front_matter_text:
            if line_no < start:
                continue
            if line_no > start and re.match(r"^[A-Za-z0-9_]", text):
                break
            if item in text:
                return line_no, text.strip()
    return start, lines.get(start, "").strip()


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v.strip()][:64]
    return []


def _front_matter(files: DeclaredFiles) -> list[DeclaredClaim]:
    fm = files.front_matter
    out: list[DeclaredClaim] = []

    def add(kind: ClaimKind, value: str | None, key: str, item: str | None = None) -> None:
        if value:
            line, text = _fm_line(files, key, item)
            out.append(_claim(kind, value, CARD, key, line, text or f"{key}: {item or value}"))

    for item in _strings(fm.get("base_model")):
        add(ClaimKind.BASE, _base_name(item), "base_model", item)
    for item in _strings(fm.get("base_model_relation")):
        rel = item.strip().lower()
        if rel in _RELATIONS:
            add(ClaimKind.RELATION, rel, "base_model_relation", item)
    names = _strings(fm.get("license_name"))
    for item in _strings(fm.get("license")):
        if item.strip().lower() == "other" and names:
            continue  # the Hub's way to say: see license_name
        add(ClaimKind.LICENSE, _licence_value(item), "license", item)
    for item in names:
        add(ClaimKind.LICENSE, _licence_value(item), "license_name", item)
    if not out or all(c.kind != ClaimKind.LICENSE for c in out):
        for item in _strings(fm.get("license_link")):
            lic = normalise_licence(item) if _licences_available() else None
            add(ClaimKind.LICENSE, lic, "license_link", item)
    for item in _strings(fm.get("model_name")):
        add(ClaimKind.NAME, item.strip(), "model_name", item)
    index = fm.get("model-index")
    if isinstance(index, list):
        for entry in index[:16]:
            if isinstance(entry, dict):
                for item in _strings(entry.get("name")):
                    add(ClaimKind.NAME, item.strip(), "model-index", item)
    for item in _strings(fm.get("model_creator")):
        add(ClaimKind.VENDOR, item.strip(), "model_creator", item)
    return out


def _licences_module() -> Any:
    """audit.claims.licences when it is there (it is written alongside this module), else None."""
    import importlib

    try:
        return importlib.import_module("audit.claims.licences")
    except ImportError:
        return None


def _licences_available() -> bool:
    return hasattr(_licences_module(), "normalise_licence")


def _adapter(files: DeclaredFiles) -> list[DeclaredClaim]:
    value = files.adapter_config.get("base_model_name_or_path")
    if not isinstance(value, str) or not value.strip():
        return []
    base = _base_name(value)
    text = f'"base_model_name_or_path": "{value}"'
    said = [_claim(ClaimKind.BASE, base, "adapter_config.json", "base_model_name_or_path", text=text)] if base else []
    return [*said,
            _claim(ClaimKind.RELATION, Relation.ADAPTER.value, "adapter_config.json", "peft_type",
                   text=f"a PEFT adapter ({files.adapter_config.get('peft_type', 'LORA')}) for {value}")]


def _gguf(files: DeclaredFiles) -> list[DeclaredClaim]:
    g = files.gguf
    if not g:
        return []
    file = "GGUF metadata"
    out: list[DeclaredClaim] = []

    def add(kind: ClaimKind, value: str | None, key: str) -> None:
        if value:
            out.append(_claim(kind, value, file, key, text=f"{key} = {g[key]}"))

    for n in range(64):
        prefix = f"general.base_model.{n}."
        keys = {k[len(prefix):]: k for k in g if k.startswith(prefix)}
        if not keys:
            if n > 0 or "general.base_model.count" not in g:
                break
            continue
        for part in ("repo_url", "url"):
            if part in keys and hub_id(g[keys[part]]):
                add(ClaimKind.BASE, hub_id(g[keys[part]]), keys[part])
                break
        else:
            name, org = g.get(keys.get("name", "")), g.get(keys.get("organization", ""))
            if name:
                out.append(_claim(ClaimKind.BASE, f"{org}/{name}" if org else name, file, keys["name"],
                                  text=f"{keys['name']} = {name}" + (f"; {keys['organization']} = {org}" if org else "")))
    own = _own_names(files) | {_norm(x) for k in ("general.url", "general.repo_url") if (x := hub_id(g.get(k, "")))}
    for key in ("general.source.repo_url", "general.source.url"):
        source = hub_id(g.get(key, ""))
        if source and not _is_own(source, own):
            add(ClaimKind.BASE, source, key)
            add(ClaimKind.RELATION, Relation.QUANTIZED.value, key)
            break
    for key in ("general.license", "general.license.name"):
        if g.get(key, "").strip():
            add(ClaimKind.LICENSE, _licence_value(g[key]), key)
    if g.get("general.name", "").strip():
        add(ClaimKind.NAME, g["general.name"].strip(), "general.name")
    if g.get("general.organization", "").strip():
        add(ClaimKind.VENDOR, g["general.organization"].strip(), "general.organization")
    return out


def _safetensors(files: DeclaredFiles) -> list[DeclaredClaim]:
    out = []
    for fname, meta in files.safetensors_metadata.items():
        for key, value in meta.items():
            low, text = key.lower(), f"{fname}: {key} = {value}"
            if not value.strip():
                continue
            if low in ("base_model", "base_model_name_or_path", "modelspec.base_model"):
                base = _base_name(value)
                if base:
                    out.append(_claim(ClaimKind.BASE, base, "safetensors metadata", key, text=text))
            elif low in ("license", "modelspec.license"):
                lic = _licence_value(value)
                if lic:
                    out.append(_claim(ClaimKind.LICENSE, lic, "safetensors metadata", key, text=text))
            elif low in ("name", "model_name", "modelspec.title"):
                out.append(_claim(ClaimKind.NAME, value.strip(), "safetensors metadata", key, text=text))
    return out


def _config(files: DeclaredFiles) -> list[DeclaredClaim]:
    """config.json `_name_or_path` as a (weak) base claim: only a Hub id that is not the model's own name."""
    value = files.config.get("_name_or_path")
    if not isinstance(value, str):
        return []
    repo = value.strip()
    if not _REPO_ID.match(repo) or ".." in repo or _is_own(repo, _own_names(files)):
        return []
    return [_claim(ClaimKind.BASE, repo, "config.json", "_name_or_path", text=f'"_name_or_path": "{value}"')]


def _licence_files(files: DeclaredFiles) -> list[DeclaredClaim]:
    if not _licences_available():
        return []  # a whole licence text has no lower-cased id: only the licence table can name it
    out = []
    for name, lines in files.licence_files.items():
        if not name.upper().startswith(("LICENSE", "LICENCE")):
            continue
        lic = normalise_licence("\n".join(lines))
        if lic:
            first = next((ln.strip() for ln in lines if ln.strip()), "")
            out.append(_claim(ClaimKind.LICENSE, lic, name, None, 1, first or lic))
    return out


def _template_vendors(files: DeclaredFiles, p: Phrases) -> list[DeclaredClaim]:
    out = []
    file = files.chat_template_file or "tokenizer_config.json"
    for name, template in files.chat_templates.items():
        key = "chat_template" if name == "default" else f"chat_template[{name}]"
        for rx in p.template_vendor:
            for m in rx.finditer(template):
                vendor = m.group("vendor").strip().rstrip(".,;:")
                if not vendor or vendor.lower() in _PRONOUNS or _negated(template, m.start(), "en", p) \
                        or _negated(template, m.start(), "zh", p):
                    continue
                text = template[max(0, m.start() - 120):m.end() + 40]
                out.append(_claim(ClaimKind.VENDOR, vendor, file, key, text=text, language=_language(vendor)))
    for token in files.special_tokens:
        hit = p.token_vendor.search(token)
        if hit:
            out.append(_claim(ClaimKind.VENDOR, p.token_vendors[hit.group(1).lower()], "tokenizer_config.json",
                              "special tokens", text=token))
    return out


_PRONOUNS = {"you", "us", "me", "the", "user", "users", "我们", "你们", "他们", "用户", "您", "本公司", "本团队"}


def _language(text: str) -> str:
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"


# ---------------------------------------------------------------------------------------------- prose


@dataclass(frozen=True)
class _Para:
    text: str
    starts: list[int]  # offset in text where each line starts
    lines: list[tuple[int, str]]  # (line number, original text)

    def line_at(self, pos: int) -> tuple[int, str]:
        return self.lines[max(0, bisect.bisect_right(self.starts, pos) - 1)]


def _clean(line: str) -> str:
    """A markdown line as plain text: Hub links as their Hub id, other links as their text, no markup."""
    def link(m: re.Match[str]) -> str:
        if m.group(0).startswith("!"):
            return " "
        repo = hub_id(m.group(2))
        return repo if repo else m.group(1)

    text = _MD_LINK.sub(link, line)
    text = _HF_URL.sub(lambda m: m.group(0) if m.group(1) in _NOT_REPOS else f"{m.group(1)}/{m.group(2)}", text)
    text = re.sub(r"<[^>]{0,200}>", " ", text)
    return text.replace("**", "").replace("__", "").replace("`", "")


def paragraphs(prose: Iterable[tuple[int, str]]) -> Iterator[_Para]:
    """The card body as paragraphs of plain text, code blocks, tables, HTML comments and citations left out."""
    fence: str | None = None
    comment = False
    cur: list[tuple[int, str]] = []

    def flush() -> Iterator[_Para]:
        if cur:
            starts, parts, pos = [], [], 0
            for _, raw in cur:
                starts.append(pos)
                piece = _clean(raw).strip()
                parts.append(piece)
                pos += len(piece) + 1
            yield _Para(" ".join(parts), starts, list(cur))
            cur.clear()

    for line_no, raw in prose:
        s = raw.strip()
        if fence is not None:
            if s.startswith(fence):
                fence = None
            continue
        if s.startswith(("```", "~~~")):
            yield from flush()
            fence = s[:3]
            continue
        if comment:
            if "-->" in s:
                comment = False
            continue
        if s.startswith("<!--"):
            yield from flush()
            comment = "-->" not in s
            continue
        if not s or s.startswith("|") or s.count("|") >= 2 or _CITATION.search(s):
            yield from flush()
            continue
        if s.startswith("#"):  # a heading is a paragraph of its own
            yield from flush()
            cur.append((line_no, raw))
            yield from flush()
            continue
        cur.append((line_no, raw))
    yield from flush()


def _clause(text: str, pos: int) -> str:
    """The clause `pos` stands in, up to `pos` (at most CLAUSE_CHARS back)."""
    start = max(0, pos - CLAUSE_CHARS)
    for m in _CLAUSE_END.finditer(text, start, pos):
        start = m.end()
    return text[start:pos]


def _negated(text: str, pos: int, language: str, p: Phrases) -> bool:
    """A negation in the last words of the clause before `pos` ('not trained from scratch', '不是从零训练')."""
    clause = _clause(text, pos)
    negs = p.negations.get(language, [])
    if language == "zh":
        tail = clause[-4:]
        return any(n in tail for n in negs)
    words = re.findall(r"[a-z']+", clause.lower())[-4:]
    tail = " ".join(words)
    for n in negs:
        if " " in n:
            if n in tail:
                return True
        elif n == "n't":
            if any(w.endswith("n't") for w in words):
                return True
        elif n in words:
            return True
    return False


def _compared(text: str, pos: int, language: str, p: Phrases) -> bool:
    """A comparison earlier in the clause before `pos` ('compared with models based on Llama-2')."""
    clause = _clause(text, pos)
    marks = p.comparisons.get(language, [])
    if language == "zh":
        return any(m in clause for m in marks)
    words = {w.strip(".") for w in re.findall(r"[a-z.]+", clause.lower())}
    return any(m.strip(".") in words for m in marks)


def _followed_by_other(text: str, end: int, p: Phrases) -> bool:
    """The word after a captured model says it is not a base ('architecture', 'outputs', '架构', ...)."""
    pos = end
    for _ in range(2):
        m = _NEXT_WORD.match(text, pos)
        if not m:
            return False
        word = m.group(1).lower()
        if word in p.not_followed_by or any(word.startswith(w) for w in p.not_followed_by if _language(w) == "zh"):
            return True
        if word not in ("model", "models", "模型"):
            return False
        pos = m.end()
    return False


def prose_claims(prose: Iterable[tuple[int, str]], phrases: Phrases | None = None, file: str = CARD,
                 datasets: Iterable[str] = ()) -> list[DeclaredClaim]:
    """Origin and base claims in a card's prose (English and Chinese), each with its line and sentence: each
    claim once per line, at most MAX_PROSE_CLAIMS of them. Names in `datasets` (the card's front matter list)
    are data, never a base."""
    p = phrases or load_phrases()
    data = {_norm(d) for d in datasets} | {_norm(d.split("/")[-1]) for d in datasets if "/" in d}
    out: list[DeclaredClaim] = []
    seen: set[tuple[ClaimKind, str, int]] = set()

    def add(kind: ClaimKind, value: str, para: _Para, m: re.Match[str], language: str) -> None:
        line_no, raw = para.line_at(m.start())
        key = (kind, _norm(value), line_no)
        if key in seen or len(out) >= MAX_PROSE_CLAIMS:
            return
        seen.add(key)
        said = raw.strip() if len(raw.strip()) <= MAX_TEXT else para.text[max(0, m.start() - 120):m.end() + 120]
        out.append(_claim(kind, value, file, None, line_no, said, language))

    for para in paragraphs(prose):
        text = para.text
        for rule in p.original:
            for m in rule.finditer(text):
                if len(out) >= MAX_PROSE_CLAIMS:
                    return out
                if not (_negated(text, m.start(), rule.language, p) or _compared(text, m.start(), rule.language, p)):
                    add(ClaimKind.ORIGIN, "original", para, m, rule.language)
        for rule in p.derived:
            for m in rule.finditer(text):
                if len(out) >= MAX_PROSE_CLAIMS:
                    return out
                if _negated(text, m.start(), rule.language, p) or _compared(text, m.start(), rule.language, p):
                    continue
                offset = m.start("models")
                bases = [mm.group(0).strip() for mm in p.model.finditer(m.group("models"))
                         if mm.group(0).strip().lower() not in p.exclude and _norm(mm.group(0)) not in data
                         and not _followed_by_other(text, offset + mm.end(), p)]
                for name in bases:
                    add(ClaimKind.BASE, name, para, m, rule.language)
                if bases and rule.relation is not None:
                    add(ClaimKind.RELATION, rule.relation.value, para, m, rule.language)
    return out


# ---------------------------------------------------------------------------------------------- command line

CLI_FORMS = ("self-developed | original | trained from scratch | 自主研发 | 从零训练 | derived | "
             "fine-tuned from X | based on X | derived from X | quantized from X | merge of X and Y | "
             "adapter for X | ORG/NAME | 基于X微调 | X微调 | 在X基础上")


def parse_cli_claim(text: str, source_file: str = "command line") -> list[DeclaredClaim]:
    """What a user declares on the command line (`--claim`), e.g. from a pitch deck: an origin, or a base
    (Hub id or model name) with its relation. InputError naming the accepted forms when it is none of them."""
    p = load_phrases()
    raw = " ".join(str(text).split())
    low = raw.lower().strip(" .。!！")

    key = "--claim" if source_file == "command line" else "claim"

    def claim(kind: ClaimKind, value: str) -> DeclaredClaim:
        return _claim(kind, value, source_file, key, text=raw, language=_language(raw))

    if not raw or len(raw) > MAX_TEXT:
        raise InputError(f"--claim {_clip(raw)!r}: {'empty' if not raw else 'too long'}; accepted forms: {CLI_FORMS}")
    if low in p.cli_original:
        return [claim(ClaimKind.ORIGIN, "original")]
    if low in p.cli_derived:
        return [claim(ClaimKind.ORIGIN, "derived")]
    if hub_id(raw):
        return [claim(ClaimKind.BASE, hub_id(raw) or raw)]
    for rule in p.cli_with_base:
        m = rule.regex.fullmatch(raw.strip(" .。"))
        if not m:
            continue
        groups = m.groupdict()
        names = ([groups["base"]] if groups.get("base") else _LIST_SPLIT.split(groups.get("bases") or ""))
        bases = [b for b in (_cli_name(n) for n in names) if b]
        if not bases or (rule.relation == Relation.MERGE and len(bases) < 2 and "bases" in groups):
            continue
        out = [claim(ClaimKind.BASE, b) for b in bases]
        if rule.relation is not None:
            out.append(claim(ClaimKind.RELATION, rule.relation.value))
        return out
    raise InputError(f"--claim {raw!r}: not understood; accepted forms: {CLI_FORMS}")


def _cli_name(text: str) -> str | None:
    """A model name as the user typed it: quotes, 'the', an hf: prefix and a revision dropped."""
    t = text.strip().strip("'\"“”‘’「」《》 ").strip(" .。,，")
    t = re.sub(r"^(?:the|a|an)\s+", "", t, flags=re.I)
    if hub_id(t):
        return hub_id(t)
    return t if t and len(t) <= 200 else None


def parse_cli_licence(text: str, source_file: str = "command line") -> DeclaredClaim:
    """The licence a user says the model is published under (`--declared-license`), as a licence id."""
    raw = " ".join(str(text).split())
    value = _licence_value(raw) if raw else None
    if not value or len(raw) > MAX_TEXT:
        raise InputError(f"--declared-license {_clip(raw)!r}: give a licence id or name "
                         "(apache-2.0, mit, llama3.1, qwen, 'Llama 3.1 Community License', ...)")
    key = "--declared-license" if source_file == "command line" else "declared_license"
    return _claim(ClaimKind.LICENSE, value, source_file, key, text=raw)
