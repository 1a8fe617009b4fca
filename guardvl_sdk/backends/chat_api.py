"""The OpenAI-compatible chat completions format: prompts out, generations back. No HTTP here.

vLLM, SGLang, TGI and ``transformers serve`` all speak it, each with small differences this module
smooths over: stop strings left out of the text, reasoning split into its own field, log
probabilities present or not.
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from guardvl_sdk.backends.base import Generation, Prompt
from guardvl_sdk.backends.scoring import RESULT_END, label_side, label_token_index
from guardvl_sdk.errors import BackendError
from guardvl_sdk.inputs import SOURCE_JPEG, to_data_url

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["chat_messages", "json_body", "label_score", "read_completion"]

# What a server says when generation ended by itself; anything else ("length", "abort", unknown)
# counts as unfinished, so an incomplete answer is never read as a whole one.
_FINISHED_REASONS = {"stop", "eos_token", "stop_sequence"}


def chat_messages(
    prompt: Prompt, *, image_format: Literal["jpeg", "png"] = "jpeg"
) -> list[dict[str, Any]]:
    """Turn a rendered prompt's messages into chat completions messages.

    Each ``{"type": "image"}`` part becomes an ``image_url`` part holding the prompt's next image
    as a ``data:`` URL (see :func:`~guardvl_sdk.inputs.to_data_url` for the formats; as JPEG, an
    image decoded from a JPEG and left as decoded is sent as its own bytes, which decode to
    exactly its pixels, see :data:`~guardvl_sdk.inputs.SOURCE_JPEG`); text parts and string
    contents pass through unchanged. An image is encoded once while it lives: the
    windows of one long check share their images, and reuse the encoding.

    Raises:
        ValueError: The prompt has more or fewer images than image parts.
    """
    images = iter(prompt.images)
    messages: list[dict[str, Any]] = []
    for message in prompt.messages:
        content = message["content"]
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image":
                    image = next(images, None)
                    if image is None:
                        raise ValueError("the prompt has more image parts than images")
                    url = _ENCODED.data_url(image, image_format)
                    part = {"type": "image_url", "image_url": {"url": url}}
                parts.append(part)
            content = parts
        messages.append({**message, "content": content})
    if next(images, None) is not None:
        raise ValueError("the prompt has more images than image parts")
    return messages


_BASE64_URL = re.compile(r"data:image/[a-z]+;base64,[A-Za-z0-9+/]*={0,2}")


def json_body(body: Mapping[str, Any]) -> bytes:
    """A request body as compact UTF-8 JSON, with its images' base64 ``data:`` URLs spliced in.

    Base64 needs no JSON escaping, so each URL (often a megabyte) is copied in as it is instead
    of being scanned character by character by the JSON encoder. The result is the same JSON.
    """
    marker = f"guardvl-image-{secrets.token_hex(16)}-"
    urls: list[str] = []

    def swap(part: Any) -> Any:
        url = part.get("image_url", {}).get("url") if isinstance(part, dict) else None
        if part.get("type") != "image_url" or not isinstance(url, str):
            return part
        if not _BASE64_URL.fullmatch(url):
            return part
        urls.append(url)
        return {**part, "image_url": {**part["image_url"], "url": f"{marker}{len(urls) - 1}"}}

    messages = [
        {**m, "content": [swap(p) for p in m["content"]]}
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        else m
        for m in body.get("messages", ())
    ]
    data = json.dumps(
        {**body, "messages": messages}, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")
    for index, url in enumerate(urls):
        data = data.replace(f'"{marker}{index}"'.encode(), b'"' + url.encode("ascii") + b'"', 1)
    return data


class _Encodings:
    """The data URLs of recently encoded images, by image object, while each image lives.

    PIL images compare by pixels and are unhashable, so entries are keyed by ``id`` and checked
    against a weak reference (an id can be reused once its image is gone).
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._items: OrderedDict[tuple[int, str], tuple[weakref.ref[Image.Image], str]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def data_url(self, image: Image.Image, image_format: Literal["jpeg", "png"]) -> str:
        key = (id(image), image_format)
        with self._lock:
            entry = self._items.get(key)
            if entry is not None and entry[0]() is image:
                self._items.move_to_end(key)
                return entry[1]
        source = image.info.get(SOURCE_JPEG) if image_format == "jpeg" else None
        if isinstance(source, bytes):  # the JPEG these pixels were decoded from, untouched
            url = "data:image/jpeg;base64," + base64.b64encode(source).decode("ascii")
        else:
            url = to_data_url(image, format=image_format)

        def forget(_: object) -> None:  # the image is gone: so is its encoding
            with self._lock:
                self._items.pop(key, None)

        with self._lock:
            self._items[key] = (weakref.ref(image, forget), url)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return url


_ENCODED = _Encodings()


def read_completion(data: Any, *, score_label: str = "request") -> Generation:
    """Read a chat completion response body into a :class:`Generation`.

    The text is cut after the first ``</result>`` (the local backend stops there too), and a
    ``</result>`` the server matched as a stop string but left out of the text is put back. Where
    the server split the reasoning into ``reasoning_content`` (or ``reasoning``), it is put back in
    ``<think>`` tags in front of the answer.

    Args:
        data: The decoded JSON body.
        score_label: See :attr:`~guardvl_sdk.backends.base.Prompt.score_label`.

    Raises:
        BackendError: The body is not a chat completion.
    """
    try:
        if len(data["choices"]) != 1:  # one prompt, one answer: which of several would be it?
            raise IndexError(f"{len(data['choices'])} choices, not one")
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise TypeError(f"message content is {type(content).__name__}, not a string")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BackendError(f"not a chat completion: {exc!r}", status_code=200, body=data) from exc
    finish_reason = choice.get("finish_reason")

    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning and "<think>" not in content:
        content = f"<think>\n{reasoning}\n</think>\n{content}"
    stopped_at = choice.get("stop_reason", choice.get("matched_stop"))  # vLLM, SGLang
    if stopped_at == RESULT_END and _result_open(content):
        content += RESULT_END
    end = content.find(RESULT_END)
    if end >= 0:
        content = content[: end + len(RESULT_END)]

    usage = data.get("usage") or {}
    logprobs = choice.get("logprobs") or {}
    return Generation(
        text=content,
        finished=finish_reason in _FINISHED_REASONS or end >= 0,
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        score=label_score(logprobs.get("content"), score_label),
        extra={"finish_reason": finish_reason},
    )


def label_score(tokens: Any, label: str) -> float | None:
    """P(harmful) at the label token after ``{label}:``, from chat completions log probabilities.

    The label token is the one that starts the word after the last ``Request:`` (or
    ``Response:``) before ``</result>``. Its top alternatives are sorted into the harmful ones
    (``harmful`` or a prefix of it, such as ``harm``) and the unharmful ones (``unharmful``,
    ``harmless``, ``none`` or their prefixes, such as ``un``), and the harmful share of their
    probability is returned.

    Args:
        tokens: The ``logprobs.content`` list: ``{"token", "logprob", "top_logprobs"}`` entries.
        label: ``"request"`` or ``"response"``.

    Returns:
        The probability, or None when there are no log probabilities, no label, or no
        harmful/unharmful alternative at the label token.
    """
    if not isinstance(tokens, list) or not tokens:
        return None
    try:
        pieces = [str(entry["token"]) for entry in tokens]
    except (KeyError, TypeError):
        return None
    index = label_token_index(pieces, label)
    return None if index is None else _harmful_share(tokens[index])


def _harmful_share(entry: dict[str, Any]) -> float | None:
    alternatives = {
        str(top.get("token")): top.get("logprob")
        for top in entry.get("top_logprobs") or []
        if isinstance(top, dict)
    }
    alternatives.setdefault(str(entry.get("token")), entry.get("logprob"))  # normally there
    harmful = unharmful = 0.0
    for token, logprob in alternatives.items():
        if not isinstance(logprob, int | float) or not -math.inf < logprob <= 0:
            continue  # not a log probability (NaN, Infinity, positive): no evidence
        side = label_side(token)
        if side is True:
            harmful += math.exp(logprob)
        elif side is False:
            unharmful += math.exp(logprob)
    total = harmful + unharmful
    return harmful / total if total > 0 else None


def _result_open(text: str) -> bool:
    return text.rfind("<result>") > text.rfind(RESULT_END)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
