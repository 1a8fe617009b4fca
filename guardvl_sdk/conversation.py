"""Conversations: chat messages read into parts, and laid out in the single-turn format.

One module over 400 lines on purpose: reading every message field and part, and laying them out, are
one allowlist that must not drift apart.

The released GuardReasoner-VL models were trained on single turns: one request, one response.
A conversation is judged as a whole by flattening it into that format, in one layout:

- the **request** is the newest user turn;
- every other part (system prompt, earlier user and assistant turns, the assistant's tool calls,
  the tools' results) stands in the request slot as clearly delimited context: the parts before
  the newest user turn above it, the parts after it (an agent's tool calls and their results)
  below it;
- every image stands where the trained format puts images, right after ``Human user:\\n``, in
  the order they occur; an ``[image N]`` line marks where each one occurred;
- the **response**, for an output check, is the assistant's answer: its text, and its tool
  calls (name and arguments) as ``[tool call: NAME]`` blocks.

A conversation that is one user turn renders exactly as ``guard.check(text, image)`` does. In
untrusted content, anything that looks like one of the layout's markers is escaped
(``[`` becomes ``&#91;``), so content cannot forge the structure; the policy neutralises the
model's own control tags on top (:func:`guardvl_sdk.policy.neutralize`). For example::

    [Conversation before this request, for context]
    [message 0, user]
    What's in this picture?
    [image 1]
    [message 1, assistant]
    A parking lot.
    [End of the conversation before this request]

    And how do I open that car without a key?
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from typing import Any

from guardvl_sdk.errors import InvalidInputError
from guardvl_sdk.inputs import clean_text
from guardvl_sdk.verdict import PartKind

__all__ = [
    "MESSAGE_KEYS",
    "Message",
    "Part",
    "as_message",
    "check_name",
    "from_responses_input",
    "from_responses_output",
    "read_answer",
    "read_messages",
    "refuse_unread_keys",
    "render_answer",
    "render_conversation",
]

Message = Mapping[str, Any]

ROLES = ("system", "developer", "user", "assistant", "tool", "function")

# Metadata a message may carry that the VLM does not read as content.
_METADATA_KEYS = {"role", "name", "tool_call_id", "id"}
# Where the VLM's input is: read below, part by part.
_CONTENT_KEYS = {"content", "tool_calls", "function_call", "refusal", "audio"}
MESSAGE_KEYS = frozenset(_METADATA_KEYS | _CONTENT_KEYS)
"""Every field of an OpenAI-format message the reader knows (any other field is refused)."""

_MARKER_RE = re.compile(
    r"\[(?=\s*(?:conversation|end of the conversation|message \d|image \d|tool call|"
    r"tool result|\d+ part))",
    re.IGNORECASE,
)

_URL_SCHEMES = ("data", "http", "https")  # http(s): fetched only if the guard has fetch_images

# The keys of each content part the reader reads, besides ``type``; a part sent with any other
# key that is not empty is refused: the VLM would receive it unread (an allowlist). A
# ``cache_control`` marker (Anthropic's prompt caching, through LiteLLM) instructs the provider's
# cache and never reaches the model's context.
_PART_KEYS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("text", "input_text", "output_text"), frozenset({"text"})),
    "refusal": frozenset({"refusal"}),
    "image_url": frozenset({"image_url"}),
    "input_image": frozenset({"image_url", "detail"}),
    "image": frozenset({"image"}),
}
_PART_METADATA = frozenset({"type", "cache_control"})
_IMAGE_URL_KEYS = frozenset({"url", "detail"})
# A message's ``name`` is sent to the model unread: only as OpenAI limits it (no sentence fits).
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_name(name: Any, where: str) -> None:
    """Refuse a message ``name`` beyond OpenAI's limit (1-64 of ``A-Za-z0-9_-``): it reaches the
    model unread, so it must not be able to carry a sentence.

    Raises:
        InvalidInputError: Such a name.
    """
    if name is not None and not (isinstance(name, str) and _NAME.fullmatch(name)):
        raise InvalidInputError(
            f"{where}: a message name must be 1-64 characters of A-Z a-z 0-9 _ - (OpenAI's "
            f"limit; it reaches the model unread), not {name!r:.80}"
        )


def refuse_unread_keys(
    part: Mapping[str, Any], known: AbstractSet[str], where: str, reaches: str = "the model"
) -> None:
    """The request side's allowlist rule, for every reader of content parts (this module's and
    the LangChain adapter's): refuse a part holding a key outside ``known`` (the keys the guard
    reads and harmless metadata); inside an ``image_url`` part's object, only ``url`` and
    ``detail``. A key holds something unless it is None or an empty str, dict or list.

    Raises:
        InvalidInputError: Such a key (named, with the keys the guard reads).
    """
    unread = [key for key, value in part.items() if key not in known and _holds(value)]
    url = part.get("image_url") if part.get("type") == "image_url" else None
    if isinstance(url, Mapping):
        unread += [
            f"image_url.{key}"
            for key, value in url.items()
            if key not in _IMAGE_URL_KEYS and _holds(value)
        ]
    if unread:
        raise InvalidInputError(
            f"{where}: the {part.get('type')!r} part's field(s) {sorted(unread)} would reach "
            f"{reaches} unchecked; the guard reads {sorted(known)}"
        )


def _holds(value: Any) -> bool:
    return value is not None and value != "" and value != {} and value != []


@dataclass(frozen=True)
class Part:
    """One readable (or unreadable) piece of a conversation, in conversation order.

    Attributes:
        kind: See :class:`~guardvl_sdk.verdict.InspectedPart`; ``other`` for content the guard
            cannot read (then ``unreadable`` says what it is).
        role: The message's role (``developer`` reads as ``system``, ``function`` as ``tool``).
        message: Index of the message in the conversation.
        text: The text of a text, tool call (its arguments) or tool result part.
        image: The image source of an image part (loaded and budgeted by the guard).
        name: The tool's name, for a tool call or a tool result.
        unreadable: Why the guard cannot read this part; None for a readable one.
        source: The raw part, hashed for the receipt of an unreadable part.
        offset: For the text of a streamed answer's slice, where it starts in the whole answer.
    """

    kind: PartKind
    role: str
    message: int
    text: str | None = None
    image: Any = None
    name: str | None = None
    unreadable: str | None = None
    source: str | None = None
    offset: int | None = None


def as_message(message: Any) -> Message:
    """A chat message as a mapping: a dict, or a pydantic message object (an OpenAI response)."""
    dump = getattr(message, "model_dump", None)
    if callable(dump) and not isinstance(message, Mapping):
        dumped = dump(exclude_none=True)
        if isinstance(dumped, Mapping):
            return dumped
    if not isinstance(message, Mapping):
        raise InvalidInputError(f"a chat message must be a dict, not {type(message).__name__}")
    return message


def read_messages(messages: Sequence[Any]) -> list[Part]:
    """Read every part the VLM would read from OpenAI-format chat messages, in order.

    Every role is read: system, user, assistant (its text, refusal and tool calls) and tool
    (its result, text or images). A field or part type the guard does not know raises, so
    nothing passes unread; audio and files come back as unreadable parts (the guard decides
    what to do with them, see ``Guard(unreadable=...)``).

    Raises:
        InvalidInputError: Not a message list, an unknown role or field, or a malformed part.
    """
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise InvalidInputError("messages must be a list of chat messages (dicts)")
    parts: list[Part] = []
    for index, raw in enumerate(messages):
        parts += _read_message(as_message(raw), index)
    return parts


def read_answer(answer: str | Any, index: int, offset: int | None = None) -> list[Part]:
    """The parts of an assistant answer to check: a str, or an assistant message (tool calls).

    Args:
        answer: The answer's text, or an assistant message mapping / object.
        index: The message index the answer gets (the length of the conversation before it).
        offset: For a streamed answer, where its text starts in the whole answer.
    """
    if isinstance(answer, str):
        text = clean_text(answer, what="response")
        return [Part("text", "assistant", index, text=text, offset=offset)]
    message = dict(as_message(answer))
    message.setdefault("role", "assistant")
    if message["role"] != "assistant":
        raise InvalidInputError(f"an answer is an assistant message, not role {message['role']!r}")
    parts = _read_message(message, index)
    return [replace(p, offset=offset) if p.kind == "text" else p for p in parts]


def render_answer(parts: Sequence[Part]) -> str:
    """The response slot: the answer's text, then each tool call as a marked block.

    An answer that is one text part is that text exactly.
    """
    if len(parts) == 1 and parts[0].kind == "text":
        return parts[0].text or ""
    blocks = []
    for part in parts:
        if part.kind == "text" and not part.text:
            continue
        if part.kind == "tool_call":
            blocks.append(f"[tool call: {escape(part.name or '')}]\n{escape(part.text or '')}")
        else:
            blocks.append(escape(part.text or ""))
    return "\n".join(blocks)


def render_conversation(
    parts: Sequence[Part | int], image_numbers: Mapping[int, int]
) -> tuple[str, bool]:
    """The request slot's text for the parts sent to the guard; see the module docstring.

    Args:
        parts: The conversation's parts in order, runs already judged replaced by their count
            (an int: that many parts were checked in an earlier check and are not repeated).
        image_numbers: For each image part sent, by its position in ``parts``, its number
            among the images of the prompt (1-based).

    Returns:
        The text, and whether it is the plain single-turn layout (one user turn, no markers).
    """
    users = [p.message for p in parts if isinstance(p, Part) and p.role == "user"]
    newest = users[-1] if users else None

    def place(part: Part | int) -> str:
        if not isinstance(part, Part) or newest is None or part.message < newest:
            return "before"
        if part.message == newest and part.role == "user":
            return "request"
        return "after"

    runs: dict[str, list[tuple[int, Part | int]]] = {"before": [], "request": [], "after": []}
    for position, part in enumerate(parts):
        runs[place(part)].append((position, part))
    request = [(i, p) for i, p in runs["request"] if isinstance(p, Part)]
    if not runs["before"] and not runs["after"]:
        return "\n".join(p.text or "" for _, p in request if p.kind == "text"), True
    lines: list[str] = []
    if runs["before"]:
        lines.append("[Conversation before this request, for context]")
        lines += _render_run(runs["before"], image_numbers)
        lines += ["[End of the conversation before this request]", ""]
    for position, part in request:
        if part.kind == "image":
            lines.append(f"[image {image_numbers[position]}]")
        else:
            lines.append(escape(part.text or ""))
    if runs["after"]:
        lines += ["", "[Conversation after this request, for context]"]
        lines += _render_run(runs["after"], image_numbers)
        lines.append("[End of the conversation after this request]")
    return "\n".join(lines), False


def escape(text: str) -> str:
    """Escape what would read as a layout marker in untrusted text (``[`` -> ``&#91;``)."""
    return _MARKER_RE.sub("&#91;", text)


# -- the OpenAI Responses API ---------------------------------------------------------------


def from_responses_input(input: Any, instructions: Any = None) -> list[dict[str, Any]]:
    """The chat messages a ``client.responses.create(input=..., instructions=...)`` call means.

    Message items keep their role and content; a ``function_call`` item becomes an assistant
    message with that tool call; a ``function_call_output`` item a tool message; ``reasoning``
    items the assistant's text (summary and reasoning text; encrypted reasoning is unreadable).
    Any other item type (item references, hosted tools' calls)
    raises, so nothing passes unread.

    Raises:
        InvalidInputError: An item the guard cannot read.
    """
    messages: list[dict[str, Any]] = []
    if instructions is not None:
        messages.append(
            {"role": "system", "content": clean_text(instructions, what="instructions")}
        )
    if isinstance(input, str):
        return [*messages, {"role": "user", "content": input}]
    if not isinstance(input, Sequence):
        raise InvalidInputError(
            f"responses input must be a str or a list, not {type(input).__name__}"
        )
    for index, raw in enumerate(input):
        item = as_message(raw)
        kind = item.get("type", "message")
        where = f"input[{index}]"
        if kind == "message":
            content = item.get("content")
            messages.append({"role": item.get("role"), "content": content})
        elif kind == "function_call":
            call = {"name": item.get("name"), "arguments": item.get("arguments", "")}
            tool_call = {"type": "function", "id": item.get("call_id"), "function": call}
            messages.append({"role": "assistant", "content": None, "tool_calls": [tool_call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id"), "content": output}
            )
        elif kind == "reasoning":
            messages.append({"role": "assistant", "content": _reasoning_parts(item)})
        else:
            raise InvalidInputError(
                f"{where}: cannot check a responses input item of type {kind!r} (messages, "
                "function calls and their outputs only)"
            )
    return messages


def from_responses_output(output: Sequence[Any]) -> dict[str, Any]:
    """One assistant message from a response's output items: its text, refusals, tool calls.

    Raises:
        InvalidInputError: An output item the guard cannot read.
    """
    content: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for index, raw in enumerate(output):
        item = as_message(raw)
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or []:
                content.append(dict(as_message(part)))
        elif kind == "function_call":
            call = {"name": item.get("name"), "arguments": item.get("arguments", "")}
            calls.append({"type": "function", "id": item.get("call_id"), "function": call})
        elif kind == "reasoning":
            content += _reasoning_parts(item)
        else:
            raise InvalidInputError(
                f"output[{index}]: cannot check a response output item of type {kind!r}"
            )
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return message


def _reasoning_parts(item: Message) -> list[dict[str, Any]]:
    """A reasoning item's content parts: its summary and its reasoning text, both read; its
    encrypted reasoning (opaque to the guard) an unreadable part."""
    texts = [
        part.get("text", "")
        for key in ("summary", "content")
        for part in item.get(key) or []
        if isinstance(part, Mapping)
    ]
    parts: list[dict[str, Any]] = [{"type": "text", "text": "\n".join(texts)}]
    if item.get("encrypted_content"):
        parts.append({"type": "encrypted_reasoning", "data": item["encrypted_content"]})
    return parts


# -- reading --------------------------------------------------------------------------------


def _read_message(message: Message, index: int) -> list[Part]:
    where = f"messages[{index}]"
    given = message.get("role")
    if given not in ROLES:
        raise InvalidInputError(f"{where}: unknown role {given!r}; known: {', '.join(ROLES)}")
    unknown = set(message) - _METADATA_KEYS - _CONTENT_KEYS
    if unknown:
        raise InvalidInputError(
            f"{where}: cannot check the field(s) {sorted(unknown)}; known: "
            f"{sorted(_METADATA_KEYS | _CONTENT_KEYS)}"
        )
    role = {"developer": "system", "function": "tool"}.get(given, str(given))
    tool = message.get("name") if role == "tool" else None  # a tool's name is judged with it
    if role != "tool":
        check_name(message.get("name"), where)
    parts = _read_content(message.get("content"), role, index, where, tool)
    if message.get("refusal") is not None:
        parts.append(Part("text", role, index, text=clean_text(message["refusal"], what=where)))
    if message.get("audio") is not None:
        parts.append(_unreadable(role, index, "an audio answer", message["audio"]))
    calls = list(message.get("tool_calls") or [])
    if message.get("function_call") is not None:
        calls.append({"type": "function", "function": message["function_call"]})
    if calls and role != "assistant":
        raise InvalidInputError(f"{where}: only assistant messages make tool calls")
    parts += [_read_tool_call(call, index, f"{where}.tool_calls") for call in calls]
    return parts


def _read_content(content: Any, role: str, index: int, where: str, tool: str | None) -> list[Part]:
    text_kind: PartKind = "tool_result" if role == "tool" else "text"
    if content is None:
        return []
    if isinstance(content, str):
        return [Part(text_kind, role, index, text=clean_text(content, what=where), name=tool)]
    if not isinstance(content, list | tuple):
        raise InvalidInputError(
            f"{where}.content must be a str or a list of parts, not {type(content).__name__}"
        )
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in _PART_KEYS:
            refuse_unread_keys(part, _PART_KEYS[kind] | _PART_METADATA, where)
        if kind in ("text", "input_text", "output_text", "refusal"):
            value = part.get("refusal") if kind == "refusal" else part.get("text")
            parts.append(
                Part(text_kind, role, index, text=clean_text(value, what=where), name=tool)
            )
        elif kind in ("image_url", "input_image"):
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, Mapping) else url
            parts.append(Part("image", role, index, image=_image_url(url, where, "an image_url")))
        elif kind == "image" and part.get("image") is not None:
            image = part["image"]
            # In-process objects (PIL images, bytes, arrays, a pathlib.Path) are the calling
            # code's own; a string is text a user or a tool could have written: a URL only.
            if isinstance(image, str):
                image = _image_url(image, where, "an image part")
            parts.append(Part("image", role, index, image=image))
        elif kind in ("input_audio", "audio", "file", "input_file", "encrypted_reasoning"):
            parts.append(_unreadable(role, index, f"a content part of type {kind!r}", part))
        else:
            raise InvalidInputError(
                f"{where}: cannot check a content part of type {kind!r} (text and image parts only)"
            )
    return parts


def _image_url(url: Any, where: str, what: str) -> str:
    """An image source named inside a chat: a data: or http(s) URL, never a local file."""
    # A chat comes from users and tools: never let it name a file on this machine.
    if not isinstance(url, str) or url.split(":", 1)[0].lower() not in _URL_SCHEMES:
        raise InvalidInputError(f"{where}: {what} must be a data: or http(s) URL: {url!r:.60}")
    return url


def _read_tool_call(call: Any, index: int, where: str) -> Part:
    call = as_message(call)
    function = call.get("function")
    if call.get("type", "function") != "function" or not isinstance(function, Mapping):
        raise InvalidInputError(f"{where}: cannot check a tool call of type {call.get('type')!r}")
    name = clean_text(function.get("name", ""), what=f"{where} name")
    arguments = function.get("arguments", "")
    if not isinstance(arguments, str):  # LangChain keeps arguments parsed
        arguments = json.dumps(arguments, ensure_ascii=False, sort_keys=True, default=str)
    text = clean_text(arguments, what=f"{where} arguments")
    return Part("tool_call", "assistant", index, text=text, name=name)


def _unreadable(role: str, index: int, what: str, raw: Any) -> Part:
    source = json.dumps(raw, sort_keys=True, default=str)
    reason = f"cannot check {what} (the guard reads text and images)"
    return Part("other", role, index, unreadable=reason, source=source)


# -- laying out -----------------------------------------------------------------------------


def _render_run(
    run: Sequence[tuple[int, Part | int]], image_numbers: Mapping[int, int]
) -> list[str]:
    lines: list[str] = []
    last: int | None = None  # the message whose header was written last
    for position, part in run:
        if isinstance(part, int):
            lines.append(f"[{part} part{'s' if part != 1 else ''} checked earlier, not repeated]")
            last = None
        elif part.kind == "tool_call":
            lines.append(
                f"[message {part.message}, assistant tool call: {escape(part.name or '')}]"
            )
            lines.append(escape(part.text or ""))
            last = None
        elif part.kind == "tool_result":
            tool = f": {escape(part.name)}" if part.name else ""
            lines += [f"[message {part.message}, tool result{tool}]", escape(part.text or "")]
            last = part.message
        elif part.kind == "text" and not part.text:
            continue  # an empty text (a tool-calling turn's content ""): nothing to show
        else:
            if part.message != last:
                lines.append(f"[message {part.message}, {part.role}]")
                last = part.message
            if part.kind == "image":
                lines.append(f"[image {image_numbers[position]}]")
            else:
                lines.append(escape(part.text or ""))
    return lines
