"""Reading a guarded function's signature: where its request is, and whether it answers a str.

``@guarded`` reads the request of each call from the parameters named like
:data:`TEXT_PARAMETERS` and :data:`IMAGE_PARAMETERS` (or from the extractors it is given), and at
decoration refuses what it can already tell is wrong (nothing to check; an answer annotated not to
be a str).
"""

from __future__ import annotations

import collections.abc as abc
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from guardvl_sdk.errors import ConfigurationError
from guardvl_sdk.hooks.messages import Request, RequestReader

__all__ = [
    "IMAGE_PARAMETERS",
    "TEXT_PARAMETERS",
    "Extractor",
    "RequestFinder",
    "require_str_output",
]

TEXT_PARAMETERS = ("prompt", "text", "query", "question", "message", "messages")
"""Parameters read as the request by default: a str, or an OpenAI-format chat message list."""

IMAGE_PARAMETERS = ("image", "images")
"""Parameters read as the request's images by default: one image or a list."""

Extractor = Callable[..., Any]


@dataclass(frozen=True)
class RequestFinder:
    """Reads the request (text and images) out of one call's arguments."""

    name: str
    signature: inspect.Signature
    text: Extractor | None
    image: Extractor | None

    @classmethod
    def for_function(
        cls, fn: Callable[..., Any], name: str, text: Extractor | None, image: Extractor | None
    ) -> RequestFinder:
        """Build a finder, or raise ``ConfigurationError`` if the signature has nothing to check."""
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the signature of {name}: {exc}") from exc
        finder = cls(name, signature, text, image)
        params = signature.parameters.values()
        open_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
        if text is None and image is None and not open_kwargs and not finder._named(params):
            raise ConfigurationError(finder._nothing_found())
        return finder

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
        values = self._arguments(args, kwargs)
        reader = RequestReader()
        found = False
        if self.text is not None:
            reader.add_text(self.text(*args, **kwargs), "the text= extractor's result")
            found = True
        if self.image is not None:
            reader.add_images(self.image(*args, **kwargs))
            found = True
        for key in TEXT_PARAMETERS if self.text is None else ():
            if key in values:
                reader.add_text(values[key], key)
                found = True
        for key in IMAGE_PARAMETERS if self.image is None else ():
            if key in values:
                reader.add_images(values[key])
                found = True
        if not found:
            raise ConfigurationError(self._nothing_found())
        return reader.request()

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by name, defaults applied, ``**kwargs`` flattened in."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        for param in self.signature.parameters.values():
            if param.kind is param.VAR_KEYWORD:
                values.update(values.pop(param.name, {}))
        return values

    def _named(self, params: typing.Iterable[inspect.Parameter]) -> bool:
        names = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        return bool(names & {*TEXT_PARAMETERS, *IMAGE_PARAMETERS})

    def _nothing_found(self) -> str:
        bare = self.signature.replace(
            parameters=[p.replace(annotation=p.empty) for p in self.signature.parameters.values()],
            return_annotation=inspect.Signature.empty,
        )
        return (
            f"@guarded cannot find what to check in {self.name}{bare}: name the request's "
            f"parameter one of {', '.join(TEXT_PARAMETERS + IMAGE_PARAMETERS)}, or pass text= "
            "and/or image= extractors"
        )


_STREAM_ORIGINS = (
    abc.Iterator,
    abc.Iterable,
    abc.Generator,
    abc.AsyncIterator,
    abc.AsyncIterable,
    abc.AsyncGenerator,
)


def require_str_output(fn: Callable[..., Any], name: str, stream: bool, why: str) -> None:
    """Raise ``ConfigurationError`` when the return annotation shows the answer is not a str.

    Only a resolvable annotation that rules out str counts; anything unknown is left to the
    check at the first call.
    """
    try:
        hint = typing.get_type_hints(fn).get("return", Any)
    except Exception:  # unresolvable forward references: decide at the first call instead
        return
    if stream:
        origin = typing.get_origin(hint)
        if origin not in _STREAM_ORIGINS or not typing.get_args(hint):
            return
        hint = typing.get_args(hint)[0]
    if not _can_be_str(hint):
        raise ConfigurationError(f"{name}() is annotated to answer with {hint!r}; {why}")


def _can_be_str(hint: Any) -> bool:
    if hint is Any:  # a class since Python 3.11, so test it before issubclass
        return True
    if typing.get_origin(hint) in (Union, types.UnionType):
        return any(_can_be_str(member) for member in typing.get_args(hint))
    origin = typing.get_origin(hint) or hint
    if isinstance(origin, type):
        return issubclass(str, origin)
    return True  # Any, a TypeVar, a Literal...: unknown, decided at the first call
