"""What a checkpoint ships about itself, read without executing anything: the model card (YAML front matter and
prose), config.json, generation_config.json, tokenizer_config.json (chat template, special tokens),
adapter_config.json, GGUF `general.*` metadata, safetensors `__metadata__`, and the first lines of LICENSE /
NOTICE / USE_POLICY files.

This is the bottom layer of "claims vs evidence": it only reads and bounds (regular files only, size caps, the
YAML safe loader with alias and depth limits); what the files *claim* is worked out in `audit.claims.declared`.
A file that cannot be used (too big, a FIFO, malformed YAML or JSON) becomes a warning `Note` in the result,
never an error: declarations are context, and a broken card must not stop an audit of the weights.

Where the files are: `Checkpoint.folder` (an HF folder, the folder beside a single .safetensors / .gguf file, an
adapter folder, or, for `hf:` references, the HF-cache snapshot folder that `audit.checkpoint.hub` downloaded
the card, config and licence into; nothing more is fetched here). GGUF and safetensors metadata come from the
weight files' headers, through the checkpoint's own byte sources for Hub files (their headers were already
fetched to open the checkpoint, and sit in the range cache).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.checkpoint.model import Checkpoint
from audit.checkpoint.source import ByteSource, LocalFileSource
from audit.errors import InputError
from audit.safeio import display_path, is_regular_file, loads_json, loads_yaml, read_bytes

KiB = 1 << 10
MiB = 1 << 20
MAX_CARD_BYTES = 1 * MiB  # a README.md larger than this is not read at all
MAX_FRONT_MATTER_BYTES = 64 * KiB  # front matter larger than this is not parsed (the prose is still read)
MAX_JSON_BYTES = 16 * MiB  # config / generation config / tokenizer config / adapter config
MAX_TEMPLATE_CHARS = 64 * KiB  # a chat template kept for scanning
MAX_LICENCE_BYTES = 1 * MiB
LICENCE_LINES = 60  # first lines kept of each licence / notice file
MAX_TEXT_CHARS = 4 * KiB  # a GGUF / safetensors metadata string kept
MAX_SPECIAL_TOKENS = 4096  # special-token strings kept from tokenizer_config.json
MAX_SAFETENSORS_HEADER = 32 * MiB
MAX_WEIGHT_FILES = 8  # weight-file headers read for metadata (shards of one model carry the same metadata)

CARD = "README.md"
LICENCE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "LICENCE.txt", "LICENCE.md", "NOTICE",
                 "NOTICE.txt", "NOTICE.md", "USE_POLICY.md")
#: Small files beside a model that its declarations are read from (a batch's cache key covers them).
SIBLING_FILES = (CARD, *LICENCE_FILES, "config.json", "generation_config.json", "tokenizer_config.json",
                 "chat_template.jinja", "adapter_config.json")
CONFIG_KEYS = ("_name_or_path", "architectures", "model_type")
GENERATION_KEYS = ("_from_model_config", "transformers_version", "bos_token_id", "eos_token_id", "pad_token_id")
TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")
ADAPTER_KEYS = ("base_model_name_or_path", "peft_type", "task_type", "revision")
_KEY_LINE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)\s*:")
_HUB_CACHE = re.compile(r"^models--([^/]+?)--([^/]+)$")


@dataclass(frozen=True)
class Note:
    """Something about the declared files the audit could not use, and why (a warning, not an error)."""

    file: str
    message: str
    level: str = "warning"

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass
class DeclaredFiles:
    """What a checkpoint ships about itself, as read (no interpretation)."""

    model: str = ""  # the checkpoint's name (record subject name)
    repo_id: str | None = None  # its Hub id, when known (hf: reference or HF-cache snapshot)
    folder: Path | None = None  # where the small files were read from
    front_matter: dict[str, Any] = field(default_factory=dict)  # README.md YAML front matter (safe-loaded)
    front_matter_lines: dict[str, int] = field(default_factory=dict)  # top-level key -> 1-based line in README.md
    front_matter_text: list[tuple[int, str]] = field(default_factory=list)  # (line, text) of the front matter
    prose: list[tuple[int, str]] = field(default_factory=list)  # (1-based line, text) of the card body
    config: dict[str, Any] = field(default_factory=dict)  # config.json: CONFIG_KEYS present
    generation_config: dict[str, Any] = field(default_factory=dict)  # generation_config.json: GENERATION_KEYS
    chat_templates: dict[str, str] = field(default_factory=dict)  # name ('default', 'tool_use', ...) -> template
    chat_template_file: str | None = None  # where the templates were read (tokenizer_config.json, chat_template.jinja)
    special_tokens: list[str] = field(default_factory=list)  # special-token strings of tokenizer_config.json
    adapter_config: dict[str, Any] = field(default_factory=dict)  # adapter_config.json: ADAPTER_KEYS present
    gguf: dict[str, str] = field(default_factory=dict)  # GGUF general.* string metadata
    gguf_file: str | None = None
    safetensors_metadata: dict[str, dict[str, str]] = field(default_factory=dict)  # file name -> __metadata__
    licence_files: dict[str, list[str]] = field(default_factory=dict)  # file name -> first LICENCE_LINES lines
    texts: dict[str, str] = field(default_factory=dict)  # README.md and licence/notice text, for licence clauses
    sources: list[str] = field(default_factory=list)  # files and metadata read, in reading order
    notes: list[Note] = field(default_factory=list)  # what could not be used, and why

    def note(self, file: str, message: str) -> None:
        self.notes.append(Note(file, message))


def read_declared_files(ckpt: Checkpoint) -> DeclaredFiles:
    """Everything `ckpt` declares about itself that its files hold (sizes capped, nothing executed)."""
    out = DeclaredFiles(model=ckpt.name, repo_id=hub_repo_id(ckpt), folder=ckpt.folder)
    folder = ckpt.folder
    if folder is not None and folder.is_dir():
        _read_card(folder, out)
        cfg = _json_object(folder, "config.json", out)
        out.config = {k: cfg[k] for k in CONFIG_KEYS if k in cfg}
        gen = _json_object(folder, "generation_config.json", out)
        out.generation_config = {k: gen[k] for k in GENERATION_KEYS if k in gen}
        _read_tokenizer_config(folder, out)
        adapter = _json_object(folder, "adapter_config.json", out)
        out.adapter_config = {k: adapter[k] for k in ADAPTER_KEYS if k in adapter}
        _read_licences(folder, out)
    _read_weight_metadata(ckpt, out)
    return out


def hub_repo_id(ckpt: Checkpoint) -> str | None:
    """The checkpoint's Hub id: from an `hf:` path, or an HF-cache snapshot folder (models--ORG--NAME)."""
    path = str(ckpt.path)
    if path.startswith("hf:"):
        parts = path[3:].split("@", 1)[0].split("/")
        return "/".join(parts[:2]) if len(parts) >= 2 else None
    folder = ckpt.folder
    if folder is not None and folder.parent.name == "snapshots":
        m = _HUB_CACHE.match(folder.parent.parent.name)
        if m:
            return f"{m.group(1)}/{m.group(2)}"
    return None


# ---------------------------------------------------------------------------------------------- small files


def _read_file(folder: Path, name: str, max_bytes: int, out: DeclaredFiles) -> bytes | None:
    """The bytes of folder/name, or None (absent; or a note saying why it was skipped)."""
    path = folder / name
    if not path.exists() and not path.is_symlink():
        return None
    if not is_regular_file(path):
        out.note(name, "skipped: not a regular file (a FIFO, socket, device or directory)")
        return None
    try:
        data = read_bytes(path, max_bytes, name)
    except InputError as exc:
        out.note(name, f"skipped: {_reason(exc, path)}")
        return None
    out.sources.append(name)
    return data


def _reason(exc: InputError, path: Path) -> str:
    text = str(exc)
    prefix = display_path(path) + ": "
    return text[len(prefix):] if text.startswith(prefix) else text


def _decode(data: bytes, name: str, out: DeclaredFiles) -> str | None:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        out.note(name, f"skipped: not UTF-8 text (byte {exc.start})")
        return None


def _json_object(folder: Path, name: str, out: DeclaredFiles) -> dict[str, Any]:
    data = _read_file(folder, name, MAX_JSON_BYTES, out)
    if data is None:
        return {}
    try:
        value = loads_json(data, folder / name)
    except InputError as exc:
        out.note(name, f"not used: {_reason(exc, folder / name)}")
        return {}
    if not isinstance(value, dict):
        out.note(name, f"not used: expected a JSON object, found {type(value).__name__}")
        return {}
    return value


def _read_card(folder: Path, out: DeclaredFiles) -> None:
    data = _read_file(folder, CARD, MAX_CARD_BYTES, out)
    text = _decode(data, CARD, out) if data is not None else None
    if text is None:
        return
    out.texts[CARD] = text
    lines = text.splitlines()
    body_start = 0
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is None:
            out.note(CARD, "front matter opened with '---' is never closed: read as prose")
        else:
            body_start = end + 1
            _parse_front_matter(lines[1:end], out)
    out.prose = [(i + 1, line) for i, line in enumerate(lines) if i >= body_start]


def _parse_front_matter(lines: list[str], out: DeclaredFiles) -> None:
    """YAML front matter (lines 2.. of README.md) into out.front_matter; a note when it cannot be used."""
    fm = "\n".join(lines)
    out.front_matter_text = [(i + 2, line) for i, line in enumerate(lines)]
    if len(fm.encode("utf-8")) > MAX_FRONT_MATTER_BYTES:
        out.note(CARD, f"front matter of {len(fm.encode('utf-8')):,} bytes, more than {MAX_FRONT_MATTER_BYTES:,}: "
                       "not parsed")
        out.front_matter_text = []
        return
    try:
        value = loads_yaml(fm, f"{CARD} front matter")
    except InputError as exc:
        out.note(CARD, f"front matter not used: {_reason(exc, Path(f'{CARD} front matter'))}")
        return
    if value is None:
        return
    if not isinstance(value, dict):
        out.note(CARD, f"front matter not used: expected a mapping of keys, found {type(value).__name__}")
        return
    out.front_matter = {str(k): v for k, v in value.items()}
    for line_no, line in out.front_matter_text:
        m = _KEY_LINE.match(line)
        if m and m.group(1) not in out.front_matter_lines:
            out.front_matter_lines[m.group(1)] = line_no


def _read_tokenizer_config(folder: Path, out: DeclaredFiles) -> None:
    cfg = _json_object(folder, "tokenizer_config.json", out)
    template = cfg.get("chat_template")
    if isinstance(template, str):
        out.chat_templates["default"] = template[:MAX_TEMPLATE_CHARS]
    elif isinstance(template, list):  # [{name, template}, ...]
        for item in template[:64]:
            if isinstance(item, dict) and isinstance(item.get("template"), str):
                out.chat_templates[str(item.get("name", "default"))[:100]] = item["template"][:MAX_TEMPLATE_CHARS]
    if out.chat_templates:
        out.chat_template_file = "tokenizer_config.json"
    jinja = _read_file(folder, "chat_template.jinja", MAX_JSON_BYTES, out)
    text = _decode(jinja, "chat_template.jinja", out) if jinja is not None else None
    if text is not None and "default" not in out.chat_templates:
        out.chat_templates["default"] = text[:MAX_TEMPLATE_CHARS]
        out.chat_template_file = "chat_template.jinja"
    tokens: list[str] = []
    for key in TOKEN_KEYS:
        tokens += _token_strings(cfg.get(key))
    extra = cfg.get("additional_special_tokens")
    if isinstance(extra, list):
        for item in extra[:MAX_SPECIAL_TOKENS]:
            tokens += _token_strings(item)
    decoder = cfg.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        for item in list(decoder.values())[:MAX_SPECIAL_TOKENS]:
            if isinstance(item, dict) and item.get("special") is True:
                tokens += _token_strings(item)
    out.special_tokens = list(dict.fromkeys(t[:200] for t in tokens))[:MAX_SPECIAL_TOKENS]


def _token_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return [value["content"]]
    return []


def _read_licences(folder: Path, out: DeclaredFiles) -> None:
    for name in LICENCE_FILES:
        data = _read_file(folder, name, MAX_LICENCE_BYTES, out)
        text = _decode(data, name, out) if data is not None else None
        if text is None:
            continue
        lines = text.splitlines()[:LICENCE_LINES]
        out.licence_files[name] = lines
        out.texts[name] = "\n".join(lines)


# ---------------------------------------------------------------------------------------------- weight headers


def _weight_sources(ckpt: Checkpoint) -> list[tuple[str, ByteSource]]:
    """(file name, byte source) of each weight file (at most MAX_WEIGHT_FILES): local files opened afresh (so
    the checkpoint's read counters are untouched), Hub files through the checkpoint's own sources."""
    out: list[tuple[str, ByteSource]] = []
    seen: set[str] = set()
    for info in ckpt.tensors.values():
        if len(out) >= MAX_WEIGHT_FILES:
            break
        key = str(info.file)
        remote = key.startswith("hf:")
        plain = key.split("@", 1)[0] if remote else key
        if key in seen or info.name in ckpt.parts or not plain.endswith((".safetensors", ".gguf")):
            continue
        seen.add(key)
        if not remote:
            try:
                out.append((info.file.name, LocalFileSource(info.file)))
            except InputError:
                continue
        elif ckpt._layout is not None:
            try:
                src = ckpt._layout(info).source
            except (InputError, KeyError, ValueError):
                continue
            out.append((plain.rsplit("/", 1)[-1], src))
    return out


def _read_weight_metadata(ckpt: Checkpoint, out: DeclaredFiles) -> None:
    for name, src in _weight_sources(ckpt):
        if name.endswith(".gguf"):
            if out.gguf_file is None:
                _read_gguf(name, src, out)
        else:
            _read_safetensors_metadata(name, src, out)


def _read_gguf(name: str, src: ByteSource, out: DeclaredFiles) -> None:
    from audit.checkpoint.gguf_file import GGUFFile

    try:
        g = GGUFFile(src)
    except InputError as exc:
        out.note(name, f"GGUF metadata not read: {exc}")
        return
    out.gguf_file = name
    out.sources.append(f"GGUF metadata ({name})")
    out.gguf = {k: v[:MAX_TEXT_CHARS] for k, v in g.metadata.items() if k.startswith("general.") and isinstance(v, str)}


def _read_safetensors_metadata(name: str, src: ByteSource, out: DeclaredFiles) -> None:
    try:
        if src.size < 8:
            return
        (n,) = struct.unpack("<Q", bytes(src.read(0, 8)))
        if n > MAX_SAFETENSORS_HEADER or n + 8 > src.size:
            out.note(name, f"safetensors metadata not read: a header of {n:,} bytes")
            return
        header = loads_json(bytes(src.read(8, n)), name)
    except InputError as exc:
        out.note(name, f"safetensors metadata not read: {exc}")
        return
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if meta is None:
        return
    if not isinstance(meta, dict):
        out.note(name, "safetensors __metadata__ is not an object: not used")
        return
    out.safetensors_metadata[name] = {str(k)[:200]: v[:MAX_TEXT_CHARS] for k, v in list(meta.items())[:256]
                                      if isinstance(v, str)}
    out.sources.append(f"safetensors metadata ({name})")
