"""Reading the request a guard checks out of what a call site holds: text, images, chat messages.

Every entry point builds its :class:`Request` with a :class:`RequestReader`, so a chat message is
read the same way everywhere: the *user* turns are the request (system and earlier assistant
turns are the app's own), and each content part is read by the reader :data:`PART_READERS` names
for its type. A part without a reader (audio, files) raises
:class:`~guardvl_sdk.errors.InvalidInputError` rather than pass unchecked: to read a new kind of
part, add its reader there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from guardvl_sdk.checks import CheckInput
from guardvl_sdk.errors import InvalidInputError
from guardvl_sdk.inputs import clean_text

__all__ = ["PART_READERS", "REQUEST_ROLES", "Request", "RequestReader", "read_messages"]

REQUEST_ROLES = frozenset({"user"})
"""The chat roles whose turns are the request."""

URL_SCHEMES = ("data", "http", "https")
"""Image URL schemes a chat may use; http(s) is fetched only if the guard has ``fetch_images``."""


@dataclass(frozen=True)
class Request:
    """The request of one call: what the input check judges, and the context of the output check.

    Attributes:
        text: The request text (its parts joined by blank lines), or None.
        images: Its images, as given (paths, bytes, PIL images, ``data:`` URLs...).
    """

    text: str | None
    images: list[Any] = field(default_factory=list)

    def check_input(self, response: str | None = None) -> CheckInput:
        """The guard check of this request, or with ``response`` of that answer in its context."""
        return CheckInput(self.text, self.images or None, response)


@dataclass
class RequestReader:
    """Collects the text and images of one request from the pieces a call site holds."""

    texts: list[str] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)

    def add_text(self, value: Any, what: str) -> None:
        """Add a str, or the user turns of a chat message list (or one message)."""
        if value is None:
            return
        if isinstance(value, Mapping):
            value = [value]
        if not isinstance(value, list | tuple):
            self.texts.append(clean_text(value, what=what))
        elif all(isinstance(message, Mapping) for message in value):
            self.add_messages(value)
        else:
            raise InvalidInputError(f"{what} must be a str or a list of chat messages (dicts)")

    def add_images(self, value: Any) -> None:
        """Add one image or a list of images (None adds nothing)."""
        if value is None:
            return
        self.images.extend(value if isinstance(value, list | tuple) else [value])

    def add_messages(self, messages: Sequence[Mapping[str, Any] | BaseModel]) -> None:
        """Add the text and image parts of the user turns of an OpenAI-format chat.

        A message may be a mapping or a pydantic model of one (a ``ChatCompletionMessage``
        given back as history).
        """
        for index, message in enumerate(messages):
            readable = _as_mapping(message)
            if readable.get("role") not in REQUEST_ROLES:
                continue
            where = f"messages[{index}]"
            content = readable.get("content")
            if content is None:
                continue
            if isinstance(content, str):
                self.texts.append(clean_text(content, what=where))
                continue
            if not isinstance(content, list | tuple):
                raise InvalidInputError(
                    f"{where}.content must be a str or a list of parts, "
                    f"not {type(content).__name__}"
                )
            for part in content:
                self.add_part(part, where)

    def add_part(self, part: Any, where: str) -> None:
        """Add one content part with the reader of its type, or raise if none reads it."""
        kind = part.get("type") if isinstance(part, Mapping) else None
        reader = PART_READERS.get(kind) if isinstance(kind, str) else None
        if reader is None:
            raise InvalidInputError(
                f"{where}: cannot check a content part of type {kind!r} (text and image parts only)"
            )
        reader(self, part, where)

    def request(self) -> Request:
        """The request read so far."""
        return Request("\n\n".join(self.texts) if self.texts else None, list(self.images))


def read_messages(messages: Sequence[Mapping[str, Any] | BaseModel]) -> Request:
    """The request in an OpenAI-format chat: the text and image parts of its user turns."""
    reader = RequestReader()
    reader.add_messages(messages)
    return reader.request()


def _as_mapping(message: Any) -> Mapping[str, Any]:
    if isinstance(message, BaseModel):
        return message.model_dump(exclude_none=True)
    if not isinstance(message, Mapping):
        raise InvalidInputError(f"a chat message must be a dict, not {type(message).__name__}")
    return message


def _text_part(reader: RequestReader, part: Mapping[str, Any], where: str) -> None:
    reader.texts.append(clean_text(part.get("text"), what=f"{where} text part"))


def _image_url_part(reader: RequestReader, part: Mapping[str, Any], where: str) -> None:
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, Mapping) else url
    # A chat comes from the user: never let it name a file on this machine.
    if not isinstance(url, str) or url.split(":", 1)[0].lower() not in URL_SCHEMES:
        raise InvalidInputError(
            f"{where}: an image_url must be a data: or http(s) URL: {url!r:.60}"
        )
    reader.images.append(url)


def _image_part(reader: RequestReader, part: Mapping[str, Any], where: str) -> None:
    if part.get("image") is None:
        raise InvalidInputError(
            f"{where}: cannot check a content part of type 'image' (text and image parts only)"
        )
    reader.images.append(part["image"])


PartReader = Callable[[RequestReader, Mapping[str, Any], str], None]

PART_READERS: dict[str, PartReader] = {
    "text": _text_part,
    "image_url": _image_url_part,
    "image": _image_part,
}
"""The content-part types a chat may hold, each with the reader that adds it to the request."""
