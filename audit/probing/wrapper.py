"""The wrapper-suspected flag: an endpoint that bills with another vendor's tokenizer.

Evidence, from strongest to weakest: the endpoint's prompt-token counts reproduce a registry tokenizer
exactly (tokcount.infer_tokenizer_family, with its own null); that tokenizer's vendor is not the vendor
the operator declared; and, when nothing was declared, the model also claims that same vendor's identity.
Billing with a tokenizer is behaviour, not weights: a wrapper is suspected, never proven.
"""

from __future__ import annotations

from typing import Any

from audit.paths import data_dir
from audit.safeio import load_yaml


def tokenizer_vendors() -> dict[str, str]:
    data = load_yaml(data_dir("probes") / "tokenizer-vendors.yaml", what="tokenizer vendors file")
    vendors = data.get("vendors") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in vendors.items()} if isinstance(vendors, dict) else {}


def wrapper_flag(inference: dict[str, Any], declared_vendors: list[str], claimed_vendors: list[str],
                 declared_names: list[str] | None = None) -> dict[str, Any] | None:
    """A wrapper-suspected flag, or None. `declared_vendors`/`claimed_vendors` are lexicon vendor ids."""
    if inference.get("status") != "identified":
        return None
    names = [inference.get("name"), *(inference.get("same_counts_as") or [])]
    mapping = tokenizer_vendors()
    vendors = sorted({mapping[n] for n in names if n in mapping})
    if not vendors:
        return None
    if declared_vendors:
        if set(vendors) & set(declared_vendors):
            return None
        why = f"the operator declared {', '.join(declared_names or declared_vendors)}"
    else:
        shared = sorted(set(vendors) & set(claimed_vendors))
        if not shared:
            return None
        vendors = shared
        why = "no declared vendor, and the model itself claims this vendor's identity"
    return {
        "kind": "wrapper-suspected",
        "detail": (f"the endpoint bills with the {inference.get('family')} tokenizer ({' = '.join(n for n in names if n)}), "
                   f"shipped by {', '.join(vendors)}; {why}. {inference.get('summary', '')} A tokenizer match suggests "
                   "the endpoint relays or hosts that vendor's model; it is a signal, not proof."),
        "evidence": {"tokenizer_inference": {k: inference.get(k) for k in
                                             ("family", "name", "same_counts_as", "matched", "of", "offset",
                                              "p_value", "null", "summary")},
                     "tokenizer_vendors": vendors, "declared": declared_vendors, "claimed": claimed_vendors},
    }
