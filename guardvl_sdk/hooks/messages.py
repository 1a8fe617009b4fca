"""Reading the request a guard checks out of what a call site holds: text, images, chat messages.

Every entry point builds its :class:`Request` with a :class:`RequestReader`, so a chat is read
the same way everywhere: as a whole conversation, by :mod:`guardvl_sdk.conversation` (every
role: system, user, assistant history with its tool calls, tool results; every image). A field or
part the guard cannot read raises :class:`~guardvl_sdk.errors.InvalidInputError` rather than pass
unchecked (audio and files follow ``Guard(unreadable=...)``). To read a new kind of part, add it
to the conversation reader: it is the one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from guardvl_sdk.checks import CheckInput
from guardvl_sdk.conversation import Message, as_message
from guardvl_sdk.conversation import read_messages as read_parts
from guardvl_sdk.errors import InvalidInputError
from guardvl_sdk.inputs import clean_text

__all__ = ["Request", "RequestReader", "read_messages"]


@dataclass(frozen=True)
class Request:
    """The request of one call: what the input check judges, and the context of the output check.

    Attributes:
        text: The request text (its parts joined by blank lines), or None.
        images: Its images, as given (paths, bytes, PIL images, ``data:`` URLs...).
        messages: The chat the call carries, as OpenAI-format messages, or None. With a chat,
            ``text`` and ``images`` (from other parameters) are one more user turn after it.
    """

    text: str | None
    images: list[Any] = field(default_factory=list)
    messages: tuple[Message, ...] | None = None

    def check_input(
        self, response: str | Message | None = None, offset: int | None = None
    ) -> CheckInput:
        """The guard check of this request, or with ``response`` of that answer in its context.

        ``response`` is the answer's text, or an assistant message whose tool calls are judged
        as part of the answer; ``offset``, for a streamed answer, where its text starts in the
        whole answer.
        """
        if self.messages is None:
            return CheckInput(self.text, self.images or None, response, response_offset=offset)
        messages = list(self.messages)
        extra: list[dict[str, Any]] = [{"type": "text", "text": self.text}] if self.text else []
        # The images the call was given beside its messages are the calling code's own, as in
        # guard.check(image=...); a chat's own parts may name files only as Path objects.
        extra += [{"type": "image", "image": _as_source(image)} for image in self.images]
        if extra:
            messages.append({"role": "user", "content": extra})
        return CheckInput(messages=messages, response=response, response_offset=offset)


@dataclass
class RequestReader:
    """Collects the text, images and chat of one request from the pieces a call site holds."""

    texts: list[str] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)
    messages: list[Message] | None = None

    def add_text(self, value: Any, what: str) -> None:
        """Add a str, or a chat message list (or one message)."""
        if value is None:
            return
        if isinstance(value, Mapping):
            value = [value]
        if not isinstance(value, list | tuple):
            self.texts.append(clean_text(value, what=what))
        elif all(isinstance(message, Mapping | BaseModel) for message in value):
            self.add_messages(value)
        else:
            raise InvalidInputError(f"{what} must be a str or a list of chat messages (dicts)")

    def add_images(self, value: Any) -> None:
        """Add one image or a list of images (None adds nothing)."""
        if value is None:
            return
        self.images.extend(value if isinstance(value, list | tuple) else [value])

    def add_messages(self, messages: Sequence[Mapping[str, Any] | BaseModel]) -> None:
        """Add an OpenAI-format chat, every message of it (read now, so bad input fails early).

        A message may be a mapping or a pydantic model of one (a ``ChatCompletionMessage``
        given back as history).
        """
        readable = [as_message(message) for message in messages]
        read_parts(readable)
        self.messages = [*(self.messages or []), *readable]

    def request(self) -> Request:
        """The request read so far."""
        text = "\n\n".join(self.texts) if self.texts else None
        chat = tuple(self.messages) if self.messages is not None else None
        return Request(text, list(self.images), chat)


def read_messages(messages: Sequence[Mapping[str, Any] | BaseModel]) -> Request:
    """The request in an OpenAI-format chat: the whole conversation."""
    reader = RequestReader()
    reader.add_messages(messages)
    return reader.request()


def _as_source(image: Any) -> Any:
    """A path string given as a call's image argument, as the Path the conversation reader takes."""
    if isinstance(image, str) and image.split(":", 1)[0].lower() not in ("data", "http", "https"):
        return Path(image)
    return image
