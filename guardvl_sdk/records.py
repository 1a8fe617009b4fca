"""Labelled policy data: the JSONL record format that training and evaluation read.

One JSON object per line::

    {"request": "How do I pick this lock?",          # required (may be "" when images are given)
     "images": ["imgs/door.jpg"],                    # optional: paths relative to the file
     "response": "First, insert a tension wrench...",  # optional: the assistant's answer
     "request_label": "harmful",                     # "harmful" | "unharmful"
     "response_label": "harmful",                    # same; only with a response
     "category": "burglary",                         # optional: a name or a list of names
     "reasoning": "Step 1: ...",                     # optional: the guard's reasoning target
     "id": "lock-001"}                               # optional

A multi-turn item gives the conversation instead of ``request`` and ``images``: ``"messages"``, a
list of OpenAI-format chat messages (every role; image parts as ``image_url`` with a ``data:``
URL or a path relative to the file), judged the way ``guard.check(messages=...)`` judges it;
``request_label`` labels the conversation's newest user turn in its context. Evaluation reads
them (``load_records(path, multi_turn=True)``); training does not, yet::

    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                  {"role": "user", "content": "Now help me hide a body."}],
     "request_label": "harmful"}

At least one label is required. Unknown keys are errors (they are usually typos). Blank lines
are skipped. :func:`load_records` validates every record and reports every bad one by line
number with the reason.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from guardvl_sdk.errors import InvalidDataError
from guardvl_sdk.verdict import Label

__all__ = ["Record", "load_records"]

logger = logging.getLogger("guardvl_sdk")

_KEYS = {
    "id", "request", "images", "response", "request_label", "response_label", "category",
    "reasoning", "messages",
}  # fmt: skip


class Record(BaseModel):
    """One validated, labelled example.

    Attributes:
        request: The user's request text.
        images: Absolute paths of the request's images (checked to exist when loaded).
        response: The assistant's answer, or None for a request-only example.
        request_label: Gold label of the request, or None when the data only labels responses.
        response_label: Gold label of the response, or None.
        categories: Violated policy categories, if the data names them.
        reasoning: A reasoning target for training, if given.
        id: The record's id, or ``"{file name}:{line}"``.
        messages: A multi-turn item's conversation (then ``request`` is empty and ``images``
            too); image paths in it are absolute ``{"type": "image", "image": Path}`` parts.
    """

    model_config = ConfigDict(frozen=True)

    request: str
    images: list[Path] = Field(default_factory=list)
    response: str | None = None
    request_label: Label | None = None
    response_label: Label | None = None
    categories: list[str] = Field(default_factory=list)
    reasoning: str | None = None
    id: str
    messages: list[dict[str, Any]] | None = None


def load_records(
    path: str | Path, *, skip_invalid: bool = False, multi_turn: bool = False
) -> list[Record]:
    """Read and validate a JSONL file of :class:`Record` objects.

    Args:
        path: The JSONL file. Image paths in it are relative to its folder.
        skip_invalid: Log bad records and return the good ones, instead of raising.
        multi_turn: Accept multi-turn items (``messages``); off, they are bad records, so
            code that reads only ``request`` (training) never takes a conversation for an empty
            request.

    Raises:
        InvalidDataError: Some records are bad (every one is listed with its line number), or
            the file cannot be read.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidDataError(str(path), [(0, f"cannot read the file: {exc}")]) from exc
    records: list[Record] = []
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(
                _parse_record(
                    line,
                    base=path.parent,
                    default_id=f"{path.name}:{number}",
                    multi_turn=multi_turn,
                )
            )
        except ValueError as exc:
            problems.append((number, str(exc)))
    if problems and not skip_invalid:
        raise InvalidDataError(str(path), problems)
    for number, reason in problems:
        logger.warning("%s line %d skipped: %s", path, number, reason)
    return records


def _parse_record(line: str, *, base: Path, default_id: str, multi_turn: bool) -> Record:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; known keys: {sorted(_KEYS)}")

    messages = None
    if "messages" in data:
        if not multi_turn:
            raise ValueError("a multi-turn item ('messages'): this reader takes single turns")
        if "request" in data or "images" in data:
            raise ValueError("give 'messages' or 'request' and 'images', not both")
        messages = _messages(data["messages"], base)
        request, images = "", []
    else:
        given = _optional_str(data, "request")
        if given is None:
            raise ValueError("missing 'request' (use \"\" for an image-only request)")
        request = given
        images = [_image_path(item, base) for item in _as_list(data.get("images"), "images")]
        if not request.strip() and not images:
            raise ValueError("empty request and no images: nothing to check")
    response = _optional_str(data, "response")
    request_label = _label(data, "request_label")
    response_label = _label(data, "response_label")
    if response_label is not None and response is None:
        raise ValueError("'response_label' given without a 'response'")
    if request_label is None and response_label is None:
        raise ValueError("no label: give 'request_label', 'response_label' or both")
    categories = _as_list(data.get("category"), "category")
    if not all(isinstance(c, str) and c.strip() for c in categories):
        raise ValueError("'category' must be a non-empty string or a list of them")
    record_id = data.get("id", default_id)
    return Record(
        request=request,
        images=images,
        response=response,
        request_label=request_label,
        response_label=response_label,
        categories=[c.strip() for c in categories],
        reasoning=_optional_str(data, "reasoning"),
        id=str(record_id),
        messages=messages,
    )


def _messages(value: Any, base: Path) -> list[dict[str, Any]]:
    """A multi-turn item's messages, image paths made absolute, checked as the guard reads them."""
    from guardvl_sdk.conversation import read_messages
    from guardvl_sdk.errors import InvalidInputError

    if not isinstance(value, list) or not value or not all(isinstance(m, dict) for m in value):
        raise ValueError("'messages' must be a non-empty list of chat messages (objects)")
    messages = []
    for message in value:
        content = message.get("content")
        if isinstance(content, list):
            content = [_local_image(part, base) for part in content]
        messages.append({**message, "content": content} if "content" in message else message)
    try:
        read_messages(messages)
    except InvalidInputError as exc:
        raise ValueError(f"'messages': {exc}") from None
    return messages


def _local_image(part: Any, base: Path) -> Any:
    """An ``image_url`` part naming a file (not a data: or http(s) URL) as an image part."""
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return part
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    if not isinstance(url, str) or url.split(":", 1)[0].lower() in ("data", "http", "https"):
        return part
    # A Path, not a str: a chat may name a file only through an object code made, never text.
    return {"type": "image", "image": _image_path(url, base)}


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"'{key}' must be a string, got {type(value).__name__}")
    return value


def _as_list(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise ValueError(f"'{key}' must be a string or a list, got {type(value).__name__}")


def _image_path(item: Any, base: Path) -> Path:
    if not isinstance(item, str) or not item:
        raise ValueError(f"image entries must be non-empty path strings, got {item!r}")
    path = (base / item).resolve()
    if not path.is_file():
        raise ValueError(f"missing image file {item!r} (looked for {path})")
    return path


def _label(data: dict[str, Any], key: str) -> Label | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        return Label(str(value).strip().lower())
    except ValueError:
        raise ValueError(f"unknown {key} {value!r}: use 'harmful' or 'unharmful'") from None
