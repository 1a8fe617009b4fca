"""A guard as a step of any LangChain chain: :class:`GuardRunnable` (``guard.as_runnable()``).

An input guard checks what flows through it and passes it on unchanged; an output guard of the
same chain judges the answer with the request the input guard allowed (:class:`Requests` links
the two by the chain's run). ``batch`` / ``abatch`` check all items in one guard batch.
"""

# ruff: noqa: E402  (the extra is checked before the imports that need it)
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal
from uuid import UUID

from guardvl_sdk.extras import require

require("langchain", "guardvl_sdk.integrations.langchain")

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig

from guardvl_sdk.checks import CheckInput
from guardvl_sdk.conversation import Message
from guardvl_sdk.errors import ConfigurationError, GuardBlocked, GuardVLError
from guardvl_sdk.guard import Guard
from guardvl_sdk.hooks import Flow, GuardEvent, HookOptions, Reporter, Request, arun_flow, run_flow
from guardvl_sdk.verdict import Verdict

from .langchain_messages import output_answer, read_request

__all__ = ["GuardRunnable", "Requests", "Stage"]

Stage = Literal["input", "output"]

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
        return run_flow(self._one(value, run_manager.parent_run_id, self._reporter.check))

    async def _ainvoke(self, value: Any, run_manager: AsyncCallbackManagerForChainRun) -> Any:
        return await arun_flow(self._one(value, run_manager.parent_run_id, self._reporter.acheck))

    def _one(self, value: Any, chain: UUID | None, check: Callable[..., Any]) -> Flow[Any]:
        """One input: prepare, check (``check``: the reporter's ``check`` or ``acheck``), decide."""
        prepared = self._prepare(value, chain)
        verdict = yield check(prepared.request, prepared.response)
        return self._decide(verdict, value, prepared, chain)

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
        return await self._abatch_with_config(
            self._abatch, inputs, config, return_exceptions=return_exceptions
        )

    def _batch(self, values: list[Any], run_manager: list[CallbackManagerForChainRun]) -> list[Any]:
        return run_flow(self._many(values, run_manager, self.guard.check_batch))

    async def _abatch(
        self, values: list[Any], run_manager: list[AsyncCallbackManagerForChainRun]
    ) -> list[Any]:
        return await arun_flow(self._many(values, run_manager, self.guard.acheck_batch))

    def _many(
        self, values: list[Any], run_manager: list[Any], check_batch: Callable[..., Any]
    ) -> Flow[list[Any]]:
        """Many inputs in one guard batch (``check_batch``: the guard's, or ``acheck_batch``)."""
        chains = [manager.parent_run_id for manager in run_manager]
        checks = self._prepare_many(values, chains)
        ready = [check.as_input() for check in checks if isinstance(check, _Prepared)]
        found = yield check_batch(ready, return_exceptions=True)
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
            return _Prepared(read_request(value), None)
        answer = output_answer(value)
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
