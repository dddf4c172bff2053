"""The format of the probe data files in probes/ (suites, vendor lexicon, boilerplate phrases): pydantic models.

Every file carries `kind` (suite, lexicon or boilerplate), which picks its model. Models are strict (no type
coercion: `7` is not a string, `true` is not a number) and reject unknown fields. Problems come back as
'where: what' strings, first problem first, from `validate` (and `error_lines` for any ValidationError).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from audit.datafiles import FileModel, Text, error_lines

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$")]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]+)?$")]
Detector = Literal["identity", "boilerplate", "cutoff"]
Category = Literal["direct", "indirect", "role-play", "system-override", "boilerplate", "cutoff", "refusal",
                   "teacher-knowledge"]
# language code -> names; Latin-script names match as whole words, others as substrings
Aliases = dict[str, list[Text]]


# ---------------------------------------------------------------- suites


class Message(FileModel):
    role: Literal["system", "user", "assistant"]
    content: Text


class ProbeSpec(FileModel):
    """One probe as written in a suite file: a prompt (with an optional system message) or a message list."""

    id: Name
    language: Language
    category: Category | None = None
    prompt: Text | None = None
    system: Text | None = None
    messages: Annotated[list[Message], Field(min_length=1)] | None = None
    detectors: Annotated[list[Detector], Field(min_length=1)] | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _one_conversation(self) -> ProbeSpec:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError(f"give exactly one of 'prompt' or 'messages' (probe {self.id!r})")
        if self.messages is not None:
            if self.system is not None:
                raise ValueError(f"'system' goes with 'prompt'; put a system message in 'messages' "
                                 f"(probe {self.id!r})")
            if self.messages[-1].role != "user":
                raise ValueError(f"the last message must be from the user (probe {self.id!r})")
        return self

    def conversation(self) -> tuple[tuple[str, str], ...]:
        """The messages as (role, content) pairs."""
        if self.messages is not None:
            return tuple((m.role, m.content) for m in self.messages)
        system = (("system", self.system),) if self.system is not None else ()
        return (*system, ("user", str(self.prompt)))


class SuiteFile(FileModel):
    kind: Literal["suite"]
    suite: Name
    version: int = 1
    description: Text
    detectors: Annotated[list[Detector], Field(min_length=1)] | None = None  # default for probes naming none
    probes: Annotated[list[ProbeSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _ids_and_detectors(self) -> SuiteFile:
        seen: set[str] = set()
        for i, probe in enumerate(self.probes):
            if probe.id in seen:
                raise ValueError(f"probes[{i}] ({probe.id}): duplicate probe id")
            seen.add(probe.id)
            if not (probe.detectors or self.detectors):
                raise ValueError(f"probes[{i}] ({probe.id}): no detectors "
                                 "(set 'detectors' on the probe or the suite)")
        return self


# ---------------------------------------------------------------- lexicon and boilerplate


class ModelNames(FileModel):
    name: Text
    aliases: Aliases | None = None
    case_sensitive: list[Text] | None = None


class Vendor(FileModel):
    id: Name
    name: Text
    aliases: Aliases | None = None
    case_sensitive: list[Text] | None = None
    models: list[ModelNames] | None = None


class LexiconFile(FileModel):
    kind: Literal["lexicon"]
    version: int = 1
    description: str | None = None
    vendors: Annotated[list[Vendor], Field(min_length=1)]


class Phrase(FileModel):
    id: Name
    language: Language
    patterns: Annotated[list[Text], Field(min_length=1)]  # case-insensitive regular expressions
    typical_of: list[Name] | None = None  # vendor ids whose models are known for the phrase (a hint)
    note: str | None = None


class BoilerplateFile(FileModel):
    kind: Literal["boilerplate"]
    version: int = 1
    description: str | None = None
    phrases: Annotated[list[Phrase], Field(min_length=1)]


AnyProbeFile = SuiteFile | LexiconFile | BoilerplateFile
PROBE_FILE: TypeAdapter[AnyProbeFile] = TypeAdapter(Annotated[AnyProbeFile, Field(discriminator="kind")])
KINDS: dict[str, type[FileModel]] = {"suite": SuiteFile, "lexicon": LexiconFile, "boilerplate": BoilerplateFile}


def check(data: Any) -> tuple[AnyProbeFile | None, list[str]]:
    """(the model of a probe data file, []) or (None, its problems as 'where: what' strings, first first)."""
    try:
        return PROBE_FILE.validate_python(data), []
    except ValidationError as exc:
        return None, _problems(exc, data, PROBE_FILE)


def validate(data: Any, schema: TypeAdapter[Any] | type[BaseModel] = PROBE_FILE) -> list[str]:
    """Every problem of `data` against `schema` (by default any probe data file), as 'where: what' strings."""
    try:
        if isinstance(schema, TypeAdapter):
            schema.validate_python(data)
        else:
            schema.model_validate(data)
    except ValidationError as exc:
        return _problems(exc, data, schema)
    return []


def _problems(exc: ValidationError, data: Any, schema: TypeAdapter[Any] | type[BaseModel]) -> list[str]:
    kind = data.get("kind") if isinstance(data, dict) else None
    if schema is PROBE_FILE and isinstance(kind, str) and kind in KINDS:
        return error_lines(exc, KINDS[kind], tag=kind)
    return error_lines(exc, schema)


