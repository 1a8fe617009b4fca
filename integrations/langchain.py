"""LangChain: guard runnables for any chain, and a guarded chat model.

One module over 400 lines on purpose: LangChain's whole call surface (runnable, chat model, sync,
async, batch, streams) with its types.

Two ways to put a guard into a LangChain app (extra ``guardvl-sdk[langchain]``)::

    chain = guard.as_runnable() | prompt | chat_model | guard.as_runnable(stage="output")
    safe_model = GuardedChatModel(chat_model, guard)  # any BaseChatModel: input and output checked

:class:`GuardRunnable` is a ``Runnable`` that checks what flows through it and passes it on
unchanged when allowed; a block raises :class:`~guardvl_sdk.errors.GuardBlocked` (or returns what
an ``on_block`` handler gives). An output guard judges the answer in the context of the request
that the input guard of the same chain checked.

:class:`GuardedChatModel` is a ``BaseChatModel`` around another one: the conversation is checked
before the inner model is called, its answer before the caller gets it (a stream while it
streams, as ``@guarded`` does).

Both read LangChain messages through ``convert_to_openai_messages`` and then the middleware's
reader: the text and image parts of the *user* turns (base64 ``data:`` URLs, LangChain's standard
image blocks; ``http(s)`` URLs only where the guard fetches images). A part the guard cannot read
(audio, files) raises :class:`~guardvl_sdk.errors.InvalidInputError` rather than pass unchecked.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, cast
from uuid import UUID

from pydantic import ConfigDict, Field, model_validator

from guardvl_sdk.extras import require

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForChainRun,
        AsyncCallbackManagerForLLMRun,
        CallbackManagerForChainRun,
        CallbackManagerForLLMRun,
    )
    from langchain_core.language_models import BaseChatModel, LanguageModelInput
    from langchain_core.language_models.base import LangSmithParams
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        convert_to_openai_messages,
    )
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_core.prompt_values import PromptValue
    from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
except ImportError:  # say which extra to install, not where the import failed
    require("langchain", "guardvl_sdk.integrations.langchain")
    raise

from guardvl_sdk.checks import CheckInput
from guardvl_sdk.conversation import MESSAGE_KEYS, Message
from guardvl_sdk.errors import ConfigurationError, GuardBlocked, GuardVLError, InvalidInputError
from guardvl_sdk.guard import Guard
from guardvl_sdk.hooks import (
    DEFAULT_REFUSAL,
    CheckMode,
    GuardEvent,
    HookOptions,
    OneAnswer,
    Reporter,
    Request,
    RequestReader,
    aguard_stream,
    guard_stream,
)
from guardvl_sdk.inputs import clean_text
from guardvl_sdk.verdict import Verdict

__all__ = [
    "GuardRunnable",
    "GuardedChatModel",
    "Stage",
    "answer_text",
    "judged_answer",
    "openai_chat",
    "read_request",
]

Stage = Literal["input", "output"]

CONTENT_FILTER = "content_filter"
"""The ``finish_reason`` of a refusal that replaced a blocked answer (the OpenAI convention)."""


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
    return _read(value)


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


def _chunk_text(chunk: BaseMessage) -> str:
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
    ``additional_kwargs``) is kept as its text (see :func:`answer_text`).

    Raises:
        InvalidInputError: A field, block or message the guard cannot read.
    """
    chat: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, Mapping):
            unknown = sorted(set(message) - MESSAGE_KEYS - {"type"})
            if unknown:
                raise InvalidInputError(
                    f"cannot check the message field(s) {unknown}; known: {sorted(MESSAGE_KEYS)}"
                )
        try:  # a list of one: a tuple is a message, and one message may become several
            converted = [dict(m) for m in convert_to_openai_messages([message])]
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise InvalidInputError(f"cannot read the messages: {exc}") from exc
        if isinstance(message, AIMessage) and _has_reasoning_or_extras(message):
            converted[0]["content"] = answer_text(message)
        chat += converted
    return chat


def _has_reasoning_or_extras(message: AIMessage) -> bool:
    """Whether an AI message holds more than ``convert_to_openai_messages`` keeps as content."""
    blocks = [] if isinstance(message.content, str) else message.content
    typed = {block.get("type") for block in blocks if isinstance(block, Mapping)}
    return bool(set(message.additional_kwargs) - _MIRRORED_KWARGS) or bool(
        typed - {"text"} - _TOOL_CALL_BLOCKS
    )


def _streamed_answer(text: str, chunks: list[AIMessageChunk]) -> str | dict[str, Any]:
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


def _read(value: Any) -> Request:
    reader = RequestReader()
    _read_into(value, "the input", reader)
    empty = not any(text.strip() for text in reader.texts) and not reader.images
    if empty and not reader.messages:
        raise InvalidInputError("nothing to check in the input: no user text and no image")
    return reader.request()


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


def _output_answer(value: Any) -> str | dict[str, Any]:
    """The answer an output guard judges: a str, or a message's text, reasoning and tool calls."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return judged_answer(value)
    raise InvalidInputError(
        f"an output guard checks a str or a message, not {type(value).__name__}"
    )


# -- linking an output guard to its request -------------------------------------------------


class Requests:
    """Requests allowed by input guards, by the run of the chain they ran in.

    An output guard of the same chain (a sibling step: same parent run) takes the request from
    here, so it judges the answer in context without re-checking the request. Entries of chains
    that never reach an output guard are dropped oldest first beyond ``limit``.
    """

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._items: OrderedDict[UUID, Request] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, chain: UUID | None, request: Request) -> None:
        if chain is None:
            return
        with self._lock:
            self._items[chain] = request
            self._items.move_to_end(chain)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def take(self, chain: UUID | None) -> Request | None:
        if chain is None:
            return None
        with self._lock:
            return self._items.pop(chain, None)


_REQUESTS = Requests()


# -- the runnable ---------------------------------------------------------------------------

OnBlockHandler = Callable[[GuardBlocked], Any]


class GuardRunnable(Runnable[Any, Any]):
    """A guard as a step of a LangChain chain: checks its input and passes it on unchanged.

    Get one with :meth:`Guard.as_runnable <guardvl_sdk.guard.Guard.as_runnable>`::

        chain = guard.as_runnable() | prompt | model | guard.as_runnable(stage="output")

    An ``"input"`` guard checks the request: a str, a ``PromptValue``, messages or a dict of
    prompt variables (see :func:`read_request`). An ``"output"`` guard checks an answer (a str, or
    a message: its text, its reasoning and its tool calls, see :func:`answer_text`; a block it
    cannot read raises ``InvalidInputError``) together with the request the
    input guard of the same chain allowed, so the request is not checked twice. An output guard
    with no input guard before it in the same ``RunnableSequence`` raises
    :class:`~guardvl_sdk.errors.ConfigurationError`.

    ``batch`` / ``abatch`` check all inputs with one ``guard.check_batch`` (the backend batches
    them); ``stream`` of an output guard waits for the whole answer, checks it, then passes it
    on.

    Args:
        guard: The guard that decides; its ``on_error`` applies when it cannot (fail-closed by
            default).
        stage: ``"input"`` (default) or ``"output"``.
        on_block: ``"raise"`` (default): raise :class:`~guardvl_sdk.errors.GuardBlocked` (for
            an output block the answer is its ``blocked_output``); chains can catch it with
            ``.with_fallbacks([...], exceptions_to_handle=(GuardBlocked,))``. A callable: called
            with the ``GuardBlocked``; its return value is passed on instead (an output guard
            later in the chain still judges the answer with the original, blocked request).
        on_verdict: Called with a :class:`~guardvl_sdk.hooks.GuardEvent` after every check.
        name: The run name in traces; default ``guard_input`` / ``guard_output``.
    """

    def __init__(
        self,
        guard: Guard,
        *,
        stage: Stage = "input",
        on_block: Literal["raise"] | OnBlockHandler = "raise",
        on_verdict: Callable[[GuardEvent], Any] | None = None,
        name: str | None = None,
    ) -> None:
        if stage not in ("input", "output"):
            raise ConfigurationError(f"stage must be 'input' or 'output', not {stage!r}")
        options = HookOptions(on_block=on_block, on_verdict=on_verdict)
        options.accepting("raise", handler=True)
        self.guard = guard
        self.stage: Stage = stage
        self.on_block = on_block
        self.name = name or f"guard_{stage}"
        self._reporter = Reporter(guard, self.name, on_verdict)

    def __repr__(self) -> str:
        return f"GuardRunnable(stage={self.stage!r}, guard={self.guard!r})"

    # -- one input ---------------------------------------------------------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Check ``input``; return it unchanged when allowed."""
        return self._call_with_config(self._invoke, input, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Like :meth:`invoke`, without blocking the event loop."""
        return await self._acall_with_config(self._ainvoke, input, config)

    def _invoke(self, value: Any, run_manager: CallbackManagerForChainRun) -> Any:
        check = self._prepare(value, run_manager.parent_run_id)
        verdict = self._reporter.check(check.request, check.response)
        return self._decide(verdict, value, check, run_manager.parent_run_id)

    async def _ainvoke(self, value: Any, run_manager: AsyncCallbackManagerForChainRun) -> Any:
        check = self._prepare(value, run_manager.parent_run_id)
        verdict = await self._reporter.acheck(check.request, check.response)
        return self._decide(verdict, value, check, run_manager.parent_run_id)

    # -- many inputs, one guard batch --------------------------------------------------------

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Check all inputs with one ``guard.check_batch``; results in order."""
        if not inputs:
            return []
        return self._batch_with_config(
            self._batch, inputs, config, return_exceptions=return_exceptions
        )

    async def abatch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Like :meth:`batch`, with ``guard.acheck_batch``."""
        if not inputs:
            return []
        return await self._abatch_with_config(
            self._abatch, inputs, config, return_exceptions=return_exceptions
        )

    def _batch(self, values: list[Any], run_manager: list[CallbackManagerForChainRun]) -> list[Any]:
        chains = [manager.parent_run_id for manager in run_manager]
        checks = self._prepare_many(values, chains)
        ready = [check.as_input() for check in checks if isinstance(check, _Prepared)]
        found = self.guard.check_batch(ready, return_exceptions=True)
        return self._decide_many(values, checks, chains, found)

    async def _abatch(
        self, values: list[Any], run_manager: list[AsyncCallbackManagerForChainRun]
    ) -> list[Any]:
        chains = [manager.parent_run_id for manager in run_manager]
        checks = self._prepare_many(values, chains)
        ready = [check.as_input() for check in checks if isinstance(check, _Prepared)]
        found = await self.guard.acheck_batch(ready, return_exceptions=True)
        return self._decide_many(values, checks, chains, found)

    def _decide_many(
        self,
        values: list[Any],
        checks: list[_Prepared | Exception],
        chains: list[UUID | None],
        found: list[Verdict | GuardVLError],
    ) -> list[Any]:
        """Each item's result of one guard batch: its value, or its exception (each item once)."""
        results = iter(found)
        decided: list[Any] = []
        for value, check, chain in zip(values, checks, chains, strict=True):
            result = check if isinstance(check, Exception) else next(results)
            if isinstance(result, Exception):
                decided.append(result)
            else:
                assert isinstance(check, _Prepared)
                decided.append(self._observed(result, value, check, chain))
        return decided

    def _observed(self, verdict: Verdict, value: Any, check: _Prepared, chain: UUID | None) -> Any:
        """Report a verdict of a batch, then decide; a block becomes the item's exception."""
        self._reporter.report(verdict, check.began)
        try:
            return self._decide(verdict, value, check, chain)
        except Exception as exc:
            return exc

    def _prepare_many(
        self, values: list[Any], chains: list[UUID | None]
    ) -> list[_Prepared | Exception]:
        prepared: list[_Prepared | Exception] = []
        for value, chain in zip(values, chains, strict=True):
            try:
                prepared.append(self._prepare(value, chain))
            except Exception as exc:
                prepared.append(exc)
        return prepared

    # -- deciding ----------------------------------------------------------------------------

    def _prepare(self, value: Any, chain: UUID | None) -> _Prepared:
        if self.stage == "input":
            return _Prepared(_read(value), None)
        answer = _output_answer(value)
        request = _REQUESTS.take(chain)
        if request is None:
            raise ConfigurationError(
                "an output guard judges the answer with its request, but no input guard of the "
                "same chain checked one: put guard.as_runnable(stage='input') earlier in the "
                "same RunnableSequence"
            )
        return _Prepared(request, answer)

    def _decide(self, verdict: Verdict, value: Any, check: _Prepared, chain: UUID | None) -> Any:
        if self.stage == "input" and (not verdict.blocked or self.on_block != "raise"):
            _REQUESTS.put(chain, check.request)  # the chain goes on: its answer needs its request
        if not verdict.blocked:
            return value
        blocked = GuardBlocked(verdict, blocked_output=value if self.stage == "output" else None)
        if self.on_block == "raise":
            raise blocked
        return self.on_block(blocked)


class _Prepared:
    """One item ready to check: its request, and the answer for an output check."""

    __slots__ = ("began", "request", "response")

    def __init__(self, request: Request, response: str | Message | None) -> None:
        self.request = request
        self.response = response
        self.began = time.perf_counter()

    def as_input(self) -> CheckInput:
        return self.request.check_input(self.response)


# -- the chat model -------------------------------------------------------------------------


def _unobserved() -> RunnableConfig:
    """Config for the inner model: none of the caller's callbacks.

    Streaming handlers (``astream_events``, ``stream_log``) must see tokens only after they
    passed the guard, as the caller does; they see the guarded model's run instead.
    """
    return {"callbacks": []}


class GuardedChatModel(BaseChatModel):
    """A chat model whose conversations and answers are checked by a guard.

    Wraps any ``BaseChatModel``::

        safe_model = GuardedChatModel(ChatOpenAI(model="gpt-4o"), guard)
        safe_model.invoke([HumanMessage(content=[text_part, image_part])])

    The user turns of the conversation are checked before the inner model is called (a blocked
    request never reaches it); each answer is checked, with the request, before the caller gets
    it. A streamed answer is checked while it streams, with the middleware's rules
    (``stream_every``, ``stream_window``, ``buffered``; see :func:`~guardvl_sdk.hooks.guarded`):
    chunks are held back until a check covering them has passed, and a block closes the inner
    stream. An answer is judged with its reasoning (``thinking`` / ``reasoning`` blocks,
    ``additional_kwargs["reasoning_content"]``) and, when not streamed, its tool calls; a block
    or field the guard cannot read raises ``InvalidInputError`` (see :func:`answer_text`). An
    answer without text (tool calls only) is checked as an empty answer, as every entry point
    does (see :mod:`guardvl_sdk.hooks`). ``bind_tools`` formats the tools with
    the inner model's own ``bind_tools``, so ``with_structured_output`` works too. Sampling
    parameters (temperature, max_tokens, ...) belong to the inner model: set them there.

    Attributes:
        chat_model: The model that answers.
        guard: The guard that decides (its ``on_error`` applies when it cannot).
        check: ``"both"`` (default), ``"input"`` or ``"output"``.
        on_block: ``"raise"`` (default): raise ``GuardBlocked`` (the withheld ``AIMessage`` as
            ``blocked_output``; for a stream, the text generated so far). ``"refuse"``: answer
            with ``refusal`` and ``finish_reason`` ``"content_filter"`` instead.
        refusal: The answer given instead of a blocked one under ``on_block="refuse"``.
        stream_every: Check a streamed answer each time this many characters were added.
        stream_window: Characters of earlier context each mid-stream check includes (None: all).
        buffered: Release no streamed chunk before the whole answer has passed.
        on_verdict: Called with a :class:`~guardvl_sdk.hooks.GuardEvent` after every check.
    """

    chat_model: BaseChatModel
    guard: Guard
    check: CheckMode = "both"
    on_block: Literal["raise", "refuse"] = "raise"
    refusal: str = DEFAULT_REFUSAL
    stream_every: int | None = 500
    stream_window: int | None = None
    buffered: bool = False
    on_verdict: Callable[[GuardEvent], Any] | None = Field(default=None, exclude=True)

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def __init__(
        self, chat_model: BaseChatModel | None = None, guard: Guard | None = None, **kwargs: Any
    ) -> None:
        if chat_model is not None:
            kwargs["chat_model"] = chat_model
        if guard is not None:
            kwargs["guard"] = guard
        super().__init__(**kwargs)

    @model_validator(mode="after")
    def _valid_options(self) -> GuardedChatModel:
        self._options()
        return self

    def _options(self) -> HookOptions:
        return HookOptions.of(
            check=self.check,
            on_block=self.on_block,
            refusal=self.refusal,
            stream_every=self.stream_every,
            stream_window=self.stream_window,
            buffered=self.buffered,
            on_verdict=self.on_verdict,
        ).accepting("raise", "refuse")

    @property
    def _llm_type(self) -> str:
        return f"guarded-{self.chat_model._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "chat_model": self.chat_model._identifying_params,
            "guard": self.guard.model_id,
            "policy": self.guard.policy.name,
            "check": self.check,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """The inner model's tracing parameters: traces name the model that answered."""
        params = self.chat_model._get_ls_params(stop=stop, **kwargs)
        params["ls_model_type"] = "chat"
        if isinstance(kwargs.get("model"), str):
            params["ls_model_name"] = kwargs["model"]
        params.setdefault("ls_model_name", self.chat_model._llm_type)
        params.setdefault("ls_provider", self.chat_model._llm_type)
        return params

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools as the inner model formats them; calls still go through the guard."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        bound = self.chat_model.bind_tools(tools, **kwargs)
        if not isinstance(bound, RunnableBinding) or bound.bound is not self.chat_model:
            raise NotImplementedError(
                f"{type(self.chat_model).__name__}.bind_tools does not bind call options; "
                "bind the tools on the inner model before wrapping it"
            )
        return self.bind(**bound.kwargs)

    # -- the checks ---------------------------------------------------------------------------

    @property
    def _reporter(self) -> Reporter:
        name = f"GuardedChatModel({self.chat_model._llm_type})"
        return Reporter(self.guard, name, self.on_verdict)

    def _block(self, verdict: Verdict, withheld: Any = None) -> AIMessage:
        if self.on_block == "raise":
            raise GuardBlocked(verdict, blocked_output=withheld)
        return AIMessage(
            content=self.refusal,
            response_metadata={"finish_reason": CONTENT_FILTER, "guard_stage": verdict.stage},
        )

    def _refusal_result(self, verdict: Verdict) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._block(verdict))])

    def _checked(self, generation: ChatGeneration, verdict: Verdict) -> ChatGeneration:
        if not verdict.blocked:
            return generation
        return ChatGeneration(message=self._block(verdict, generation.message))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = _read(messages)
        reporter = self._reporter
        if self.check != "output":
            verdict = reporter.check(request)
            if verdict.blocked:
                return self._refusal_result(verdict)
        result = self.chat_model.generate([messages], stop=stop, callbacks=[], **kwargs)
        generations = cast("list[ChatGeneration]", result.generations[0])
        if self.check != "input":
            answers = [judged_answer(g.message) for g in generations]
            verdicts = reporter.check_answers(request, answers)
            generations = [self._checked(g, v) for g, v in zip(generations, verdicts, strict=True)]
        return ChatResult(generations=generations, llm_output=result.llm_output)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = _read(messages)
        reporter = self._reporter
        if self.check != "output":
            verdict = await reporter.acheck(request)
            if verdict.blocked:
                return self._refusal_result(verdict)
        result = await self.chat_model.agenerate([messages], stop=stop, callbacks=[], **kwargs)
        generations = cast("list[ChatGeneration]", result.generations[0])
        if self.check != "input":
            answers = [judged_answer(g.message) for g in generations]
            verdicts = await reporter.acheck_answers(request, answers)
            generations = [self._checked(g, v) for g, v in zip(generations, verdicts, strict=True)]
        return ChatResult(generations=generations, llm_output=result.llm_output)

    # -- streaming ----------------------------------------------------------------------------

    def _gates(self) -> OneAnswer[AIMessageChunk, ChatGenerationChunk]:
        # Tool-call chunks are held from the first on and judged whole by the final check.
        return OneAnswer(
            self._options().stream,
            _chunk_text,
            lambda chunk: ChatGenerationChunk(message=chunk),
            held=lambda chunk: bool(chunk.tool_call_chunks),
            answer_of=_streamed_answer,
        )

    def _stream_block(self, verdict: Verdict, withheld: str | None) -> ChatGenerationChunk:
        refusal = self._block(verdict, withheld)
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content=refusal.content,
                response_metadata=refusal.response_metadata,
                chunk_position="last",
            )
        )

    def _stream_blocked(
        self, gates: OneAnswer[AIMessageChunk, ChatGenerationChunk]
    ) -> Callable[[Verdict, int], list[ChatGenerationChunk]]:
        """The stream driver's ``on_block``: the withheld output is all the text so far."""
        return lambda verdict, _key: [self._stream_block(verdict, gates.gate.text)]

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = _read(messages)
        reporter = self._reporter
        if self.check != "output":
            verdict = reporter.check(request)
            if verdict.blocked:
                yield self._stream_block(verdict, None)
                return
        chunks = self.chat_model.stream(messages, _unobserved(), stop=stop, **kwargs)
        close = chunks.close  # type: ignore[attr-defined]  # stops the inner model's generation
        if self.check == "input":
            try:
                for chunk in chunks:
                    yield ChatGenerationChunk(message=chunk)
            finally:
                close()
            return
        gates = self._gates()
        yield from guard_stream(
            chunks,
            gates,
            lambda due, partial: reporter.check_due(request, due, partial),
            self._stream_blocked(gates),
            close=close,
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = _read(messages)
        reporter = self._reporter
        if self.check != "output":
            verdict = await reporter.acheck(request)
            if verdict.blocked:
                yield self._stream_block(verdict, None)
                return
        chunks = self.chat_model.astream(messages, _unobserved(), stop=stop, **kwargs)
        aclose = chunks.aclose  # type: ignore[attr-defined]
        if self.check == "input":
            try:
                async for chunk in chunks:
                    yield ChatGenerationChunk(message=chunk)
            finally:
                await aclose()
            return
        gates = self._gates()
        guarded = aguard_stream(
            chunks,
            gates,
            lambda due, partial: reporter.acheck_due(request, due, partial),
            self._stream_blocked(gates),
            close=aclose,
        )
        try:
            async for item in guarded:
                yield item
        finally:
            await guarded.aclose()
