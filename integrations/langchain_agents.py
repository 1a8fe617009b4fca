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

Each check is ``guard.check(messages=...)``: the conversation layout, the receipt and the
incremental cost are the guard's (docs/middleware.md). A part already judged in the same
conversation is not sent again, so the checks of a long agent run stay cheap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage

from guardvl_sdk.errors import ConfigurationError, GuardBlocked
from guardvl_sdk.guard import Guard
from guardvl_sdk.hooks import DEFAULT_REFUSAL, GuardEvent
from guardvl_sdk.integrations.langchain import judged_answer, openai_chat
from guardvl_sdk.verdict import Verdict

__all__ = ["GuardMiddleware"]

logger = logging.getLogger("guardvl_sdk")

Stage = Literal["input", "output"]


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
        if on_block not in ("raise", "refuse"):
            raise ConfigurationError(f"on_block must be 'raise' or 'refuse', not {on_block!r}")
        super().__init__()
        self.guard = guard
        self.on_block = on_block
        self.refusal = refusal
        self.on_verdict = on_verdict
        self.label = name

    # -- model calls --------------------------------------------------------------------------

    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> ModelResponse | AIMessage:
        """Judge the model's input, call it, then judge its answer and tool calls."""
        history = _conversation(request.system_message, request.messages)
        began = time.perf_counter()
        verdict = self._observe(self.guard.check(messages=history), began)
        if verdict.blocked:
            return self._refused(verdict)
        response = handler(request)
        for answer in _answers(response):
            began = time.perf_counter()
            verdict = self.guard.check(messages=history, response=_openai(answer))
            if self._observe(verdict, began).blocked:
                return self._refused(verdict, answer)
        return response

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse | AIMessage:
        """Like :meth:`wrap_model_call`, without blocking the event loop."""
        history = _conversation(request.system_message, request.messages)
        began = time.perf_counter()
        verdict = self._observe(await self.guard.acheck(messages=history), began)
        if verdict.blocked:
            return self._refused(verdict)
        response = await handler(request)
        for answer in _answers(response):
            began = time.perf_counter()
            verdict = await self.guard.acheck(messages=history, response=_openai(answer))
            if self._observe(verdict, began).blocked:
                return self._refused(verdict, answer)
        return response

    # -- tool calls ---------------------------------------------------------------------------

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        """Run the tool, then judge its result in the conversation before the model reads it."""
        result = handler(request)
        if not isinstance(result, ToolMessage):  # a Command: its messages reach the model later
            return result
        began = time.perf_counter()
        verdict = self.guard.check(messages=_with_result(request, result))
        return self._tool_result(self._observe(verdict, began), result)

    async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        """Like :meth:`wrap_tool_call`, without blocking the event loop."""
        result = await handler(request)
        if not isinstance(result, ToolMessage):
            return result
        began = time.perf_counter()
        verdict = await self.guard.acheck(messages=_with_result(request, result))
        return self._tool_result(self._observe(verdict, began), result)

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

    def _observe(self, verdict: Verdict, began: float) -> Verdict:
        if self.on_verdict is not None:
            event = GuardEvent(
                self.label, verdict.stage, verdict, (time.perf_counter() - began) * 1000
            )
            try:
                self.on_verdict(event)
            except Exception:  # observing never changes a decision
                logger.exception("on_verdict callback failed for %s", self.label)
        return verdict


def _conversation(system: SystemMessage | None, messages: Sequence[BaseMessage]) -> list[Any]:
    """The model's input in OpenAI format, the system prompt first."""
    chat: list[Any] = openai_chat([*([system] if system else []), *messages])
    return chat


def _openai(message: AIMessage) -> Any:
    """An answer as the guard judges it: text, reasoning, tool calls (see ``answer_text``)."""
    return judged_answer(message)


def _answers(response: Any) -> list[AIMessage]:
    """The model's answers in a response: each AIMessage, with or without tool calls."""
    result = response.result if isinstance(response, ModelResponse) else [response]
    return [m for m in result if isinstance(m, AIMessage)]


def _with_result(request: Any, result: ToolMessage) -> list[Any]:
    state = request.state
    messages = state.get("messages", []) if isinstance(state, dict) else []
    chat: list[Any] = openai_chat([*messages, result])
    return chat
