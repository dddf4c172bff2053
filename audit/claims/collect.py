"""What the audit needs to judge claims: the subject's declarations (its card, metadata and licence files) and
who each compared model is (hub id, catalog base, licence)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from audit.record.models import DeclaredClaim

if TYPE_CHECKING:
    from audit.checkpoint.model import Checkpoint



@dataclass(frozen=True)
class Identity:
    """Who a compared model is, as far as provaudit can tell."""

    hub_id: str | None = None
    catalog_base: str | None = None  # hub id of the model its catalog entry says it was trained from
    licence: str | None = None  # licence id
    vendor: str | None = None  # its maker (catalog)


@dataclass(frozen=True)
class Found:
    """The subject's declarations, the small text files that licence clauses are checked against, and what was
    read for them."""

    claims: list[DeclaredClaim] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def collect_declarations(ckpt: Checkpoint) -> Found:
    """Everything the checkpoint declares about itself (nothing executed, sizes capped)."""
    from audit.checkpoint.declarations import read_declared_files
    from audit.claims.declared import declared_claims

    files = read_declared_files(ckpt)
    texts = dict(getattr(files, "texts", None) or {})
    sources = list(getattr(files, "sources", None) or [])
    notes = [f"{n.file}: {n.message}" for n in files.notes]
    return Found(declared_claims(files), texts, sources, notes)


def identity_of(name: str, source: object) -> Identity:
    """Who a compared model is: a stored registry fingerprint's own record of where it came from, or a
    checkpoint's Hub id (hf: references, HF-cache snapshots), its card's licence, and the catalog."""
    from audit.claims.licences import licence_of_model

    if isinstance(source, Mapping):
        return _stored_identity(source)
    own = Found()
    hub = None
    try:
        from audit.checkpoint.declarations import read_declared_files
        from audit.claims.declared import declared_claims

        files = read_declared_files(source)  # type: ignore[arg-type]
        hub = files.repo_id
        own = Found(declared_claims(files))
    except Exception:  # noqa: BLE001 - a reference's card is context, never a reason to fail the audit
        pass
    entry = _catalog_entry(hub or name)
    licence = entry.license if entry is not None else None
    licence = licence or next((c.value for c in own.claims if c.kind.value == "license"), None)
    if licence is None and hub is not None:
        licence = licence_of_model(hub)
    if entry is None:
        return Identity(hub, None, licence, None)
    return Identity(entry.hub_id, entry.base, licence, entry.vendor)


def _stored_identity(stored: Mapping[str, Any]) -> Identity:
    hub = stored.get("hub_id") if isinstance(stored.get("hub_id"), str) else None
    raw = stored.get("catalog")
    cat: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    base = cat.get("base") if isinstance(cat.get("base"), str) else None
    lic = cat.get("license") if isinstance(cat.get("license"), str) else None
    vendor = cat.get("vendor") if isinstance(cat.get("vendor"), str) else None
    if hub:
        entry = _catalog_entry(hub)
        if entry is not None:
            base, lic, vendor = base or entry.base, lic or entry.license, vendor or entry.vendor
    return Identity(hub, base, lic, vendor)


def _catalog_entry(key: str) -> Any:
    from audit.fingerprinting.catalog import load_catalog

    if not key:
        return None
    try:
        catalog = load_catalog()
    except Exception:  # noqa: BLE001 - the catalog is context here; `refs` reports a broken one
        return None
    if "/" in key:
        return catalog.get(key)
    low = key.lower()
    return next((e for e in catalog.entries if e.name == low or e.hub_id.split("/")[-1].lower() == low), None)
