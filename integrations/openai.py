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
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

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
    HookArgs,
    HookOptions,
    Request,
    StreamedChoices,
    arun_flow,
    choice_answers,
    read_messages,
    run_flow,
)
from guardvl_sdk.verdict import Verdict

from .openai_streams import (
    AsyncGuardedStream,
    GuardedStream,
    refuse_unknown_fields,
)

if TYPE_CHECKING:
    from typing import Self, Unpack

from .openai_create import GuardedCreate  # relative: mypy reads integrations/ as it lies
from .openai_responses import AsyncResponses, Responses

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

T = TypeVar("T")

OnBlock = Literal["raise", "refuse"]


@overload
def guard_openai(
    client: OpenAI, guard: Guard, *, on_block: OnBlock = ..., **options: Unpack[HookArgs]
) -> GuardedOpenAI: ...


@overload
def guard_openai(
    client: AsyncOpenAI, guard: Guard, *, on_block: OnBlock = ..., **options: Unpack[HookArgs]
) -> AsyncGuardedOpenAI: ...


def guard_openai(
    client: OpenAI | AsyncOpenAI,
    guard: Guard,
    *,
    on_block: OnBlock = "raise",
    **options: Unpack[HookArgs],
) -> GuardedOpenAI | AsyncGuardedOpenAI:
    """Guard an ``openai`` client's chat completions; the client itself is left untouched.

    Args:
        client: An ``OpenAI`` or ``AsyncOpenAI`` client (any OpenAI-compatible server).
        guard: The guard that decides; its ``on_error`` applies when it cannot (fail-closed by
            default).
        check: ``"both"`` (default), ``"input"`` or ``"output"``.
        on_block: ``"raise"`` (default) or ``"refuse"`` (see the module docstring).
        refusal: The content of a blocked choice under ``on_block="refuse"``.
        stream_every: Check a streamed answer each time this many characters were added
            (default 500).
        stream_window: Characters of earlier context each mid-stream check includes (None: all).
        buffered: Release no streamed chunk before the whole answer has passed.
        on_verdict: Called with a :class:`~guardvl_sdk.hooks.GuardEvent` after every check.

    Returns:
        A :class:`GuardedOpenAI` (or :class:`AsyncGuardedOpenAI`) with the client's call paths.
    """
    settings = HookOptions.of(on_block=on_block, **options).accepting("raise", "refuse")
    if isinstance(client, AsyncOpenAI):
        return AsyncGuardedOpenAI(client, guard, settings)
    if isinstance(client, OpenAI):
        return GuardedOpenAI(client, guard, settings)
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


class _GuardedClient(_Proxy):
    """What both guarded clients share: the guarded call paths, ``with_options``, ``repr``."""

    _passed = _PASSED_CLIENT

    def __init__(
        self,
        client: OpenAI | AsyncOpenAI,
        guard: Guard,
        options: HookOptions,
        paths: tuple[type[_Guarding], type[GuardedCreate[Any, Any]]],
    ) -> None:
        super().__init__(client)
        self.unguarded = client
        self.guard = guard
        self._options = options
        completions, responses = paths
        self.chat = _GuardedChat(client.chat, completions(client.chat.completions, guard, options))
        self.responses = responses(client.responses, guard, options)

    def with_options(self, **kwargs: Any) -> Self:
        """The client's ``with_options(...)``, guarded the same way."""
        return type(self)(self.unguarded.with_options(**kwargs), self.guard, self._options)  # type: ignore[call-arg]

    copy = with_options

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.unguarded!r}, guard={self.guard!r})"


class GuardedOpenAI(_GuardedClient):
    """An ``OpenAI`` client whose ``chat.completions.create`` is guarded (see :func:`guard_openai`).

    Attributes:
        chat: ``chat.completions.create`` checks; the rest of ``chat`` passes through.
        responses: ``responses.create`` checks (see
            :mod:`~guardvl_sdk.integrations.openai_responses`).
        unguarded: The original client, untouched.
        guard: The guard.
    """

    def __init__(self, client: OpenAI, guard: Guard, options: HookOptions) -> None:
        super().__init__(client, guard, options, (Completions, Responses))


class AsyncGuardedOpenAI(_GuardedClient):
    """An ``AsyncOpenAI`` client whose ``chat.completions.create`` is guarded."""

    def __init__(self, client: AsyncOpenAI, guard: Guard, options: HookOptions) -> None:
        super().__init__(client, guard, options, (AsyncCompletions, AsyncResponses))


class _GuardedChat(_Proxy):
    _passed = _PASSED_CHAT

    def __init__(self, chat: Any, completions: Any) -> None:
        super().__init__(chat)
        self.completions = completions


class _Guarding(GuardedCreate[ChatCompletion, ChatCompletionChunk], _Proxy):
    """What the sync and async ``completions`` share: the flow, reading, deciding, refusals."""

    what = "chat.completions.create"
    _passed = _PASSED_COMPLETIONS

    def _start(self, kwargs: dict[str, Any]) -> Request:
        """Read the request; ``kwargs["messages"]`` becomes a list (it may be an iterator)."""
        if "messages" not in kwargs:
            raise InvalidInputError("chat.completions.create needs messages=")
        refuse_unknown_fields(kwargs, _FORWARDED)
        if kwargs.get("audio") or "audio" in (kwargs.get("modalities") or ()):
            raise ConfigurationError("the guard reads text answers only: no audio output")
        messages = kwargs["messages"] = list(kwargs["messages"])
        return read_messages(messages)

    def _refusal(self, kwargs: dict[str, Any]) -> ChatCompletion:
        """The answer to a blocked request under ``on_block="refuse"``: one choice per ``n``."""
        return ChatCompletion(
            id=f"guardvl-{uuid.uuid4().hex}",
            object="chat.completion",
            created=int(time.time()),
            model=str(kwargs.get("model", "")),
            choices=[self._refused_choice(index) for index in range(_choices(kwargs))],
        )

    def _refusal_stream(self, kwargs: dict[str, Any]) -> list[ChatCompletionChunk]:
        model = str(kwargs.get("model", ""))
        return [self._refusal_chunk(index, model) for index in range(_choices(kwargs))]

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

    def _answers(self, result: ChatCompletion) -> dict[int, str | dict[str, Any]]:
        return _answers(result)

    def _decided(self, result: ChatCompletion, verdicts: dict[int, Verdict]) -> ChatCompletion:
        """The completion with blocked choices refused, or ``GuardBlocked``."""
        blocked = {index: v for index, v in verdicts.items() if v.blocked}
        if not blocked:
            return result
        if self._options.on_block == "raise":
            raise GuardBlocked(next(iter(blocked.values())), blocked_output=result)
        choices = [
            self._refused_choice(choice.index) if choice.index in blocked else choice
            for choice in result.choices
        ]
        return result.model_copy(update={"choices": choices})

    def _stream_gates(
        self, kwargs: dict[str, Any]
    ) -> tuple[StreamedChoices, Callable[[Verdict, int], list[ChatCompletionChunk]]]:
        """The stream's gates, and its ``on_block``: raise, or the refusal chunks that end it.

        The upstream stream stops, so every choice still open ends with the refusal.
        """
        choices = StreamedChoices(self._options.stream)

        def on_block(verdict: Verdict, index: int) -> list[ChatCompletionChunk]:
            if self._options.on_block == "raise":
                raise GuardBlocked(verdict, blocked_output=choices.streams[index].text)
            return [self._refusal_chunk(i, choices.model, choices.id) for i in choices.open(index)]

        return choices, on_block


def _choices(kwargs: dict[str, Any]) -> int:
    n = kwargs.get("n")
    return n if isinstance(n, int) and n > 0 else 1


def _answers(completion: ChatCompletion) -> dict[int, str | dict[str, Any]]:
    """The answer of each choice, by index (the shared reader: :mod:`guardvl_sdk.hooks.answers`)."""
    return choice_answers(completion.choices)


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
        return run_flow(self._flow(kwargs, GuardedStream))


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
        return await arun_flow(self._flow(kwargs, AsyncGuardedStream))
