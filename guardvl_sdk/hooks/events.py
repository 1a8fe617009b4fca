"""What the middleware reports: one event per guard decision, and the reporter that runs checks.

:class:`Reporter` is the one place a middleware check goes through: it asks the guard, then logs
the verdict and calls ``on_verdict`` with a :class:`GuardEvent`. Observing never changes a
decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from guardvl_sdk.checks import CheckInput, Due

if TYPE_CHECKING:
    from guardvl_sdk.conversation import Message
    from guardvl_sdk.hooks.messages import Request
    from guardvl_sdk.verdict import Stage, Verdict

__all__ = ["BlockedCall", "GuardEvent", "Guardian", "Reporter"]

logger = logging.getLogger("guardvl_sdk")


class Guardian(Protocol):
    """What the middleware needs of a guard (:class:`~guardvl_sdk.guard.Guard` is one)."""

    def check_batch(self, items: Iterable[CheckInput]) -> list[Verdict]:
        """Check several items; verdicts in order."""
        ...

    async def acheck_batch(self, items: Iterable[CheckInput]) -> list[Verdict]:
        """Like ``check_batch``, without blocking the event loop."""
        ...


@dataclass(frozen=True)
class GuardEvent:
    """One guard decision made by the middleware, as ``on_verdict`` callbacks receive it.

    Attributes:
        function: Qualified name of the guarded function (or the session's name).
        stage: ``"input"`` (the request) or ``"output"`` (the answer, judged with its request).
        verdict: The guard's verdict; ``verdict.blocked`` is the decision.
        elapsed_ms: Wall time of the check as the caller waited for it, in milliseconds.
        partial: True for a check of a streamed answer that was still being generated.
    """

    function: str
    stage: Stage
    verdict: Verdict
    elapsed_ms: float
    partial: bool = False


@dataclass(frozen=True)
class BlockedCall:
    """A blocked call of a guarded function, as an ``on_block`` handler receives it.

    Attributes:
        function: Qualified name of the guarded function.
        verdict: The verdict that blocked.
        args: Positional arguments of the call (``self`` first for a method).
        kwargs: Keyword arguments of the call.
        output: The withheld answer for an output block: the function's return value, or for a
            stream all the text generated so far. ``None`` for an input block.
        released: For a stream, the text the caller already received before the block.
    """

    function: str
    verdict: Verdict
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any = None
    released: str = ""


@dataclass(frozen=True)
class Reporter:
    """Runs the middleware's guard checks and reports every verdict to the log and the callback.

    Attributes:
        guard: The guard that decides.
        name: Reported as :attr:`GuardEvent.function` and in log lines.
        on_verdict: Called with a :class:`GuardEvent` after every check.
    """

    guard: Guardian
    name: str
    on_verdict: Callable[[GuardEvent], Any] | None = None

    def check(self, request: Request, response: str | Message | None = None) -> Verdict:
        """Check the request, or with ``response`` the answer in its context; report it.

        ``response`` is the answer's text, or an assistant message (its tool calls are judged
        as part of the answer).
        """
        return self.check_inputs([request.check_input(response)])[0]

    async def acheck(self, request: Request, response: str | Message | None = None) -> Verdict:
        """Like :meth:`check`, without blocking the event loop."""
        return (await self.acheck_inputs([request.check_input(response)]))[0]

    def check_due(self, request: Request, due: Due, partial: bool) -> Verdict:
        """The check a stream gate says is due (see :func:`~guardvl_sdk.hooks.guard_stream`):
        ``due.answer`` from ``due.offset`` in the whole answer (recorded in the receipt)."""
        return self.check_inputs([request.check_input(due.answer, due.offset)], partial)[0]

    async def acheck_due(self, request: Request, due: Due, partial: bool) -> Verdict:
        """Like :meth:`check_due`, without blocking the event loop."""
        items = [request.check_input(due.answer, due.offset)]
        return (await self.acheck_inputs(items, partial))[0]

    def check_answers(
        self, request: Request, answers: Sequence[str | Message | None], partial: bool = False
    ) -> list[Verdict]:
        """Check several answers to one request in one guard batch; report each verdict."""
        return self.check_inputs([request.check_input(answer) for answer in answers], partial)

    async def acheck_answers(
        self, request: Request, answers: Sequence[str | Message | None], partial: bool = False
    ) -> list[Verdict]:
        """Like :meth:`check_answers`, without blocking the event loop."""
        items = [request.check_input(answer) for answer in answers]
        return await self.acheck_inputs(items, partial)

    def check_inputs(self, items: Sequence[CheckInput], partial: bool = False) -> list[Verdict]:
        """Check any items (a conversation: ``CheckInput(messages=...)``) in one guard batch."""
        began = time.perf_counter()
        verdicts = self.guard.check_batch(items)
        return [self.report(verdict, began, partial) for verdict in verdicts]

    async def acheck_inputs(
        self, items: Sequence[CheckInput], partial: bool = False
    ) -> list[Verdict]:
        """Like :meth:`check_inputs`, without blocking the event loop."""
        began = time.perf_counter()
        verdicts = await self.guard.acheck_batch(items)
        return [self.report(verdict, began, partial) for verdict in verdicts]

    def report(self, verdict: Verdict, began: float, partial: bool = False) -> Verdict:
        """Log a verdict reached since ``began`` (``time.perf_counter()``) and call back."""
        event = GuardEvent(
            self.name, verdict.stage, verdict, (time.perf_counter() - began) * 1000, partial
        )
        logger.log(
            logging.INFO if verdict.blocked else logging.DEBUG,
            "%s: %s%s check %s (%.0f ms)",
            event.function,
            "partial " if partial else "",
            event.stage,
            verdict.summary(),
            event.elapsed_ms,
        )
        if self.on_verdict is not None:
            try:
                self.on_verdict(event)
            except Exception:
                # Observing must never change a decision: the verdict stands as the guard gave it.
                logger.exception("on_verdict callback failed for %s", event.function)
        return verdict
