"""Untrusted data files (probe suites, architecture files, records) validated by pydantic, with one-line errors.

`FileModel` is the base of the data-file models (immutable, strict types, unknown fields rejected);
`error_lines` turns a pydantic ValidationError into 'where: what' lines, first problem first.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Annotated, Any, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Text = Annotated[str, AfterValidator(_not_blank)]


class FileModel(BaseModel):
    """Base of the data-file models: immutable, strict types, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


# ---------------------------------------------------------------- error text


def loc_text(loc: Sequence[int | str]) -> str:
    """('probes', 0, 'language') -> 'probes[0].language'; '(top level)' for the empty path."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def named_items(data: Any, key: str, name_field: str) -> Callable[[Sequence[int | str]], str]:
    """A `where` for `error_lines` that names the items of the list `data[key]` by their `name_field`:
    ('models', 3, 'num_heads') -> 'models[3] (Qwen2-7B).num_heads'."""
    items = data.get(key) if isinstance(data, dict) else None

    def where(loc: Sequence[int | str]) -> str:
        if len(loc) >= 2 and loc[0] == key and isinstance(loc[1], int):
            item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
            name = item.get(name_field) if isinstance(item, dict) else None
            head = f"{key}[{loc[1]}]" + (f" ({name})" if isinstance(name, str) else "")
            return head + (f".{loc_text(loc[2:])}" if len(loc) > 2 else "")
        return loc_text(loc)

    return where


def error_lines(exc: ValidationError, root: Any = None, *, tag: str | None = None,
                where: Callable[[Sequence[int | str]], str] = loc_text) -> list[str]:
    """One 'where: what' line per error of `exc`, first problem first.

    root: the model validated (names the allowed fields next to an unknown one); tag: the discriminator value
    a tagged union puts first in every location (dropped); where: turns a location into text.
    """
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if tag is not None and loc[:1] == (tag,):
            loc = loc[1:]
        lines.append(error_text(err, loc, root, where))
    return lines


def error_text(err: ErrorDetails, loc: Sequence[int | str], root: Any = None,
               where: Callable[[Sequence[int | str]], str] = loc_text) -> str:
    """One error as 'where: what', with the offending value when pydantic's message does not name it."""
    kind = err["type"]
    parent, last = loc[:-1], (loc[-1] if loc else None)
    if kind == "missing":
        return f"{where(parent)}: missing required field {last!r}"
    if kind == "extra_forbidden":
        return f"{where(parent)}: unknown field {last!r}{_allowed(root, parent, str(last))}"
    ctx = err.get("ctx") or {}
    if kind in ("union_tag_invalid", "union_tag_not_found"):  # the field that picks the model (kind)
        key = str(ctx.get("discriminator", "")).strip("'")
        if kind == "union_tag_not_found":
            return f"{where(loc)}: missing required field {key!r}"
        tags = ", ".join(sorted(str(ctx.get("expected_tags", "")).replace("'", "").split(", ")))
        return f"{where(loc)}: field {key!r} must be one of {tags} (got {ctx.get('tag')!r})"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        # a check of a whole file (no location) names its place in its message
        return f"{where(loc)}: {ctx['error']}" if loc else str(ctx["error"])
    if kind in ("too_short", "too_long"):
        return f"{where(loc)}: {err['msg']}"
    return f"{where(loc)}: {err['msg']}, got {_short(err.get('input'))}"


def _inner_model(tp: Any) -> type[BaseModel] | None:
    """The model class inside an annotation such as list[Model] | None."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in get_args(tp):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _model_at(model: type[BaseModel] | None, loc: Sequence[int | str]) -> type[BaseModel] | None:
    for part in loc:
        if model is None:
            return None
        if isinstance(part, str):
            field = model.model_fields.get(part)
            model = _inner_model(field.annotation) if field is not None else None
    return model


def _allowed(root: Any, parent: Sequence[int | str], name: str) -> str:
    model = _model_at(root, parent) if isinstance(root, type) and issubclass(root, BaseModel) else None
    if model is None:
        return ""
    fields = [info.alias or key for key, info in model.model_fields.items()]
    if len(fields) <= 12:
        return f" (allowed: {', '.join(fields)})"
    close = difflib.get_close_matches(name, fields, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
