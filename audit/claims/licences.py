"""Licences as data (``fingerprints/licences.yaml``) and the obligations a derivative inherits from its parent.

`load_licences` validates the bundled file (strict types, unknown keys rejected, unique ids and aliases; a broken
file is one `InputError` line naming the field). `normalise_licence` turns what a model card, GGUF metadata, a
LICENSE file or a user says into a licence id. `licence_finding` states, for a derivative, the clauses of its
parent's licence that bind it, how far its files show each is met, and whether its declared licence is one the
parent's licence allows. These are findings to check with counsel, not legal advice: the licence text at `url`
is the authority.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints, ValidationError, model_validator

from audit.datafiles import FileModel, Text, error_lines, named_items
from audit.paths import data_dir
from audit.record.models import LicenceFinding, LicenceObligation
from audit.record.names import LicenceStatus

SCHEMA = "provaudit.licences/1"
MAX_BYTES = 1 << 20  # the file is a few dozen KB
HEADER_LINES = 40  # a LICENSE text is recognised from its opening lines
MAX_FILE_CHARS = 200_000  # of each text file searched for a notice or a licence text
NOT_ADVICE = "findings to check with counsel, not legal advice"

ClauseId = Literal["attribution", "naming", "notice", "licence-copy", "modification-notice", "relicensing",
                   "share-alike", "user-threshold", "acceptable-use", "use-restrictions", "output-use",
                   "non-commercial", "research-only", "commercial-licence", "endorsement", "source"]
CheckKind = Literal["name-prefix", "files-mention", "licence-copy", "declared-licence", "manual"]
Kind = Literal["permissive", "copyleft", "community", "research-only", "non-commercial", "responsible-ai", "unknown"]
Commercial = Literal["yes", "no", "conditional", "unknown"]


def _yes_no(value: Any) -> Any:
    """YAML 1.1 reads a bare yes/no as a boolean: take it back as the word."""
    return {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else value


LicenceId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.+\-]{0,63}$")]
Url = Annotated[str, StringConstraints(pattern=r"^https://\S{3,300}$")]
Short = Annotated[str, StringConstraints(min_length=1, max_length=600)]


class Clause(FileModel):
    """One clause of a licence that binds a derivative, and how a model's files can show it is met."""

    id: ClauseId
    text: Annotated[Text, StringConstraints(max_length=600)]
    check: CheckKind = "manual"
    patterns: list[Short] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _patterns_fit_check(self) -> Clause:
        needs = self.check in ("name-prefix", "files-mention")
        if needs and not self.patterns:
            raise ValueError(f"check {self.check!r} needs `patterns` (the names or phrases to look for)")
        if not needs and self.patterns:
            raise ValueError(f"`patterns` only go with check name-prefix or files-mention, not {self.check!r}")
        return self


class Derivatives(FileModel):
    """What licence a derivative may carry: any (permissive parents) or the same one (or one listed)."""

    relicense: Literal["any", "same"]
    allowed: list[LicenceId] = Field(default_factory=list, max_length=20)
    text: Text


class Licence(FileModel):
    """One licence: its official text's URL, how cards spell it, and the clauses a derivative inherits."""

    id: LicenceId
    name: Text
    url: Url | None
    aliases: Annotated[list[Short], Field(min_length=1, max_length=40)]
    headers: list[Short] = Field(default_factory=list, max_length=10)
    kind: Kind
    commercial: Annotated[Commercial, BeforeValidator(_yes_no)]
    derivatives: Derivatives
    clauses: list[Clause] = Field(max_length=40)
    notes: str | None = None

    @model_validator(mode="after")
    def _unique_clauses(self) -> Licence:
        seen = [c.id for c in self.clauses]
        dup = sorted({c for c in seen if seen.count(c) > 1})
        if dup:
            raise ValueError(f"clause id {dup[0]!r} appears more than once")
        return self


class _LicencesFile(FileModel):
    schema_: Literal["provaudit.licences/1"] = Field(alias="schema")
    licences: Annotated[list[Licence], Field(min_length=1, max_length=500)]


# ---------------------------------------------------------------- matching text to a licence

# words that say nothing about which licence it is ("Llama 3.1 Community License Agreement" -> llama 3 1)
_FILLER = frozenset({"license", "licence", "licenses", "licences", "licensed", "agreement", "version", "the",
                     "community", "terms", "of", "use", "model", "models", "v"})


def alias_key(text: str) -> str:
    """What an alias is matched on: lower-case words and numbers, filler words and punctuation dropped."""
    words = re.findall(r"[a-z]+|[0-9]+|\+", text.lower())
    kept = [w for w in words if w not in _FILLER]
    return "".join(kept or words)


def _flat(text: str) -> str:
    """Lower case, every run of punctuation or space one space, padded: for phrase search in free text."""
    return " " + " ".join(re.findall(r"[a-z0-9+]+", text.lower())) + " "


def _url_key(text: str) -> str:
    return re.sub(r"^(https?://)?(www\.)?", "", text.strip().lower()).rstrip("/")


@dataclass(frozen=True)
class Licences:
    """The validated licence file with its look-up tables."""

    entries: tuple[Licence, ...]
    path: Path
    by_id: dict[str, Licence] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)  # alias key -> licence id
    headers: tuple[tuple[str, str], ...] = ()  # (flattened header, licence id), longest first
    urls: dict[str, str] = field(default_factory=dict)  # url key -> licence id

    def get(self, licence_id: str | None) -> Licence | None:
        return self.by_id.get(licence_id) if licence_id else None

    def normalise(self, text: str | None) -> str | None:
        """A licence id for a card value, a LICENSE file's text, a URL or a user's words; None when unknown."""
        if not text or not text.strip():
            return None
        text = text.strip()[:MAX_FILE_CHARS]
        one_line = "\n" not in text
        if one_line and len(text) <= 300:
            if text.lower().startswith(("http://", "https://", "www.")):
                found = self.urls.get(_url_key(text))
                if found:
                    return found
            found = self.by_key.get(alias_key(text))
            if found:
                return found
            inner = re.sub(r"\s*[(\[].*?[)\]]\s*", " ", text).strip()  # "Apache 2.0 (see LICENSE)"
            if inner and inner != text:
                found = self.by_key.get(alias_key(inner))
                if found:
                    return found
        return self.header_match("\n".join(text.splitlines()[:HEADER_LINES]))

    def header_match(self, text: str) -> str | None:
        """The licence whose opening phrase appears first in `text` (the longest phrase on a tie)."""
        flat = _flat(text)
        best: tuple[int, int, str] | None = None
        for header, lid in self.headers:
            at = flat.find(header)
            if at >= 0 and (best is None or (at, -len(header)) < best[:2]):
                best = (at, -len(header), lid)
        return best[2] if best else None

    def text_is(self, text: str, entry: Licence) -> bool:
        """Whether `text` contains `entry`'s licence text (one of its opening phrases, anywhere)."""
        flat = _flat(text[:MAX_FILE_CHARS])
        return any(_flat(h) in flat for h in entry.headers) or self.normalise(text) == entry.id


def default_licences_path() -> Path:
    return data_dir("fingerprints") / "licences.yaml"


_CACHE: dict[tuple[str, int, int], Licences] = {}


def load_licences(path: Path | None = None) -> Licences:
    """Read and validate the licence file (default: the bundled one); InputError (one line) for a broken file.

    A file read once is kept (keyed by path, size and modification time).
    """
    from audit.safeio import load_checked_yaml

    path = Path(path) if path is not None else default_licences_path()
    return load_checked_yaml(path, "licence file", MAX_BYTES, validate_licences,
                             lambda entries: _index(entries, path), _CACHE)


def validate_licences(data: Any) -> tuple[list[str], list[Licence]]:
    """(problems as 'where: what' lines, entries); entries are only meaningful without problems."""
    if not isinstance(data, dict):
        return [f"top level must be a mapping, got {type(data).__name__}"], []
    try:
        spec = _LicencesFile.model_validate(data)
    except ValidationError as exc:  # 'licences[12] (llama3).clauses[2].check': entries named by their id
        return error_lines(exc, _LicencesFile, where=named_items(data, "licences", "id")), []
    return _cross_checks(spec.licences), list(spec.licences)


def _cross_checks(entries: Sequence[Licence]) -> list[str]:
    problems: list[str] = []
    ids = [e.id for e in entries]
    keys: dict[str, str] = {}
    for e in entries:
        if ids.count(e.id) > 1:
            problems.append(f"licence id {e.id!r} appears more than once")
        for alias in (e.id, *e.aliases):
            k = alias_key(alias)
            if not k:
                problems.append(f"{e.id}: alias {alias!r} has no letters or digits")
            elif keys.setdefault(k, e.id) != e.id:
                problems.append(f"{e.id}: alias {alias!r} is also an alias of {keys[k]!r}")
        for other in e.derivatives.allowed:
            if other not in ids:
                problems.append(f"{e.id}: derivatives.allowed names unknown licence id {other!r}")
    return sorted(set(problems), key=problems.index)


def _index(entries: Sequence[Licence], path: Path) -> Licences:
    by_key: dict[str, str] = {}
    for e in entries:
        for alias in (e.id, *e.aliases):
            by_key.setdefault(alias_key(alias), e.id)
    headers = sorted(((_flat(h), e.id) for e in entries for h in e.headers), key=lambda t: -len(t[0]))
    urls = {_url_key(e.url): e.id for e in entries if e.url}
    return Licences(tuple(entries), path, {e.id: e for e in entries}, by_key, tuple(headers), urls)


def normalise_licence(text: str | None) -> str | None:
    """A licence id for a card's `license`/`license_name`, GGUF `general.license`, a LICENSE file's text (its
    first lines), a licence URL or a `--declared-license` value; None when it is not a licence provaudit knows."""
    return load_licences().normalise(text)


def get_licence(licence_id: str | None) -> Licence | None:
    """The bundled licence data for an id (None when unknown)."""
    return load_licences().get(licence_id)


# ---------------------------------------------------------------- a catalog model's licence


def licence_of_model(hub_id_or_name: str) -> str | None:
    """The licence id of a catalog model: by Hub id (case-insensitive, `hf:` and `@rev` allowed), else by its
    repo name or its registry name; None when the catalog does not hold it."""
    from audit.fingerprinting.catalog import load_catalog

    text = hub_id_or_name.strip()
    text = text[3:] if text.lower().startswith("hf:") else text
    text = text.split("@", 1)[0].strip().strip("/")
    if not text:
        return None
    catalog = load_catalog()
    entry = catalog.get(text)
    if entry is not None:
        return entry.license
    low = text.lower()
    repo = low.rsplit("/", 1)[-1]
    # Meta's first ids (meta-llama/Meta-Llama-3.1-8B) now redirect to ones without the prefix
    names = (repo, repo[5:]) if repo.startswith("meta-llama-") else (repo,)
    for name in names:
        for e in catalog.entries:
            if e.hub_id.split("/", 1)[1].lower() == name or e.name in (low, name):
                return e.license
    return None


# ---------------------------------------------------------------- the obligations a derivative inherits


def licence_finding(parent: str, parent_licence: str | None, declared_licence: str | None, model_name: str | None,
                    basis: Literal["measured", "declared"],
                    files: Mapping[str, str] | None = None) -> LicenceFinding:
    """The licence a derivative inherits from `parent` and how its declared licence, name and files stand.

    parent_licence, declared_licence: licence ids or any text `normalise_licence` reads. model_name: the name the
    derivative is published under (an `org/` prefix is ignored). files: name -> text of small text files beside
    the model (LICENSE, NOTICE, README.md...), searched for the licence text, notices and attribution phrases.
    """
    licences = load_licences()
    pid = licences.normalise(parent_licence)
    entry = licences.get(pid)
    raw_declared = (declared_licence or "").strip()
    did = licences.normalise(raw_declared) if raw_declared else None
    declared_field = did or (_clip(raw_declared, 120) if raw_declared else None)
    role = "the parent the weights show" if basis == "measured" else "the declared base"
    if entry is None or entry.kind == "unknown":
        if pid:
            why = f"is '{pid}' (not a licence provaudit knows the terms of)"
        elif parent_licence and parent_licence.strip():
            why = f"is given as {_clip(parent_licence.strip(), 60)!r}, which provaudit does not recognise"
        else:
            why = "is unknown"
        return LicenceFinding(
            parent=parent, basis=basis, parent_licence=pid, licence_name=entry.name if entry else None,
            url=entry.url if entry else None, declared_licence=declared_field, compatible=None,
            summary=f"The licence of {parent} ({role}) {why}, so what a derivative inherits cannot be said: read "
                    f"its model card; {NOT_ADVICE}.")
    declared_entry = licences.get(did)
    compatible = _compatible(entry, declared_entry)
    texts = {str(k): str(v)[:MAX_FILE_CHARS] for k, v in (files or {}).items()}
    obligations = [_obligation(c, entry, licences, compatible, declared_field, model_name, texts)
                   for c in entry.clauses]
    return LicenceFinding(
        parent=parent, basis=basis, parent_licence=entry.id, licence_name=entry.name, url=entry.url,
        declared_licence=declared_field, compatible=compatible, obligations=obligations,
        summary=_summary(parent, role, entry, did, declared_field, compatible, obligations))


def _compatible(parent: Licence, declared: Licence | None) -> bool | None:
    if declared is None or declared.kind == "unknown":
        return None
    if parent.derivatives.relicense == "any":
        return True
    return declared.id == parent.id or declared.id in parent.derivatives.allowed


def _obligation(clause: Clause, entry: Licence, licences: Licences, compatible: bool | None,
                declared: str | None, model_name: str | None, texts: Mapping[str, str]) -> LicenceObligation:
    status, detail = _check(clause, entry, licences, compatible, declared, model_name, texts)
    return LicenceObligation(clause=clause.id, text=clause.text, status=status, detail=detail)


def _check(clause: Clause, entry: Licence, licences: Licences, compatible: bool | None, declared: str | None,
           model_name: str | None, texts: Mapping[str, str]) -> tuple[LicenceStatus, str]:
    if clause.check == "declared-licence":
        if declared is None:
            return LicenceStatus.CHECK, "the model declares no licence"
        if compatible is None:
            return LicenceStatus.CHECK, f"the declared licence {declared!r} is not one provaudit knows the terms of"
        if compatible:
            return LicenceStatus.MET, f"declares {declared}, which the {entry.name} allows a derivative to carry"
        return LicenceStatus.NOT_MET, f"declares {declared}: {entry.derivatives.text}"
    if clause.check == "name-prefix":
        return _check_name(clause, model_name)
    if clause.check == "files-mention":
        return _check_mention(clause, texts)
    if clause.check == "licence-copy":
        return _check_copy(entry, licences, texts)
    return LicenceStatus.CHECK, "the model's files cannot show this: to check by hand"


def _check_name(clause: Clause, model_name: str | None) -> tuple[LicenceStatus, str]:
    name = (model_name or "").strip().rstrip("/").rsplit("/", 1)[-1]
    if not name:
        return LicenceStatus.CHECK, "the model's published name is not known"
    squash = re.sub(r"[^a-z0-9]", "", name.lower())
    for p in clause.patterns:
        if squash.startswith(re.sub(r"[^a-z0-9]", "", p.lower())):
            return LicenceStatus.MET, f"the name {name!r} begins with {p!r}"
    return LicenceStatus.NOT_MET, f"the name {name!r} does not begin with {clause.patterns[0]!r}"


def _check_mention(clause: Clause, texts: Mapping[str, str]) -> tuple[LicenceStatus, str]:
    if not texts:
        return LicenceStatus.CHECK, "no text files beside the model were read"
    flats = {name: _flat(text) for name, text in texts.items()}
    for p in clause.patterns:
        needle = _flat(p)
        hit = next((name for name, flat in flats.items() if needle in flat), None)
        if hit is not None:
            return LicenceStatus.MET, f"{hit} contains {p!r}"
    where = ", ".join(sorted(texts)[:6])
    elsewhere = " (it may be shown elsewhere: a website or product documentation)" if clause.id == "attribution" else ""
    return LicenceStatus.NOT_MET, f"{clause.patterns[0]!r} not found in {where}{elsewhere}"


_LICENCE_FILE = re.compile(r"licen[cs]e|copying|notice", re.IGNORECASE)  # NOTICE files often carry the text too


def _check_copy(entry: Licence, licences: Licences, texts: Mapping[str, str]) -> tuple[LicenceStatus, str]:
    if not texts:
        return LicenceStatus.CHECK, "no text files beside the model were read"
    lic_files = [n for n in sorted(texts) if _LICENCE_FILE.search(Path(n).name)]
    for name in lic_files:
        if licences.text_is(texts[name], entry):
            return LicenceStatus.MET, f"{name} contains the {entry.name} text"
    for name in sorted(set(texts) - set(lic_files)):  # a licence text under another name (not a README)
        if not Path(name).name.lower().startswith("readme") and licences.normalise(texts[name]) == entry.id:
            return LicenceStatus.MET, f"{name} is the {entry.name} text"
    if not lic_files:
        return LicenceStatus.NOT_MET, f"no licence file among the files read ({', '.join(sorted(texts)[:6])})"
    if not entry.headers:
        return LicenceStatus.CHECK, f"{', '.join(lic_files)} read, but provaudit cannot recognise the {entry.name} text"
    found = {n: licences.normalise(texts[n]) for n in lic_files}
    others = {n: lid for n, lid in found.items() if lid}
    if others:
        n, lid = next(iter(others.items()))
        other = licences.get(lid)
        return LicenceStatus.NOT_MET, f"{n} is the {other.name if other else lid}, not the {entry.name}"
    return LicenceStatus.CHECK, f"{', '.join(lic_files)} read, but not recognised as the {entry.name}"


def _summary(parent: str, role: str, entry: Licence, did: str | None, declared: str | None,
             compatible: bool | None, obligations: Sequence[LicenceObligation]) -> str:
    if declared is None:
        fit = "no licence is declared"
    elif compatible is None:
        fit = f"the declared licence {declared!r} is not one provaudit knows the terms of"
    elif compatible:
        fit = f"the declared licence {did} is one it allows a derivative to carry"
    else:
        fit = f"the declared licence {did} is not one it allows a derivative to carry"
    not_met = sum(o.status == LicenceStatus.NOT_MET for o in obligations)
    check = sum(o.status == LicenceStatus.CHECK for o in obligations)
    counts = f"{not_met} obligation{'' if not_met == 1 else 's'} not met, {check} to check"
    return f"{parent} ({role}) is under the {entry.name}: {fit}; {counts}: {NOT_ADVICE}."


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
