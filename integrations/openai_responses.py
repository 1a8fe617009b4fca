"""``guard_openai(client, guard).responses.create``: the Responses API, guarded like chat.

One module over 400 lines on purpose: the Responses API's whole call surface (items, allowlists,
events; sync and async) with its types.

The request's ``instructions`` and ``input`` items (messages with text and images, function
calls and their outputs, reasoning) are read as one conversation
(:func:`guardvl_sdk.conversation.from_responses_input`) and checked before the call; the
response's output items (message text and refusals, reasoning, every function call's name and
arguments) are judged as the answer, in that context, before the caller receives them. A stream
releases its text deltas as mid-stream checks pass (``stream_every``, ``stream_window``,
``buffered``), and holds every event from a function call's first event on until the final check
has judged the whole answer: a blocked call is never delivered.

Allowlists, as for chat completions: an output item (or content part) field outside
:data:`OUTPUT_FIELDS` that holds anything, a pydantic extra field included, is
:class:`~guardvl_sdk.errors.InvalidInputError` and the answer is withheld (it would reach the
caller unjudged); so is an extra field of a text delta event but its ``obfuscation`` padding. A
``create()``
argument outside :data:`FORWARDED` is refused
(``previous_response_id`` / ``conversation`` / ``prompt`` bring in context the guard never saw,
``background`` an answer it would never judge, ``include`` output it does not read), so is any
tool but a function tool (a hosted tool fetches content the guard does not see), and so is a
stream event of a type the guard does not read. Of ``client.responses`` only ``create`` (guarded),
``delete``, ``cancel``, ``input_items`` and ``input_tokens`` pass; ``retrieve``, ``stream``,
``parse``, ``compact``, ``connect`` and the raw-response wrappers are refused.

On a block: ``on_block="raise"`` raises :class:`~guardvl_sdk.errors.GuardBlocked`
(``blocked_output``: the withheld ``Response``, or for a stream the text so far);
``on_block="refuse"`` returns the response with its output replaced by the refusal, status
``incomplete`` and ``incomplete_details.reason == "content_filter"`` (a stream ends with the
events of that refusal).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openai.types.responses import (
    Response,
    ResponseIncompleteEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
)
from openai.types.responses.response import IncompleteDetails

from guardvl_sdk.conversation import (
    Message,
    as_message,
    from_responses_input,
    from_responses_output,
)
from guardvl_sdk.errors import ConfigurationError, GuardBlocked, InvalidInputError
from guardvl_sdk.hooks import (
    Due,
    Request,
    StreamGate,
    StreamOptions,
    arun_flow,
    read_messages,
    refuse_unread,
    run_flow,
)
from guardvl_sdk.verdict import Verdict

from .openai_create import GuardedCreate  # relative: mypy reads integrations/ as it lies
from .openai_streams import (
    AsyncGuardedStream,
    GuardedStream,
    refuse_unknown_fields,
)

__all__ = ["FORWARDED", "AsyncResponses", "Responses"]

FORWARDED = frozenset(
    {
        "input",
        "instructions",
        "model",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "max_output_tokens",
        "max_tool_calls",
        "top_logprobs",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "text",
        "truncation",
        "metadata",
        "store",
        "service_tier",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "timeout",
        "extra_headers",
        "extra_query",
        "extra_body",
    }
)
"""The ``responses.create()`` arguments forwarded: read by the guard (``input``,
``instructions``, function ``tools``), or unable to carry content to the model or back."""

OUTPUT_FIELDS: dict[str, frozenset[str]] = {
    # output items, by type
    "message": frozenset({"id", "type", "role", "status", "phase", "content"}),
    "function_call": frozenset({"id", "type", "call_id", "name", "arguments", "status"}),
    "reasoning": frozenset({"id", "type", "status", "summary", "content", "encrypted_content"}),
    # their content parts, by type (annotations: citations of hosted tools, only empty)
    "output_text": frozenset({"type", "text", "logprobs"}),
    "refusal": frozenset({"type", "refusal"}),
    "summary_text": frozenset({"type", "text"}),
    "reasoning_text": frozenset({"type", "text"}),
}
"""THE ANSWER ALLOWLIST of the Responses API: the fields of each output item and content part,
by type, that the guard judges (text, refusal, reasoning, a call's name and arguments) or that
carry no content (ids, status, the judged text's logprobs). An item of another type is refused by
:func:`~guardvl_sdk.conversation.from_responses_output`."""

_PASSED = frozenset({"create", "delete", "cancel", "input_items", "input_tokens"})

# Stream events that carry the answer's text as it streams (checked mid-stream).
_TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
    }
)
# Every other event type the guard reads: lifecycle events and snapshots of what the deltas
# built (done events, items, the response), compared with the deltas (see _Events.add).
_EVENTS = _TEXT_DELTAS | {
    "response.created",
    "response.in_progress",
    "response.queued",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.done",
    "response.refusal.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.done",
    "response.reasoning_text.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
}


def _start(kwargs: dict[str, Any]) -> Request:
    """Read the request (``kwargs["input"]`` becomes a list or stays a str); refuse the rest."""
    if "input" not in kwargs:
        raise InvalidInputError("responses.create needs input=")
    refuse_unknown_fields(kwargs, FORWARDED, "responses.create")
    for tool in kwargs.get("tools") or []:
        kind = as_message(tool).get("type")
        if kind != "function":
            raise ConfigurationError(
                f"guard_openai does not forward a {kind!r} tool: a hosted tool runs on the server "
                "and the guard would not see what it fetches (function tools only)"
            )
    if not isinstance(kwargs["input"], str):
        kwargs["input"] = list(kwargs["input"])
    return read_messages(from_responses_input(kwargs["input"], kwargs.get("instructions")))


def _answer(output: Any) -> dict[str, Any]:
    """What the guard judges of a response's output: one assistant message (text, calls).

    Raises:
        InvalidInputError: An item or part holds a field the guard does not judge.
    """
    items = [_read_item(item) for item in output]
    return from_responses_output(items)


def _read_item(raw: Any) -> Message:
    """An output item as a mapping, once it and its content parts passed the allowlist."""
    item = as_message(raw)
    _refuse_unread(item, "output item")
    for key in ("content", "summary"):
        for part in item.get(key) or []:
            _refuse_unread(as_message(part), "content part")
    return item


def _refuse_unread(fields: Message, what: str) -> None:
    known = OUTPUT_FIELDS.get(str(fields.get("type")))
    if known is not None:  # an unknown type is refused whole by the reader
        refuse_unread(fields, known, f"response {what} {fields.get('type')!r}")


def _refuse_extra(event: Any) -> None:
    """Refuse the extra fields (undeclared by openai's types) of a text delta event, but its
    ``obfuscation``: random padding OpenAI adds to normalize the size of streamed events."""
    extra = getattr(event, "model_extra", None) or {}
    refuse_unread(extra, ("obfuscation",), f"stream event {event.type!r}")


def _refusal_message(refusal: str) -> ResponseOutputMessage:
    text = ResponseOutputText(type="output_text", text=refusal, annotations=[])
    return ResponseOutputMessage(
        id=f"msg_guardvl-{uuid.uuid4().hex}",
        type="message",
        role="assistant",
        status="completed",
        content=[text],
    )


def _refusal_response(refusal: str, model: str, base: Response | None = None) -> Response:
    """A response whose output is the refusal: ``incomplete``, for ``content_filter``."""
    fields: dict[str, Any] = {
        "output": [_refusal_message(refusal)],
        "status": "incomplete",
        "incomplete_details": IncompleteDetails(reason="content_filter"),
    }
    if base is not None:
        return base.model_copy(update=fields)
    return Response(
        id=f"resp_guardvl-{uuid.uuid4().hex}",
        object="response",
        created_at=time.time(),
        model=model,
        parallel_tool_calls=False,
        tool_choice="none",
        tools=[],
        **fields,
    )


def _refusal_events(
    refusal: str, model: str, base: Response | None, output_index: int, sequence: int
) -> list[ResponseStreamEvent]:
    """The events that end a stream with the refusal: its message item, its text, the end."""
    response = _refusal_response(refusal, model, base)
    message = response.output[0]
    assert isinstance(message, ResponseOutputMessage)
    empty = message.model_copy(update={"content": [], "status": "in_progress"})
    return [
        ResponseOutputItemAddedEvent(
            type="response.output_item.added",
            item=empty,
            output_index=output_index,
            sequence_number=sequence,
        ),
        ResponseTextDeltaEvent(
            type="response.output_text.delta",
            item_id=message.id,
            output_index=output_index,
            content_index=0,
            delta=refusal,
            logprobs=[],
            sequence_number=sequence + 1,
        ),
        ResponseOutputItemDoneEvent(
            type="response.output_item.done",
            item=message,
            output_index=output_index,
            sequence_number=sequence + 2,
        ),
        ResponseIncompleteEvent(
            type="response.incomplete", response=response, sequence_number=sequence + 3
        ),
    ]


@dataclass
class _Events:
    """The :class:`~guardvl_sdk.hooks.Gates` of a Responses stream: one answer, held back.

    Text deltas (output text, refusals, reasoning) are checked as they stream. A function call is
    judged only whole, by the final check: its first event holds it and every event after it
    until that check passed. The other events repeat what the deltas built (done events, items,
    the response object); any text or call in them that the deltas did not build is new
    content: it is held to the end too, and judged with the answer.
    """

    options: StreamOptions
    gate: StreamGate[ResponseStreamEvent] = field(init=False)
    texts: dict[tuple[str, int, int], str] = field(default_factory=dict)  # built by deltas
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # by output index
    extra_texts: list[str] = field(default_factory=list)  # seen only in snapshots
    extra_calls: list[dict[str, Any]] = field(default_factory=list)
    last_text: tuple[str, int, int] | None = None
    response: Response | None = None  # the latest response object the stream carried
    sequence: int = 0
    outputs: int = 0

    def __post_init__(self) -> None:
        self.gate = StreamGate(self.options)

    def add(self, event: ResponseStreamEvent) -> list[Due]:
        kind = event.type
        if kind not in _EVENTS:
            raise InvalidInputError(
                f"cannot check a response stream event of type {kind!r}: the guard reads text, "
                "reasoning and function calls (call .unguarded on purpose without the guard)"
            )
        self.sequence = max(self.sequence, event.sequence_number + 1)
        index = getattr(event, "output_index", None)
        if isinstance(index, int):
            self.outputs = max(self.outputs, index + 1)
        added, to_end = "", False
        if kind in _TEXT_DELTAS:
            _refuse_extra(event)
            added = self._delta_text(event)
        elif kind == "response.function_call_arguments.delta":
            self._call(event.output_index)["arguments"] += event.delta  # type: ignore[union-attr]
            to_end = True
        else:
            to_end = self._snapshot(event)
        due = self.gate.add(event, added, to_end=to_end)
        return [] if due is None else [Due(0, *due)]

    def release(self, key: int) -> list[ResponseStreamEvent]:
        return self.gate.release()

    def finish(self) -> list[Due]:
        text = self.gate.finish()
        if text is None:
            return []
        calls = [*(self.calls[i] for i in sorted(self.calls)), *self.extra_calls]
        if not calls and not self.extra_texts:
            return [Due(0, text)]
        content = [{"type": "output_text", "text": t} for t in [text, *self.extra_texts] if t]
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = [
                {
                    "type": "function",
                    "id": c["call_id"],
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in calls
            ]
        return [Due(0, message)]

    def release_all(self) -> list[ResponseStreamEvent]:
        return self.gate.release(final=True)

    def _delta_text(self, event: Any) -> str:
        """A text delta, a blank line before it when it starts another text than the last."""
        key = (event.type, event.output_index, _sub_index(event))
        separator = "\n\n" if self.last_text not in (None, key) and self.gate.text else ""
        self.last_text = key
        delta = str(event.delta)
        self.texts[key] = self.texts.get(key, "") + delta
        return separator + delta

    def _call(self, output_index: int, item: Any = None) -> dict[str, Any]:
        call = self.calls.setdefault(output_index, {"call_id": None, "name": "", "arguments": ""})
        if item is not None:
            call["call_id"] = call["call_id"] or item.call_id
            call["name"] = call["name"] or item.name
        return call

    def _snapshot(self, event: Any) -> bool:
        """Read an event that repeats content; True when it holds content the deltas did not
        build (then it is remembered for the final check)."""
        items: list[Any] = []
        texts: list[str] = []
        if getattr(event, "response", None) is not None:
            self.response = event.response
            items += event.response.output
        if getattr(event, "item", None) is not None:
            items.append(event.item)
            if event.type == "response.output_item.added" and event.item.type == "function_call":
                self._call(event.output_index, event.item)["arguments"] += event.item.arguments
                return True  # a function call starts: held until judged whole
        part = getattr(event, "part", None)
        if part is not None:
            _refuse_unread(as_message(part), "content part")
            texts.append(getattr(part, "text", None) or getattr(part, "refusal", None) or "")
        for name in ("text", "refusal"):
            if isinstance(getattr(event, name, None), str):
                texts.append(getattr(event, name))
        if event.type == "response.function_call_arguments.done":
            call = self._call(event.output_index)
            items.append(
                {
                    "type": "function_call",
                    "call_id": call["call_id"],
                    "name": call["name"],
                    "arguments": event.arguments,
                }
            )
        new = False
        for item in items:
            answer = from_responses_output([_read_item(item)])
            texts += [str(p.get("text") or p.get("refusal") or "") for p in answer["content"]]
            for call in answer.get("tool_calls", []):
                function = call["function"]
                if not self._known_call(function["name"], function["arguments"]):
                    self.extra_calls.append(
                        {
                            "call_id": call["id"],
                            "name": function["name"],
                            "arguments": function["arguments"],
                        }
                    )
                    new = True
        built = set(self.texts.values())
        for text in texts:
            if text and text not in built and text not in self.extra_texts:
                self.extra_texts.append(text)
                new = True
        return new

    def _known_call(self, name: str, arguments: str) -> bool:
        calls = [*self.calls.values(), *self.extra_calls]
        return any(c["name"] == name and c["arguments"] == arguments for c in calls)


def _sub_index(event: Any) -> int:
    for name in ("content_index", "summary_index"):
        value = getattr(event, name, None)
        if isinstance(value, int):
            return value
    return 0


class _ResponsesGuarding(GuardedCreate[Response, ResponseStreamEvent]):
    """What the sync and async ``responses`` share: the flow, reading, deciding, refusals."""

    what = "responses.create"

    def __getattr__(self, name: str) -> Any:
        if name not in _PASSED:
            raise ConfigurationError(
                f"responses.{name} is not guarded by guard_openai: use responses.create, or "
                f".unguarded.responses.{name} to call it without the guard on purpose"
            )
        return getattr(self._wrapped, name)

    def _start(self, kwargs: dict[str, Any]) -> Request:
        return _start(kwargs)

    def _refusal(self, kwargs: dict[str, Any]) -> Response:
        return _refusal_response(self._options.refusal, str(kwargs.get("model", "")))

    def _refusal_stream(self, kwargs: dict[str, Any]) -> list[ResponseStreamEvent]:
        return _refusal_events(self._options.refusal, str(kwargs.get("model", "")), None, 0, 0)

    def _answers(self, result: Response) -> dict[int, dict[str, Any]]:
        return {0: _answer(result.output)}

    def _decided(self, result: Response, verdicts: dict[int, Verdict]) -> Response:
        verdict = verdicts[0]
        if not verdict.blocked:
            return result
        if self._options.on_block == "raise":
            raise GuardBlocked(verdict, blocked_output=result)
        return _refusal_response(self._options.refusal, result.model, result)

    def _stream_gates(
        self, kwargs: dict[str, Any]
    ) -> tuple[_Events, Callable[[Verdict, int], list[ResponseStreamEvent]]]:
        events = _Events(self._options.stream)
        model = str(kwargs.get("model", ""))

        def on_block(verdict: Verdict, _key: int) -> list[ResponseStreamEvent]:
            if self._options.on_block == "raise":
                raise GuardBlocked(verdict, blocked_output=events.gate.text)
            return _refusal_events(
                self._options.refusal, model, events.response, events.outputs, events.sequence
            )

        return events, on_block


class Responses(_ResponsesGuarding):
    """``client.responses`` with a guarded ``create`` (see the module docstring)."""

    def create(self, **kwargs: Any) -> Response | GuardedStream[ResponseStreamEvent]:
        """Check the input, call the client's ``responses.create``, check the output.

        Same arguments and results as ``OpenAI().responses.create``; a stream comes back as a
        :class:`~guardvl_sdk.integrations.openai.GuardedStream` of its events.

        Raises:
            GuardBlocked: A blocked request or answer, under ``on_block="raise"``.
            ConfigurationError: An argument or tool the guard does not forward.
            InvalidInputError: Content the guard cannot read (an item it does not know, audio).
        """
        return run_flow(self._flow(kwargs, GuardedStream))


class AsyncResponses(_ResponsesGuarding):
    """``client.responses`` of an ``AsyncOpenAI`` client with a guarded ``create``."""

    async def create(self, **kwargs: Any) -> Response | AsyncGuardedStream[ResponseStreamEvent]:
        """Like :meth:`Responses.create`, without blocking the event loop."""
        return await arun_flow(self._flow(kwargs, AsyncGuardedStream))
