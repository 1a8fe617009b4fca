"""OpenAI client: ``guard_openai(client, guard)`` guards chat completions and the Responses API.

One module over 400 lines on purpose: the chat completions call surface (proxy, allowlist, choices,
streams; sync and async) with its types.

::

    client = guard_openai(OpenAI(base_url=..., api_key=...), guard)  # or AsyncOpenAI
    client.chat.completions.create(model=..., messages=[...], stream=True)  # now guarded
    client.responses.create(model=..., input=[...], stream=True)  # guarded too

The wrapper never touches the client it wraps: it is a proxy whose ``chat.completions.create``
checks every message of ``messages`` (every role; text parts, ``image_url`` parts with ``data:``
URLs; ``http(s)`` image URLs only when the guard fetches images) before the call, and every returned
choice (``n > 1`` included: its text, reasoning and refusal, and its tool calls' names and
arguments) after it, in the context of the request. A streamed answer is
checked while it streams with the middleware's rules (``stream_every``, ``stream_window``,
``buffered``; see :func:`~guardvl_sdk.hooks.guarded`); its tool calls are assembled from their
deltas and judged whole with its text by the final check, the chunks from the first tool-call
delta on held until then. ``responses.create`` follows the same rules (see
:mod:`guardvl_sdk.integrations.openai_responses`). Everything else passes through to the
client (``client.models.list()``, ``client.chat.completions.retrieve(...)``), except the other
ways to generate (legacy ``completions``, ``realtime``, ``beta``, and
``chat.completions.parse`` / ``stream`` / ``with_raw_response`` / ``with_streaming_response``),
which raise :class:`~guardvl_sdk.errors.ConfigurationError` rather than run unguarded; use
``wrapped.unguarded`` (the original client) for them on purpose.

On a block: ``on_block="raise"`` (default) raises :class:`~guardvl_sdk.errors.GuardBlocked`
(``blocked_output``: the withheld ``ChatCompletion``, or for a stream the text generated so far);
``on_block="refuse"`` returns a completion whose blocked choices carry the refusal as their
content and ``finish_reason="content_filter"`` (a stream ends with such a chunk).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload

from guardvl_sdk.extras import require

try:
    from openai import AsyncOpenAI, OpenAI
    from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
    from openai.types.chat.chat_completion import Choice
    from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
    from openai.types.chat.chat_completion_chunk import ChoiceDelta
except ImportError:  # say which extra to install, not where the import failed
    require("openai", "guardvl_sdk.integrations.openai")
    raise

from guardvl_sdk.errors import ConfigurationError, GuardBlocked, InvalidInputError
from guardvl_sdk.guard import Guard
from guardvl_sdk.hooks import (
    DEFAULT_REFUSAL,
    CheckMode,
    Due,
    GuardEvent,
    HookOptions,
    Reporter,
    Request,
    StreamGate,
    StreamOptions,
    aguard_stream,
    guard_stream,
    read_messages,
)
from guardvl_sdk.verdict import Verdict

from .openai_streams import (
    AsyncGuardedStream,
    GuardedStream,
    refuse_unknown_fields,
    replay,
)

__all__ = ["AsyncGuardedOpenAI", "GuardedOpenAI", "GuardedStream", "guard_openai"]

CONTENT_FILTER: Literal["content_filter"] = "content_filter"

# What passes through the wrapped client: an allowlist. Anything else (completions, realtime,
# beta, batches, audio, images, conversations, the raw request methods post, put, patch, get,
# request, with_raw_response, the private _client, new resources) is refused: each is a way to
# generate, or to read stored answers, around the guard. `.unguarded` is the explicit way past.
_PASSED_CLIENT = frozenset(
    {
        # settings
        "api_key",
        "organization",
        "project",
        "base_url",
        "websocket_base_url",
        "webhook_secret",
        "timeout",
        "max_retries",
        "default_headers",
        "default_query",
        "auth_headers",
        "user_agent",
        "platform_headers",
        "is_closed",
        "close",
        # resources that do not generate
        "models",
        "embeddings",
        "moderations",
        "files",
        "uploads",
        "vector_stores",
        "webhooks",
        "fine_tuning",
    }
)
_PASSED_CHAT: frozenset[str] = (
    frozenset()
)  # chat.completions is guarded; chat.with_raw_response not
# create is guarded; parse, stream, raw responses, and list / retrieve / messages / update (stored
# answers, returned unchecked) are refused.
_PASSED_COMPLETIONS = frozenset({"delete"})

# THE ALLOWLIST: the create() arguments forwarded to the model. Each is either inspected by the
# guard (messages; tools and tool calls are read with the conversation) or cannot carry content
# to the model or back (sampling, limits, formats, transport options). Anything else, and any
# extra_body field outside openai_streams.FORWARDED_EXTRA_BODY, is refused with
# ConfigurationError: a field the guard does not know could replace or add to what it checked.
_FORWARDED = frozenset(
    {
        "messages",
        "model",
        "stream",
        "stream_options",
        "n",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "metadata",
        "store",
        "service_tier",
        "reasoning_effort",
        "verbosity",
        "modalities",
        "audio",
        "safety_identifier",
        "prompt_cache_key",
        "timeout",
        "extra_headers",
        "extra_query",
        "extra_body",
    }
)
# Answer fields a reasoning model fills besides content: its thoughts are output too.
_REASONING_FIELDS = ("reasoning_content", "reasoning")

T = TypeVar("T")


@overload
def guard_openai(
    client: OpenAI,
    guard: Guard,
    *,
    check: CheckMode = ...,
    on_block: Literal["raise", "refuse"] = ...,
    refusal: str = ...,
    stream_every: int | None = ...,
    stream_window: int | None = ...,
    buffered: bool = ...,
    on_verdict: Callable[[GuardEvent], Any] | None = ...,
) -> GuardedOpenAI: ...


@overload
def guard_openai(
    client: AsyncOpenAI,
    guard: Guard,
    *,
    check: CheckMode = ...,
    on_block: Literal["raise", "refuse"] = ...,
    refusal: str = ...,
    stream_every: int | None = ...,
    stream_window: int | None = ...,
    buffered: bool = ...,
    on_verdict: Callable[[GuardEvent], Any] | None = ...,
) -> AsyncGuardedOpenAI: ...


def guard_openai(
    client: OpenAI | AsyncOpenAI,
    guard: Guard,
    *,
    check: CheckMode = "both",
    on_block: Literal["raise", "refuse"] = "raise",
    refusal: str = DEFAULT_REFUSAL,
    stream_every: int | None = 500,
    stream_window: int | None = None,
    buffered: bool = False,
    on_verdict: Callable[[GuardEvent], Any] | None = None,
) -> GuardedOpenAI | AsyncGuardedOpenAI:
    """Guard an ``openai`` client's chat completions; the client itself is left untouched.

    Args:
        client: An ``OpenAI`` or ``AsyncOpenAI`` client (any OpenAI-compatible server).
        guard: The guard that decides; its ``on_error`` applies when it cannot (fail-closed by
            default).
        check: ``"both"`` (default), ``"input"`` or ``"output"``.
        on_block: ``"raise"`` (default) or ``"refuse"`` (see the module docstring).
        refusal: The content of a blocked choice under ``on_block="refuse"``.
        stream_every: Check a streamed answer each time this many characters were added.
        stream_window: Characters of earlier context each mid-stream check includes (None: all).
        buffered: Release no streamed chunk before the whole answer has passed.
        on_verdict: Called with a :class:`~guardvl_sdk.hooks.GuardEvent` after every check.

    Returns:
        A :class:`GuardedOpenAI` (or :class:`AsyncGuardedOpenAI`) with the client's call paths.
    """
    options = HookOptions.of(
        check=check,
        on_block=on_block,
        refusal=refusal,
        stream_every=stream_every,
        stream_window=stream_window,
        buffered=buffered,
        on_verdict=on_verdict,
    ).accepting("raise", "refuse")
    if isinstance(client, AsyncOpenAI):
        return AsyncGuardedOpenAI(client, guard, options)
    if isinstance(client, OpenAI):
        return GuardedOpenAI(client, guard, options)
    raise ConfigurationError(f"guard_openai needs an OpenAI or AsyncOpenAI client, not {client!r}")


# -- the proxies ----------------------------------------------------------------------------


class _Proxy:
    """Passes attribute access through to the wrapped object for the names it allows only."""

    _passed: frozenset[str] = frozenset()

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        if name not in self._passed:
            if name.startswith("__"):  # copy, pickle and inspection probe for these
                raise AttributeError(name)
            raise ConfigurationError(
                f"{name} is not guarded by guard_openai: use chat.completions.create, or "
                f".unguarded.{name} to call it without the guard on purpose"
            )
        return getattr(self._wrapped, name)


class GuardedOpenAI(_Proxy):
    """An ``OpenAI`` client whose ``chat.completions.create`` is guarded (see :func:`guard_openai`).

    Attributes:
        chat: ``chat.completions.create`` checks; the rest of ``chat`` passes through.
        responses: ``responses.create`` checks (see
            :mod:`~guardvl_sdk.integrations.openai_responses`).
        unguarded: The original client, untouched.
        guard: The guard.
    """

    _passed = _PASSED_CLIENT

    def __init__(self, client: OpenAI, guard: Guard, options: HookOptions) -> None:
        super().__init__(client)
        self.unguarded = client
        self.guard = guard
        self._options = options
        self.chat = _GuardedChat(client.chat, Completions(client.chat.completions, guard, options))
        from .openai_responses import Responses  # it builds on this module

        self.responses = Responses(client.responses, guard, options)

    def with_options(self, **kwargs: Any) -> GuardedOpenAI:
        """The client's ``with_options(...)``, guarded the same way."""
        return GuardedOpenAI(self.unguarded.with_options(**kwargs), self.guard, self._options)

    copy = with_options

    def __repr__(self) -> str:
        return f"GuardedOpenAI({self.unguarded!r}, guard={self.guard!r})"


class AsyncGuardedOpenAI(_Proxy):
    """An ``AsyncOpenAI`` client whose ``chat.completions.create`` is guarded."""

    _passed = _PASSED_CLIENT

    def __init__(self, client: AsyncOpenAI, guard: Guard, options: HookOptions) -> None:
        super().__init__(client)
        self.unguarded = client
        self.guard = guard
        self._options = options
        self.chat = _GuardedChat(
            client.chat, AsyncCompletions(client.chat.completions, guard, options)
        )
        from .openai_responses import AsyncResponses

        self.responses = AsyncResponses(client.responses, guard, options)

    def with_options(self, **kwargs: Any) -> AsyncGuardedOpenAI:
        """The client's ``with_options(...)``, guarded the same way."""
        return AsyncGuardedOpenAI(self.unguarded.with_options(**kwargs), self.guard, self._options)

    copy = with_options

    def __repr__(self) -> str:
        return f"AsyncGuardedOpenAI({self.unguarded!r}, guard={self.guard!r})"


class _GuardedChat(_Proxy):
    _passed = _PASSED_CHAT

    def __init__(self, chat: Any, completions: Any) -> None:
        super().__init__(chat)
        self.completions = completions


class _Guarding(_Proxy):
    """What the sync and async ``completions`` share: reading, deciding, refusals."""

    _passed = _PASSED_COMPLETIONS

    def __init__(self, completions: Any, guard: Guard, options: HookOptions) -> None:
        super().__init__(completions)
        self._options = options
        self._reporter = Reporter(guard, "chat.completions.create", options.on_verdict)

    def _start(self, kwargs: dict[str, Any]) -> Request:
        """Read the request; ``kwargs["messages"]`` becomes a list (it may be an iterator)."""
        if "messages" not in kwargs:
            raise InvalidInputError("chat.completions.create needs messages=")
        refuse_unknown_fields(kwargs, _FORWARDED)
        if kwargs.get("audio") or "audio" in (kwargs.get("modalities") or ()):
            raise ConfigurationError("the guard reads text answers only: no audio output")
        messages = kwargs["messages"] = list(kwargs["messages"])
        return read_messages(messages)

    def _refusal_completion(self, kwargs: dict[str, Any]) -> ChatCompletion:
        """The answer to a blocked request under ``on_block="refuse"``: one choice per ``n``."""
        return ChatCompletion(
            id=f"guardvl-{uuid.uuid4().hex}",
            object="chat.completion",
            created=int(time.time()),
            model=str(kwargs.get("model", "")),
            choices=[self._refused_choice(index) for index in range(_choices(kwargs))],
        )

    def _refused_choice(self, index: int) -> Choice:
        message = ChatCompletionMessage(role="assistant", content=self._options.refusal)
        return Choice(index=index, finish_reason=CONTENT_FILTER, message=message)

    def _refusal_chunk(self, index: int, model: str, id_: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=id_ or f"guardvl-{uuid.uuid4().hex}",
            object="chat.completion.chunk",
            created=int(time.time()),
            model=model,
            choices=[
                ChunkChoice(
                    index=index,
                    delta=ChoiceDelta(role="assistant", content=self._options.refusal),
                    finish_reason=CONTENT_FILTER,
                )
            ],
        )

    def _input_blocked(self, verdict: Verdict) -> None:
        if self._options.on_block == "raise":
            raise GuardBlocked(verdict)

    def _decide_completion(
        self, completion: ChatCompletion, verdicts: dict[int, Verdict]
    ) -> ChatCompletion:
        """The completion with blocked choices refused, or ``GuardBlocked``."""
        blocked = {index: v for index, v in verdicts.items() if v.blocked}
        if not blocked:
            return completion
        if self._options.on_block == "raise":
            raise GuardBlocked(next(iter(blocked.values())), blocked_output=completion)
        choices = [
            self._refused_choice(choice.index) if choice.index in blocked else choice
            for choice in completion.choices
        ]
        return completion.model_copy(update={"choices": choices})

    def _stream_blocked(
        self, choices: _Choices
    ) -> Callable[[Verdict, int], list[ChatCompletionChunk]]:
        """The stream driver's ``on_block``: raise, or the refusal chunks that end the stream.

        The upstream stream stops, so every choice still open ends with the refusal.
        """

        def on_block(verdict: Verdict, index: int) -> list[ChatCompletionChunk]:
            if self._options.on_block == "raise":
                raise GuardBlocked(verdict, blocked_output=choices.streams[index].text)
            return [self._refusal_chunk(i, choices.model, choices.id) for i in choices.open(index)]

        return on_block

    def _decided(
        self,
        completion: ChatCompletion,
        answers: dict[int, str | dict[str, Any]],
        verdicts: list[Verdict],
    ) -> ChatCompletion:
        return self._decide_completion(completion, dict(zip(answers, verdicts, strict=True)))


def _choices(kwargs: dict[str, Any]) -> int:
    n = kwargs.get("n")
    return n if isinstance(n, int) and n > 0 else 1


def _reasoning(item: Any) -> str:
    """A message's or delta's reasoning text (``reasoning_content`` and the like), or ``""``.

    Every reasoning field present is read, not the first: a server may fill two differently.
    """
    extra = getattr(item, "model_extra", None) or {}
    texts: list[str] = []
    for name in _REASONING_FIELDS:
        value = extra.get(name, getattr(item, name, None))
        if isinstance(value, str) and value and value not in texts:
            texts.append(value)
    return "\n\n".join(texts)


def _answer_text(message: Any) -> str:
    """What the guard checks of one answer: its reasoning (thoughts are output too), its text."""
    reasoning = _reasoning(message)
    content = message.content or ""
    return f"{reasoning}\n\n{content}" if reasoning else content


def _answers(completion: ChatCompletion) -> dict[int, str | dict[str, Any]]:
    """The answer of each choice, by index: its text (with its reasoning), or with tool calls the
    assistant message (the calls' names and arguments are judged as part of the answer)."""
    answers: dict[int, str | dict[str, Any]] = {}
    for choice in completion.choices:
        text = _answer_text(choice.message)
        calls = choice.message.tool_calls or []
        if not calls:
            answers[choice.index] = text
            continue
        answers[choice.index] = {
            "role": "assistant",
            "content": text,
            "tool_calls": [call.model_dump(include={"id", "type", "function"}) for call in calls],
        }
    return answers


@dataclass
class _Choices:
    """The choices of one streamed completion, each held back by its own stream gate.

    The :class:`~guardvl_sdk.hooks.Gates` of an OpenAI stream: the stream drivers run it. A
    choice's text (reasoning, content, refusal) is checked as it streams; its tool calls are
    assembled from their deltas and judged whole with its text by the final check, and the chunks
    from the first tool-call delta on are held until that check passed: a blocked call is never
    delivered.
    """

    options: StreamOptions
    streams: dict[int, StreamGate[ChatCompletionChunk]] = field(default_factory=dict)
    calls: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)  # choice -> calls
    tail: list[ChatCompletionChunk] = field(default_factory=list)  # usage chunks: at the end
    id: str | None = None
    model: str = ""
    finished: set[int] = field(default_factory=set)  # choices whose finish_reason came

    def add(self, chunk: ChatCompletionChunk) -> list[Due]:
        """Hold a chunk; return the checks due now."""
        self.id = self.id or chunk.id
        self.model = chunk.model
        if not chunk.choices:
            self.tail.append(chunk)
            return []
        due: list[Due] = []
        for choice in chunk.choices:  # one choice per chunk, as servers send them
            part = (
                chunk if len(chunk.choices) == 1 else chunk.model_copy(update={"choices": [choice]})
            )
            if choice.finish_reason is not None:
                self.finished.add(choice.index)
            delta = choice.delta
            calls = self._add_calls(choice.index, delta)
            added = _reasoning(delta) + (delta.content or "") + (delta.refusal or "")
            checked = self._gate(choice.index).add(part, added, to_end=calls)
            if checked is not None:
                due.append(Due(choice.index, *checked))
        return due

    def release(self, key: int) -> list[ChatCompletionChunk]:
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

    def release_all(self) -> list[ChatCompletionChunk]:
        """Every held chunk, after the final checks passed; usage chunks last."""
        held = [chunk for stream in self.streams.values() for chunk in stream.release(final=True)]
        return held + self.tail

    def _gate(self, index: int) -> StreamGate[ChatCompletionChunk]:
        return self.streams.setdefault(index, StreamGate(self.options))

    def _add_calls(self, index: int, delta: ChoiceDelta) -> bool:
        """Assemble the tool-call deltas of a choice (as openai's own accumulator does: the
        pieces of each field concatenated); True when the delta carried any."""
        pieces: list[tuple[int, str | None, str | None, Any]] = [
            (call.index, call.id, call.type, call.function) for call in delta.tool_calls or []
        ]
        if delta.function_call is not None:  # the legacy single call
            pieces.append((-1, None, "function", delta.function_call))
        calls = self.calls.setdefault(index, {})
        for at, id_, type_, function in pieces:
            call = calls.setdefault(
                at, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            call["id"] = id_ or call["id"]
            call["type"] = type_ or call["type"]
            if function is not None:
                call["function"]["name"] += function.name or ""
                call["function"]["arguments"] += function.arguments or ""
        return bool(pieces)


# -- sync -----------------------------------------------------------------------------------


class Completions(_Guarding):
    """``client.chat.completions`` with a guarded ``create``."""

    @overload
    def create(
        self, *, stream: Literal[True], **kwargs: Any
    ) -> GuardedStream[ChatCompletionChunk]: ...

    @overload
    def create(self, *, stream: Literal[False] | None = ..., **kwargs: Any) -> ChatCompletion: ...

    def create(self, **kwargs: Any) -> ChatCompletion | GuardedStream[ChatCompletionChunk]:
        """Check the request, call the client's ``create``, check the answer.

        Same arguments and results as ``OpenAI().chat.completions.create``; a stream comes back
        as a :class:`GuardedStream`.

        Raises:
            GuardBlocked: A blocked request or answer, under ``on_block="raise"``.
            InvalidInputError: Content the guard cannot read (audio parts, unfetched URLs).
        """
        request = self._start(kwargs)
        stream = bool(kwargs.get("stream"))
        if self._options.checks_input:
            verdict = self._reporter.check(request)
            if verdict.blocked:
                self._input_blocked(verdict)
                if stream:
                    model = str(kwargs.get("model", ""))
                    chunks = [self._refusal_chunk(i, model) for i in range(_choices(kwargs))]
                    return GuardedStream(iter(chunks))
                return self._refusal_completion(kwargs)
        result = self._wrapped.create(**kwargs)
        if not self._options.checks_output:
            return GuardedStream(iter(result), result) if stream else result
        if stream:
            choices = _Choices(self._options.stream)
            guarded = guard_stream(
                result,
                choices,
                lambda due, partial: self._reporter.check_due(request, due, partial),
                self._stream_blocked(choices),
                close=result.close,  # stops the server's generation when blocked or abandoned
            )
            return GuardedStream(guarded, result)
        answers = _answers(result)  # n > 1: every choice, in one guard batch
        verdicts = self._reporter.check_answers(request, list(answers.values()))
        return self._decided(result, answers, verdicts)


# -- async ----------------------------------------------------------------------------------


class AsyncCompletions(_Guarding):
    """``client.chat.completions`` of an ``AsyncOpenAI`` client with a guarded ``create``."""

    @overload
    async def create(
        self, *, stream: Literal[True], **kwargs: Any
    ) -> AsyncGuardedStream[ChatCompletionChunk]: ...

    @overload
    async def create(
        self, *, stream: Literal[False] | None = ..., **kwargs: Any
    ) -> ChatCompletion: ...

    async def create(
        self, **kwargs: Any
    ) -> ChatCompletion | AsyncGuardedStream[ChatCompletionChunk]:
        """Like :meth:`Completions.create`, without blocking the event loop."""
        request = self._start(kwargs)
        stream = bool(kwargs.get("stream"))
        if self._options.checks_input:
            verdict = await self._reporter.acheck(request)
            if verdict.blocked:
                self._input_blocked(verdict)
                if stream:
                    model = str(kwargs.get("model", ""))
                    chunks = [self._refusal_chunk(i, model) for i in range(_choices(kwargs))]
                    return AsyncGuardedStream(replay(chunks))
                return self._refusal_completion(kwargs)
        result = await self._wrapped.create(**kwargs)
        if not self._options.checks_output:
            return AsyncGuardedStream(result.__aiter__(), result) if stream else result
        if stream:
            choices = _Choices(self._options.stream)
            guarded = aguard_stream(
                result,
                choices,
                lambda due, partial: self._reporter.acheck_due(request, due, partial),
                self._stream_blocked(choices),
                close=result.close,
            )
            return AsyncGuardedStream(guarded, result)
        answers = _answers(result)
        verdicts = await self._reporter.acheck_answers(request, list(answers.values()))
        return self._decided(result, answers, verdicts)
