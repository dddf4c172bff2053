"""Every name the record uses, defined once with its plain-language meaning.

Verdict labels, operations, flag kinds, statistic names and command names are enums whose members carry
`meaning`: the console, the HTML report, README.md and docs/record.md all take their explanations from
here (docs are generated from these enums and checked by a test), so a new name cannot ship unexplained.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class Named(str, Enum):
    """A string enum whose members carry a plain-language meaning."""

    meaning: str

    def __new__(cls, value: str, meaning: str = "") -> Named:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.meaning = meaning
        return obj

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        """The JSON Schema of the enum carries each value's meaning (JSON Schema has no per-value notes)."""
        schema: dict[str, Any] = handler.resolve_ref_schema(handler(core_schema))
        lines = [f"- {m.value}: {m.meaning}" for m in cls]
        schema["description"] = (cls.__doc__ or cls.__name__).strip() + "\n" + "\n".join(lines)
        return schema

    @classmethod
    def meanings(cls) -> dict[str, str]:
        """value -> meaning, in definition order."""
        return {m.value: m.meaning for m in cls}

    @classmethod
    def meaning_of(cls, value: Any) -> str:
        """The meaning of a value of this enum, or '' for an unknown value."""
        try:
            return cls(value).meaning
        except ValueError:
            return ""


class Label(Named):
    """The lineage verdict."""

    ORIGINAL = ("original", "No derivation from any of the N references checked: no reference's weights were found "
                "inside this model, every weight statistic sits inside what independently trained models show, and "
                "enough layers were compared to have had the power to see a derivation.")
    DERIVED = ("derived", "The parent's weights are demonstrably inside this model, and something beyond training was "
               "done to them: permuted units, pruned or duplicated layers, a changed vocabulary or width, partial "
               "reuse, or an unchanged copy; each weight operation detected is named. How the files were repackaged "
               "(format, dtype, quantization, tensor names) is reported apart and never decides the label.")
    FINE_TUNED = ("fine-tuned", "The parent's weights carried over in place and changed by training: same tensor roles "
                  "and shapes, layers matched in order, no permutation, however the files were repackaged. Typical "
                  "of SFT, RLHF, LoRA merges or short continued pretraining.")
    INCONCLUSIVE = ("inconclusive", "The evidence is mixed or too thin to decide either way; the summary says what "
                    "would settle it (a closer reference, more comparable layers, the original tokenizer).")


class Operation(Named):
    """What a deriver did to the parent, as detected from the weights and files."""

    FORMAT_CONVERSION = ("format-conversion", "re-exported to another file format or tensor layout (e.g. "
                         "safetensors to GGUF; q/k/v or gate/up projections fused into one tensor, or split)")
    RENAMED_TENSORS = ("renamed-tensors", "tensor names or model_type changed (a repackaged copy); the weights are the same")
    QUANTIZATION = ("quantization", "weights stored at lower precision (GGUF quantization types, int8)")
    DTYPE_CONVERSION = ("dtype-conversion", "weights cast to another floating-point type (e.g. F32 to BF16)")
    LAYER_PRUNING = ("layer-pruning", "layers of the parent were removed")
    LAYER_DUPLICATION = ("layer-duplication", "layers of the parent were repeated (depth up-scaling)")
    LAYER_REORDERING = ("layer-reordering", "the parent's layers appear in another order")
    UNMATCHED_LAYERS = ("unmatched-layers", "some candidate layers carry none of the parent's weights (new or retrained)")
    PERMUTATION = ("permutation", "hidden units, attention heads or MLP neurons reordered (function-preserving)")
    SIGN_FLIP = ("sign-flip", "hidden units negated (function-preserving when compensated downstream)")
    WIDTH_PRUNING = ("width-pruning", "widths were cut: fewer hidden units, attention heads or MLP neurons than the "
                     "parent (the share kept is given)")
    VOCAB_EXTENSION = ("vocab-extension", "tokens were added to the parent's vocabulary")
    VOCAB_REDUCTION = ("vocab-reduction", "tokens of the parent's vocabulary were removed")
    EXACT_COPY = ("exact-copy", "weights identical to the parent's, bit for bit or within the rounding of the "
                  "dtype or quantization they are stored in (a fine-tune smaller than that rounding cannot be seen)")
    HEAVY_CONTINUED_TRAINING = ("heavy-continued-training", "weights moved far from the parent, but still traceably")
    PARTIAL_REUSE = ("partial-reuse", "fewer than half of the candidate's layers carry the parent's weights")
    UPCYCLING = ("upcycling", "a Mixture-of-Experts model whose experts were initialised from the parent's dense "
                 "MLPs (sparse upcycling); its routers are new weights with no counterpart in the parent")
    MERGE = ("merge", "the weights combine two or more parents: a weighted average of their weights (linear, "
             "SLERP, TIES) or layers taken from each (passthrough / frankenmerge); each parent is named with its "
             "mixing weight or share of layers")


class FlagKind(Named):
    """Findings reported beside the verdict; none of them is a derivation."""

    ARCHITECTURE_BORROWED = ("architecture-borrowed", "Same architecture as a known family. This says nothing about "
                             "the weights: Yi-34B used the Llama architecture and was trained from scratch.")
    TOKENIZER_BORROWED = ("tokenizer-borrowed", "Same tokenizer as a known family. Reusing a tokenizer is common and "
                          "is not evidence that weights were reused.")
    DISTILLATION_LEAK = ("distillation-leak", "The model names another vendor's model as itself: it was probably "
                         "trained on that model's outputs. This says nothing about its weights.")
    WRAPPER_SUSPECTED = ("wrapper-suspected", "Answers, token counts or quirks match another vendor's model: the "
                         "endpoint may be a wrapper around it.")
    HIDDEN_PROMPT_SUSPECTED = ("hidden-prompt-suspected", "The endpoint bills more prompt tokens than the "
                               "reference's chat template accounts for, or its answers shift as a system prompt "
                               "would: a hidden system prompt is likely. Evidence, not certainty.")
    NON_FINITE_WEIGHTS = ("non-finite-weights", "Some tensors hold NaN or Inf values (or values beyond 1e15, which "
                          "overflow), or only zeros. The comparison left those rows out (they carry no evidence); "
                          "the verdict rests on the rest and says what it could not use.")


class StatisticName(Named):
    """The weight statistics a comparison reports, each with its null."""

    LAYER_GRAM_SIMILARITY = ("layer-gram-similarity", "mean over candidate layers of the best correlation between "
                             "cosine-Gram matrices of a reference layer's weights (invariant to neuron and head "
                             "order); near 0 for unrelated weights; empirical p against permutations of the "
                             "reference's hidden units, so never below 1/(draws+1): the effect size says how far "
                             "outside the null it is")
    HIDDEN_ALIGNMENT_IDENTITY = ("hidden-alignment-identity", "hidden units that align with the same index; an "
                                 "unrelated model's units line up by chance about once (exact null: fixed points "
                                 "of a random permutation); a permuted derivative scores low here too, so only a "
                                 "high value is evidence")
    MLP_NEURON_IDENTITY = ("mlp-neuron-identity", "share of tested MLP neurons whose most similar reference neuron "
                           "sits at the same index, layer by layer; near 1/width for unrelated weights (exact "
                           "bound per layer, Fisher's method over layers); permuted neurons score low here too, "
                           "so only a high value is evidence")
    NORM_WEIGHTS_CENTRED = ("norm-weights-centred", "correlation of mean-centred norm weights over matched layers "
                            "(raw cosines of norm weights are ~0.9 even between unrelated models, so they are "
                            "centred and compared with a shuffle null)")


class CommandName(Named):
    """The command that wrote a record."""

    COMPARE = ("compare", "one candidate against one reference checkpoint")
    AUDIT = ("audit", "a candidate against references and the registry, optionally with probes (batch rows too)")
    PROBE = ("probe", "black-box probes only: no weights compared")
    TRACE = ("trace", "black-box lineage: which reference produced an endpoint's or a model's outputs")
    DEMO = ("demo", "the built-in example audits")


class TraceVerdict(Named):
    """What `provaudit trace` concludes about the subject and one reference, from outputs alone."""

    SAME_MODEL = ("same-model", "The subject's outputs are what the reference itself produces: the same-model "
                  "test does not reject (or its logprobs match within tolerance) and the subject is closer to the "
                  "reference than to the controls. A relay of the reference, possibly behind a hidden prompt.")
    DERIVED = ("derived", "The subject is closer to the reference than the control models are, but its outputs "
               "are not the reference's own: a fine-tune or other modification of the reference.")
    UNRELATED = ("unrelated", "The subject's outputs are not the reference's and are no closer to it than to "
                 "the control models.")
    INCONCLUSIVE = ("inconclusive", "Too little evidence, or evidence that two explanations fit (a hidden "
                    "system prompt or a fine-tune); the summary says which and what would settle it.")


class TraceStatisticName(Named):
    """The statistics of `provaudit trace`, each with its null."""

    LOGPROB_GAP = ("logprob-gap", "median |log p_subject - log p_reference| over the subject's tokens, from the "
                   "logprobs the endpoint returns against the reference's teacher-forced ones; the same weights "
                   "give numerical noise only (decided by a stated tolerance, no p-value)")
    SAMPLE_PIT = ("sample-pit", "mean randomized probability-integral-transform value of the subject's tokens "
                  "under the reference at the requested temperature and top-p minus 1/2: zero when the subject "
                  "samples from the reference, whatever the settings; normal null with a stated margin for "
                  "re-tokenization and numerics")
    GREEDY_TOKENS = ("greedy-tokens", "share of the subject's temperature-0 tokens (teacher-forced along its own "
                     "text) that are not the reference's most likely token; the same model gives near-ties and "
                     "re-tokenization only (decided by a stated tolerance, no p-value)")
    SAMPLE_MMD = ("sample-mmd", "maximum mean discrepancy between the subject's and an endpoint reference's "
                  "completions of the same prompts (character n-gram kernel), summed over prompts; permutation "
                  "null within prompts (Gao, Liang and Guestrin 2024)")
    GREEDY_MATCH = ("greedy-match", "share of prompts whose temperature-0 completion equals the reference's "
                    "greedy completion (evidence beside the p-values; first divergences in the detail)")
    CLOSER_THAN_CONTROLS = ("closer-than-controls", "share of prompts on which the reference explains the "
                            "subject's completions better (fewer bits per byte; for an endpoint reference: its "
                            "completions resemble the subject's more) than a control model does; exact sign "
                            "test, the largest p over the controls")


class EdgeRule(Named):
    """How a batch's lineage tree decided which of two related models is the parent (provaudit.lineage/1)."""

    OPERATION = ("operation", "an operation with a direction was detected between the two (layer-pruning, "
                 "width-pruning, layer-duplication, vocab-extension, vocab-reduction, quantization, "
                 "format-conversion): the edge points from the deeper, wider, float or original-format model to "
                 "the one the operation produced")
    AUDIT_REFERENCE = ("audit-reference", "the child's own audit was given the parent as a reference (manifest "
                       "or --reference) and found the child derived from or fine-tuned from it")
    REGISTRY_BASE = ("registry-base", "the child's audit found it derived from a registry fingerprint of a known "
                     "base model: a registry base is a parent")
    UNDIRECTED = ("undirected", "the weights are related but nothing says which came first (a fine-tune and its "
                  "base look alike from either side): drawn as an undirected 'related' edge")


class Relation(Named):
    """How a model relates to the base it was made from, in the Hugging Face model tree's words (base_model_relation)."""

    ADAPTER = ("adapter", "a PEFT adapter (LoRA, DoRA): low-rank factors that are added to some of the base's "
               "weights, not a model on its own; it runs only on the base it was trained for, so its shapes must "
               "fit that base")
    FINETUNE = ("finetune", "trained further from the base's weights (SFT, RLHF, continued pretraining, a merged "
                "LoRA): the base's weights carried over in place")
    QUANTIZED = ("quantized", "the base's weights stored at lower precision (GGUF, GPTQ, AWQ, bitsandbytes), "
                 "otherwise unchanged")
    MERGE = ("merge", "the weights of two or more models combined (linear, SLERP, TIES, passthrough)")


class ClaimKind(Named):
    """What a declaration says about where the model came from (model card, metadata, files, or the user)."""

    ORIGIN = ("origin", "how the model was made, in the maker's words: `original` (trained from scratch, "
              "self-developed, 自主研发, 从零训练) or `derived` (fine-tuned, built on another model)")
    BASE = ("base", "the model it declares it was made from (card base_model, GGUF general.base_model.N, "
            "'based on Llama', --claim 'fine-tuned from X')")
    RELATION = ("relation", "how it declares it relates to that base (base_model_relation: adapter, merge, "
                "quantized, finetune)")
    LICENSE = ("license", "the licence it is published under (card license, GGUF general.license, LICENSE "
               "file, --declared-license)")
    NAME = ("name", "the name it is published under (GGUF general.name, the card's model name)")
    VENDOR = ("vendor", "the organisation it names as its maker (GGUF general.organization, chat template, "
              "special tokens naming a vendor)")


class ClaimFlag(Named):
    """How a claim compares with what the weights show (the report's 'Claims vs evidence')."""

    UNDECLARED_DERIVATION = ("undeclared-derivation", "The model claims to be original or declares no base, but "
                             "its weights derive from a known model.")
    DECLARED_BASE_CONTRADICTED = ("declared-base-contradicted", "The model declares a base, but its weights come "
                                  "from another model, or from none of the models checked, its declared base "
                                  "included.")
    DECLARED_RELATION_MISMATCH = ("declared-relation-mismatch", "The declared base is right but the declared "
                                  "relation is not: e.g. it declares a fine-tune and the weights are an "
                                  "unchanged, quantized or renamed copy, or the reverse.")
    DECLARED_BASE_UNVERIFIED = ("declared-base-unverified", "The declared base was not available to check at "
                                "the weight level; the finding says what would check it.")
    CONSISTENT = ("consistent", "The claim agrees with what the weights show.")
    NOT_CHECKABLE = ("not-checkable", "The weights cannot settle this claim either way (e.g. 'original' when "
                     "the audit was inconclusive): what would settle it is said.")


class LicenceStatus(Named):
    """How an inherited licence obligation stands, as far as the files show (findings to check with counsel, not
    legal advice)."""

    MET = ("met", "the files show the obligation is met (e.g. the required name or notice is present)")
    NOT_MET = ("not-met", "the files show the obligation is not met (e.g. relicensed under terms the parent's "
               "licence does not allow, required name missing)")
    CHECK = ("check", "the files cannot show whether it is met (e.g. a user threshold, acceptable use): to check")


#: How the files were repackaged. These say nothing about how the weights changed, so they never decide the label.
PACKAGING: frozenset[Operation] = frozenset({Operation.FORMAT_CONVERSION, Operation.RENAMED_TENSORS,
                                             Operation.QUANTIZATION, Operation.DTYPE_CONVERSION})
#: What was done to the weights themselves beyond training: any of them makes a weight match "derived".
STRUCTURAL: frozenset[Operation] = frozenset(Operation) - PACKAGING - {Operation.PARTIAL_REUSE}

ALL_NAMES: tuple[type[Named], ...] = (Label, Operation, FlagKind, StatisticName, CommandName, Relation,
                                      ClaimKind, ClaimFlag, LicenceStatus, TraceVerdict, TraceStatisticName)
