"""The value types of one guard check: what ``Guard.check_batch`` and the middleware pass around.

Below :mod:`guardvl_sdk.guard` and :mod:`guardvl_sdk.hooks`, so both (and the service) build
checks without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from guardvl_sdk.conversation import Message
from guardvl_sdk.inputs import ImageInput

__all__ = ["BatchItem", "CheckInput", "Due"]


@dataclass(frozen=True)
class CheckInput:
    """One item of :meth:`Guard.check_batch`: the same arguments as :meth:`Guard.check`."""

    text: str | None = None
    image: ImageInput | Sequence[ImageInput] | None = None
    response: str | Message | None = None
    messages: Sequence[Message] | None = None
    memory: bool = True
    """Use (and grow) the guard's conversation memory for ``messages``; False judges the
    conversation alone, as the eval harness does with multi-turn items."""
    response_offset: int | None = None
    """For a slice of a streamed answer: where ``response``'s text starts in the whole answer
    (the receipt records it); None for an answer checked whole, not streamed."""


BatchItem = CheckInput | Mapping[str, Any] | str
"""An item of ``Guard.check_batch``: a :class:`CheckInput`, a mapping of its fields, or a str."""


class Due(NamedTuple):
    """A check a stream needs now.

    Attributes:
        key: Which answer of the stream (the choice index of an OpenAI stream; else 0).
        answer: The text to check; for a final check of an answer that made tool calls, the
            assistant message (its text and its calls, judged together).
        offset: Where the checked text starts in the whole answer (0 for the whole answer);
            the receipt records it (:attr:`~guardvl_sdk.verdict.InspectedPart.offset`).
    """

    key: int
    answer: str | Mapping[str, Any]
    offset: int = 0
