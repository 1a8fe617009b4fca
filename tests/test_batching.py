"""Dynamic batching: concurrent callers share model calls and each gets its own results."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from guardvl_sdk.backends.batching import Batcher


class Model:
    """Doubles numbers, slowly, recording each call's batch; 13 is an unreadable input."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.batches: list[list[int]] = []
        self.running = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        assert self.running.acquire(blocking=False), "two model calls at once"
        try:
            self.batches.append(list(items))
            time.sleep(self.delay)
            if 13 in items:
                raise ValueError("unreadable input 13")
            return [2 * item for item in items]
        finally:
            self.running.release()


def test_concurrent_threads_are_batched_and_get_their_own_results() -> None:
    model = Model()
    batcher = Batcher(model, window=0.02, max_batch_size=16)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: batcher([i + 100, i + 200]), range(16)))
    assert results == [[2 * (i + 100), 2 * (i + 200)] for i in range(16)]
    assert len(model.batches) < 8  # 16 callers, far fewer model calls
    assert max(len(batch) for batch in model.batches) <= 16


async def test_asyncio_tasks_are_batched() -> None:
    model = Model()
    batcher = Batcher(model, window=0.02, max_batch_size=32)
    results = await asyncio.gather(*(batcher.asubmit([i]) for i in range(20, 40)))
    assert results == [[2 * i] for i in range(20, 40)]
    assert len(model.batches) <= 3


def test_a_lone_caller_does_not_wait_for_the_window() -> None:
    model = Model(delay=0.0)
    window = 30.0  # so long that waiting it can never pass for scheduling delay on a busy host
    batcher = Batcher(model, window=window, max_batch_size=16)
    batcher([1])  # start the worker
    for item in (2, 3, 4):
        started = time.perf_counter()
        assert batcher([item]) == [2 * item]
        assert time.perf_counter() - started < window / 6  # it did not wait the window
    assert Batcher(model, window=0.0, max_batch_size=4)([3]) == [6]


def test_callers_arriving_during_a_call_wait_the_window_together() -> None:
    running, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        batches.append(list(items))
        running.set()
        assert release.wait(30)  # the first call runs until every other caller has queued
        return [2 * item for item in items]

    batcher: Batcher[int, int] = Batcher(run, window=0.05, max_batch_size=16)
    first = batcher.submit([0])
    assert running.wait(30)  # the first call is running; the others queue behind it
    rest = [batcher.submit([i]) for i in range(1, 8)]
    release.set()
    assert first.result(timeout=30) == [0]
    assert [future.result(timeout=30) for future in rest] == [[2 * i] for i in range(1, 8)]
    assert batches == [[0], list(range(1, 8))]  # the seven queued callers: one batch


def test_results_delivered_early_reach_their_callers_before_the_call_ends() -> None:
    release = threading.Event()

    def run(items: list[int], deliver) -> list[int]:  # type: ignore[no-untyped-def]
        deliver(0, items[0] * 2)  # the first caller's output is done early
        assert release.wait(5)
        return [item * 2 for item in items]

    batcher: Batcher[int, int] = Batcher(run, window=0.05, max_batch_size=4, early=True)
    futures = [batcher.submit([1]), batcher.submit([2, 3])]
    assert futures[0].result(timeout=5) == [2]
    assert not futures[1].done()  # its call has not ended
    release.set()
    assert futures[1].result(timeout=5) == [4, 6]


def test_an_error_reaches_only_its_own_caller() -> None:
    model = Model()
    batcher = Batcher(model, window=0.05, max_batch_size=16)
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(batcher, [i]) for i in (11, 12, 13, 14, 15, 16)]
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except ValueError as exc:
                outcomes.append(str(exc))
    assert outcomes == [[22], [24], "unreadable input 13", [28], [30], [32]]


async def test_a_cancelled_caller_is_withdrawn_and_does_not_delay_others() -> None:
    running, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        batches.append(list(items))
        running.set()
        assert release.wait(30)  # [1] occupies the model until [2] was cancelled
        return [2 * item for item in items]

    batcher: Batcher[int, int] = Batcher(run, window=0.0, max_batch_size=1)
    busy = asyncio.create_task(batcher.asubmit([1]))
    assert await asyncio.to_thread(running.wait, 30)
    waiting = asyncio.create_task(batcher.asubmit([2]))  # queued behind it
    await asyncio.sleep(0)  # let it submit
    waiting.cancel()
    await asyncio.sleep(0)
    release.set()
    assert await batcher.asubmit([3]) == [6]
    assert await busy == [2] and waiting.cancelled()
    assert batches == [[1], [3]]  # [2] never ran: [3] came right after [1]


def test_requests_larger_than_the_batch_run_alone_and_order_holds() -> None:
    model = Model(delay=0.01)
    batcher = Batcher(model, window=0.05, max_batch_size=4)
    with ThreadPoolExecutor(4) as pool:
        big = pool.submit(batcher, list(range(10)))
        small = [pool.submit(batcher, [i]) for i in range(20, 26)]
        assert big.result() == [2 * i for i in range(10)]
        assert [f.result() for f in small] == [[2 * i] for i in range(20, 26)]
    assert all(len(batch) <= 4 for batch in model.batches if batch != list(range(10)))


def test_the_worker_stops_when_idle_and_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardvl_sdk.backends import batching

    monkeypatch.setattr(batching, "_IDLE_SECONDS", 0.05)
    batcher = Batcher(Model(delay=0.0), window=0.0, max_batch_size=4)
    assert batcher([1]) == [2]
    time.sleep(0.3)
    assert batcher._worker is None  # no thread (and no model reference) left behind
    assert batcher([2]) == [4]


@pytest.mark.slow
async def test_concurrent_checks_on_the_tiny_model_share_generate_calls(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    from guardvl_sdk import Guard
    from guardvl_sdk.backends.local import LocalBackend

    guard = Guard.from_pretrained(tiny_model_dir, max_new_tokens=12, batch_window_ms=50)
    backend = guard.backend
    assert isinstance(backend, LocalBackend) and backend._batcher is not None
    texts = [f"question {i} about {'locks' if i % 2 else 'bread'}" for i in range(8)]
    alone = [guard.check(text).raw for text in texts]
    calls = backend._batcher.calls
    together = await asyncio.gather(*(guard.acheck(text) for text in texts))
    assert [v.raw for v in together] == alone
    assert backend._batcher.calls - calls < len(texts)
    assert len(set(alone)) > 1
