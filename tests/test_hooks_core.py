"""The middleware core: one options object, one empty-answer rule in all four entry points."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk

from guardvl_sdk import ConfigurationError, guarded
from guardvl_sdk.hooks import Due, HookOptions, StreamOptions, aguard_stream, guard_stream
from guardvl_sdk.hooks.stream import OneAnswer
from guardvl_sdk.integrations.langchain import GuardedChatModel
from guardvl_sdk.integrations.openai import guard_openai
from guardvl_sdk.verdict import Verdict
from tests.test_hooks import newest_turn, scripted_guard, transcript
from tests.test_langchain import fake_model
from tests.test_openai import Upstream, ask, make_client


def test_one_on_block_vocabulary_validated_once() -> None:
    assert HookOptions(on_block="return").accepting("raise", "return").on_block == "return"
    with pytest.raises(ConfigurationError, match="'raise', 'refuse', 'return' or a callable"):
        HookOptions(on_block="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"on_block must be 'raise' or 'refuse', not"):
        HookOptions(on_block="return").accepting("raise", "refuse")
    with pytest.raises(ConfigurationError, match=r"'raise' or a callable, not 'refuse'"):
        HookOptions(on_block="refuse").accepting("raise", handler=True)
    with pytest.raises(ConfigurationError, match="stream_every must be a positive int"):
        HookOptions.of(stream_every=0)
    with pytest.raises(ConfigurationError, match="check must be"):
        HookOptions(check="never")  # type: ignore[arg-type]


def test_every_entry_point_rejects_a_mode_it_cannot_honour() -> None:
    guard, _ = scripted_guard()
    with pytest.raises(ConfigurationError, match="on_block must be"):
        guarded(guard, on_block="return")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="on_block must be"):
        guard.session(on_block="refuse")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="on_block must be"):
        client = make_client(Upstream(lambda asked, i: ""))
        guard_openai(client, guard, on_block="return")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="'raise' or 'refuse'"):  # pydantic reads the Literal
        GuardedChatModel(fake_model("x"), guard, on_block="return")


def test_the_empty_answer_rule_is_the_same_in_all_four_entry_points() -> None:
    """An answer without text is checked, as an empty response, wherever the output is checked."""
    seen: dict[str, list[tuple[str, str | None]]] = {}

    guard, backend = scripted_guard()

    @guarded(guard)
    def answer(prompt: str) -> str:
        return ""

    answer("hello")
    seen["decorator"] = [transcript(p) for p in backend.prompts]

    guard, backend = scripted_guard()
    with guard.session() as session:
        session.before("hello")
        session.after("")
    seen["session"] = [transcript(p) for p in backend.prompts]

    guard, backend = scripted_guard()
    guard_openai(make_client(Upstream(lambda asked, i: "")), guard).chat.completions.create(
        model="vlm", messages=ask("hello")
    )
    # the adapter reads the whole chat: its system prompt stands before "hello" as context
    seen["openai"] = [(newest_turn(r), a) for r, a in map(transcript, backend.prompts)]

    guard, backend = scripted_guard()
    GuardedChatModel(fake_model(AIMessage(content="")), guard).invoke("hello")
    seen["langchain"] = [transcript(p) for p in backend.prompts]

    assert seen == {key: [("hello", None), ("hello", "")] for key in seen}


def _verdict(blocked: bool) -> Verdict:
    guard, _ = scripted_guard()
    return guard.check("attack" if blocked else "hello")


def test_stream_driver_releases_only_what_a_passed_check_covers() -> None:
    allowed, blocked = _verdict(False), _verdict(True)
    checks: list[tuple[str, bool]] = []
    closed: list[bool] = []

    def check(due: Due, partial: bool) -> Verdict:
        assert isinstance(due.answer, str) and due.offset == 0  # no window: all the text so far
        checks.append((due.answer, partial))
        return blocked if "bad" in due.answer else allowed

    def run(chunks: list[str]) -> list[str]:
        gates: OneAnswer[str, str] = OneAnswer(StreamOptions(every=4), lambda c: c)
        refuse = lambda verdict, key: ["<refused>"]  # noqa: E731
        out = guard_stream(iter(chunks), gates, check, refuse, lambda: closed.append(True))
        return list(out)

    assert run(["ab", "cd", "ef"]) == ["ab", "cd", "ef"]
    assert checks == [("abcd", True), ("abcdef", False)] and len(closed) == 1
    checks.clear()
    assert run(["ab", "cd", "ba", "d!", "never"]) == ["ab", "cd", "<refused>"]
    assert checks == [("abcd", True), ("abcdbad!", True)]  # stopped at the block


def test_async_stream_driver_closes_the_upstream_when_abandoned() -> None:
    allowed = _verdict(False)
    closed: list[bool] = []

    async def upstream() -> AsyncIterator[str]:
        for i in range(100):
            yield f"chunk {i} "

    async def check(due: Due, partial: bool) -> Verdict:
        return allowed

    async def close() -> None:
        closed.append(True)

    async def main() -> list[str]:
        gates: OneAnswer[str, str] = OneAnswer(StreamOptions(every=10), lambda c: c)
        stream = aguard_stream(upstream(), gates, check, lambda v, k: [], close)
        first = [await stream.__anext__()]
        await stream.aclose()
        return first

    assert asyncio.run(main()) == ["chunk 0 "] and closed == [True]


def test_an_empty_stream_of_a_chat_model_is_checked_too() -> None:
    guard, backend = scripted_guard()

    class Empty(type(fake_model("x"))):  # type: ignore[misc]
        def _stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
            from langchain_core.outputs import ChatGenerationChunk

            yield ChatGenerationChunk(message=AIMessageChunk(content=""))

    model = GuardedChatModel(Empty(messages=iter([])), guard, check="output")
    assert "".join(str(c.content) for c in model.stream("hello")) == ""
    assert [transcript(p) for p in backend.prompts] == [("hello", "")]
