"""Reading OpenAI-format answers: each choice of a chat completion, and of a streamed one.

The one reader of chat-completion answers, for every adapter that receives them (the OpenAI
client, LiteLLM): objects with the OpenAI shape (``choice.message``, ``choice.delta``), read by
attribute, so any library's types with that shape are read alike. What a choice returns to its
caller is judged: its reasoning (``reasoning_content``, ``reasoning``: a reasoning model's
thoughts are output too), its text, its refusal, and its tool calls' names and arguments (the
legacy ``function_call`` too).

THE ANSWER ALLOWLIST: a message or delta field outside :data:`ANSWER_FIELDS` that holds anything
raises :class:`~guardvl_sdk.errors.InvalidInputError`: it would reach the caller unjudged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from guardvl_sdk.checks import Due
from guardvl_sdk.errors import InvalidInputError
from guardvl_sdk.hooks.options import StreamOptions
from guardvl_sdk.hooks.stream import StreamGate

__all__ = [
    "ANSWER_FIELDS",
    "REASONING_FIELDS",
    "StreamedChoices",
    "answer_text",
    "choice_answers",
    "reasoning_text",
    "refuse_unread",
]

REASONING_FIELDS = ("reasoning_content", "reasoning")
"""Answer fields a reasoning model fills besides content, judged as output."""

ANSWER_FIELDS = frozenset(
    {*REASONING_FIELDS, "content", "refusal", "tool_calls", "function_call", "role"}
)
"""The fields of an answer message or delta the reader knows: each is judged (``role`` carries
nothing). Any other field that is not empty is refused."""


def refuse_unread(fields: Mapping[str, Any], known: Iterable[str], what: str = "answer") -> None:
    """The answer allowlist's one rule: raise ``InvalidInputError`` if ``fields`` holds anything
    (a field that is not empty) outside ``known``, the fields the guard judges or that carry no
    content. Every adapter's answer reader applies it to what it returns to the caller.

    Args:
        fields: The fields of one answer object (a pydantic model's dump: declared and extra).
        known: The fields the reader judges or knows to be harmless.
        what: The object's name, for the message.
    """
    allowed = frozenset(known)
    unread = sorted(name for name, value in fields.items() if name not in allowed and value)
    if unread:
        raise InvalidInputError(
            f"the {what}'s field(s) {unread} would reach the caller unchecked; the guard reads "
            f"{sorted(allowed)}"
        )


def refuse_unread_fields(item: Any) -> None:
    """Raise ``InvalidInputError`` if a message or delta holds a field the reader does not judge.

    Args:
        item: A pydantic message or delta (its declared and extra fields are read).
    """
    dump = getattr(item, "model_dump", None)
    fields: dict[str, Any] = dump(exclude_none=True) if callable(dump) else {}
    refuse_unread(fields, ANSWER_FIELDS)


def reasoning_text(item: Any) -> str:
    """A message's or delta's reasoning text (``reasoning_content`` and the like), or ``""``.

    Every reasoning field present is read, not the first: a server may fill two differently.
    """
    extra = getattr(item, "model_extra", None) or {}
    texts: list[str] = []
    for name in REASONING_FIELDS:
        value = extra.get(name, getattr(item, name, None))
        if isinstance(value, str) and value and value not in texts:
            texts.append(value)
    return "\n\n".join(texts)


def answer_text(message: Any) -> str:
    """What the guard checks of one answer's text: its reasoning (thoughts are output too), its
    content and its refusal (the caller gets all three), in that order, as a stream sends them.

    Raises:
        InvalidInputError: The message holds a field the reader does not judge.
    """
    refuse_unread_fields(message)
    texts = (reasoning_text(message), getattr(message, "content", None), _refusal(message))
    return "\n\n".join(text for text in texts if text)


def _refusal(message: Any) -> str:
    refusal = getattr(message, "refusal", None)
    return refusal if isinstance(refusal, str) else ""


def _calls(message: Any) -> list[dict[str, Any]]:
    """A message's tool calls as the guard judges them: each one's id, type, name and arguments;
    the legacy single ``function_call`` as one more."""
    calls = [
        call.model_dump(include={"id", "type", "function"})
        for call in getattr(message, "tool_calls", None) or []
    ]
    legacy = getattr(message, "function_call", None)
    if legacy is not None:
        function = {"name": legacy.name or "", "arguments": legacy.arguments or ""}
        calls.append({"id": None, "type": "function", "function": function})
    return calls


def choice_answers(choices: Iterable[Any]) -> dict[int, str | dict[str, Any]]:
    """The answer of each choice, by index: its text (with its reasoning), or with tool calls the
    assistant message (the calls' names and arguments are judged as part of the answer).

    Raises:
        InvalidInputError: A message holds a field the reader does not judge.
    """
    answers: dict[int, str | dict[str, Any]] = {}
    for choice in choices:
        message = choice.message
        text, calls = answer_text(message), _calls(message)
        if not calls:
            answers[choice.index or 0] = text
            continue
        answers[choice.index or 0] = {"role": "assistant", "content": text, "tool_calls": calls}
    return answers


@dataclass
class StreamedChoices:
    """The choices of one streamed completion, each held back by its own stream gate.

    The :class:`~guardvl_sdk.hooks.Gates` of an OpenAI-format stream: the stream drivers run it.
    A choice's text (reasoning, content, refusal) is checked as it streams; its tool calls are
    assembled from their deltas and judged whole with its text by the final check, and the
    chunks from the first tool-call delta on are held until that check passed: a blocked call is
    never delivered. A delta with a field the reader does not judge raises
    ``InvalidInputError``.
    """

    options: StreamOptions
    streams: dict[int, StreamGate[Any]] = field(default_factory=dict)
    calls: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)  # choice -> calls
    tail: list[Any] = field(default_factory=list)  # usage chunks: at the end
    id: str | None = None
    model: str = ""
    finished: set[int] = field(default_factory=set)  # choices whose finish_reason came

    def add(self, chunk: Any) -> list[Due]:
        """Hold a chunk; return the checks due now."""
        self.id = self.id or chunk.id
        self.model = getattr(chunk, "model", None) or self.model
        if not chunk.choices:
            self.tail.append(chunk)
            return []
        due: list[Due] = []
        for choice in chunk.choices:  # one choice per chunk, as servers send them
            part = (
                chunk if len(chunk.choices) == 1 else chunk.model_copy(update={"choices": [choice]})
            )
            index = choice.index or 0
            if choice.finish_reason is not None:
                self.finished.add(index)
            delta = choice.delta
            refuse_unread_fields(delta)
            calls = self._add_calls(index, delta)
            content = getattr(delta, "content", None) or ""
            added = reasoning_text(delta) + content + (getattr(delta, "refusal", None) or "")
            checked = self._gate(index).add(part, added, to_end=calls)
            if checked is not None:
                due.append(Due(index, *checked))
        return due

    def release(self, key: int) -> list[Any]:
        """The chunks of choice ``key`` a passed mid-stream check lets out."""
        return self.streams[key].release()

    def finish(self) -> list[Due]:
        """The final checks: each choice's whole answer (an empty one too), unless checked.

        A choice that made tool calls is judged as the assistant message: its text and calls.
        """
        if not self.streams:
            self._gate(0)  # a stream with no choice at all is an empty answer, checked too
        due = []
        for index, stream in self.streams.items():
            text = stream.finish()
            if text is None:
                continue
            calls = self.calls.get(index)
            if not calls:
                due.append(Due(index, text))
                continue
            ordered = [calls[i] for i in sorted(calls)]
            message = {"role": "assistant", "content": text, "tool_calls": ordered}
            due.append(Due(index, message))
        return due

    def open(self, blocked: int) -> list[int]:
        """The choices a block ends: the blocked one, and all whose end the caller has not had."""
        return [
            index
            for index, stream in sorted(self.streams.items())
            if index == blocked or index not in self.finished or stream.held
        ]

    def release_all(self) -> list[Any]:
        """Every held chunk, after the final checks passed; usage chunks last."""
        held = [chunk for stream in self.streams.values() for chunk in stream.release(final=True)]
        return held + self.tail

    def _gate(self, index: int) -> StreamGate[Any]:
        return self.streams.setdefault(index, StreamGate(self.options))

    def _add_calls(self, index: int, delta: Any) -> bool:
        """Assemble the tool-call deltas of a choice (as openai's own accumulator does: the
        pieces of each field concatenated); True when the delta carried any."""
        pieces: list[tuple[int, str | None, str | None, Any]] = [
            (call.index, getattr(call, "id", None), getattr(call, "type", None), call.function)
            for call in getattr(delta, "tool_calls", None) or []
        ]
        function_call = getattr(delta, "function_call", None)
        if function_call is not None:  # the legacy single call
            pieces.append((-1, None, "function", function_call))
        calls = self.calls.setdefault(index, {})
        for at, id_, type_, function in pieces:
            call = calls.setdefault(
                at, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            call["id"] = id_ or call["id"]
            call["type"] = type_ or call["type"]
            if function is not None:
                call["function"]["name"] += getattr(function, "name", None) or ""
                call["function"]["arguments"] += getattr(function, "arguments", None) or ""
        return bool(pieces)
