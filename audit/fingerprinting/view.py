"""A model opened for comparison: checkpoint, tensor roles, architecture, oriented matrix access."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audit.checkpoint.model import Checkpoint
from audit.fingerprinting.architecture import architecture
from audit.fingerprinting.roles import NORM_ROLES, RoleMap, assign_roles, hidden_sides


@dataclass
class ModelView:
    ckpt: Checkpoint
    roles: RoleMap = field(init=False)
    arch: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.roles = assign_roles(self.ckpt.tensors)
        self.arch = architecture(self.ckpt, self.roles)

    @property
    def name(self) -> str:
        return self.ckpt.name

    @property
    def hidden(self) -> int:
        return int(self.arch.get("hidden_size") or 0)

    def matrix(self, name: str) -> np.ndarray:
        """A weight as float32 in (out, in) orientation."""
        arr = self.ckpt.read(name)
        return arr.T if self.roles.roles[name].transpose and arr.ndim == 2 else arr

    def oriented_shape(self, name: str) -> tuple[int, ...]:
        """A weight's shape in (out, in) orientation, without reading it."""
        shape = tuple(int(x) for x in self.ckpt.tensors[name].shape)
        return shape[::-1] if self.roles.roles[name].transpose and len(shape) == 2 else shape

    def embed_name(self) -> str | None:
        return self.roles.find("embed") or self.roles.find("lm_head")

    def embedding_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows of the token embedding (vocab, hidden) for the given token ids."""
        name = self.embed_name()
        assert name is not None
        if self.roles.roles[name].transpose:
            return self.ckpt.read(name).T[rows]
        return self.ckpt.read_rows(name, rows)

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
