"""What one check shows the guard: its parts loaded, hashed, laid out, and listed in a receipt.

:func:`inspect_parts` turns the parts of a check (a conversation's, or a single request's) into
the request text, images and response the policy renders, and the receipt
(:attr:`~guardvl_sdk.verdict.Verdict.inspected`) that lists every part exactly once. An image
given encoded (bytes or a ``data:`` URL) is only hashed there: it is decoded by
:meth:`Inspection.load`, once the guard knows it has to be judged, so a verdict-cache hit
(:meth:`Inspection.recall`) never decodes, resizes or hashes its pixels.
:class:`ConversationMemory` is what makes a growing conversation cheap: a part already judged
allowed in the same conversation is not sent again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from guardvl_sdk.audit import content_hash, image_hash
from guardvl_sdk.conversation import Part, render_answer, render_conversation
from guardvl_sdk.errors import InvalidInputError
from guardvl_sdk.verdict import InspectedPart

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["ConversationMemory", "Inspection", "Unreadable", "inspect_parts"]

Unreadable = Literal["raise", "block", "allow"]


class ConversationMemory:
    """A thread-safe, bounded map of the conversation parts a guard already judged allowed.

    A part is keyed by a hash chained over every part before it, so it counts as judged only
    after exactly the same conversation so far: the same text elsewhere is judged again. The
    value is the part's receipt entry from when it was judged, so an image judged earlier is not
    even decoded again.

    Args:
        maxsize: Most parts kept; the least recently used is dropped first.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._parts: OrderedDict[str, InspectedPart] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> InspectedPart | None:
        """The receipt entry of a part judged earlier, or None."""
        with self._lock:
            part = self._parts.get(key)
            if part is not None:
                self._parts.move_to_end(key)
            return part

    def add(self, parts: Iterable[tuple[str, InspectedPart]]) -> None:
        """Remember parts (by key) as judged."""
        with self._lock:
            for key, part in parts:
                self._parts[key] = part
                self._parts.move_to_end(key)
            while len(self._parts) > self.maxsize:
                self._parts.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._parts)


@dataclass(frozen=True)
class _Sent:
    """An image the check sends: where its receipt entry is, its key, and its pixels once
    decoded (None while an encoded source waits for :meth:`Inspection.load`)."""

    entry: int
    key: str
    source: Any
    image: Image.Image | None


@dataclass(frozen=True)
class Inspection:
    """The content of one check, ready for the policy, with its receipt.

    Attributes:
        text: The request slot's text.
        response: The response slot's text, or None for a request check.
        receipt: Every part, once, in order.
        uninspected: What could not be read, one line per part (empty when all was read).
    """

    text: str
    response: str | None
    receipt: tuple[InspectedPart, ...]
    uninspected: tuple[str, ...]
    _sent: tuple[_Sent, ...] = ()
    _memory: tuple[tuple[str, int], ...] = ()  # (memory key, receipt index) of each part sent
    _load: Callable[[Any], Image.Image] | None = field(default=None, repr=False, compare=False)

    @property
    def images(self) -> tuple[Image.Image, ...]:
        """The images sent, within the pixel budget, in order (after :meth:`load`)."""
        images = tuple(sent.image for sent in self._sent if sent.image is not None)
        if len(images) != len(self._sent):
            raise RuntimeError("the check's images are not loaded yet: call load() first")
        return images

    @property
    def image_keys(self) -> tuple[str, ...]:
        """One key per image sent, known before decoding: ``encoded:`` and the hash of its
        encoding, or the hash of its pixels for an image given decoded (or from a file)."""
        return tuple(sent.key for sent in self._sent)

    @property
    def seen(self) -> tuple[InspectedPart, ...]:
        """The receipt entry of each image sent: its size as the guard saw it and its pixel hash
        (after :meth:`load` or :meth:`recall`)."""
        return tuple(self.receipt[sent.entry] for sent in self._sent)

    @property
    def keys(self) -> tuple[tuple[str, InspectedPart], ...]:
        """The parts to remember (by conversation-memory key) once the check is allowed."""
        return tuple((key, self.receipt[index]) for key, index in self._memory)

    def load(self) -> Inspection:
        """This inspection with every image decoded, within the pixel budget, and its pixels
        hashed into the receipt.

        Raises:
            InvalidInputError: An image cannot be decoded or is over a bound.
        """
        if self._load is None or all(sent.image is not None for sent in self._sent):
            return self
        receipt, sent = list(self.receipt), []
        for item in self._sent:
            image = item.image
            if image is None:
                image = self._load(item.source)
                fields = {"width": image.width, "height": image.height, "sha256": image_hash(image)}
                receipt[item.entry] = receipt[item.entry].model_copy(update=fields)
            sent.append(replace(item, image=image))
        return replace(self, receipt=tuple(receipt), _sent=tuple(sent))

    def recall(self, seen: Sequence[InspectedPart]) -> Inspection:
        """This inspection with the receipt's image entries (size and pixel hash) taken from
        :attr:`seen` of an earlier check of the same content (a verdict-cache hit), without
        decoding anything."""
        if len(seen) != len(self._sent):
            raise ValueError(f"{len(seen)} images recalled for {len(self._sent)} sent")
        receipt = list(self.receipt)
        for item, facts in zip(self._sent, seen, strict=True):
            fields = {"width": facts.width, "height": facts.height, "sha256": facts.sha256}
            receipt[item.entry] = receipt[item.entry].model_copy(update=fields)
        return replace(self, receipt=tuple(receipt))


def inspect_parts(
    parts: Sequence[Part],
    answer: Sequence[Part] | None,
    *,
    load_image: Callable[[Any], Image.Image],
    can_fetch: bool,
    unreadable: Unreadable,
    memory: ConversationMemory | None,
    conversation: bool,
) -> Inspection:
    """Load, hash and lay out the parts of one check; see the module docstring.

    Args:
        parts: The request's parts (a conversation's, in order).
        answer: The answer's parts for an output check, else None.
        load_image: Loads one image source within the pixel budget.
        can_fetch: Whether http(s) image URLs are fetched (else they are unreadable).
        unreadable: ``"raise"``: content the guard cannot read raises ``InvalidInputError``.
            ``"block"`` / ``"allow"``: it is listed as not inspected (and the guard blocks, or
            not).
        memory: Parts already judged in this conversation are not sent again (None: all are).
        conversation: The parts came from chat messages (the receipt names their message).

    Raises:
        InvalidInputError: Unreadable content under ``unreadable="raise"``, or nothing to check.
    """
    chain = ""
    entries: list[Part | int] = []  # what is sent, runs already judged as their count
    sent: list[_Sent] = []
    numbers: dict[int, int] = {}
    receipt: list[InspectedPart] = []
    memorised: list[tuple[str, int]] = []
    uninspected: list[str] = []
    users = [p.message for p in parts if p.role == "user"]
    newest = users[-1] if users else None
    for index, part in enumerate([*parts, *(answer or ())]):
        is_answer = index >= len(parts)
        reason = part.unreadable
        if part.kind == "image" and _is_url(part.image) and not can_fetch:
            reason = "remote image URLs are not fetched unless you turn it on (fetch_images=True)"
        elif part.kind == "image" and is_answer:
            reason = "cannot check an image in the answer (the guard judges answers as text)"
        where = f"messages[{part.message}] ({part.role})" if conversation else part.role
        if reason is not None:
            if unreadable == "raise":
                raise InvalidInputError(f"{where}: {reason}")
            uninspected.append(f"{where}: {reason}")
            source = content_hash(part.source or str(part.image))
            chain = _chain(chain, part, source)
            receipt.append(
                _receipt(part, source, conversation, status="not_inspected", reason=reason)
            )
            continue
        # An encoded image is keyed by its encoding and decoded only when sent (Inspection.load).
        image = None
        sha = _encoded_hash(part.image) if part.kind == "image" else _text_hash(part)
        if sha is None:
            image = load_image(part.image)
            sha = image_hash(image)
        chain = _chain(chain, part, sha)
        skippable = memory is not None and not is_answer and part.message != newest
        earlier = memory.get(chain) if memory is not None and skippable else None
        if earlier is not None:
            receipt.append(earlier.model_copy(update={"status": "earlier"}))
            if entries and isinstance(entries[-1], int):
                entries[-1] += 1
            else:
                entries.append(1)
            continue
        # The receipt names the pixels the guard saw: an encoded image's entry is filled in by
        # Inspection.load (or recall), its width still None until then.
        receipt.append(_receipt(part, sha, conversation, image))
        if memory is not None:
            memorised.append((chain, len(receipt) - 1))
        if is_answer:
            continue
        if part.kind == "image":
            sent.append(_Sent(len(receipt) - 1, sha, part.image, image))
            numbers[len(entries)] = len(sent)
        entries.append(part)
    text, _ = render_conversation(entries, numbers)
    response = None
    if answer is not None:
        response = render_answer([p for p in answer if p.kind != "image" and not p.unreadable])
    if not text.strip() and not sent:
        raise InvalidInputError("nothing to check: give request text, an image, or both")
    return Inspection(
        text,
        response,
        tuple(receipt),
        tuple(uninspected),
        tuple(sent),
        tuple(memorised),
        load_image,
    )


def _is_url(source: Any) -> bool:
    return isinstance(source, str) and source.split("://", 1)[0].lower() in ("http", "https")


def _chain(chain: str, part: Part, sha: str) -> str:
    """The memory key of a part: its hash chained onto the key of the part before it."""
    return hashlib.sha256(f"{chain}\x00{part.kind}\x00{part.role}\x00{sha}".encode()).hexdigest()


def _text_hash(part: Part) -> str:
    if part.kind == "tool_call":
        return content_hash(f"{part.name}\x00{part.text}")
    return content_hash(part.text or "")


def _encoded_hash(source: Any) -> str | None:
    """A hash of an image's encoding (a data: URL or bytes); None for other sources (a PIL
    image, an array, a path whose file may change), which are hashed by their pixels."""
    if isinstance(source, str) and source[:5].lower() == "data:":
        return "encoded:" + content_hash(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return "encoded:" + content_hash(bytes(source))
    return None


def _receipt(
    part: Part,
    sha: str,
    conversation: bool,
    image: Image.Image | None = None,
    status: str | None = None,
    reason: str | None = None,
) -> InspectedPart:
    return InspectedPart.model_validate(
        {
            "kind": part.kind,
            "role": part.role,
            "message": part.message if conversation else None,
            "offset": part.offset,
            "chars": None if part.text is None else len(part.text),
            "width": image.width if image is not None else None,
            "height": image.height if image is not None else None,
            "sha256": sha,
            "status": status or "inspected",
            "reason": reason,
        }
    )
