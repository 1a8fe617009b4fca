"""Reading the service's request bodies into checks: the one place that parses message parts.

Every field that carries content is read into a :class:`~guardvl_sdk.guard.CheckInput` or
refused with :class:`~guardvl_sdk.errors.InvalidInputError` (allowlist, not denylist). An image
is a ``data:`` URL, or an http(s) URL that the guard fetches only when it was built with
``fetch_images``: a request body can never name a file on the server.

A whole conversation (``messages``) is read by the SDK's own conversation reader
(:mod:`guardvl_sdk.conversation`), after :func:`screen_messages`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guardvl_sdk.checks import CheckInput
from guardvl_sdk.errors import InvalidInputError
from guardvl_sdk.inputs import clean_text

__all__ = [
    "RESPONSE_ONLY_REQUEST",
    "LiteLLMCheck",
    "Parts",
    "count_images",
    "read_check",
    "read_litellm",
    "read_moderation",
    "read_parts",
    "screen_messages",
    "tool_call_text",
]

RESPONSE_ONLY_REQUEST = "(the request was not shown to the guard)"
"""The request line of a response check that arrives without its request (LiteLLM's post-call
guardrail sends only the model's answer). The guard judges the response; the request label of
such a verdict says nothing."""

_IMAGE_SCHEMES = ("data", "http", "https")


@dataclass
class Parts:
    """Text and images read from a list of content parts, in order."""

    texts: list[str]
    images: list[str]

    @property
    def text(self) -> str:
        """The texts joined by blank lines, as one request."""
        return "\n\n".join(self.texts)


def image_url(value: Any, where: str) -> str:
    """An image source from a request body: a ``data:`` or http(s) URL, never a path."""
    url = value.get("url") if isinstance(value, Mapping) else value
    if not isinstance(url, str) or url.split(":", 1)[0].lower() not in _IMAGE_SCHEMES:
        raise InvalidInputError(f"{where}: an image must be a data: or http(s) URL: {url!r:.60}")
    return url


def read_parts(parts: Sequence[Any], where: str) -> Parts:
    """Read OpenAI content parts (``text`` and ``image_url``); any other part is refused."""
    found = Parts([], [])
    for index, part in enumerate(parts):
        here = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            found.texts.append(clean_text(part.get("text"), what=f"{here}.text"))
        elif kind == "image_url":
            found.images.append(image_url(part.get("image_url"), here))
        else:
            raise InvalidInputError(
                f"{here}: cannot check a part of type {kind!r} (text and image_url parts only)"
            )
    return found


def screen_messages(messages: Any, where: str = "messages") -> int:
    """Refuse what a chat from the network may not carry; return how many images it has.

    The SDK's conversation reader (:mod:`guardvl_sdk.conversation`) reads every role and part;
    over HTTP an image must also be a URL (never an ``{"type": "image"}`` part, whose value a
    Python caller may give as a file path).
    """
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError(f"{where} must be a non-empty list of chat messages")
    count = 0
    for index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        for part in content if isinstance(content, list) else []:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "image":
                raise InvalidInputError(
                    f"{where}[{index}]: send images as image_url parts with a data: or http(s) URL"
                )
            count += kind in ("image_url", "input_image")
    return count


def _object(body: Any, allowed: set[str], what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidInputError(f"{what}: the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInputError(f"{what}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return body


def read_moderation(body: Any) -> list[CheckInput]:
    """``POST /v1/moderations``: one check per string, or one for a list of parts.

    ``input`` is a string, a list of strings, or a list of ``text`` / ``image_url`` parts, as
    OpenAI's moderation API takes it. ``model`` is accepted and ignored (the guard answers).
    """
    body = _object(body, {"input", "model"}, "moderation")
    value = body.get("input")
    if isinstance(value, str):
        return [CheckInput(text=clean_text(value, what="input"))]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [CheckInput(text=clean_text(v, what=f"input[{i}]")) for i, v in enumerate(value)]
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        parts = read_parts(value, "input")
        return [CheckInput(text=parts.text, image=parts.images or None)]
    raise InvalidInputError(
        "moderation: input must be a string, a list of strings, or a list of text and "
        "image_url parts"
    )


def read_check(body: Any) -> CheckInput:
    """``POST /v1/guard/check``: ``text``, ``images`` and ``response``; or ``messages``.

    ``messages`` is a whole conversation (every role and part judged, as ``guard.check(
    messages=...)`` does), with an optional ``response`` (a str or an assistant message). Each
    request is judged alone: the service keeps no conversation memory between requests.
    """
    body = _object(body, {"text", "images", "response", "messages"}, "check")
    response = body.get("response")
    if "messages" in body:
        if "text" in body or "images" in body:
            raise InvalidInputError("check: give messages, or text and images, not both")
        screen_messages(body["messages"])
        if isinstance(response, Mapping):
            screen_messages([response], "response")
        elif response is not None:
            response = clean_text(response, what="response")
        return CheckInput(messages=body["messages"], response=response, memory=False)
    images = body.get("images") or []
    if not isinstance(images, list):
        raise InvalidInputError("check: images must be a list of data: or http(s) URLs")
    text = body.get("text")
    return CheckInput(
        text=None if text is None else clean_text(text, what="text"),
        image=[image_url(url, f"images[{i}]") for i, url in enumerate(images)] or None,
        response=None if response is None else clean_text(response, what="response"),
    )


def count_images(item: CheckInput) -> int:
    """How many images a check read by this module carries."""
    images = len(item.image) if isinstance(item.image, list) else 0
    messages = list(item.messages or [])
    if isinstance(item.response, Mapping):
        messages.append(item.response)
    return images + (screen_messages(messages) if messages else 0)


# LiteLLM's Generic Guardrail API request: these fields describe the call, not its content.
_LITELLM_METADATA = {
    "input_type",
    "litellm_call_id",
    "litellm_trace_id",
    "request_data",
    "request_headers",
    "litellm_version",
    "additional_provider_specific_params",
    "model",
    "structured_messages",  # the same content as texts and images, with roles
}
_LITELLM_CONTENT = {"texts", "images", "tool_calls", "tools"}


@dataclass(frozen=True)
class LiteLLMCheck:
    """A Generic Guardrail API request read into one check."""

    check: CheckInput
    input_type: str


def read_litellm(body: Any) -> LiteLLMCheck:
    """LiteLLM's Generic Guardrail API (``POST /beta/litellm_basic_guardrail_api``).

    A ``request`` is checked as the user's request: every text LiteLLM extracted (joined), its
    images, and the arguments of tool calls. A ``response`` is checked as the assistant's answer
    (LiteLLM sends no request with it; see :data:`RESPONSE_ONLY_REQUEST`). Tool definitions
    (``tools``) cannot be judged by the guard and are refused.
    """
    body = _object(body, _LITELLM_METADATA | _LITELLM_CONTENT, "litellm guardrail")
    input_type = body.get("input_type")
    if input_type not in ("request", "response"):
        raise InvalidInputError("litellm guardrail: input_type must be 'request' or 'response'")
    if body.get("tools"):
        raise InvalidInputError("litellm guardrail: cannot check tool definitions (tools)")
    texts = body.get("texts") or []
    images = body.get("images") or []
    if not isinstance(texts, list) or not isinstance(images, list):
        raise InvalidInputError("litellm guardrail: texts and images must be lists")
    content = [clean_text(t, what=f"texts[{i}]") for i, t in enumerate(texts)]
    content += [tool_call_text(call, i) for i, call in enumerate(body.get("tool_calls") or [])]
    sources = [image_url(url, f"images[{i}]") for i, url in enumerate(images)]
    text = "\n\n".join(content)
    if input_type == "response":
        if sources:
            raise InvalidInputError("litellm guardrail: cannot check images in a response")
        check = CheckInput(text=RESPONSE_ONLY_REQUEST, response=text)
    else:
        check = CheckInput(text=text, image=sources or None)
    return LiteLLMCheck(check, input_type)


def tool_call_text(call: Any, index: int) -> str:
    """A tool call as the guard reads it: the function's name and its JSON arguments."""
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping):
        raise InvalidInputError(f"tool_calls[{index}]: expected a function call")
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    name = clean_text(function.get("name") or "", what=f"tool_calls[{index}].name")
    return f"{name}({clean_text(arguments, what=f'tool_calls[{index}].arguments')})"
