"""The typed record (`provaudit.record/2`): one pydantic model per section, frozen once built.

A record is what users cite, so every field here is documented in docs/record.md and in the JSON Schema
(`provaudit schema`, committed as docs/record.schema.json). Sections whose keys vary by producer (a probe
backend's own settings, the event log, an endpoint's tokenizer inference) are typed on the fields every
producer writes and keep the rest as extra keys; everything else is closed (extra keys are an error).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from audit.record.names import (
    ClaimFlag,
    ClaimKind,
    CommandName,
    EdgeRule,
    FlagKind,
    Label,
    LicenceStatus,
    Operation,
    Relation,
    StatisticName,
    TraceStatisticName,
    TraceVerdict,
)

SCHEMA: Literal["provaudit.record/2"] = "provaudit.record/2"

Number = int | float
#: Most layers a record may describe (num_layers, reference_layers, layer-map rows and indices): far above the
#: ~130 blocks of the deepest published models, low enough that a report never allocates without bound.
MAX_LAYERS = 10_000
LayerIndex = Annotated[int, Field(ge=0, lt=MAX_LAYERS)]


class Section(BaseModel):
    """A closed, immutable part of the record."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, use_enum_values=False)


class OpenSection(BaseModel):
    """An immutable part of the record whose producer may add keys of its own."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


# ---------------------------------------------------------------- provenance of the run


class Tool(Section):
    name: str = "provaudit"
    version: str


class Command(Section):
    """How the record was produced: the command, its arguments and the seed of every random draw."""

    name: CommandName
    argv: list[str] = Field(default_factory=list)
    seed: int = 0


class BatchInfo(Section):
    """Where a batch took this record from (batch rows only)."""

    manifest: str
    line: int
    cache_key: str | None = None


# ---------------------------------------------------------------- models: subject and references


class FileDigest(Section):
    path: str
    bytes: int
    sha256: str | None = None


class Architecture(Section):
    """Normalised structure: config values where given, tensor shapes where the config is silent."""

    model_type: str | None = None
    hidden_size: Number | None = None
    num_heads: Number | None = None
    num_kv_heads: Number | None = None
    intermediate_size: Number | None = None
    rope_theta: Number | None = None
    norm_eps: Number | None = None
    max_position_embeddings: Number | None = None
    num_layers: Annotated[int, Field(ge=0, le=MAX_LAYERS)] = 0
    vocab_size: Number | None = None
    tied_embeddings: bool | None = None
    parameters: int | None = None
    naming_scheme: str | None = None
    storage_dtypes: list[str] = Field(default_factory=list)
    layer_roles: dict[str, list[int]] = Field(default_factory=dict, description="role -> shape in the first block")


class TokenizerSummary(Section):
    kind: str
    source: str | None = None
    vocab_size: int
    vocab_sha256: str
    merges: int = 0
    merges_sha256: str | None = None
    special: dict[str, str] = Field(default_factory=dict)


class ReadStats(Section):
    """How much of a model's weight files an audit read, and (from the Hub) fetched over the network."""

    source: Literal["local", "hub"] = Field(description="local files, or the Hugging Face Hub (or a mirror) by "
                                                        "HTTP range requests")
    bytes_read: int = Field(description="bytes of the weight files the readers read: headers, metadata and the "
                                        "tensor rows compared (hashing a local file for `files` reads it once "
                                        "more, apart from this)")
    bytes_total: int = Field(description="total size of the weight files")
    reads: int = Field(description="range reads issued, after merging close ones")
    bytes_fetched: int | None = Field(default=None, description="Hub: bytes received over the network in this "
                                                                "run (ranges already in the local range cache "
                                                                "cost none)")
    http_requests: int | None = Field(default=None, description="Hub: HTTP range requests sent for weight bytes")
    endpoint: str | None = Field(default=None, description="Hub: the endpoint read (HF_ENDPOINT: a mirror)")
    revision: str | None = Field(default=None, description="Hub: the commit the files were read at")


class ModelInfo(Section):
    """A model the record talks about: the subject, a reference checkpoint, or a stored fingerprint."""

    name: str
    path: str = ""
    format: str = Field(description="hf-folder | safetensors | gguf | pickle | weight-fingerprint | openai-endpoint | fake")
    files: list[FileDigest] = Field(default_factory=list)
    architecture: Architecture | None = None
    tokenizer: TokenizerSummary | None = None
    family: str | None = Field(default=None, description="registry family (stored fingerprints)")
    source: str | None = Field(default=None, description="where a stored fingerprint was built from")
    io: ReadStats | None = Field(default=None, description="what reading this checkpoint cost (checkpoints only)")


# ---------------------------------------------------------------- white-box comparison


NullMethod = Literal["exact", "empirical", "analytic", "normal-fit"]


class Null(Section):
    """The distribution a statistic takes between models with unrelated weights, and how it was obtained.

    method: exact (derived for the statistic under `assumption`; p-values exact in log space), empirical
    (n draws: p >= 1/(n+1)), analytic (a limit distribution named in `kind`), normal-fit (a normal curve fitted
    to n draws: records of provaudit 0.1 only; such a p-value is not defensible below 1/(n+1)).
    """

    method: NullMethod = "empirical"
    kind: str = Field(description="how the null was built")
    n: int | None = Field(default=None, description="draws (empirical) or elements (exact)")
    mean: float | None = None
    sd: float | None = None
    assumption: str | None = Field(default=None, description="what the p-value assumes beyond the method")


class Statistic(Section):
    name: StatisticName
    value: float
    effect: float | None = Field(default=None, description="z of the value against the null draws")
    null: Null
    p_value: float = Field(description="may underflow to 0.0; log10_p carries the magnitude")
    log10_p: float
    meaning: str
    detail: str | None = None


class Alignment(Section):
    method: str = Field(description="embedding-anchors | weight-signatures")
    shared_tokens: int
    matched_units: int
    hidden_size: tuple[int, int]
    fixed_points: int | None = None
    sign_flips: int = 0
    gram_units: int | None = Field(default=None, description="aligned hidden units the Gram descriptors and their "
                                   "null used (128; 32 for a registry entry the first, cheap pass found unrelated)")


class TokenizerComparison(Section):
    jaccard: float
    shared: int
    candidate_only: int
    reference_only: int
    identical: bool
    merges_identical: bool = False
    reference_prefix_of_candidate: bool | None = None
    estimated: bool = Field(default=False, description="estimated from a stored sketch, not exact")


class DetectedOperation(Section):
    name: Operation
    detail: str = ""


class Verdict(Section):
    """What the weights show (label, parent, weight operations) and, apart, how the files were repackaged."""

    label: Label
    parent: str | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0,
                                     description="1 - the 95% upper bound of this kind of verdict's measured error "
                                                 "rate; null for inconclusive")
    confidence_basis: str | None = Field(default=None, description="the measurement the confidence rests on")
    operations: list[Operation] = Field(default_factory=list, description="what was done to the weights")
    packaging: list[Operation] = Field(default_factory=list,
                                       description="how the files were repackaged (never decides the label)")
    summary: str
    references_checked: int | None = Field(default=None, description="N in 'no derivation from any of N'")


LayerRow = tuple[LayerIndex, LayerIndex | None, float]


class UpdateShape(Section):
    """How the weights moved from the reference, measured on whole rows of matched layers (checkpoints only)."""

    layers: list[int] = Field(description="candidate layers measured")
    rows: int = Field(description="rows per weight the differences were measured on")
    rank99: dict[str, int] = Field(description="per weight kind: singular values holding 99% of the difference's "
                                   "energy")
    full_rank: dict[str, int] = Field(default_factory=dict, description="per weight kind: the largest rank the "
                                      "measured difference could have (its smaller dimension)")
    unchanged: list[str] = Field(default_factory=list, description="weight kinds equal to the reference's")
    low_rank: bool = Field(description="every changed kind's difference has rank <= 1/4 of its full rank: the "
                           "signature of a merged LoRA-style adapter")
    detail: str


class MergeParent(Section):
    reference: str
    weight: float = Field(description="mean mixing weight over layers (linear, slerp-like); share of the weights "
                          "equal to exactly this parent (ties-like); share of the candidate's layers (passthrough)")
    spread: float | None = Field(default=None, description="sd of the mixing weight over layers")
    layers: list[int] = Field(default_factory=list, description="passthrough: candidate layers copied from it")


class MergeInfo(Section):
    """The candidate combines two or more of the references given (judged on whole rows of every layer)."""

    kind: str = Field(description="linear | slerp-like | ties-like | passthrough")
    parents: list[MergeParent]
    residual: float = Field(description="median share of the distance to the nearest parent the fit leaves")
    layers_compared: int
    detail: str


class Comparison(Section):
    """The candidate against one reference."""

    reference: str
    statistics: list[Statistic]
    layer_map: list[LayerRow] = Field(max_length=MAX_LAYERS,
                                      description="[candidate layer, matched reference layer or null, similarity]")
    layer_log10_p: list[float] = Field(default_factory=list, description="per candidate layer, Bonferroni-corrected")
    layer_null: Null | None = None
    reference_layers: Annotated[int, Field(ge=0, le=MAX_LAYERS)] | None = None
    alignment: Alignment | None = None
    tokenizer: TokenizerComparison | None = None
    architecture_match: bool | None = None
    operations: list[DetectedOperation] = Field(default_factory=list)
    update: UpdateShape | None = None
    verdict: Verdict
    seconds: float | None = None


# ---------------------------------------------------------------- the registry's nearest families


class ArchitectureMatch(Section):
    family: str
    model: str
    score: float
    fields_agreeing: list[str] = Field(default_factory=list)
    exact: bool = False
    null: Null | None = None
    p_value: float | None = None
    source: str | None = None


class TokenizerMatch(OpenSection):
    """A registry tokenizer ranked against the subject's (rank_families row; extra keys are diagnostics)."""

    name: str
    family: str | None = None
    score: float
    jaccard: float | None = None
    confident: bool = False
    exact: bool = False
    null: dict[str, Any] | None = None
    p_value: float | None = None
    rank: int | None = None


class WeightMatch(Section):
    reference: str
    label: Label
    similarity: float
    log10_p: float
    layers_matched: str


class SkippedReference(Section):
    reference: str
    reason: str


class RegistryProblem(Section):
    entry: str
    problem: str


class FamilyCoverage(Section):
    """A catalog family that was checked at the weight level: which of its models' fingerprints were compared."""

    family: str
    models: int = Field(description="models of the family in the base-model catalog")
    compared: list[str] = Field(default_factory=list,
                                description="hub ids of the family's models whose weight fingerprints were compared")


class CatalogCoverage(Section):
    """What the registry's weight fingerprints covered of the base-model catalog (fingerprints/catalog.yaml).

    A family is checked at the weight level only when a fingerprint of one of its models was compared; a
    derivative of a family in `unchecked` cannot have been found by weights, whatever the verdict says.
    """

    models: int = Field(description="models in the catalog")
    families: int = Field(description="families in the catalog")
    checked: list[FamilyCoverage] = Field(default_factory=list)
    unchecked: list[str] = Field(default_factory=list,
                                 description="catalog families with no weight fingerprint compared: not checked at "
                                             "the weight level")


class RegistrySection(Section):
    entries: int
    architecture: list[ArchitectureMatch] = Field(default_factory=list)
    tokenizer: list[TokenizerMatch] = Field(default_factory=list)
    weights: list[WeightMatch] = Field(default_factory=list)
    skipped: list[SkippedReference] = Field(default_factory=list)
    errors: list[RegistryProblem] = Field(default_factory=list)
    catalog: CatalogCoverage | None = Field(default=None, description="which base-model catalog families the "
                                                                      "registry's weight fingerprints covered")


# ---------------------------------------------------------------- black-box probes


class Message(Section):
    role: str
    content: str


class PromptRecord(Section):
    id: str
    language: str
    category: str | None = None
    messages: list[Message]
    detectors: list[str] = Field(default_factory=list)


class Claim(Section):
    vendor: str
    model: str | None = None
    alias: str | None = None


class Response(Section):
    probe: str
    language: str
    sample: int
    seed: int
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    claims: list[Claim] | None = None
    boilerplate: list[str] | None = None
    cutoff: list[str] | None = None


class ClaimCount(Section):
    vendor: str
    model: str | None = None
    language: str
    count: int
    of: int


class VendorCount(Section):
    vendor: str
    count: int
    of: int
    share: float


class PhraseCount(Section):
    phrase: str
    count: int
    of: int


class CutoffCount(Section):
    date: str
    count: int
    of: int


class ProbeError(Section):
    probe: str
    sample: int
    error: str


class SuiteResult(Section):
    """One probe suite: its prompts, every sampled response, what the detectors found."""

    suite: str
    description: str = ""
    source: str = ""
    sha256: str = ""
    version: int = 1
    detectors_run: list[str] = Field(default_factory=list)
    detectors: list[str] = Field(default_factory=list, description="detectors that fired on at least one answer")
    answered: int
    failed: int
    claims: list[ClaimCount] = Field(default_factory=list)
    vendors: list[VendorCount] = Field(default_factory=list)
    boilerplate: list[PhraseCount] = Field(default_factory=list)
    cutoff: list[CutoffCount] = Field(default_factory=list)
    errors: list[ProbeError] = Field(default_factory=list)
    prompts: list[PromptRecord] = Field(default_factory=list)
    responses: list[Response] = Field(default_factory=list)


class FlagRule(Section):
    min_count: int
    min_prompts: int
    min_share: float
    false_claim_rate: float
    alpha: float
    correction: str
    test: str


class VendorTest(Section):
    vendor: str
    name: str
    count: int
    of: int
    share: float
    prompts: int
    p_value: float
    log10_p: float | None = None
    declared: bool
    flagged: bool
    reason: str


class BackendInfo(OpenSection):
    """The backend that produced the answers (backend-specific keys kept; never an API key)."""

    kind: str
    model: str | None = None
    device: str | None = None
    dtype: str | None = None
    endpoint: str | None = None


class SamplingSettings(Section):
    samples: int
    max_new_tokens: int
    temperature: float
    seed: int
    batch_size: int
    declared: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list, description="sample j of every prompt used seeds[j]")


class Declared(Section):
    names: list[str] = Field(default_factory=list)
    vendors: list[str] = Field(default_factory=list)
    inherited: list[str] = Field(default_factory=list, description="vendor of the parent family (audit --probe)")


class Event(OpenSection):
    t: float
    event: str


class TokenizerInference(OpenSection):
    """Which tokenizer an endpoint bills with (tokcount.infer_tokenizer_family; extra keys are diagnostics)."""

    method: str | None = None
    status: str
    reason: str | None = None
    summary: str = ""
    family: str | None = None
    name: str | None = None
    p_value: float | None = None


class ProbeRun(Section):
    """How the probe answers were produced, and the tests run on them."""

    backend: BackendInfo
    settings: SamplingSettings
    declared: Declared
    answers: int
    errors: int
    vendor_tests: list[VendorTest] = Field(default_factory=list)
    flag_rule: FlagRule
    seconds: float | None = None
    events: list[Event] = Field(default_factory=list)
    tokenizer_inference: TokenizerInference | None = None


class ProbeFailure(Section):
    """The probes of `audit --probe` could not start (the weight audit stands)."""

    error: str
    suites: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------- flags


class CountOf(Section):
    count: int
    of: int


class ClaimExample(Section):
    suite: str
    probe: str
    sample: int
    seed: int
    prompt: str
    response: str
    claims: list[Claim] = Field(default_factory=list)


class DistillationEvidence(Section):
    vendor: str
    vendor_name: str
    models: dict[str, int] = Field(default_factory=dict)
    count: int
    of: int
    share: float
    prompts: int
    languages: dict[str, CountOf] = Field(default_factory=dict)
    p_value: float
    log10_p: float | None = None
    rule: FlagRule
    examples: list[ClaimExample] = Field(default_factory=list)


class WrapperEvidence(Section):
    tokenizer_inference: dict[str, Any]
    tokenizer_vendors: list[str]
    declared: list[str] = Field(default_factory=list)
    claimed: list[str] = Field(default_factory=list)


class ArchitectureBorrowedEvidence(Section):
    references: list[str] = Field(default_factory=list, description="references with the same architecture")
    registry: ArchitectureMatch | None = Field(default=None, description="the registry's published architecture")


class TokenizerBorrowedEvidence(Section):
    references: dict[str, TokenizerComparison] = Field(default_factory=dict)
    registry: TokenizerMatch | None = None


class DistillationLeakFlag(Section):
    kind: Literal[FlagKind.DISTILLATION_LEAK] = FlagKind.DISTILLATION_LEAK
    detail: str
    evidence: DistillationEvidence


class WrapperSuspectedFlag(Section):
    kind: Literal[FlagKind.WRAPPER_SUSPECTED] = FlagKind.WRAPPER_SUSPECTED
    detail: str
    evidence: WrapperEvidence


class ArchitectureBorrowedFlag(Section):
    kind: Literal[FlagKind.ARCHITECTURE_BORROWED] = FlagKind.ARCHITECTURE_BORROWED
    detail: str
    evidence: ArchitectureBorrowedEvidence


class TokenizerBorrowedFlag(Section):
    kind: Literal[FlagKind.TOKENIZER_BORROWED] = FlagKind.TOKENIZER_BORROWED
    detail: str
    evidence: TokenizerBorrowedEvidence


class UnusableWeights(Section):
    """What one model's weights held that the comparison could not use, over the rows it read."""

    model: str
    nonfinite: dict[str, int] = Field(default_factory=dict, description="tensor -> rows holding NaN, Inf or |x| > 1e15 among "
                                      "the rows read (at most 100 tensors listed)")
    all_zero: list[str] = Field(default_factory=list, description="tensors whose rows read were all zero (at most "
                                "100 listed)")
    tensors_nonfinite: int = Field(default=0, description="tensors with NaN or Inf rows, all of them")
    tensors_all_zero: int = Field(default=0, description="all-zero tensors, all of them")
    usable: bool = Field(default=True, description="false when nothing read held a finite, non-zero value")


class NonFiniteWeightsEvidence(Section):
    models: list[UnusableWeights] = Field(description="the audited model and the references that hold such tensors")


class NonFiniteWeightsFlag(Section):
    kind: Literal[FlagKind.NON_FINITE_WEIGHTS] = FlagKind.NON_FINITE_WEIGHTS
    detail: str
    evidence: NonFiniteWeightsEvidence


class HiddenPromptEvidence(Section):
    """Why a hidden system prompt is suspected (the trace section's hidden_prompt has the full evidence)."""

    reference: str = Field(description="the reference whose tokenizer and chat template the billing was read with")
    hidden_tokens: float | None = Field(default=None, description="estimated hidden prompt tokens")
    hidden_tokens_se: float | None = None
    extracted: str | None = Field(default=None, description="excerpt of a prompt-extraction answer that fits")


class HiddenPromptSuspectedFlag(Section):
    kind: Literal[FlagKind.HIDDEN_PROMPT_SUSPECTED] = FlagKind.HIDDEN_PROMPT_SUSPECTED
    detail: str
    evidence: HiddenPromptEvidence


AnyFlag = (HiddenPromptSuspectedFlag | DistillationLeakFlag | WrapperSuspectedFlag | ArchitectureBorrowedFlag | TokenizerBorrowedFlag
           | NonFiniteWeightsFlag)
Flag = Annotated[AnyFlag, Field(discriminator="kind")]


class AdapterShapeMismatch(Section):
    """An adapted module whose (out, in) shape differs from the base weight it maps to (or that has none)."""

    module: str = Field(description="PEFT module name, e.g. model.layers.3.self_attn.q_proj")
    adapter_shape: list[int] = Field(description="(out, in) the adapter's factors imply")
    base_tensor: str | None = Field(default=None, description="the base tensor it maps to; null when none does")
    base_shape: list[int] | None = None


class AdapterInfo(Section):
    """The subject is a PEFT adapter: what it declares, and whether its shapes fit the base it was checked on."""

    relation: Relation = Relation.ADAPTER
    kind: str = Field(description="LoRA | DoRA")
    base_model: str | None = Field(default=None, description="the base the adapter declares "
                                   "(adapter_config.json base_model_name_or_path)")
    rank: int = Field(description="r: the rank of each low-rank update")
    alpha: float = Field(description="lora_alpha: updates are scaled by alpha / r (alpha / sqrt(r) with rsLoRA)")
    target_modules: list[str] = Field(default_factory=list, description="module kinds adapted (q_proj, ...)")
    modules: int = Field(description="adapted modules (one per target per layer)")
    layers: int = Field(default=0, description="base layers with at least one adapted module")
    extra_tensors: int = Field(default=0, description="tensors saved whole beside the low-rank factors "
                               "(modules_to_save, biases)")
    base_checked: str | None = Field(default=None, description="the base checkpoint the shapes were checked "
                                     "against; null when no base was given")
    shapes_fit: bool | None = Field(default=None, description="every adapted module maps to a base weight of "
                                    "the same (out, in) shape; null when no base was checked")
    modules_matched: int | None = Field(default=None, description="adapted modules whose base weight fits")
    mismatches: list[AdapterShapeMismatch] = Field(default_factory=list, description="modules that do not fit "
                                                   "(the first few)")
    summary: str = Field(default="", description="one plain sentence")


# ---------------------------------------------------------------- claims against evidence


class ClaimSource(Section):
    """Where a declaration was read: a file and line or metadata key, the command line, or a manifest row."""

    file: str = Field(description="README.md, config.json, LICENSE, 'GGUF metadata', 'safetensors metadata', "
                      "'command line', 'manifest' ...")
    key: str | None = Field(default=None, description="front-matter key, JSON field or metadata key")
    line: int | None = Field(default=None, description="1-based line in the file")
    text: str = Field(default="", description="the declaration as written (at most 300 characters)")


class DeclaredClaim(Section):
    """One thing the model, its files or the user declares about its origin, base, licence or maker."""

    kind: ClaimKind
    value: str = Field(description="normalised: origin 'original' | 'derived'; base a Hub id or model name; "
                       "relation a Relation value; license a licence id (apache-2.0, llama3.1, ...)")
    source: ClaimSource
    language: str | None = Field(default=None, description="en | zh for prose claims")


class ClaimFinding(Section):
    """A claim side by side with what the weights show, and the flag that follows."""

    flag: ClaimFlag
    claim: str = Field(description="what is claimed, in plain words ('trained from scratch'; 'no base "
                       "declared'; 'fine-tuned from Qwen/Qwen2.5-7B')")
    measured: str = Field(description="what the weights show, in plain words")
    claims: list[DeclaredClaim] = Field(default_factory=list, description="the declarations behind the claim")
    evidence: str = Field(default="", description="the measurement it rests on (verdict, parent, p-value)")
    settle: str | None = Field(default=None, description="what would settle an unverified or uncheckable claim")


class LicenceObligation(Section):
    """One clause of a parent's licence that binds a derivative, and how the files stand against it."""

    clause: str = Field(description="clause id: attribution, naming, user-threshold, acceptable-use, "
                        "relicensing, notice, ...")
    text: str = Field(description="what the clause requires, in plain words")
    status: LicenceStatus
    detail: str = Field(default="", description="why the status: what the files show")


class LicenceFinding(Section):
    """The licence a derivative inherits from its parent, and whether its declared licence and name fit it.
    Findings to check with counsel, not legal advice."""

    parent: str = Field(description="the model whose licence binds (measured parent, or the declared base)")
    basis: Literal["measured", "declared"] = Field(description="measured: the weights show the parent; "
                                                   "declared: only the model's own declaration names it")
    parent_licence: str | None = Field(default=None, description="licence id of the parent (null: unknown)")
    licence_name: str | None = None
    url: str | None = Field(default=None, description="where the licence text is published")
    declared_licence: str | None = Field(default=None, description="the licence the model declares")
    compatible: bool | None = Field(default=None, description="the declared licence is one the parent's licence "
                                    "allows for a derivative; null when unknown")
    obligations: list[LicenceObligation] = Field(default_factory=list)
    summary: str = ""


class ClaimsSection(Section):
    """Claims vs evidence: what the model declares about itself, what the weights show, and the licence it
    inherits. Present on every audit and compare."""

    declared: list[DeclaredClaim] = Field(default_factory=list)
    findings: list[ClaimFinding] = Field(default_factory=list)
    licences: list[LicenceFinding] = Field(default_factory=list)
    sources_read: list[str] = Field(default_factory=list, description="files and metadata read for declarations")
    notes: list[str] = Field(default_factory=list, description="declaration files that could not be used, and why "
                             "(malformed front matter, a file over its size cap, not a regular file)")
    summary: str = Field(default="", description="one plain sentence")


# ---------------------------------------------------------------- black-box lineage (provaudit trace)


class TraceNull(Section):
    """What a trace statistic is tested against. exact: enumerated or closed-form under `assumption`;
    empirical: n random draws (p >= 1/(n+1)); analytic: a named limiting distribution (normal) under
    `assumption`; tolerance: a decision by a stated bound, no p-value."""

    method: Literal["exact", "empirical", "analytic", "tolerance"]
    kind: str = Field(description="how the null was built")
    n: int | None = Field(default=None, description="relabellings, draws, prompts or tokens")
    assumption: str = Field(description="what the p-value (or the tolerance) assumes")


class TraceStatistic(Section):
    name: TraceStatisticName
    test: Literal["same-model", "derived-from"]
    value: float
    null: TraceNull
    p_value: float | None = Field(default=None, description="None for a tolerance decision")
    p_holm: float | None = Field(default=None, description="Holm-adjusted over the references")
    rejected: bool | None = Field(default=None, description="H0 rejected at alpha (after Holm), or beyond tolerance")
    detail: str = ""


class TraceReference(Section):
    """The trace verdict for one reference model."""

    name: str
    path: str
    verdict: TraceVerdict
    statistics: list[TraceStatistic] = Field(default_factory=list)
    controls: list[str] = Field(default_factory=list, description="models used as the null of the derived test")
    requests_needed: int | None = Field(default=None, description="subject requests (prompts in order) after "
                                        "which the verdict no longer changed")
    hidden_prompt_retest: bool = Field(default=False, description="the same-model test was repeated with the "
                                       "extracted system prompt given to the reference")
    temperature_retest: float | None = Field(default=None, description="the same-model test was repeated at this "
                                             "temperature, the one the subject's answers fit best, far from the "
                                             "requested one (an endpoint that ignores the setting)")
    summary: str = ""


class TraceBilling(Section):
    """Billed prompt tokens against the user text's length under a reference's tokenizer (OLS)."""

    reference: str
    points: int
    user_tokens: list[int] = Field(default_factory=list)
    billed: list[int] = Field(default_factory=list)
    slope: float | None = None
    slope_se: float | None = None
    offset: float | None = None
    offset_se: float | None = None
    template_overhead: int | None = Field(default=None, description="tokens the reference's template adds "
                                          "around a user message with no system message (its default included)")
    template_overhead_system: int | None = Field(default=None, description="tokens it adds around a user message "
                                                 "and an explicit system message, the system text excluded")
    excess_tokens: float | None = Field(default=None, description="offset - template_overhead")
    hidden_tokens: float | None = Field(default=None, description="estimated hidden system prompt tokens "
                                        "(offset - template_overhead_system), when suspected")
    hidden_tokens_se: float | None = None
    tokenizer_matches: bool | None = Field(default=None, description="slope within 0.05 of 1: the endpoint bills "
                                           "with the reference's tokenizer; otherwise the offset cannot be split")
    detail: str = ""


class TraceExtraction(Section):
    prompt: str
    excerpt: str = Field(description="the answer, at most 300 characters")
    tokens: int | None = Field(default=None, description="its length under the first reference's tokenizer")
    fits_billing: bool = False


class TraceHiddenPrompt(Section):
    suspected: bool
    billing: TraceBilling | None = None
    extraction: list[TraceExtraction] = Field(default_factory=list)
    candidate: str | None = Field(default=None, description="the extraction answer retested as a system prompt")
    summary: str = ""


class TraceBudget(Section):
    """What the trace cost at the subject (requests sent, answered from cache, tokens billed)."""

    planned_requests: int
    planned_tokens: int = Field(description="upper bound: prompt tokens (estimated) + max tokens per request")
    max_requests: int | None = None
    requests_sent: int = 0
    requests_cached: int = 0
    retries: int = 0
    prompt_tokens_billed: int = 0
    completion_tokens_billed: int = 0
    failed: int = Field(default=0, description="requests that got no usable answer")
    stopped_at_budget: bool = False
    reference_requests_sent: int = Field(default=0, description="requests sent to endpoint references")
    reference_requests_cached: int = 0


class TraceSettings(Section):
    prompts: int
    samples: int = Field(description="completions per prompt (1 at temperature 0)")
    temperature: float
    top_p: float | None = None
    max_tokens: int
    seed: int
    logprobs_requested: bool
    alpha: float
    logprob_tolerance: float
    power: float | None = Field(default=None, description="power the sample count was chosen for (temperature > 0)")
    effect: float | None = Field(default=None, description="the PIT mean shift that power is stated against")
    pit_margin: float | None = Field(default=None, description="PIT mean shift still counted as the same model")
    greedy_tolerance: float | None = Field(default=None, description="share of off-argmax tokens still counted "
                                           "as the same model at temperature 0")
    tokens_needed: int | None = Field(default=None, description="answer tokens the stated power needs")
    samples_chosen: Literal["auto", "given"] = "given"


class TraceObserved(Section):
    """What the subject's answers show about the settings it applied."""

    logprobs_returned: bool
    mean_completion_tokens: float | None = None
    temperature_fit: float | None = Field(default=None, description="the sampling temperature that best explains "
                                          "the subject's tokens under the first local reference (grid fit)")
    answered: int = 0


class TraceSection(Section):
    """`provaudit trace`: which reference produced the subject's outputs, with the null of every test."""

    method: str = "provaudit.trace/1"
    prompts: list[str] = Field(default_factory=list)
    settings: TraceSettings
    observed: TraceObserved
    budget: TraceBudget
    references: list[TraceReference] = Field(default_factory=list)
    controls: list[str] = Field(default_factory=list)
    hidden_prompt: TraceHiddenPrompt
    summary: str = ""


# ---------------------------------------------------------------- the record


class Record(Section):
    """One audit, compare, probe or batch row: the evidence, its nulls, the verdict and how it was produced."""

    schema_: Literal["provaudit.record/2"] = Field(default=SCHEMA, alias="schema")
    tool: Tool
    created: str = Field(description="ISO-8601 time the record was built (UTC)")
    command: Command
    subject: ModelInfo
    references: list[ModelInfo] = Field(default_factory=list)
    verdict: Verdict
    comparisons: list[Comparison] = Field(default_factory=list)
    flags: list[Flag] = Field(default_factory=list)
    probes: list[SuiteResult] = Field(default_factory=list)
    probe_run: ProbeRun | ProbeFailure | None = None
    registry: RegistrySection | None = None
    batch: BatchInfo | None = None
    adapter: AdapterInfo | None = Field(default=None, description="set when the subject is a PEFT adapter")
    merge: MergeInfo | None = Field(default=None, description="set when the subject is a merge of references given")
    claims: ClaimsSection | None = Field(default=None, description="claims vs evidence (audit and compare)")
    trace: TraceSection | None = Field(default=None, description="black-box lineage (provaudit trace)")

    def to_json_dict(self) -> dict[str, Any]:
        """The record as plain JSON values (what `--json` writes)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)

    def reference(self, name: str) -> ModelInfo | None:
        return next((r for r in self.references if r.name == name), None)

    def comparison(self, reference: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.reference == reference), None)


#: Fields that differ between two runs of the same request (time stamps, the command line, timings).
RUN_DEPENDENT = ("created", "command", "batch")


def evidence_view(record: Record) -> dict[str, Any]:
    """The record without what depends on when and how it was invoked: two runs of one request agree here."""
    data = record.to_json_dict()
    for key in RUN_DEPENDENT:
        data.pop(key, None)
    for comp in data.get("comparisons") or []:
        comp.pop("seconds", None)
    for model in [data.get("subject"), *(data.get("references") or [])]:
        if isinstance(model, dict):
            model.pop("io", None)  # what reading cost depends on caches and on what else the run read
    run = data.get("probe_run")
    if isinstance(run, dict):
        run.pop("seconds", None)
        for event in run.get("events") or []:
            event.pop("t", None)
    return data


# ---------------------------------------------------------------- a batch's lineage tree (provaudit.lineage/1)


LINEAGE_SCHEMA: Literal["provaudit.lineage/1"] = "provaudit.lineage/1"


class LineageNode(Section):
    """A model in a batch's lineage: a manifest row, or a parent that the rows' audits found (registry or reference)."""

    id: str = Field(description="unique within the tree; edges name nodes by it")
    name: str
    kind: Literal["model", "registry", "reference"] = Field(
        description="model: a manifest row; registry: a stored fingerprint a row was found to derive from; "
                    "reference: a reference checkpoint (not a row) a row was found to derive from")
    line: int | None = Field(default=None, description="manifest line (rows)")
    path: str | None = Field(default=None, description="the model as the manifest gives it, or the reference's path")
    verdict: Label | None = Field(default=None, description="the row's own audit verdict (rows)")
    report: str | None = Field(default=None, description="the row's HTML report, relative to the batch folder")
    fingerprint: str | None = Field(default=None, description="cache key of the row's stored weight fingerprint")
    family: int | None = Field(default=None, description="family number (from 1); null for a model related to "
                                                         "no other")
    depth: int = Field(default=0, description="generation in the drawn tree: 0 for a root")


class LineageEdge(Section):
    """A relation between two nodes: `parent` -> `child` when `directed`, else undirected ('related')."""

    parent: str = Field(description="node id (for an undirected edge: the node drawn above)")
    child: str = Field(description="node id")
    directed: bool
    rule: EdgeRule = Field(description="what decided the direction (undirected: nothing did)")
    rule_detail: str = ""
    relation: str = Field(description="the text drawn on the edge: the label and the weight operations")
    label: Label = Field(description="the verdict of the comparison behind the edge (derived or fine-tuned)")
    operations: list[Operation] = Field(default_factory=list)
    packaging: list[Operation] = Field(default_factory=list)
    statistic: Statistic = Field(description="the key statistic (layer-gram-similarity) with its null and p-value")
    exact_log10_p: float | None = Field(default=None, description="exact tests (units and neurons in place), "
                                                                  "Bonferroni over the tests run")
    layers_matched: int
    layers_compared: int
    matched_share: float = Field(ge=0.0, le=1.0, description="share of the child's compared layers that carry "
                                                             "the parent's weights")
    confidence: float | None = None
    source: Literal["pairwise", "row-audit"] = Field(
        description="pairwise: two rows' stored fingerprints compared; row-audit: a row's own audit against a "
                    "registry fingerprint or reference checkpoint")
    in_tree: bool = Field(description="drawn in the picture; false for a relation the tree already explains")
    note: str | None = Field(default=None, description="why an edge is not drawn (implied by a chain, siblings)")
    summary: str = Field(description="the comparison's verdict in one sentence")


class LineagePair(Section):
    """A pair of rows that was not compared, or whose comparison was inconclusive."""

    a: str
    b: str
    reason: str


class LineageExcluded(Section):
    """A row left out of the tree (no weight fingerprint)."""

    name: str
    line: int
    reason: str


class LineageTree(Section):
    """Who derives from whom among a batch's models: every row's stored weight fingerprint compared with every
    other's (each pair once), plus the registry and reference parents the rows' audits found."""

    schema_: Literal["provaudit.lineage/1"] = Field(default=LINEAGE_SCHEMA, alias="schema")
    tool: Tool
    created: str
    manifest: str
    seed: int = 0
    method: str = Field(description="what was compared with what in the pairwise step")
    nodes: list[LineageNode] = Field(default_factory=list)
    edges: list[LineageEdge] = Field(default_factory=list)
    families: int = Field(default=0, description="connected groups of two or more related models")
    pairs_compared: int = Field(default=0, description="pairs of rows compared (n(n-1)/2 less the skipped)")
    pairs_from_cache: int = 0
    pairs_related: int = 0
    pairs_unrelated: int = Field(default=0, description="pairs whose verdict was original")
    pairs_inconclusive: int = 0
    pairs_skipped: int = Field(default=0, description="pairs that could not be compared (e.g. no shared vocabulary)")
    skipped: list[LineagePair] = Field(default_factory=list, description="the first 100 skipped pairs")
    inconclusive: list[LineagePair] = Field(default_factory=list, description="the first 100 inconclusive pairs")
    excluded: list[LineageExcluded] = Field(default_factory=list)
    seconds: float | None = None

    def summary_line(self) -> str:
        """'lineage: 7 models, 4 edges, 2 families' (edges drawn in the tree)."""
        drawn = sum(e.in_tree for e in self.edges)
        text = (f"lineage: {len(self.nodes)} model{'' if len(self.nodes) == 1 else 's'}, {drawn} "
                f"edge{'' if drawn == 1 else 's'}, {self.families} famil{'y' if self.families == 1 else 'ies'}")
        extra = []
        if self.pairs_skipped:
            extra.append(f"{self.pairs_skipped} pair{'' if self.pairs_skipped == 1 else 's'} not comparable")
        if self.excluded:
            extra.append(f"{len(self.excluded)} not fingerprinted")
        return text + (f" ({'; '.join(extra)})" if extra else "")

