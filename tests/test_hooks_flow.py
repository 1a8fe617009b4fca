"""One control flow, two drivers: run_flow and arun_flow give the same result for the same steps."""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from guardvl_sdk.hooks import Flow, arun_flow, run_flow


def steps(double: Callable[[int], Any], log: list[str]) -> Flow[int]:
    try:
        first = yield double(2)
        second = yield double(first)
        total: int = first + second
        return total
    finally:
        log.append("closed")


def twice(x: int) -> int:
    if x > 100:
        raise ValueError("too big")
    return 2 * x


async def atwice(x: int) -> int:
    await asyncio.sleep(0)
    return twice(x)


def test_both_drivers_run_the_same_steps() -> None:
    log: list[str] = []
    assert run_flow(steps(twice, log)) == 12
    assert asyncio.run(arun_flow(steps(atwice, log))) == 12
    assert log == ["closed", "closed"]


def test_an_error_of_a_call_reaches_the_caller_and_closes_the_steps() -> None:
    log: list[str] = []
    with pytest.raises(ValueError, match="too big"):
        run_flow(steps(lambda x: twice(x * 100), log))
    with pytest.raises(ValueError, match="too big"):
        asyncio.run(arun_flow(steps(lambda x: atwice(x * 100), log)))
    assert log == ["closed", "closed"]
