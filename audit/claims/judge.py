"""Claims against evidence: what a model declares about its origin, base and licence, set beside what its
weights show, with one flag per claim (the names and meanings: `audit.record.names.ClaimFlag`).

`judge_claims` reads only the record's measured parts (verdict, comparisons, references, merge, adapter) and
the declarations; it never measures anything itself, so a claim can only be as settled as the audit is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from audit.claims.collect import Identity
from audit.record.models import (
    AdapterInfo,
    ClaimFinding,
    ClaimsSection,
    Comparison,
    DeclaredClaim,
    LicenceFinding,
    MergeInfo,
    ModelInfo,
    Verdict,
)
from audit.record.names import ClaimFlag, Label, Operation, Relation

LicenceFor = Callable[[str], str | None]


@dataclass(frozen=True)
class Candidate:
    """A model the audit compared the subject with: its record name and what identifies it."""

    name: str
    hub_id: str | None = None
    catalog_base: str | None = None  # the hub id its catalog entry says it was trained from
    licence: str | None = None  # licence id (catalog, or the reference's own card)
    label: Label | None = None  # the comparison's verdict for the subject against it
    comparison: Comparison | None = None
    vendor: str | None = None  # its maker, when known (catalog)

    def keys(self) -> set[str]:
        out = {norm(self.name)}
        if self.hub_id:
            out |= {norm(self.hub_id), norm(self.hub_id.split("/")[-1])}
        return out - {""}


@dataclass(frozen=True)
class Measured:
    """What the weights show, reduced to what claims are checked against."""

    verdict: Verdict
    parent: Candidate | None
    checked: list[Candidate]
    merge: MergeInfo | None = None
    adapter: AdapterInfo | None = None
    relation: str = ""  # finetune | quantized | copy | merge | adapter | derived | ''
    evidence: str = ""


@dataclass
class Claims:
    """The declarations grouped by kind (first source first)."""

    origin: list[DeclaredClaim] = field(default_factory=list)
    base: list[DeclaredClaim] = field(default_factory=list)
    relation: list[DeclaredClaim] = field(default_factory=list)
    license: list[DeclaredClaim] = field(default_factory=list)
    name: list[DeclaredClaim] = field(default_factory=list)
    vendor: list[DeclaredClaim] = field(default_factory=list)

    @classmethod
    def group(cls, declared: Iterable[DeclaredClaim]) -> Claims:
        out = cls()
        for c in declared:
            getattr(out, c.kind.value).append(c)
        return out


def norm(text: str | None) -> str:
    """'hf:Meta-Llama/Llama-3.1-8B@main' -> 'metallamallama3p18b': case, punctuation and hf: prefix ignored; a
    decimal point is kept as 'p' so that 1.5B and 15B stay apart."""
    if not text:
        return ""
    text = text.strip().lower()
    text = text.removeprefix("hf:").removeprefix("https://huggingface.co/")
    text = text.split("@", 1)[0]
    text = re.sub(r"(?<=\d)\.(?=\d)", "p", text)
    return re.sub(r"[^0-9a-z\u4e00-\u9fff]+", "", text)


def _repo(text: str) -> str:
    return norm(text.split("/")[-1]) if "/" in text else norm(text)


# ---------------------------------------------------------------------------------------------- measured


def measured_from(verdict: Verdict, comparisons: Sequence[Comparison], references: Sequence[ModelInfo],
                  merge: MergeInfo | None = None, adapter: AdapterInfo | None = None,
                  identities: Mapping[str, Identity] | None = None) -> Measured:
    """The audit's measured relation. `identities`: reference name -> who it is (hub id, catalog base, ...)."""
    identities = identities or {}
    by_name = {c.reference: c for c in comparisons}
    checked = []
    for ref in references:
        who = identities.get(ref.name) or Identity()
        comp = by_name.get(ref.name)
        checked.append(Candidate(ref.name, who.hub_id, who.catalog_base, who.licence,
                                 comp.verdict.label if comp else None, comp, who.vendor))
    if adapter is not None and adapter.base_checked and not checked:
        checked.append(Candidate(adapter.base_checked))
    parent = next((c for c in checked if c.name == verdict.parent), None) if verdict.parent else None
    return Measured(verdict, parent, checked, merge, adapter, _relation(verdict, merge, adapter),
                    _evidence(verdict, parent))


def _relation(verdict: Verdict, merge: MergeInfo | None, adapter: AdapterInfo | None) -> str:
    if adapter is not None:
        return "adapter" if adapter.shapes_fit else ""
    if merge is not None:
        return "merge"
    if verdict.label == Label.FINE_TUNED:
        return "finetune"
    if verdict.label != Label.DERIVED:
        return ""
    if Operation.EXACT_COPY in verdict.operations:
        return "quantized" if Operation.QUANTIZATION in verdict.packaging else "copy"
    return "derived"


def _evidence(verdict: Verdict, parent: Candidate | None) -> str:
    parts = [f"verdict {verdict.label.value}"]
    if verdict.parent:
        parts.append(f"parent {verdict.parent}")
    comp = parent.comparison if parent is not None else None
    if comp is not None:
        stat = next((s for s in comp.statistics if s.name.value == "layer-gram-similarity"), None)
        if stat is not None:
            parts.append(f"layer-gram similarity {stat.value:.3f} (null mean {stat.null.mean or 0:.3f}, "
                         f"p {'<' if stat.p_value <= 1 / ((stat.null.n or 0) + 1) else '='} {stat.p_value:.2g})")
        matched = sum(1 for row in comp.layer_map if row[1] is not None)
        parts.append(f"{matched} of {len(comp.layer_map)} layers matched")
    if verdict.references_checked is not None:
        parts.append(f"{verdict.references_checked} reference{'' if verdict.references_checked == 1 else 's'} "
                     "checked")
    return "; ".join(parts)


def _measured_text(m: Measured) -> str:
    label = m.verdict.label
    if m.adapter is not None:
        if m.adapter.shapes_fit:
            return f"an adapter whose shapes fit {m.adapter.base_checked}"
        return "an adapter not checked against a fitting base"
    if m.merge is not None:
        return "a merge of " + ", ".join(f"{p.reference} ({p.weight:.2f})" for p in m.merge.parents)
    if label == Label.FINE_TUNED:
        return f"fine-tuned from {m.verdict.parent}"
    if label == Label.DERIVED:
        ops = ", ".join(o.value for o in m.verdict.operations) or "derived"
        return f"derived from {m.verdict.parent} ({ops})"
    if label == Label.ORIGINAL:
        n = m.verdict.references_checked if m.verdict.references_checked is not None else len(m.checked)
        return f"no derivation from any of the {n} model{'' if n == 1 else 's'} checked"
    return "inconclusive: the weights could not settle it"


# ---------------------------------------------------------------------------------------------- matching


def base_match(declared: str, cand: Candidate) -> str | None:
    """How a declared base names a candidate: 'exact' (same model), 'lineage' (the candidate's catalog base, or
    the declared model's), 'family' (a family or size named without the exact model), or None."""
    d = norm(declared)
    d_repo = _repo(declared)
    if not d:
        return None
    keys = cand.keys()
    if d in keys or d_repo in keys:
        return "exact"
    if cand.catalog_base and (d == norm(cand.catalog_base) or d_repo == _repo(cand.catalog_base)):
        return "lineage"
    repo = _repo(cand.hub_id or cand.name)
    # Qwen2.5-7B vs qwen2.5-7b-instruct: the declared name is the start of the candidate's (or the reverse)
    if len(d_repo) >= 4 and (repo.startswith(d_repo) or d_repo.startswith(repo)):
        return "lineage" if any(ch.isdigit() for ch in d_repo) else "family"
    return None


def _candidate_for(declared: str, checked: Sequence[Candidate]) -> tuple[Candidate, str] | None:
    best: tuple[Candidate, str] | None = None
    rank = {"exact": 0, "lineage": 1, "family": 2}
    for c in checked:
        how = base_match(declared, c)
        if how is not None and (best is None or rank[how] < rank[best[1]]):
            best = (c, how)
    return best


# ---------------------------------------------------------------------------------------------- judging


def judge_claims(declared: Sequence[DeclaredClaim], measured: Measured, *, subject_name: str,
                 licence_for: LicenceFor | None = None, files: Mapping[str, str] | None = None,
                 sources_read: Sequence[str] = (), notes: Sequence[str] = ()) -> ClaimsSection:
    """Every claim beside the measurement, each with its flag, and the licence the model inherits."""
    claims = Claims.group(declared)
    findings: list[ClaimFinding] = []
    findings += _base_findings(claims, measured)
    findings += _origin_findings(claims, measured)
    licences = _licence_findings(claims, measured, subject_name, licence_for, files)
    return ClaimsSection(declared=list(declared), findings=findings, licences=licences,
                         sources_read=list(sources_read), notes=list(notes),
                         summary=_summary(claims, findings, measured))


def _base_findings(claims: Claims, m: Measured) -> list[ClaimFinding]:
    out = []
    seen: set[str] = set()
    for claim in claims.base:
        key = norm(claim.value)
        if key in seen:
            continue
        seen.add(key)
        same = [c for c in claims.base if norm(c.value) == key]
        out.append(_one_base(claim.value, same + claims.relation, claims, m))
    return out


def _one_base(base: str, behind: list[DeclaredClaim], claims: Claims, m: Measured) -> ClaimFinding:
    declared_rel = _declared_relation(claims)
    claim_text = f"{_relation_words(declared_rel)} {base}"
    measured = _measured_text(m)
    label = m.verdict.label
    hit = _candidate_for(base, m.checked)
    settle = (f"compare with the declared base itself: `provaudit audit MODEL -r hf:{base}`" if "/" in base else
              f"compare with the declared base itself: `provaudit audit MODEL -r {base.replace(' ', '-')}=PATH`")
    parents = _measured_parents(m)

    def finding(flag: ClaimFlag, extra: str = "", settle_: str | None = None) -> ClaimFinding:
        return ClaimFinding(flag=flag, claim=claim_text, measured=measured + (f"; {extra}" if extra else ""),
                            claims=behind, evidence=m.evidence, settle=settle_)

    if parents:
        match = next(((p, base_match(base, p)) for p in parents if base_match(base, p)), None)
        if match is not None:
            cand, how = match
            note = "" if how == "exact" else (f"the weights match {cand.name}, "
                                              f"{'in the declared base’s lineage' if how == 'lineage' else 'of the declared family'}")
            mismatch = _relation_mismatch(declared_rel, m)
            if mismatch:
                return finding(ClaimFlag.DECLARED_RELATION_MISMATCH, "; ".join(x for x in (note, mismatch) if x))
            return finding(ClaimFlag.CONSISTENT, note)
        if hit is not None and hit[0].label == Label.ORIGINAL:
            return finding(ClaimFlag.DECLARED_BASE_CONTRADICTED,
                           f"{hit[0].name}, the declared base, was compared and shows no derivation")
        unknown = [p.name for p in parents if not p.hub_id]
        if hit is None and unknown:
            return finding(ClaimFlag.DECLARED_BASE_UNVERIFIED,
                           f"the weights come from {', '.join(unknown)}, a reference provaudit cannot identify: if "
                           "it is the declared base, name it so (-r NAME=PATH with the base's name)", settle)
        if hit is None:
            return finding(ClaimFlag.DECLARED_BASE_CONTRADICTED,
                           f"the weights come from {', '.join(p.name for p in parents)}; the declared base was not "
                           "checked itself, so it could only be right if it is itself a copy of that model",
                           settle)
        return finding(ClaimFlag.DECLARED_BASE_CONTRADICTED)
    if hit is not None:
        cand, how = hit
        if label == Label.ORIGINAL and how in ("exact", "lineage") and cand.label == Label.ORIGINAL:
            return finding(ClaimFlag.DECLARED_BASE_CONTRADICTED,
                           f"{cand.name}{'' if how == 'exact' else ' (the declared base’s lineage)'} was compared "
                           "and shows no derivation")
        return finding(ClaimFlag.DECLARED_BASE_UNVERIFIED,
                       f"{cand.name} was compared, but the evidence is too thin to decide", settle)
    return finding(ClaimFlag.DECLARED_BASE_UNVERIFIED, "the declared base was not among the models checked", settle)


def _measured_parents(m: Measured) -> list[Candidate]:
    if m.merge is not None:
        names = {p.reference for p in m.merge.parents}
        return [c for c in m.checked if c.name in names]
    if m.verdict.label in (Label.DERIVED, Label.FINE_TUNED) and m.parent is not None:
        return [m.parent]
    return []


def _declared_relation(claims: Claims) -> str | None:
    for c in claims.relation:
        return c.value
    for c in claims.origin:  # 'fine-tuned from', 'quantized from' carry their relation in the origin claim's text
        if c.value in {r.value for r in Relation}:
            return c.value
    return None


def _relation_words(relation: str | None) -> str:
    return {"finetune": "fine-tuned from", "quantized": "a quantized copy of", "merge": "a merge including",
            "adapter": "an adapter for"}.get(relation or "", "based on")


def _relation_mismatch(declared: str | None, m: Measured) -> str:
    """Why a declared relation disagrees with the measured one ('' when it agrees or says nothing)."""
    if declared is None or not m.relation:
        return ""
    got = m.relation
    if declared == "finetune" and got in ("copy", "quantized"):
        return (f"declared a fine-tune, but the weights are an unchanged {'quantized ' if got == 'quantized' else ''}"
                "copy of the base (equal within the stored precision)")
    if declared == "quantized" and got in ("finetune", "derived"):
        return "declared a quantized copy, but the weights changed beyond quantization rounding"
    if declared == "merge" and got != "merge":
        return "declared a merge, but the weights come from one parent"
    if declared == "adapter" and got not in ("adapter", "finetune"):
        return "declared an adapter, but the weights are not an adapter's update"
    if declared in ("finetune", "adapter") and got == "merge":
        return "declared a single base, but the weights are a merge"
    return ""


def _origin_findings(claims: Claims, m: Measured) -> list[ClaimFinding]:
    out = []
    label = m.verdict.label
    measured = _measured_text(m)
    original = [c for c in claims.origin if c.value == "original"]
    derived_claims = [c for c in claims.origin if c.value != "original"]
    parents = _measured_parents(m)
    foreign, tells = _vendor_claims(claims, parents)
    if tells:
        measured += "; " + tells
    if original:
        text = _quote(original[0])
        if parents or label in (Label.DERIVED, Label.FINE_TUNED):
            out.append(ClaimFinding(flag=ClaimFlag.UNDECLARED_DERIVATION, claim=text, measured=measured,
                                    claims=original + foreign + claims.name, evidence=m.evidence))
        elif label == Label.ORIGINAL:
            n = m.verdict.references_checked if m.verdict.references_checked is not None else len(m.checked)
            out.append(ClaimFinding(flag=ClaimFlag.CONSISTENT, claim=text, measured=measured, claims=original,
                                    evidence=m.evidence,
                                    settle=f"'original' is relative to the {n} model{'' if n == 1 else 's'} "
                                           "checked; a base outside them would not show"))
        else:
            out.append(ClaimFinding(flag=ClaimFlag.NOT_CHECKABLE, claim=text, measured=measured, claims=original,
                                    evidence=m.evidence, settle="a closer reference, or the base it may derive "
                                                                "from, compared at the weight level"))
    elif not claims.base and parents:
        said = "declares it is derived but names no base" if derived_claims else "declares no base model"
        if foreign:
            said += f"; names {', '.join(dict.fromkeys(c.value for c in foreign))} as its maker"
        out.append(ClaimFinding(flag=ClaimFlag.UNDECLARED_DERIVATION, claim=said, measured=measured,
                                claims=derived_claims + foreign + claims.name, evidence=m.evidence))
    elif derived_claims and not claims.base:
        flag = ClaimFlag.NOT_CHECKABLE if label != Label.ORIGINAL else ClaimFlag.DECLARED_BASE_UNVERIFIED
        out.append(ClaimFinding(flag=flag, claim="declares it is derived but names no base", measured=measured,
                                claims=derived_claims, evidence=m.evidence,
                                settle="the base it was made from, named and compared at the weight level"))
    return out


def _vendor_claims(claims: Claims, parents: Sequence[Candidate]) -> tuple[list[DeclaredClaim], str]:
    """Vendor declarations that name someone other than the measured parent's maker (claims of authorship),
    and a sentence on those that still name the parent's maker (what a repackager forgot to change)."""
    makers = {norm(p.vendor) for p in parents if p.vendor}
    if not makers:
        return list(claims.vendor), ""

    def same(value: str) -> bool:
        v = norm(value)
        return any(v and (v in mk or mk in v) for mk in makers)

    tells = [c for c in claims.vendor if same(c.value)]
    foreign = [c for c in claims.vendor if not same(c.value)]
    if not tells:
        return foreign, ""
    where = ", ".join(dict.fromkeys(c.source.file for c in tells))
    return foreign, f"{where} still name{'s' if len(tells) == 1 else ''} {tells[0].value}, the parent's maker"


def _quote(c: DeclaredClaim) -> str:
    text = c.source.text.strip() or c.value
    return text if len(text) <= 160 else text[:157] + "..."


def _licence_findings(claims: Claims, m: Measured, subject_name: str, licence_for: LicenceFor | None,
                      files: Mapping[str, str] | None) -> list[LicenceFinding]:
    from audit.claims.licences import licence_finding

    declared_lic = claims.license[0].value if claims.license else None
    name = claims.name[0].value if claims.name else subject_name
    out = []
    parents = _measured_parents(m)
    for p in parents:
        lic = p.licence or (licence_for(p.hub_id or p.name) if licence_for else None)
        out.append(licence_finding(p.name, lic, declared_lic, name, "measured", files))
    if not parents:
        for c in claims.base[:3]:
            lic = licence_for(c.value) if licence_for else None
            out.append(licence_finding(c.value, lic, declared_lic, name, "declared", files))
    return out


def _summary(claims: Claims, findings: Sequence[ClaimFinding], m: Measured) -> str:
    if not findings:
        if claims.license or claims.name or claims.vendor:
            return (f"The model declares no origin or base model; the weights show: {_measured_text(m)}.")
        return f"The model declares nothing about its origin; the weights show: {_measured_text(m)}."
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.flag.value] = counts.get(f.flag.value, 0) + 1
    worst = [f for f in findings if f.flag in (ClaimFlag.UNDECLARED_DERIVATION, ClaimFlag.DECLARED_BASE_CONTRADICTED,
                                               ClaimFlag.DECLARED_RELATION_MISMATCH)]
    head = (f"{len(worst)} of {len(findings)} claim{'' if len(findings) == 1 else 's'} contradicted by the weights"
            if worst else f"{len(findings)} claim{'' if len(findings) == 1 else 's'} checked, none contradicted")
    return head + ": " + ", ".join(f"{n} {k}" for k, n in counts.items()) + "."
