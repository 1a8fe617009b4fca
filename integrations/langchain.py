"""LangChain: guard runnables for any chain, and a guarded chat model.

Two ways to put a guard into a LangChain app (extra ``guardvl-sdk[langchain]``)::

    chain = guard.as_runnable() | prompt | chat_model | guard.as_runnable(stage="output")
    safe_model = GuardedChatModel(chat_model, guard)  # any BaseChatModel: input and output checked

:class:`GuardRunnable` is a ``Runnable`` that checks what flows through it and passes it on
unchanged when allowed; a block raises :class:`~guardvl_sdk.errors.GuardBlocked` (or returns what
an ``on_block`` handler gives). An output guard judges the answer in the context of the request
that the input guard of the same chain checked. It lives in :mod:`.langchain_runnable`.

:class:`GuardedChatModel` (this module) is a ``BaseChatModel`` around another one: the
conversation is checked before the inner model is called, its answer before the caller gets it
(a stream while it streams, as ``@guarded`` does).

Both read LangChain messages and answers with :mod:`.langchain_messages` (:func:`read_request`,
:func:`answer_text`): a part the guard cannot read (audio, files) raises
:class:`~guardvl_sdk.errors.InvalidInputError` rather than pass unchecked.
"""

# ruff: noqa: E402  (the extra is checked before the imports that need it)
from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal, cast

from pydantic import ConfigDict, Field, model_validator

from guardvl_sdk.extras import require

require("langchain", "guardvl_sdk.integrations.langchain")  # the extra first: name what is missing

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig

from guardvl_sdk.errors import GuardBlocked
from guardvl_sdk.guard import Guard
from guardvl_sdk.hooks import (
    DEFAULT_REFUSAL,
    CheckMode,
    Due,
    Flow,
    GuardEvent,
    HookOptions,
    OneAnswer,
    Reporter,
    Request,
    aguard_stream,
    arun_flow,
    guard_stream,
    run_flow,
)
from guardvl_sdk.verdict import Verdict

from .langchain_messages import (
    answer_text,
    chunk_text,
    judged_answer,
    openai_chat,
    read_request,
    streamed_answer,
)
from .langchain_runnable import GuardRunnable, Stage

__all__ = [
    "GuardRunnable",
    "GuardedChatModel",
    "Stage",
    "answer_text",
    "judged_answer",
    "openai_chat",
    "read_request",
]

_StreamGate = tuple[
    OneAnswer[AIMessageChunk, ChatGenerationChunk],
    Callable[[Due, bool], Any],  # the check (a verdict, or its awaitable)
    Callable[[Verdict, int], list[ChatGenerationChunk]],  # on_block
]
"""What a stream driver needs besides the chunks (see :meth:`GuardedChatModel._gate`)."""

CONTENT_FILTER = "content_filter"
"""The ``finish_reason`` of a refusal that replaced a blocked answer (the OpenAI convention)."""


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
        return run_flow(self._answered(messages, stop, kwargs, aio=False))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await arun_flow(self._answered(messages, stop, kwargs, aio=True))

    def _request_checked(
        self, messages: list[BaseMessage], aio: bool
    ) -> Flow[tuple[Request, Verdict | None]]:
        """Read the request and, unless ``check="output"``, check it: the request, and the
        verdict if it blocked (``aio``: with the reporter's async check)."""
        request = read_request(messages)
        if self.check == "output":
            return request, None
        reporter = self._reporter
        verdict = yield (reporter.acheck if aio else reporter.check)(request)
        return request, verdict if verdict.blocked else None

    def _answered(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Any, aio: bool
    ) -> Flow[ChatResult]:
        """Check the request, call the inner model, check each answer (``aio``: the async twins)."""
        request, blocked = yield from self._request_checked(messages, aio)
        if blocked is not None:
            return self._refusal_result(blocked)
        generate = self.chat_model.agenerate if aio else self.chat_model.generate
        result = yield generate([messages], stop=stop, callbacks=[], **kwargs)
        generations = cast("list[ChatGeneration]", result.generations[0])
        if self.check != "input":
            reporter = self._reporter
            answers = [judged_answer(g.message) for g in generations]
            check_answers = reporter.acheck_answers if aio else reporter.check_answers
            verdicts = yield check_answers(request, answers)
            generations = [self._checked(g, v) for g, v in zip(generations, verdicts, strict=True)]
        return ChatResult(generations=generations, llm_output=result.llm_output)

    # -- streaming ----------------------------------------------------------------------------

    def _stream_block(self, verdict: Verdict, withheld: str | None) -> ChatGenerationChunk:
        refusal = self._block(verdict, withheld)
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content=refusal.content,
                response_metadata=refusal.response_metadata,
                chunk_position="last",
            )
        )

    def _gate(self, request: Request, aio: bool) -> _StreamGate:
        """What a stream driver needs besides the chunks: the gates (tool-call chunks held from
        the first on, judged whole by the final check), the check, and ``on_block`` (the withheld
        output is all the text so far)."""
        gates: OneAnswer[AIMessageChunk, ChatGenerationChunk] = OneAnswer(
            self._options().stream,
            chunk_text,
            _generation,
            held=lambda chunk: bool(chunk.tool_call_chunks),
            answer_of=streamed_answer,
        )
        check_due = self._reporter.acheck_due if aio else self._reporter.check_due

        def on_block(verdict: Verdict, _key: int) -> list[ChatGenerationChunk]:
            return [self._stream_block(verdict, gates.gate.text)]

        return gates, lambda due, partial: check_due(request, due, partial), on_block

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request, blocked = run_flow(self._request_checked(messages, aio=False))
        if blocked is not None:
            yield self._stream_block(blocked, None)
            return
        chunks = self.chat_model.stream(messages, _unobserved(), stop=stop, **kwargs)
        close = chunks.close  # type: ignore[attr-defined]  # stops the inner model's generation
        if self.check == "input":
            try:
                yield from map(_generation, chunks)
            finally:
                close()
            return
        yield from guard_stream(chunks, *self._gate(request, aio=False), close=close)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request, blocked = await arun_flow(self._request_checked(messages, aio=True))
        if blocked is not None:
            yield self._stream_block(blocked, None)
            return
        chunks = self.chat_model.astream(messages, _unobserved(), stop=stop, **kwargs)
        aclose = chunks.aclose  # type: ignore[attr-defined]
        if self.check == "input":
            try:
                async for chunk in chunks:
                    yield _generation(chunk)
            finally:
                await aclose()
            return
        guarded = aguard_stream(chunks, *self._gate(request, aio=True), close=aclose)
        try:
            async for item in guarded:
                yield item
        finally:
            await guarded.aclose()


def _generation(chunk: AIMessageChunk) -> ChatGenerationChunk:
    return ChatGenerationChunk(message=chunk)
