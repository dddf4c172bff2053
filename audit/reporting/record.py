"""Build the versioned JSON record (provaudit.record/1) that every view is derived from."""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Any

from audit import __version__
from audit.fingerprinting.tokenizer import tokenizer_summary

if TYPE_CHECKING:  # keep scipy (pulled in by compare) out of commands that only fingerprint
    from audit.lineage.compare import Comparison
    from audit.lineage.view import ModelView

SCHEMA = "provaudit.record/1"


def model_block(view: ModelView, files: list[dict]) -> dict[str, Any]:
    arch = {k: v for k, v in view.arch.items() if k != "layer_roles"}
    arch["layer_roles"] = view.arch.get("layer_roles", {})
    return {
        "name": view.name,
        "path": str(view.ckpt.path),
        "format": view.ckpt.format,
        "files": files,
        "architecture": arch,
        "tokenizer": tokenizer_summary(view.ckpt.tokenizer),
    }


def comparison_block(cmp: Comparison, verdict: dict[str, Any], reference_layers: int) -> dict[str, Any]:
    mu, sd, n = cmp.layer_null
    return {
        "reference": cmp.reference,
        "statistics": [s.as_dict() for s in cmp.statistics],
        "layer_map": [[c, r, round(s, 4)] for c, r, s, _ in cmp.layer_map],
        "layer_log10_p": [round(p, 2) for _, _, _, p in cmp.layer_map],
        "layer_null": {"mean": round(mu, 6), "sd": round(sd, 6), "n": n, "kind": "random permutation of hidden units"},
        "reference_layers": reference_layers,
        "alignment": cmp.alignment,
        "tokenizer": cmp.tokenizer,
        "architecture_match": cmp.architecture_match,
        "operations": cmp.operations,
        "verdict": verdict,
        "seconds": round(cmp.seconds, 2),
    }


def build_record(
    command: str,
    argv: list[str],
    seed: int,
    subject: dict[str, Any],
    references: list[dict[str, Any]],
    comparisons: list[dict[str, Any]],
    verdict: dict[str, Any],
    flags: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tool": {"name": "provaudit", "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": {"name": command, "argv": argv, "seed": seed},
        "subject": subject,
        "references": references,
        "verdict": verdict,
        "comparisons": comparisons,
        "flags": flags,
        "probes": [],
    }
