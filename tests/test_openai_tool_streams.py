"""Streamed chat completions with tool calls: the arguments are judged before any is delivered.

The real openai client over loopback HTTP to FakeChatServer, which streams a tool call's
arguments in pieces of a few characters, as servers do.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI, OpenAI

from guardvl_sdk import GuardBlocked, GuardEvent, JsonlAuditLog, Label
from guardvl_sdk.hooks import guarded
from guardvl_sdk.integrations.openai import guard_openai
from guardvl_sdk.testing import FakeChatServer, FakeReply

from .judge import EVIL, judging_guard, slots

CALL = {"name": "get_weather", "arguments": json.dumps({"city": "Valencia", "days": 3})}
EVIL_CALL = {"name": "get_weather", "arguments": json.dumps({"city": f"Valencia {EVIL}"})}
ASK = [{"role": "user", "content": "What's the weather in Valencia?"}]


def calls_of(chunks: list[Any]) -> dict[int, dict[str, str]]:
    """The tool calls the caller assembled from the chunks it received."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
                entry["name"] += call.function.name or ""
                entry["arguments"] += call.function.arguments or ""
    return calls


def test_a_streamed_tool_call_is_judged_whole_then_delivered() -> None:
    guard, backend = judging_guard()
    reply = FakeReply(content="Checking.", tool_calls=[CALL], finish_reason="tool_calls")
    with FakeChatServer(reply) as server:
        client = guard_openai(OpenAI(base_url=server.url, api_key="k"), guard, stream_every=4)
        chunks = list(client.chat.completions.create(model="m", messages=ASK, stream=True))
    assert calls_of(chunks) == {0: CALL}
    final = backend.prompts[-1]
    assert slots(final)[1].strip() == f"Checking.\n[tool call: get_weather]\n{CALL['arguments']}"


@pytest.mark.parametrize("on_block", ["raise", "refuse"])
def test_a_blocked_streamed_tool_call_is_never_delivered(on_block: str) -> None:
    guard, _ = judging_guard()
    seen: list[GuardEvent] = []
    reply = FakeReply(content="Let me look that up for you.", tool_calls=[EVIL_CALL])
    with FakeChatServer(reply) as server:
        client = guard_openai(
            OpenAI(base_url=server.url, api_key="k"),
            guard,
            on_block=on_block,
            stream_every=6,
            on_verdict=seen.append,
        )
        got: list[Any] = []
        stream = client.chat.completions.create(model="m", messages=ASK, stream=True)
        if on_block == "raise":
            with pytest.raises(GuardBlocked) as blocked:
                got.extend(stream)
            assert blocked.value.verdict.response is Label.HARMFUL
        else:
            got = list(stream)
    assert calls_of(got) == {}  # not one piece of the call reached the caller
    text = "".join(c.choices[0].delta.content or "" for c in got if c.choices)
    assert text.startswith("Let me look")  # the text before the call streamed out, checked
    assert any(e.partial for e in seen)
    if on_block == "refuse":
        assert got[-1].choices[0].finish_reason == "content_filter"


async def test_async_stream_holds_tool_calls_too() -> None:
    guard, _ = judging_guard()
    with FakeChatServer(FakeReply(content="", tool_calls=[CALL, EVIL_CALL])) as server:
        client = guard_openai(AsyncOpenAI(base_url=server.url, api_key="k"), guard)
        stream = await client.chat.completions.create(model="m", messages=ASK, stream=True)
        got = []
        with pytest.raises(GuardBlocked):
            async for chunk in stream:
                got.append(chunk)
        await stream.close()
    assert calls_of(got) == {}  # the benign first call is held with the harmful second one


def test_stream_checks_record_the_offsets_they_covered(tmp_path: Path) -> None:
    log = JsonlAuditLog(tmp_path / "audit.jsonl")
    guard, _ = judging_guard(audit=log)
    seen: list[GuardEvent] = []
    text = "One two three four five six seven eight nine ten eleven twelve thirteen."
    with FakeChatServer(text) as server:
        client = guard_openai(
            OpenAI(base_url=server.url, api_key="k"),
            guard,
            stream_every=10,
            stream_window=15,
            on_verdict=seen.append,
        )
        list(client.chat.completions.create(model="m", messages=ASK, stream=True))
    answers = [(e.partial, e.verdict.inspected[-1]) for e in seen if e.stage == "output"]
    slices = [part for partial, part in answers if partial]
    assert len(slices) >= 3 and slices[0].offset == 0 and slices[-1].offset
    for earlier, later in itertools.pairwise(slices):
        assert later.offset >= earlier.offset  # each slice starts where the window reaches back
        assert later.offset <= earlier.offset + earlier.chars  # and leaves no gap
    final = answers[-1]
    assert not final[0] and final[1].offset == 0 and final[1].chars == len(text)
    records = [r for r in JsonlAuditLog.read(tmp_path / "audit.jsonl") if r.stage == "output"]
    assert [r.inspected[-1].offset for r in records] == [p.offset for _, p in answers]
    plain = guard.check("hi", response="an answer")  # a whole answer checked at once: no offset
    assert plain.inspected[-1].offset is None


def test_a_guarded_generator_records_offsets_too() -> None:
    guard, _ = judging_guard()
    seen: list[GuardEvent] = []

    @guarded(guard, stream_every=5, stream_window=5, on_verdict=seen.append)
    def answer(prompt: str) -> Any:
        yield from ["abcde", "fghij", "klmno"]

    assert "".join(answer("hi")) == "abcdefghijklmno"
    offsets = [e.verdict.inspected[-1].offset for e in seen if e.stage == "output"]
    assert offsets == [0, 5, 10, 0]  # three slices, then the whole answer


def test_the_gate_holds_everything_from_a_held_to_the_end_chunk_on() -> None:
    """Text streaming after a tool call's delta (any order a server picks) stays held too."""
    from guardvl_sdk.hooks import StreamGate, StreamOptions

    gate: StreamGate[str] = StreamGate(StreamOptions(every=4, window=None, buffered=False))
    assert gate.add("text-1", "abcd") == ("abcd", 0)
    assert gate.release() == ["text-1"] and gate.released == "abcd"
    assert gate.add("call", "", to_end=True) is None
    assert gate.add("text-2", "efgh") == ("abcdefgh", 0)  # a mid-stream check is due, passes...
    assert gate.release() == []  # ...but nothing after the call's delta is released
    assert gate.released == "abcd"
    assert gate.finish() == "abcdefgh"  # the final check is due even though the text was seen
    assert gate.release(final=True) == ["call", "text-2"]
