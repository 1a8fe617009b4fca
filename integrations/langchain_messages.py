"""Reading LangChain for the guard: requests out of any chain input, answers out of AI messages.

:func:`read_request` reads what a chain step receives (a str, a ``PromptValue``, messages, a dict
of prompt variables) through ``convert_to_openai_messages`` and the middleware's reader: every
role, the text and image parts (base64 ``data:`` URLs, LangChain's standard image blocks;
``http(s)`` URLs only where the guard fetches images). A part the guard cannot read (audio,
files) raises :class:`~guardvl_sdk.errors.InvalidInputError` rather than pass unchecked, and so
does any other field a chat model would receive (a long ``name``, a human message's
``additional_kwargs``, an unknown key in a content block): an allowlist.

:func:`answer_text` / :func:`judged_answer` read what an AI message returns to its caller, its
reasoning included, with an allowlist of blocks and ``additional_kwargs``; :func:`chunk_text` and
:func:`streamed_answer` do the same for a streamed answer. The runnable
(:mod:`.langchain_runnable`), the chat model (:mod:`.langchain`) and the agent middleware
(:mod:`.langchain_agents`) all read through here.
"""

# ruff: noqa: E402  (the extra is checked before the imports that need it)
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from guardvl_sdk.extras import require

require("langchain", "guardvl_sdk.integrations.langchain")

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    convert_to_openai_messages,
)
from langchain_core.prompt_values import PromptValue

from guardvl_sdk.conversation import MESSAGE_KEYS, check_name, refuse_unread_keys
from guardvl_sdk.errors import InvalidInputError
from guardvl_sdk.hooks import Request, RequestReader
from guardvl_sdk.inputs import clean_text

__all__ = [
    "answer_text",
    "chunk_text",
    "judged_answer",
    "openai_chat",
    "output_answer",
    "read_request",
    "streamed_answer",
]

# -- reading LangChain inputs ---------------------------------------------------------------


def read_request(value: Any) -> Request:
    """The request a guard checks in a LangChain input.

    Args:
        value: A str; a ``PromptValue``; a message or a list of messages (``BaseMessage``,
            OpenAI-format dicts, ``(role, text)`` tuples), read as a whole conversation (every
            role, tool calls and tool results, every image); or a dict of prompt variables,
            whose values are read the same way (a str that is an image ``data:`` URL counts as
            an image, a number as text, ``None`` as nothing).

    Returns:
        The :class:`~guardvl_sdk.hooks.Request`: its text and images, and its chat as
        OpenAI-format ``messages`` when the input held messages.

    Raises:
        InvalidInputError: Nothing to check, or content the guard cannot read.
    """
    reader = RequestReader()
    _read_into(value, "the input", reader)
    empty = not any(text.strip() for text in reader.texts) and not reader.images
    if empty and not reader.messages:
        raise InvalidInputError("nothing to check in the input: no user text and no image")
    return reader.request()


# -- reading a model's answer: its text and its reasoning -----------------------------------

# Content blocks of an AI message, by type. Text and reasoning are output the caller gets, so
# both are judged (a reasoning model's thoughts are output too); tool-call blocks mirror the
# message's tool_calls, which are judged as part of the answer. Any other block (an image, audio,
# an opaque redacted thought, a kind LangChain adds later) is refused: an allowlist.
_TEXT_BLOCKS = {"text": ("text",), "thinking": ("thinking",), "reasoning": ("reasoning", "summary")}
_TOOL_CALL_BLOCKS = frozenset({"tool_use", "tool_call", "tool_call_chunk"})
# additional_kwargs of an AI message: reasoning and refusals are judged; tool and function calls
# mirror tool_calls (function_call is judged as text); parsed mirrors the content. Others refused.
_REASONING_KWARGS = ("reasoning_content", "reasoning")
_JUDGED_KWARGS = frozenset({*_REASONING_KWARGS, "refusal", "function_call"})
_MIRRORED_KWARGS = frozenset({"tool_calls", "parsed"})


def _texts_in(value: Any) -> list[str]:
    """The strings in a block field: a str, or the ``text`` of each item of a list of parts."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return _texts_in(value.get("text")) + _texts_in(value.get("summary"))
    if isinstance(value, list):
        return [text for item in value for text in _texts_in(item)]
    return []


def _pieces(message: BaseMessage) -> list[tuple[str, str]]:
    """What an AI message returns to its caller, as ``(kind, text)`` in order, kind ``text`` or
    ``reasoning``: the reasoning in ``additional_kwargs`` first, then the content blocks.

    Raises:
        InvalidInputError: A content block or an ``additional_kwargs`` field the guard does not
            read: it would reach the caller unjudged.
    """
    pieces: list[tuple[str, str]] = []
    for key, value in message.additional_kwargs.items():
        if key in _MIRRORED_KWARGS or value is None:
            continue
        if key not in _JUDGED_KWARGS:
            raise InvalidInputError(
                f"the answer's additional_kwargs[{key!r}] would reach the caller unchecked; "
                f"the guard reads {sorted(_JUDGED_KWARGS | _MIRRORED_KWARGS)}"
            )
        kind = "reasoning" if key in _REASONING_KWARGS else "text"
        if key == "function_call" and isinstance(value, Mapping):
            value = f"{value.get('name', '')}({value.get('arguments', '')})"
        pieces += [(kind, text) for text in _texts_in(value)]
    content = message.content
    for block in [content] if isinstance(content, str) else content:
        if isinstance(block, str):
            pieces.append(("text", block))
            continue
        block_type = block.get("type") if isinstance(block, Mapping) else None
        _check_block(block, "the answer's content block", "the caller")
        if block_type in _TOOL_CALL_BLOCKS:
            continue
        if block_type not in _TEXT_BLOCKS:
            raise InvalidInputError(
                f"the answer's content block of type {block_type!r} would reach the caller "
                f"unchecked; the guard reads {sorted(_TEXT_BLOCKS)} and tool calls"
            )
        assert isinstance(block, Mapping)
        fields = _TEXT_BLOCKS[block_type]
        texts = [text for field in fields for text in _texts_in(block.get(field))]
        pieces += [("text" if block_type == "text" else "reasoning", text) for text in texts]
    return pieces


def answer_text(message: BaseMessage) -> str:
    """What the guard judges of a model's answer: its reasoning, then its text.

    Reasoning is read from ``thinking`` / ``reasoning`` content blocks and from
    ``additional_kwargs["reasoning_content"]`` (or ``["reasoning"]``), since a reasoning model's
    thoughts reach the caller too; the layout is the OpenAI adapter's (reasoning, a blank line,
    the text).

    Raises:
        InvalidInputError: The answer holds a block or field the guard does not read.
    """
    pieces = _pieces(message)
    reasoning = "\n\n".join(text for kind, text in pieces if kind == "reasoning" and text)
    text = "".join(text for kind, text in pieces if kind == "text")
    return f"{reasoning}\n\n{text}" if reasoning else text


def chunk_text(chunk: BaseMessage) -> str:
    """The judged text a streamed chunk adds: its reasoning and text pieces, as they come."""
    return "".join(text for _, text in _pieces(chunk))


def judged_answer(message: BaseMessage) -> str | dict[str, Any]:
    """A model's answer: its text, or with tool calls the assistant message (judged whole)."""
    text = answer_text(message)
    if isinstance(message, AIMessage) and message.tool_calls:
        converted = dict(convert_to_openai_messages(message))
        return {"role": "assistant", "content": text, "tool_calls": converted["tool_calls"]}
    return text


def openai_chat(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """LangChain messages as the OpenAI-format chat the guard reads, every field accounted for.

    ``convert_to_openai_messages`` drops what it does not know, so a dict message with a field
    the reader does not know is refused here first, and an AI message's reasoning (blocks or
    ``additional_kwargs``) is kept as its text (see :func:`answer_text`); any other field a chat
    model would receive is read or refused (see ``_check_sent_fields``).

    Raises:
        InvalidInputError: A field, block or message the guard cannot read.
    """
    chat: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if isinstance(message, Mapping):
            unknown = sorted(set(message) - MESSAGE_KEYS - {"type"})
            if unknown:
                raise InvalidInputError(
                    f"cannot check the message field(s) {unknown}; known: {sorted(MESSAGE_KEYS)}"
                )
        _check_sent_fields(message, f"messages[{index}]")
        try:  # a list of one: a tuple is a message, and one message may become several
            converted = [dict(m) for m in convert_to_openai_messages([message])]
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise InvalidInputError(f"cannot read the messages: {exc}") from exc
        if isinstance(message, AIMessage) and _has_reasoning_or_extras(message):
            converted[0]["content"] = answer_text(message)
        if isinstance(message, AIMessage) and message.invalid_tool_calls:
            # Dropped by convert_to_openai_messages, sent by chat models as tool calls: judged.
            converted[0]["tool_calls"] = [
                *converted[0].get("tool_calls", []),
                *(_as_openai_call(call) for call in message.invalid_tool_calls),
            ]
        chat += converted
    return chat


# What a chat model receives of a request message beyond what the guard renders, allowlisted.
# A message's name is metadata OpenAI forwards, allowed only within OpenAI's own limit (so it
# cannot carry a sentence); additional_kwargs of a non-AI message are refused when non-empty
# (an AI message's are read by answer_text); id, response_metadata, usage_metadata, a tool
# result's artifact and status are not sent to the model. In a content block, every key is one
# the guard reads or short metadata (keys of the block types below); any other non-empty key
# is refused. Block types not listed are left to the reader, which refuses what it cannot read.
_BLOCK_METADATA = frozenset({"type", "id", "index"})
_BLOCK_KEYS = {
    "text": {"text"},
    "input_text": {"text"},
    "output_text": {"text"},
    "refusal": {"refusal"},
    "image_url": {"image_url"},
    "input_image": {"image_url", "detail"},
    "image": {"source_type", "data", "base64", "url", "mime_type", "file_id"},
    "thinking": {"thinking", "signature"},
    "reasoning": {"reasoning", "summary"},
    "tool_use": {"name", "input"},
    "tool_call": {"name", "args"},
    "tool_call_chunk": {"name", "args"},
}


def _check_sent_fields(message: Any, where: str) -> None:
    """Refuse a field of a request message that the model would receive and the guard would not
    read: a name beyond OpenAI's limit, a non-AI message's additional_kwargs, an unknown key in
    a content block (see the allowlist above).

    Raises:
        InvalidInputError: Such a field, non-empty.
    """
    name: Any
    content: Any
    extras: Mapping[str, Any]
    if isinstance(message, BaseMessage):
        name, content = message.name, message.content
        extras = {} if isinstance(message, AIMessage) else message.additional_kwargs
    elif isinstance(message, Mapping):
        name, content, extras = message.get("name"), message.get("content"), {}
    else:  # a (role, text) tuple or a str: nothing but its text
        return
    check_name(name, where)
    sent = sorted(key for key, value in extras.items() if _non_empty(value))
    if sent:
        raise InvalidInputError(
            f"{where}: additional_kwargs {sent} would reach the model unchecked"
        )
    for n, block in enumerate(content if isinstance(content, list) else []):
        _check_block(block, f"{where}.content[{n}]", "the model")


def _check_block(block: Any, where: str, reaches: str) -> None:
    """Refuse a content block of a listed type with a non-empty key the guard does not read.

    Raises:
        InvalidInputError: Such a key (named, with the keys the guard reads).
    """
    if not isinstance(block, Mapping) or block.get("type") not in _BLOCK_KEYS:
        return
    refuse_unread_keys(block, _BLOCK_KEYS[block["type"]] | _BLOCK_METADATA, where, reaches)


def _non_empty(value: Any) -> bool:
    return value is not None and value != "" and value != {} and value != []


def _as_openai_call(call: Mapping[str, Any]) -> dict[str, Any]:
    """An invalid tool call (its arguments as the model wrote them) as an OpenAI tool call."""
    function = {"name": call.get("name") or "", "arguments": call.get("args") or ""}
    return {"type": "function", "id": call.get("id"), "function": function}


def _has_reasoning_or_extras(message: AIMessage) -> bool:
    """Whether an AI message holds more than ``convert_to_openai_messages`` keeps as content."""
    blocks = [] if isinstance(message.content, str) else message.content
    typed = {block.get("type") for block in blocks if isinstance(block, Mapping)}
    return bool(set(message.additional_kwargs) - _MIRRORED_KWARGS) or bool(
        typed - {"text"} - _TOOL_CALL_BLOCKS
    )


def streamed_answer(text: str, chunks: list[AIMessageChunk]) -> str | dict[str, Any]:
    """A streamed answer as the final check judges it: its text, with the tool calls its chunks
    assembled (each field's pieces concatenated by call index, the arguments as streamed, so
    arguments that do not parse are judged too)."""
    pieces = [call for chunk in chunks for call in chunk.tool_call_chunks]
    if not pieces:
        return text
    calls: dict[Any, dict[str, Any]] = {}
    for n, piece in enumerate(pieces):
        key = piece.get("index") if piece.get("index") is not None else f"#{n}"
        call = calls.setdefault(
            key, {"type": "function", "id": None, "function": {"name": "", "arguments": ""}}
        )
        call["id"] = call["id"] or piece.get("id")
        call["function"]["name"] += piece.get("name") or ""
        call["function"]["arguments"] += piece.get("args") or ""
    return {"role": "assistant", "content": text, "tool_calls": list(calls.values())}


def _read_into(value: Any, where: str, reader: RequestReader) -> None:
    if value is None:
        return
    if isinstance(value, str):
        if value[:11].lower() == "data:image/":
            reader.add_images(value)
        else:
            reader.texts.append(clean_text(value, what=where))
    elif isinstance(value, PromptValue):
        _read_chat(value.to_messages(), where, reader)
    elif isinstance(value, BaseMessage) or _is_message(value):
        _read_chat([value], where, reader)
    elif isinstance(value, Mapping):  # prompt variables: every value is read
        for key, item in value.items():
            _read_into(item, f"{where}[{key!r}]", reader)
    elif isinstance(value, list | tuple):
        _read_chat(value, where, reader)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        reader.texts.append(str(value))
    else:
        raise InvalidInputError(f"{where}: cannot check a {type(value).__name__}")


def _read_chat(messages: Sequence[Any], where: str, reader: RequestReader) -> None:
    try:
        reader.add_messages(openai_chat(list(messages)))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from exc


def _is_message(value: Any) -> bool:
    """A dict is one chat message only if every key is a message field: prompt variables that
    happen to include ``role`` and ``content`` are variables, each of them read."""
    return isinstance(value, Mapping) and "role" in value and set(value) <= MESSAGE_KEYS | {"type"}


def output_answer(value: Any) -> str | dict[str, Any]:
    """The answer an output guard judges: a str, or a message's text, reasoning and tool calls."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return judged_answer(value)
    raise InvalidInputError(
        f"an output guard checks a str or a message, not {type(value).__name__}"
    )
