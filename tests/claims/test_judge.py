"""The claim-vs-evidence rules on hand-built measurements: which flag each combination of claim and verdict
gets, and what the finding says."""

from __future__ import annotations

import pytest

from audit.claims.judge import Candidate, Measured, base_match, judge_claims, norm
from audit.record.models import ClaimSource, DeclaredClaim, Verdict
from audit.record.names import ClaimFlag, ClaimKind, Label, Operation

SMOL = Candidate("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M",
                 "apache-2.0", Label.FINE_TUNED)
GEMMA = Candidate("gemma-3-270m", "google/gemma-3-270m", None, "gemma", Label.ORIGINAL)


def claim(kind: str, value: str, file: str = "README.md", line: int | None = 3) -> DeclaredClaim:
    return DeclaredClaim(kind=ClaimKind(kind), value=value, source=ClaimSource(file=file, line=line, text=value))


def measured(label: Label, parent: Candidate | None = None, checked: tuple[Candidate, ...] = (SMOL, GEMMA),
             ops: tuple[Operation, ...] = (), packaging: tuple[Operation, ...] = ()) -> Measured:
    verdict = Verdict(label=label, parent=parent.name if parent else None, operations=list(ops),
                      packaging=list(packaging), summary="", references_checked=len(checked))
    relation = {Label.FINE_TUNED: "finetune"}.get(label, "")
    if label == Label.DERIVED:
        relation = ("quantized" if Operation.QUANTIZATION in packaging else "copy") \
            if Operation.EXACT_COPY in ops else "derived"
    return Measured(verdict, parent, list(checked), relation=relation, evidence="test")


def flags_of(declared: list[DeclaredClaim], m: Measured) -> list[ClaimFlag]:
    return [f.flag for f in judge_claims(declared, m, subject_name="subject").findings]


def test_from_scratch_claim_against_a_derivation() -> None:
    assert flags_of([claim("origin", "original")], measured(Label.FINE_TUNED, SMOL)) == \
        [ClaimFlag.UNDECLARED_DERIVATION]


def test_no_claim_at_all_but_derived_is_undeclared() -> None:
    section = judge_claims([], measured(Label.DERIVED, SMOL, ops=(Operation.PERMUTATION,)), subject_name="x")
    assert [f.flag for f in section.findings] == [ClaimFlag.UNDECLARED_DERIVATION]
    assert section.findings[0].claim == "declares no base model"


def test_original_claim_and_original_weights_are_consistent_relative_to_what_was_checked() -> None:
    section = judge_claims([claim("origin", "original")], measured(Label.ORIGINAL), subject_name="x")
    assert section.findings[0].flag == ClaimFlag.CONSISTENT
    assert "2 models checked" in (section.findings[0].settle or "")


def test_original_claim_on_inconclusive_weights_is_not_checkable() -> None:
    assert flags_of([claim("origin", "original")], measured(Label.INCONCLUSIVE)) == [ClaimFlag.NOT_CHECKABLE]


@pytest.mark.parametrize("declared", ["HuggingFaceTB/SmolLM2-135M-Instruct", "hf:HuggingFaceTB/SmolLM2-135M-Instruct",
                                      "SmolLM2-135M-Instruct", "smollm2 135m instruct"])
def test_declared_base_that_the_weights_confirm(declared: str) -> None:
    assert flags_of([claim("base", declared)], measured(Label.FINE_TUNED, SMOL)) == [ClaimFlag.CONSISTENT]


def test_declared_base_in_the_parents_lineage_is_consistent_with_a_note() -> None:
    section = judge_claims([claim("base", "HuggingFaceTB/SmolLM2-135M")], measured(Label.FINE_TUNED, SMOL),
                           subject_name="x")
    assert section.findings[0].flag == ClaimFlag.CONSISTENT
    assert "lineage" in section.findings[0].measured


def test_declared_base_contradicted_by_another_parent() -> None:
    m = measured(Label.FINE_TUNED, SMOL)
    assert flags_of([claim("base", "google/gemma-3-270m")], m) == [ClaimFlag.DECLARED_BASE_CONTRADICTED]
    assert flags_of([claim("base", "Qwen/Qwen2.5-7B")], m) == [ClaimFlag.DECLARED_BASE_CONTRADICTED]


def test_declared_base_compared_and_unrelated_while_original() -> None:
    m = measured(Label.ORIGINAL)
    assert flags_of([claim("base", "google/gemma-3-270m")], m) == [ClaimFlag.DECLARED_BASE_CONTRADICTED]


def test_declared_base_not_checked_is_unverified_with_a_way_to_settle_it() -> None:
    section = judge_claims([claim("base", "Qwen/Qwen2.5-7B")], measured(Label.ORIGINAL), subject_name="x")
    f = section.findings[0]
    assert f.flag == ClaimFlag.DECLARED_BASE_UNVERIFIED
    assert f.settle is not None and "hf:Qwen/Qwen2.5-7B" in f.settle


def test_parent_of_unknown_identity_does_not_contradict_a_declared_base() -> None:
    local = Candidate("base", label=Label.FINE_TUNED)  # a local reference folder named 'base'
    m = measured(Label.FINE_TUNED, local, checked=(local,))
    assert flags_of([claim("base", "HuggingFaceTB/SmolLM2-135M-Instruct")], m) == \
        [ClaimFlag.DECLARED_BASE_UNVERIFIED]


def test_relation_mismatch_both_ways() -> None:
    base = claim("base", "HuggingFaceTB/SmolLM2-135M-Instruct")
    copy = measured(Label.DERIVED, SMOL, ops=(Operation.EXACT_COPY,), packaging=(Operation.QUANTIZATION,))
    assert flags_of([base, claim("relation", "finetune")], copy) == [ClaimFlag.DECLARED_RELATION_MISMATCH]
    assert flags_of([base, claim("relation", "quantized")], copy) == [ClaimFlag.CONSISTENT]
    tuned = measured(Label.FINE_TUNED, SMOL)
    assert flags_of([base, claim("relation", "quantized")], tuned) == [ClaimFlag.DECLARED_RELATION_MISMATCH]


def test_same_base_declared_twice_is_one_finding_citing_both_sources() -> None:
    section = judge_claims([claim("base", "HuggingFaceTB/SmolLM2-135M-Instruct"),
                            claim("base", "hf:HuggingFaceTB/SmolLM2-135M-Instruct", "GGUF metadata", None)],
                           measured(Label.FINE_TUNED, SMOL), subject_name="x")
    assert len(section.findings) == 1 and len(section.findings[0].claims) == 2


def test_licence_inherited_from_the_measured_parent() -> None:
    section = judge_claims([claim("license", "apache-2.0")], measured(Label.FINE_TUNED, GEMMA), subject_name="x")
    lic = section.licences[0]
    assert (lic.parent, lic.basis, lic.parent_licence, lic.compatible) == ("gemma-3-270m", "measured", "gemma", False)


def test_nothing_declared_and_original_has_no_findings_but_a_summary() -> None:
    section = judge_claims([], measured(Label.ORIGINAL), subject_name="x")
    assert section.findings == [] and "declares nothing" in section.summary


def test_name_normalisation() -> None:
    assert norm("hf:Meta-Llama/Llama-3.1-8B@main") == "metallamallama3p18b"
    assert base_match("Qwen2.5-7B", Candidate("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct")) == "lineage"
    assert base_match("Llama", Candidate("llama-3.1-8b", "meta-llama/Llama-3.1-8B")) == "family"
    assert base_match("Mistral-7B", Candidate("gemma-3-270m", "google/gemma-3-270m")) is None


def test_terminal_lines_put_contradictions_first_and_show_unmet_obligations() -> None:
    from audit.reporting.claims_view import claim_lines

    section = judge_claims([claim("license", "apache-2.0"), claim("origin", "original"),
                            claim("base", "google/gemma-3-270m")],
                           measured(Label.FINE_TUNED, GEMMA), subject_name="OpenGem-270M")
    lines = claim_lines(section)
    assert lines[0].startswith("[undeclared-derivation]")
    assert any(line.startswith("[consistent]") for line in lines)
    licence = next(line for line in lines if line.startswith("licence:"))
    assert "gemma-3-270m" in licence and "compatible: no" in licence
    assert any(line.strip().startswith("not met:") for line in lines)
