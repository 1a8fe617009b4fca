"""``guardvl moderate``: a guard over an unlabelled JSONL batch, one verdict per line, resumable.

Each input line is a JSON object with the fields of :class:`~guardvl_sdk.checks.CheckInput`:
``text`` (or ``request``), ``image`` / ``images`` (paths relative to the input file, or ``data:``
URLs), ``response``, or ``messages`` (an OpenAI-format conversation, judged alone), and an
optional ``id`` copied to the output. Any other field is refused, so nothing a line holds goes
unchecked by mistake. Blank lines are skipped.

Each output line is ``{"line": N, "id": ..., "blocked": bool, "verdict": {...}}``, or with
``"error"`` instead of ``"verdict"`` for a line that could not be checked (it counts as blocked:
nothing unchecked passes). Lines are appended as their batch finishes; run the same command again
after an interruption and only the lines without a result are checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardvl_sdk.checks import CheckInput
from guardvl_sdk.errors import InvalidInputError

if TYPE_CHECKING:
    from guardvl_sdk.guard import Guard

__all__ = ["FIELDS", "Item", "Tally", "moderate", "read_items", "tally"]

FIELDS = ("id", "text", "request", "image", "images", "response", "messages")
"""The fields an input line may have."""


@dataclass(frozen=True)
class Item:
    """One input line: what to check, or why it cannot be checked."""

    line: int
    id: Any
    check: CheckInput | None
    error: str | None = None


@dataclass(frozen=True)
class Tally:
    """What an output file holds.

    Attributes:
        items: Lines with a result.
        blocked: Of them, blocked (unreadable lines included).
        errors: Lines that could not be checked.
    """

    items: int
    blocked: int
    errors: int


def read_items(path: Path) -> list[Item]:
    """Read and validate every line of ``path`` (before any model loads).

    Raises:
        InvalidInputError: ``path`` is not a readable file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc
    items = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            items.append(_item(number, raw, path.parent))
    return items


def _item(number: int, raw: str, base: Path) -> Item:
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        return Item(number, None, None, f"not JSON: {exc}")
    if not isinstance(row, dict):
        return Item(number, None, None, "not a JSON object")
    ident = row.get("id")
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        return Item(number, ident, None, f"unknown fields {unknown}; accepted: {list(FIELDS)}")
    try:
        return Item(number, ident, _check_input(row, base))
    except InvalidInputError as exc:
        return Item(number, ident, None, str(exc))


def _check_input(row: dict[str, Any], base: Path) -> CheckInput:
    if "text" in row and "request" in row:
        raise InvalidInputError("give 'text' or 'request', not both")
    text = row.get("text", row.get("request"))
    if "image" in row and "images" in row:
        raise InvalidInputError("give 'image' or 'images', not both")
    images = row.get("images", row.get("image"))
    images = [images] if isinstance(images, str) else images
    response, messages = row.get("response"), row.get("messages")
    for name, value in (("text", text), ("response", response)):
        if value is not None and not isinstance(value, str):
            raise InvalidInputError(f"'{name}' must be a string")
    if images is not None and not (
        isinstance(images, list) and all(isinstance(i, str) for i in images)
    ):
        raise InvalidInputError("'images' must be a path or data: URL, or a list of them")
    if messages is not None:
        if text is not None or images:
            raise InvalidInputError("give 'messages' or 'text' and 'images', not both")
        if not isinstance(messages, list):
            raise InvalidInputError("'messages' must be a list of chat messages")
        return CheckInput(messages=messages, response=response, memory=False)
    paths = [_image_path(i, base) for i in images or []]
    if not (text or "").strip() and not paths:
        raise InvalidInputError("nothing to check: no text, images or messages")
    return CheckInput(text, paths or None, response=response)


def _image_path(image: str, base: Path) -> str:
    if image.startswith("data:"):
        return image
    path = Path(image) if Path(image).is_absolute() else base / image
    if not path.is_file():
        raise InvalidInputError(f"no such image file: {path}")
    return str(path)


def done_lines(out: Path) -> set[int]:
    """The input lines ``out`` already has a result for; drops a torn last line."""
    if not out.is_file():
        return set()
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    done, kept = set(), 0
    for raw in lines:
        try:
            done.add(int(json.loads(raw)["line"]))
        except (ValueError, KeyError, TypeError):
            break  # an interrupted write: everything from here is redone
        kept += len(raw.encode("utf-8"))
    with out.open("rb+") as handle:
        handle.truncate(kept)
    return done


def moderate(
    guard: Guard, items: Sequence[Item], out: Path, *, batch_size: int = 8, progress: bool = True
) -> int:
    """Check the ``items`` ``out`` has no result for; append one result line each.

    Returns:
        How many items this run checked (or recorded as unreadable).
    """
    from tqdm.auto import tqdm

    done = done_lines(out)
    todo = [item for item in items if item.line not in done]
    with (
        out.open("a", encoding="utf-8") as handle,
        tqdm(total=len(todo), desc="moderating", unit="item", disable=not progress) as bar,
    ):
        for chunk in _chunks(todo, batch_size):
            checkable = [item for item in chunk if item.check is not None]
            results = guard.check_batch(
                [item.check for item in checkable if item.check is not None],
                return_exceptions=True,
            )
            by_line: dict[int, Any] = {
                item.line: result for item, result in zip(checkable, results, strict=True)
            }
            for item in chunk:
                handle.write(json.dumps(_result(item, by_line.get(item.line))) + "\n")
            handle.flush()
            bar.update(len(chunk))
    return len(todo)


def _result(item: Item, outcome: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"line": item.line, "id": item.id}
    if item.error is not None or isinstance(outcome, BaseException):
        error = item.error or f"{type(outcome).__name__}: {outcome}"
        return {**record, "blocked": True, "error": error}
    return {**record, "blocked": outcome.blocked, "verdict": outcome.model_dump(mode="json")}


def _chunks(items: Sequence[Item], size: int) -> Iterator[Sequence[Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def tally(out: Path) -> Tally:
    """Count the results in ``out``."""
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line]
    return Tally(
        items=len(rows),
        blocked=sum(bool(row["blocked"]) for row in rows),
        errors=sum("error" in row for row in rows),
    )
