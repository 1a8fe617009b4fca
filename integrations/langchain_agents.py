"""A guard for LangChain v1 agents: ``create_agent(..., middleware=[GuardMiddleware(guard)])``.

Extra ``guardvl-sdk[langchain]`` (``langchain>=1``). Around every step of the agent loop:

- **before each model call**, the whole conversation the model is about to read (system prompt,
  user turns, its own earlier turns and tool calls, every tool result, every image) is judged;
  a blocked conversation never reaches the model;
- **after each model call**, the model's answer, its text and the name and arguments of every
  tool call it makes, is judged in that context; a blocked answer is withheld, so its tool
  calls are never executed;
- **after each tool call**, the tool's result is judged as untrusted input before it is handed
  back to the model (an indirect prompt injection in a fetched page stops there).

Each check is ``guard.check(messages=...)``, made through the middleware's
:class:`~guardvl_sdk.hooks.Reporter` (it logs every verdict and calls ``on_verdict``): the
conversation layout, the receipt and the incremental cost are the guard's (docs/middleware.md).
A part already judged in the same conversation is not sent again, so the checks of a long agent
run stay cheap.

Streamed agents (``agent.stream(..., stream_mode="messages")``, ``astream_events``, any callback
handler): the model call runs without the run's callbacks, as ``GuardedChatModel``'s inner model
does, so no handler gets a token of an answer before it was judged; the checked answer (or the
refusal that replaced it) reaches those streams whole, when the model step ends. The model call
is therefore not a child run in traces.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.runnables.config import ensure_config, var_child_runnable_config

from guardvl_sdk.checks import CheckInput
from guardvl_sdk.errors import GuardBlocked
from guardvl_sdk.guard import Guard
from guardvl_sdk.hooks import (
    DEFAULT_REFUSAL,
    Flow,
    GuardEvent,
    HookOptions,
    Reporter,
    arun_flow,
    run_flow,
)
from guardvl_sdk.verdict import Verdict

from .langchain_messages import judged_answer, openai_chat

__all__ = ["GuardMiddleware"]

Stage = Literal["input", "output"]

CheckInputs = Callable[[Sequence[CheckInput]], Any]
"""The reporter's ``check_inputs``, or ``acheck_inputs`` (see :mod:`guardvl_sdk.hooks.flow`)."""


class GuardMiddleware(AgentMiddleware):
    """Guards a LangChain v1 agent: model input, model output with tool calls, tool results.

    Args:
        guard: The guard that decides.
        on_block: ``"raise"`` (default): :class:`~guardvl_sdk.errors.GuardBlocked` stops the
            agent. ``"refuse"``: a blocked model call or answer becomes an ``AIMessage`` with
            ``refusal`` and no tool calls (the agent ends its turn); a blocked tool result
            becomes a ``ToolMessage`` saying it was withheld (status ``error``).
        refusal: The text that replaces what was blocked under ``on_block="refuse"``.
        on_verdict: Called with a :class:`~guardvl_sdk.hooks.GuardEvent` after every check; its
            exceptions are ignored.
        name: Reported as the event's ``function``.
    """

    def __init__(
        self,
        guard: Guard,
        *,
        on_block: Literal["raise", "refuse"] = "raise",
        refusal: str = DEFAULT_REFUSAL,
        on_verdict: Callable[[GuardEvent], Any] | None = None,
        name: str = "agent",
    ) -> None:
        options = HookOptions(on_block=on_block, refusal=refusal, on_verdict=on_verdict)
        options.accepting("raise", "refuse")
        super().__init__()
        self.guard = guard
        self.on_block = on_block
        self.refusal = refusal
        self.on_verdict = on_verdict
        self.label = name
        self._reporter = Reporter(guard, name, on_verdict)

    # -- model calls --------------------------------------------------------------------------

    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> ModelResponse | AIMessage:
        """Judge the model's input, call it, then judge its answer and tool calls."""
        return run_flow(self._model_call(request, handler, self._reporter.check_inputs))

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse | AIMessage:
        """Like :meth:`wrap_model_call`, without blocking the event loop."""
        return await arun_flow(self._model_call(request, handler, self._reporter.acheck_inputs))

    def _model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Any], check: CheckInputs
    ) -> Flow[ModelResponse | AIMessage]:
        history = _conversation(request.system_message, request.messages)
        (verdict,) = yield check([CheckInput(messages=history)])
        if verdict.blocked:
            return self._refused(verdict)
        response: ModelResponse | AIMessage = yield _unobserved(handler, request)
        for answer in _answers(response):
            (verdict,) = yield check([CheckInput(messages=history, response=judged_answer(answer))])
            if verdict.blocked:
                return self._refused(verdict, answer)
        return response

    # -- tool calls ---------------------------------------------------------------------------

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        """Run the tool, then judge its result in the conversation before the model reads it."""
        return run_flow(self._tool_call(request, handler, self._reporter.check_inputs))

    async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        """Like :meth:`wrap_tool_call`, without blocking the event loop."""
        return await arun_flow(self._tool_call(request, handler, self._reporter.acheck_inputs))

    def _tool_call(
        self, request: Any, handler: Callable[[Any], Any], check: CheckInputs
    ) -> Flow[Any]:
        result = yield handler(request)
        if not isinstance(result, ToolMessage):  # a Command: its messages reach the model later
            return result
        (verdict,) = yield check([CheckInput(messages=_with_result(request, result))])
        return self._tool_result(verdict, result)

    # -- deciding -----------------------------------------------------------------------------

    def _refused(self, verdict: Verdict, answer: BaseMessage | None = None) -> AIMessage:
        if self.on_block == "raise":
            raise GuardBlocked(verdict, blocked_output=answer)
        return AIMessage(content=self.refusal)

    def _tool_result(self, verdict: Verdict, result: ToolMessage) -> ToolMessage:
        if not verdict.blocked:
            return result
        if self.on_block == "raise":
            raise GuardBlocked(verdict, blocked_output=result)
        return ToolMessage(
            content=f"The result of this tool was withheld by the guard. {self.refusal}",
            tool_call_id=result.tool_call_id,
            name=result.name,
            status="error",
        )


def _unobserved(handler: Callable[[ModelRequest], Any], request: ModelRequest) -> Any:
    """Call the model without the run's callbacks (an async handler: while it is awaited).

    The model call reads its config from LangChain's context variable (LangGraph sets it for
    the node). Without callbacks, no streaming handler (LangGraph's ``messages`` stream,
    ``astream_events``, a UI's token handler) sees the answer before it was judged; the node's
    output, judged by then, is what they get.
    """
    with _no_callbacks():
        result = handler(request)
    return _awaited_unobserved(result) if inspect.isawaitable(result) else result


async def _awaited_unobserved(pending: Awaitable[Any]) -> Any:
    with _no_callbacks():  # a coroutine reads the context when it runs, not when it was made
        return await pending


@contextmanager
def _no_callbacks() -> Iterator[None]:
    """The current run's config without its callbacks, inside the block."""
    token = var_child_runnable_config.set({**ensure_config(), "callbacks": []})
    try:
        yield
    finally:
        var_child_runnable_config.reset(token)


def _conversation(system: SystemMessage | None, messages: Sequence[BaseMessage]) -> list[Any]:
    """The model's input in OpenAI format, the system prompt first."""
    chat: list[Any] = openai_chat([*([system] if system else []), *messages])
    return chat


def _answers(response: Any) -> list[AIMessage]:
    """The model's answers in a response: each AIMessage, with or without tool calls."""
    result = response.result if isinstance(response, ModelResponse) else [response]
    return [m for m in result if isinstance(m, AIMessage)]


def _with_result(request: Any, result: ToolMessage) -> list[Any]:
    state = request.state
    messages = state.get("messages", []) if isinstance(state, dict) else []
    chat: list[Any] = openai_chat([*messages, result])
    return chat
