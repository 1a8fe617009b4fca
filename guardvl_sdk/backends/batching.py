"""Dynamic batching: prompts from concurrent callers gathered into one model call.

A :class:`Batcher` owns one worker thread. Callers (threads, or asyncio tasks through
:meth:`Batcher.asubmit`) hand in their prompts and wait; the worker takes the first waiting
request and runs it at once when nothing else is waiting (a lone caller pays no window). When
others are already waiting, a burst is arriving: the worker gathers more for at most ``window``
seconds or until ``max_batch_size`` prompts, runs them as one call and hands each caller its own
outputs. While a call runs, new requests queue and go together in the next one. A ``run`` that
accepts ``deliver`` may hand out results before the call ends (a caller whose output finished
early gets it then). A call that fails with several callers in it is retried caller by caller,
so an error (an unreadable image, out of memory) reaches only the callers it belongs to.
With a ``timeout``, no caller waits longer than that for its results (queueing included): past it
the caller gets :class:`~guardvl_sdk.errors.BackendTimeoutError`, and its request, if it has not
started, is withdrawn.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from guardvl_sdk.errors import BackendTimeoutError

__all__ = ["Batcher"]

P = TypeVar("P")
R = TypeVar("R")

_IDLE_SECONDS = 5.0  # the worker exits after this long without work; the next caller restarts it


@dataclass
class _Request(Generic[P, R]):
    items: list[P]
    future: Future[list[R]] = field(default_factory=Future)
    results: dict[int, R] = field(default_factory=dict)  # delivered early, by position

    def deliver(self, position: int, result: R) -> None:
        """Keep one result; the future resolves once every item has one."""
        self.results[position] = result
        if len(self.results) == len(self.items) and not self.future.done():
            self.future.set_result([self.results[i] for i in range(len(self.items))])


Deliver = Callable[[int, R], None]


class Batcher(Generic[P, R]):
    """Gathers items from concurrent callers into batched calls of ``run``.

    Args:
        run: Takes a list of items and returns one result per item, in order. With
            ``early=True`` it is called as ``run(items, deliver)`` and may call
            ``deliver(index, result)`` for any item before it returns.
        window: Seconds the worker waits for more callers when others are already waiting
            behind the first one (a lone caller does not wait).
        max_batch_size: Most items in one call; a single request larger than this runs alone.
        name: The worker thread's name.
        early: Whether ``run`` takes ``deliver``.
        timeout: Seconds a caller waits for its results, queueing included; None: no limit.
    """

    def __init__(
        self,
        run: Callable[..., list[R]],
        *,
        window: float,
        max_batch_size: int,
        name: str = "guardvl-batcher",
        early: bool = False,
        timeout: float | None = None,
    ) -> None:
        if window < 0 or max_batch_size < 1:
            raise ValueError("need window >= 0 and max_batch_size >= 1")
        self._run = run
        self._early = early
        self.window = window
        self.max_batch_size = max_batch_size
        self._name = name
        self.timeout = timeout
        self._queue: queue.SimpleQueue[_Request[P, R]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._carry: _Request[P, R] | None = None  # taken from the queue but not fitting the batch
        self.calls = 0  # model calls made (for tests and benchmarks)

    def submit(self, items: Sequence[P]) -> Future[list[R]]:
        """Queue ``items``; the future resolves to their results, in order."""
        request: _Request[P, R] = _Request(list(items))
        with self._lock:
            self._queue.put(request)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._worker.start()
        return request.future

    def __call__(self, items: Sequence[P]) -> list[R]:
        """Submit and wait for the results (at most ``timeout`` seconds)."""
        future = self.submit(items)
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            future.cancel()
            raise self._timed_out() from None

    async def asubmit(self, items: Sequence[P]) -> list[R]:
        """Submit and await the results. Cancelling the awaiting task withdraws a request that
        has not started; one already running finishes and its results are dropped."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.submit(items)), self.timeout)
        except asyncio.TimeoutError:
            raise self._timed_out() from None

    def _timed_out(self) -> BackendTimeoutError:
        return BackendTimeoutError(
            f"no result within {self.timeout} s (the model is busy or stuck): failing closed"
        )

    # -- the worker --------------------------------------------------------------------------

    def _next(self, timeout: float | None) -> _Request[P, R] | None:
        if self._carry is not None:
            request, self._carry = self._carry, None
            return request
        try:
            if timeout is not None and timeout <= 0:
                return self._queue.get_nowait()
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _work(self) -> None:
        while True:
            first = self._next(_IDLE_SECONDS)
            if first is None:
                with self._lock:
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            batch, size = [first], len(first.items)
            # Nobody waiting behind the first: run it now. Someone waiting: a burst is arriving,
            # gather it for up to the window.
            burst = self._carry is not None or not self._queue.empty()
            deadline = time.monotonic() + (self.window if burst else 0.0)
            while size < self.max_batch_size:
                request = self._next(deadline - time.monotonic())
                if request is None:
                    break
                if size + len(request.items) > self.max_batch_size:
                    self._carry = request
                    break
                batch.append(request)
                size += len(request.items)
            self._execute([r for r in batch if r.future.set_running_or_notify_cancel()])

    def _execute(self, batch: list[_Request[P, R]]) -> None:
        if not batch:
            return
        items = [item for request in batch for item in request.items]
        owners = [(request, i) for request in batch for i in range(len(request.items))]

        def deliver(index: int, result: R) -> None:
            request, position = owners[index]
            request.deliver(position, result)

        try:
            self.calls += 1
            results = self._run(items, deliver) if self._early else self._run(items)
            if len(results) != len(items):
                raise RuntimeError(f"batched call returned {len(results)} results for {len(items)}")
        except BaseException as exc:
            waiting = [request for request in batch if not request.future.done()]
            if len(waiting) == 1:
                waiting[0].future.set_exception(exc)
                return
            for request in waiting:  # one by one: the error reaches only its own callers
                self._execute_alone(request)
            return
        for index, result in enumerate(results):
            request, position = owners[index]
            if position not in request.results:
                request.deliver(position, result)

    def _execute_alone(self, request: _Request[P, R]) -> None:
        request.results.clear()
        try:
            self.calls += 1
            if self._early:
                results = self._run(request.items, request.deliver)
            else:
                results = self._run(request.items)
            if not request.future.done():
                request.future.set_result(results)
        except BaseException as exc:
            request.future.set_exception(exc)
