"""A guarded call's control flow, written once, run by a sync or an async driver.

A *flow* is a generator that yields what it waits for and receives the result. It holds every
rule of a guarded call (what is checked, when, and what a block does); :func:`run_flow` runs it
synchronously and :func:`arun_flow` without blocking the event loop, so the sync and async paths
of every entry point differ only in the driver. A flow yields either:

- a :class:`Step` (check a request or its answers, call the wrapped function, stream its answer
  through the stream gate): :func:`run_flow` performs it as a plain call, :func:`arun_flow`
  awaits it::

    def flow(request: Request) -> Flow[str]:
        (verdict,) = yield Check(reporter, request)
        if verdict.blocked:
            raise GuardBlocked(verdict)
        return (yield Call(vlm, (request.text,)))

    answer = run_flow(flow(request))  # or: await arun_flow(flow(request))

- or the call itself, when the caller handed the flow the sync or the async twin of a function
  (``reporter.check`` or ``reporter.acheck``): :func:`run_flow` sends back what it yielded, as
  the result, and :func:`arun_flow` awaits it.

The flow is closed when the driver ends, a step's exception included.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar, cast

from guardvl_sdk.hooks.stream import Gates, aguard_stream, guard_stream

if TYPE_CHECKING:
    from guardvl_sdk.checks import Due
    from guardvl_sdk.conversation import Message
    from guardvl_sdk.hooks.events import Reporter
    from guardvl_sdk.hooks.messages import Request
    from guardvl_sdk.verdict import Verdict

__all__ = [
    "Call",
    "Check",
    "Flow",
    "GuardStream",
    "PassStream",
    "Resolve",
    "Step",
    "arun_flow",
    "run_flow",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
C = TypeVar("C")
O = TypeVar("O")  # noqa: E741  # the output chunk type


class Step(ABC, Generic[T_co]):
    """One thing a flow needs done; the driver performs it and sends back its result."""

    @abstractmethod
    def run(self) -> T_co:
        """Perform the step synchronously."""

    @abstractmethod
    def arun(self) -> Awaitable[T_co]:
        """Perform the step without blocking the event loop."""


Flow: TypeAlias = Generator[Any, Any, T]
"""A guarded call's control flow that returns a ``T``: it yields steps, or calls already made
(see the module docstring)."""


class _Steps:
    """What a flow yields, as an iterator; the driver sets :attr:`result` after each one."""

    def __init__(self, flow: Flow[Any]) -> None:
        self._flow = flow
        self.result: Any = None
        self.value: Any = None  # what the flow returned

    def __iter__(self) -> _Steps:
        return self

    def __next__(self) -> Any:
        try:
            return self._flow.send(self.result)
        except StopIteration as stop:
            self.value = stop.value
            raise StopIteration from None


def run_flow(flow: Flow[T]) -> T:
    """Run a flow, each step a plain call (a call already made: its result); return its value."""
    steps = _Steps(flow)
    try:
        for step in steps:
            steps.result = step.run() if isinstance(step, Step) else step
    finally:
        flow.close()
    return cast("T", steps.value)


async def arun_flow(flow: Flow[T]) -> T:
    """Run a flow, each step (or call already made) awaited; return what the flow returns."""
    steps = _Steps(flow)
    try:
        for step in steps:
            steps.result = await (step.arun() if isinstance(step, Step) else step)
    finally:
        flow.close()
    return cast("T", steps.value)


@dataclass(frozen=True)
class Check(Step["list[Verdict]"]):
    """Step: judge a request, or answers to it, in one guard batch; back come the verdicts.

    Attributes:
        reporter: Runs the check and reports each verdict.
        request: The request.
        answers: The answers to judge in the request's context, one verdict each; ``(None,)``
            (default): the request itself.
        partial: The answers are parts of a stream still being generated.
        offset: For a streamed answer, where the checked text starts in the whole answer.
    """

    reporter: Reporter
    request: Request
    answers: Sequence[str | Message | None] = (None,)
    partial: bool = False
    offset: int | None = None

    def run(self) -> list[Verdict]:
        """The verdicts, in the order of :attr:`answers`."""
        return self.reporter.check_inputs(self._items(), self.partial)

    async def arun(self) -> list[Verdict]:
        """Like :meth:`run`, without blocking the event loop."""
        return await self.reporter.acheck_inputs(self._items(), self.partial)

    def _items(self) -> list[Any]:
        return [self.request.check_input(answer, self.offset) for answer in self.answers]


@dataclass(frozen=True)
class Call(Step[Any]):
    """Step: call the wrapped function; back comes its result (awaited by :func:`arun_flow`)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def run(self) -> Any:
        """The function's result."""
        return self.fn(*self.args, **self.kwargs)

    async def arun(self) -> Any:
        """The function's awaited result."""
        return await self.fn(*self.args, **self.kwargs)


@dataclass(frozen=True)
class Resolve(Step[Any]):
    """Step: a value :func:`arun_flow` awaits if it is awaitable (an async handler's result)."""

    value: Any

    def run(self) -> Any:
        """The value as it is."""
        return self.value

    async def arun(self) -> Any:
        """The value, awaited if it is awaitable."""
        return await self.value if inspect.isawaitable(self.value) else self.value


@dataclass(frozen=True)
class PassStream(Step[Any]):
    """Step: a stream the caller gets unchecked; back comes an iterator (async: generator).

    Attributes:
        chunks: The stream (a list is replayed under either driver).
        each: Called with each chunk before it goes out (it may raise to refuse it).
        close: Called when the stream ends or is abandoned.
    """

    chunks: Iterable[Any] | AsyncIterable[Any]
    each: Callable[[Any], object] | None = None
    close: Callable[[], Any] | None = None

    def run(self) -> Iterator[Any]:
        """The chunks as a generator."""
        return _passed(cast("Iterable[Any]", self.chunks), self._out, self.close)

    async def arun(self) -> AsyncGenerator[Any, None]:
        """The chunks as an async generator."""
        return _apassed(self.chunks, self._out, self.close)

    def _out(self, chunk: Any) -> Any:
        if self.each is not None:
            self.each(chunk)
        return chunk


def _passed(
    chunks: Iterable[Any], out: Callable[[Any], Any], close: Callable[[], Any] | None
) -> Iterator[Any]:
    try:
        yield from map(out, chunks)
    finally:
        if close is not None:
            close()


async def _apassed(
    chunks: Iterable[Any] | AsyncIterable[Any],
    out: Callable[[Any], Any],
    close: Callable[[], Awaitable[Any]] | None,
) -> AsyncGenerator[Any, None]:
    try:
        async for chunk in _aiter(chunks):
            yield out(chunk)
    finally:
        if close is not None:
            await close()


async def _aiter(chunks: Iterable[Any] | AsyncIterable[Any]) -> AsyncGenerator[Any, None]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


@dataclass(frozen=True)
class GuardStream(Step[Any], Generic[C, O]):
    """Step: a stream the caller gets through the stream gate; back comes an iterator.

    The drivers are :func:`~guardvl_sdk.hooks.guard_stream` (:meth:`run`) and
    :func:`~guardvl_sdk.hooks.aguard_stream` (:meth:`arun`); each check a gate says is due is a
    :class:`Check` of the request with that part of the answer.

    Attributes:
        chunks: The upstream stream.
        gates: Holds the answers and says when checks are due.
        reporter: Runs the checks.
        request: The request the answers are judged with.
        on_block: The drivers' ``on_block`` (raise, or what the caller gets instead).
        close: Called when the stream ends, is blocked or is abandoned (stops the generation).
    """

    chunks: Iterable[C] | AsyncIterable[C]
    gates: Gates[C, O]
    reporter: Reporter
    request: Request
    on_block: Callable[[Verdict, int], Any]
    close: Callable[[], Any] | None = None

    def run(self) -> Iterator[O]:
        """The released chunks, checked synchronously."""

        def check(due: Due, partial: bool) -> Verdict:
            return self._check(due, partial).run()[0]

        chunks = cast("Iterable[C]", self.chunks)
        return guard_stream(chunks, self.gates, check, self.on_block, self.close)

    async def arun(self) -> AsyncGenerator[O, None]:
        """The released chunks, checked without blocking the event loop."""

        async def check(due: Due, partial: bool) -> Verdict:
            return (await self._check(due, partial).arun())[0]

        chunks = cast("AsyncIterable[C]", self.chunks)
        return aguard_stream(chunks, self.gates, check, self.on_block, self.close)

    def _check(self, due: Due, partial: bool) -> Check:
        return Check(self.reporter, self.request, (due.answer,), partial, due.offset)
