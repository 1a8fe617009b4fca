"""One control flow for sync and async callers: a generator run by a sync or an async driver.

An entry point's steps (check the request, call the model, check the answer, decide) are written
once, as a generator that yields each call it waits for and receives the call's result::

    def _steps(self, request, check):  # check: reporter.check, or reporter.acheck
        verdict = yield check(request)
        return self._decide(verdict)

    def invoke(self, request):
        return run_flow(self._steps(request, self._reporter.check))

    async def ainvoke(self, request):
        return await arun_flow(self._steps(request, self._reporter.acheck))

The sync caller passes sync functions, so what the generator yields is already the result;
the async caller passes their async twins, and :func:`arun_flow` awaits what it yields. Sync and
async paths differ only in the driver and the functions handed in: a rule changed in the steps
is changed for both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any, TypeVar

__all__ = ["Flow", "arun_flow", "run_flow"]

R = TypeVar("R")

Flow = Generator[Any, Any, R]
"""Steps that yield the calls they wait for (results, or awaitables) and return ``R``."""


def run_flow(flow: Flow[R]) -> R:
    """Run steps whose yielded calls were made synchronously: each yielded value is its result."""
    result: Any = None
    try:
        while True:
            result = flow.send(result)
    except StopIteration as done:
        value: R = done.value
        return value
    finally:
        flow.close()


async def arun_flow(flow: Flow[R]) -> R:
    """Run steps whose yielded calls are awaitables: each is awaited, its result sent back."""
    result: Any = None
    try:
        while True:
            pending: Awaitable[Any] = flow.send(result)
            result = await pending
    except StopIteration as done:
        value: R = done.value
        return value
    finally:
        flow.close()
