"""The value types of one guard check: what ``Guard.check_batch`` and the middleware pass around.

Below :mod:`guardvl_sdk.guard` and :mod:`guardvl_sdk.hooks`, so both (and the service) build
checks without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guardvl_sdk.conversation import Message
from guardvl_sdk.inputs import ImageInput

__all__ = ["BatchItem", "CheckInput"]


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
