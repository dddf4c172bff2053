"""What a PEFT adapter says about its base, and whether it fits a given base checkpoint.

`adapter_findings(adapter, base_view)` reports the base the adapter declares, its kind (LoRA / DoRA), rank,
alpha and target modules and, when a base is given, maps each adapted module to the base weight it adds to
(by name when the base uses the same names, else by tensor role and layer, so a renamed or GGUF base works)
and checks that the (out, in) shapes agree. `merged_rows` gives rows of the merged weight W + scaling * B @ A
from the base's stored rows and the adapter's small factors, without reading whole base tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audit.checkpoint.adapter import Adapter
from audit.checkpoint.model import TensorInfo
from audit.fingerprinting.roles import assign_roles
from audit.fingerprinting.view import ModelView
from audit.record.models import AdapterInfo, AdapterShapeMismatch

MAX_MISMATCHES = 10  # kept in the record; the count says how many there were


@dataclass(frozen=True)
class ModuleFit:
    """One adapted module against the base: the base tensor it maps to (None: none does) and both shapes."""

    module: str
    adapter_shape: tuple[int, int]
    base_tensor: str | None
    base_shape: tuple[int, ...] | None

    @property
    def fits(self) -> bool:
        return self.base_tensor is not None and self.base_shape == self.adapter_shape


@dataclass
class AdapterFindings:
    kind: str
    base_declared: str | None
    rank: int
    alpha: float
    targets: list[str]
    modules: int
    layers: int
    extra_tensors: int
    base_checked: str | None = None
    fits: list[ModuleFit] = field(default_factory=list)

    @property
    def shapes_fit(self) -> bool | None:
        if self.base_checked is None:
            return None
        return bool(self.fits) and all(f.fits for f in self.fits)

    @property
    def matched(self) -> int:
        return sum(f.fits for f in self.fits)

    @property
    def mismatches(self) -> list[ModuleFit]:
        return [f for f in self.fits if not f.fits]

    def summary(self) -> str:
        """One plain sentence: what the adapter is, for which base, and whether its shapes fit the base checked."""
        targets = f"{len(self.targets)} target module{'s' if len(self.targets) != 1 else ''}"
        head = (f"a {self.kind} adapter (rank {self.rank}, {targets}: {', '.join(self.targets)}; "
                f"{self.modules} modules over {self.layers} layers) for {self.base_declared or 'an undeclared base'}")
        if self.base_checked is None:
            return head + "; no base checkpoint was given to check its shapes against"
        if self.shapes_fit:
            return head + f"; its shapes fit the base {self.base_checked} ({self.matched} of {self.modules} modules)"
        bad = self.mismatches
        absent = [f for f in bad if f.base_tensor is None]
        differ = [f for f in bad if f.base_tensor is not None]
        parts = []
        if differ:
            e = differ[0]
            parts.append(f"{len(differ)} module(s) differ in shape (e.g. {e.module}: adapter {list(e.adapter_shape)}, "
                         f"base {list(e.base_shape or ())})")
        if absent:
            parts.append(f"{len(absent)} have no counterpart in the base (e.g. {absent[0].module})")
        return head + f"; its shapes do NOT fit {self.base_checked}: " + " and ".join(parts) + \
            " - it was not made for this base"

    def to_record(self) -> AdapterInfo:
        return AdapterInfo(kind=self.kind, base_model=self.base_declared, rank=self.rank, alpha=self.alpha,
                           target_modules=self.targets, modules=self.modules, layers=self.layers,
                           extra_tensors=self.extra_tensors, base_checked=self.base_checked,
                           shapes_fit=self.shapes_fit,
                           modules_matched=self.matched if self.base_checked is not None else None,
                           mismatches=[AdapterShapeMismatch(module=f.module, adapter_shape=list(f.adapter_shape),
                                                            base_tensor=f.base_tensor,
                                                            base_shape=list(f.base_shape) if f.base_shape else None)
                                       for f in self.mismatches[:MAX_MISMATCHES]],
                           summary=self.summary())


def adapter_findings(adapter: Adapter, base_view: ModelView | None = None) -> AdapterFindings:
    """What the adapter declares and, when `base_view` is given, whether every adapted module fits it."""
    layers = _module_roles(adapter)
    found = AdapterFindings(kind=adapter.kind, base_declared=adapter.base_model, rank=adapter.rank,
                            alpha=adapter.alpha, targets=adapter.targets(), modules=len(adapter.modules),
                            layers=len({lay for _, lay in layers.values() if lay is not None}),
                            extra_tensors=len(adapter.extra_tensors))
    if base_view is not None:
        found.base_checked = base_view.name
        mapping = base_tensors(adapter, base_view)
        for module, mod in adapter.modules.items():
            name = mapping.get(module)
            shape = _base_shape(base_view, name, mod.embedding) if name is not None else None
            found.fits.append(ModuleFit(module, mod.shape, name, shape))
    return found


def base_tensors(adapter: Adapter, base_view: ModelView) -> dict[str, str]:
    """PEFT module name -> the base tensor it adapts: `<module>.weight` when the base has that name, else the
    base tensor with the same role and layer (roles read from the module names with the base's role patterns)."""
    names = base_view.ckpt.tensors
    roles = _module_roles(adapter)
    by_role = {(r.role, r.layer): n for n, r in base_view.roles.roles.items()}
    out: dict[str, str] = {}
    for module in adapter.modules:
        for cand in (f"{module}.weight", module):
            if cand in names:
                out[module] = cand
                break
        else:
            role = roles.get(module)
            if role is not None and role in by_role:
                out[module] = by_role[role]
    return out


def merged_rows(base_view: ModelView, adapter: Adapter, module: str, rows: np.ndarray) -> np.ndarray:
    """Output rows `rows` of the merged weight W + scaling * B @ A (LoRA; DoRA's magnitude rescaling applied
    when the adapter has it), in (out, in) orientation. Reads only those rows of a row-stored base weight."""
    name = base_tensors(adapter, base_view).get(module)
    if name is None:
        raise KeyError(f"{module}: no base tensor")
    mod = adapter.modules[module]
    rows = np.asarray(rows, dtype=np.int64)
    if base_view.roles.roles.get(name) is not None and base_view.roles.roles[name].transpose:
        base = base_view.matrix(name)[rows]
    else:
        base = base_view.stored_rows(name, rows)
    merged = base + adapter.delta(module, rows)
    if mod.magnitude is not None and not mod.embedding:
        mag = adapter.checkpoint.read(mod.magnitude.name).reshape(-1)[rows]
        norm = np.linalg.norm(merged, axis=1)
        merged = merged * (mag / np.maximum(norm, 1e-12))[:, None]
    return merged.astype(np.float32)


def _module_roles(adapter: Adapter) -> dict[str, tuple[str, int | None]]:
    """PEFT module name -> (role, layer), from the same name patterns the base's roles come from."""
    fake = {f"{m}.weight": TensorInfo(f"{m}.weight", mod.shape, "F32", Path("adapter"))
            for m, mod in adapter.modules.items()}
    rmap = assign_roles(fake)
    return {name.removesuffix(".weight"): (r.role, r.layer) for name, r in rmap.roles.items()}


def _base_shape(view: ModelView, name: str, embedding: bool) -> tuple[int, ...]:
    if embedding:
        return tuple(int(x) for x in view.ckpt.tensors[name].shape)
    try:
        return view.oriented_shape(name)
    except KeyError:
        return tuple(int(x) for x in view.ckpt.tensors[name].shape)
