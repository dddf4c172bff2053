"""A model opened for comparison: checkpoint, tensor roles, architecture, and row-level weight access.

Everything the lineage statistics read is a stored row: embedding rows of chosen tokens, and the rows of
weights whose stored rows are hidden (residual) units. Rows are contiguous bytes, so a comparison of a 7B
model reads about one percent of it, locally or over HTTP; each row is read at most once per process while
the row cache has room (a candidate compared with many references is read once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audit.checkpoint.model import Checkpoint
from audit.fingerprinting.architecture import architecture
from audit.fingerprinting.roles import NORM_ROLES, RoleMap, assign_roles, hidden_sides, split_fused

ROW_CACHE_BYTES = 512 << 20  # float32 rows kept per model: a 7B comparison needs ~250 MB; the cap leaves room for
# a 70B alignment (8192 x 8192 assignment, ~1 GB; estimated, not measured) under 2 GiB


@dataclass
class ModelView:
    ckpt: Checkpoint
    roles: RoleMap = field(init=False)
    arch: dict[str, Any] = field(init=False)
    _rows: dict[str, dict[int, np.ndarray]] = field(init=False, default_factory=dict, repr=False)
    _cached_bytes: int = field(init=False, default=0, repr=False)

    def __post_init__(self) -> None:
        self.ckpt.sanitize = True  # the comparison sees finite rows only; NaN/Inf rows are counted in ckpt.quality
        self.roles = assign_roles(self.ckpt.tensors)
        self.arch = architecture(self.ckpt, self.roles)
        self.roles = split_fused(self.ckpt, self.roles)  # fused qkv / gate_up -> virtual q/k/v, gate/up parts

    @property
    def name(self) -> str:
        return self.ckpt.name

    @property
    def hidden(self) -> int:
        return int(self.arch.get("hidden_size") or 0)

    def matrix(self, name: str) -> np.ndarray:
        """A whole weight as float32 in (out, in) orientation (reads the whole tensor: avoid on big models)."""
        arr = self.ckpt.read(name)
        return arr.T if self.roles.roles[name].transpose and arr.ndim == 2 else arr

    def oriented_shape(self, name: str) -> tuple[int, ...]:
        """A weight's shape in (out, in) orientation, without reading it."""
        shape = tuple(int(x) for x in self.ckpt.tensors[name].shape)
        return shape[::-1] if self.roles.roles[name].transpose and len(shape) == 2 else shape

    def stored_rows(self, name: str, ids: np.ndarray) -> np.ndarray:
        """Rows `ids` (any order, repeats allowed) of tensor `name` as stored, float32; cached while there is room."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        cache = self._rows.setdefault(name, {})
        wanted = ids.tolist()
        missing = sorted({i for i in wanted if i not in cache})
        fresh: dict[int, np.ndarray] = {}
        if missing:
            got = np.asarray(self.ckpt.read_rows(name, np.asarray(missing, dtype=np.int64)), dtype=np.float32)
            got = got.reshape(len(missing), -1)
            target = cache if self._cached_bytes + got.nbytes <= ROW_CACHE_BYTES else fresh
            if target is cache:
                self._cached_bytes += got.nbytes
            for i, row in zip(missing, got, strict=True):
                target[i] = row
        if not wanted:
            width = int(np.prod(self.ckpt.tensors[name].shape[1:])) if len(self.ckpt.tensors[name].shape) > 1 else 1
            return np.zeros((0, width), np.float32)
        return np.stack([cache[i] if i in cache else fresh[i] for i in wanted])

    def prefetch(self, requests: list[tuple[str, np.ndarray]]) -> None:
        """Read the missing rows of several tensors in one planned batch (merged, and concurrent over HTTP) into
        the row cache, while it has room."""
        todo: list[tuple[str, np.ndarray]] = []
        for name, ids in requests:
            cache = self._rows.setdefault(name, {})
            missing = sorted({int(i) for i in np.asarray(ids).ravel()} - cache.keys())
            if missing:
                todo.append((name, np.asarray(missing, dtype=np.int64)))
        if not todo:
            return
        width = sum(len(ids) * int(np.prod(self.ckpt.tensors[name].shape[1:])) * 4 for name, ids in todo)
        if self._cached_bytes + width > ROW_CACHE_BYTES:
            return  # no room: stored_rows reads them one tensor at a time
        for (name, ids), got in zip(todo, self.ckpt.read_rows_many(todo), strict=True):
            got = np.asarray(got, dtype=np.float32).reshape(len(ids), -1)
            self._cached_bytes += got.nbytes
            cache = self._rows[name]
            for i, row in zip(ids.tolist(), got, strict=True):
                cache[i] = row

    def row_weights(self, layer: int) -> list[tuple[str, str, str]]:
        """(role, tensor name, side) of one block's weights whose stored rows are hidden units (cheap to read)."""
        out = []
        for role, name, sides in self.layer_weights(layer):
            transpose = self.roles.roles[name].transpose
            out += [(role, name, side) for side in sides if (side == "out") != transpose]
        return out

    def hidden_rows(self, name: str, dims: np.ndarray) -> np.ndarray:
        """The rows of a row-readable weight for hidden units `dims`: (len(dims), other axis)."""
        return self.stored_rows(name, dims)

    def embed_name(self) -> str | None:
        return self.roles.find("embed") or self.roles.find("lm_head")

    def embedding_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows of the token embedding (vocab, hidden) for the given token ids."""
        name = self.embed_name()
        assert name is not None
        if self.roles.roles[name].transpose:
            return self.ckpt.read(name).T[rows]
        return self.stored_rows(name, rows)

    def vocab_rows(self) -> int:
        name = self.embed_name()
        if name is None:
            return 0
        shape = self.ckpt.tensors[name].shape
        return int(shape[1] if self.roles.roles[name].transpose else shape[0])

    def layer_weights(self, layer: int) -> list[tuple[str, str, list[str]]]:
        """(role, tensor name, hidden sides) for the 2-D weights of one block that touch the hidden space."""
        out = []
        for name, r in sorted(self.roles.roles.items()):
            if r.layer != layer or r.role.endswith("_bias"):
                continue
            shape = self.ckpt.tensors[name].shape
            if len(shape) != 2:
                continue
            oriented = (shape[1], shape[0]) if r.transpose else shape
            sides = hidden_sides(r.role, oriented, self.hidden)
            if sides:
                out.append((r.role, name, sides))
        return out

    def layer_norms(self, layer: int) -> list[tuple[str, str]]:
        return [(r.role, n) for n, r in sorted(self.roles.roles.items())
                if r.layer == layer and r.role in NORM_ROLES and len(self.ckpt.tensors[n].shape) == 1
                and self.ckpt.tensors[n].shape[0] == self.hidden]


def unique_names(names: list[str]) -> list[str]:
    """Names as the reports show them: a repeated name gets '#2', '#3', ..."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out
