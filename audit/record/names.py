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
    DEMO = ("demo", "the built-in example audits")


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


#: How the files were repackaged. These say nothing about how the weights changed, so they never decide the label.
PACKAGING: frozenset[Operation] = frozenset({Operation.FORMAT_CONVERSION, Operation.RENAMED_TENSORS,
                                             Operation.QUANTIZATION, Operation.DTYPE_CONVERSION})
#: What was done to the weights themselves beyond training: any of them makes a weight match "derived".
STRUCTURAL: frozenset[Operation] = frozenset(Operation) - PACKAGING - {Operation.PARTIAL_REUSE}

ALL_NAMES: tuple[type[Named], ...] = (Label, Operation, FlagKind, StatisticName, CommandName, Relation)
