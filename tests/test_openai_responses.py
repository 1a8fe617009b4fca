"""guard_openai's responses.create: the real openai client over loopback HTTP to FakeChatServer.

The guard is the scripted judge of tests/judge.py: a request or answer slot holding EVIL, or a
pure red image, is harmful; it keeps every prompt it was shown.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.responses import Response, ResponseStreamEvent

from guardvl_sdk import ConfigurationError, GuardBlocked, GuardEvent, InvalidInputError, Label
from guardvl_sdk.integrations.openai import guard_openai
from guardvl_sdk.testing import FakeChatServer, FakeReply

from .judge import BLUE, EVIL, RED, judging_guard, slots

CALL = {"name": "get_weather", "arguments": json.dumps({"city": "Valencia"})}
EVIL_CALL = {"name": "get_weather", "arguments": json.dumps({"city": f"Valencia {EVIL}"})}
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather forecast for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def items(evil_in: str | None = None) -> list[dict[str, Any]]:
    """An agent's Responses input; ``evil_in`` puts EVIL in exactly one place."""

    def text(where: str, benign: str) -> str:
        return f"{benign} {EVIL}" if evil_in == where else benign

    return [
        {"role": "user", "content": [
            {"type": "input_text", "text": "Where was this photo taken?"},
            {"type": "input_image", "image_url": RED if evil_in == "image" else BLUE},
        ]},
        {"type": "message", "role": "assistant", "id": "m1", "status": "completed",
         "content": [{"type": "output_text", "text": text("assistant", "A beach in Spain."),
                      "annotations": []}]},
        {"role": "user", "content": text("user", "What's the weather there tomorrow?")},
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "arguments": json.dumps({"city": text("tool_call", "Valencia")})},
        {"type": "function_call_output", "call_id": "c1",
         "output": text("tool_result", '{"forecast": "sunny, 24C"}')},
    ]  # fmt: skip


@pytest.fixture
def server() -> Any:
    with FakeChatServer("It will be sunny.") as fake:
        yield fake


def client_for(server: FakeChatServer, **options: Any) -> tuple[Any, Any]:
    guard, backend = judging_guard()
    return guard_openai(OpenAI(base_url=server.url, api_key="k"), guard, **options), backend


@pytest.mark.parametrize("where", ["assistant", "tool_result", "tool_call", "image", "user"])
def test_harmful_input_anywhere_is_blocked_before_the_call(server: Any, where: str) -> None:
    client, backend = client_for(server)
    with pytest.raises(GuardBlocked) as blocked:
        client.responses.create(model="vlm", input=items(where), tools=[WEATHER_TOOL])
    assert blocked.value.verdict.request is Label.HARMFUL
    assert server.requests == []  # the model never saw it
    assert len(backend.prompts) == 1


def test_benign_input_passes_and_every_part_is_inspected_once(server: Any) -> None:
    client, _backend = client_for(server)
    seen: list[GuardEvent] = []
    client = guard_openai(client.unguarded, client.guard, on_verdict=seen.append)
    response = client.responses.create(
        model="vlm", instructions="You are a travel assistant.", input=items(), tools=[WEATHER_TOOL]
    )
    assert isinstance(response, Response) and response.output_text == "It will be sunny."
    assert server.requests[0]["input"] == items()  # forwarded unchanged
    request = seen[0].verdict
    assert [(p.message, p.role, p.kind) for p in request.inspected] == [
        (0, "system", "text"),
        (1, "user", "text"),
        (1, "user", "image"),
        (2, "assistant", "text"),
        (3, "user", "text"),
        (4, "assistant", "tool_call"),
        (5, "tool", "tool_result"),
    ]
    answer = seen[1].verdict  # the output check: the answer in the context of the input
    assert answer.stage == "output" and answer.inspected[-1].role == "assistant"
    assert slots(client.guard.backend.prompts[1])[1].strip() == "It will be sunny."


@pytest.mark.parametrize(
    ("reply", "where"),
    [
        (FakeReply(content=f"Sure: {EVIL}"), "text"),
        (FakeReply(content="", tool_calls=[EVIL_CALL]), "function call arguments"),
        (FakeReply(content="Fine.", reasoning=f"Plan: {EVIL}"), "reasoning"),
    ],
)
def test_harmful_output_is_judged_before_the_caller_gets_it(reply: FakeReply, where: str) -> None:
    guard, _backend = judging_guard()
    with FakeChatServer(reply) as server:
        client = guard_openai(OpenAI(base_url=server.url, api_key="k"), guard)
        with pytest.raises(GuardBlocked) as blocked:
            client.responses.create(model="vlm", input="Weather in Valencia?", tools=[WEATHER_TOOL])
        assert blocked.value.verdict.response is Label.HARMFUL, where
        assert isinstance(blocked.value.blocked_output, Response)
        refusing = guard_openai(OpenAI(base_url=server.url, api_key="k"), guard, on_block="refuse")
        refused = refusing.responses.create(model="vlm", input="Weather?", tools=[WEATHER_TOOL])
    assert refused.status == "incomplete" and refused.incomplete_details is not None
    assert refused.incomplete_details.reason == "content_filter"
    assert [item.type for item in refused.output] == ["message"]  # no function call survives
    assert EVIL not in refused.model_dump_json()


def test_a_benign_function_call_is_judged_and_delivered() -> None:
    guard, backend = judging_guard()
    with FakeChatServer(FakeReply(content="", tool_calls=[CALL])) as server:
        client = guard_openai(OpenAI(base_url=server.url, api_key="k"), guard)
        response = client.responses.create(model="vlm", input="Weather?", tools=[WEATHER_TOOL])
    call = response.output[0]
    assert call.type == "function_call" and call.arguments == CALL["arguments"]
    assert slots(backend.prompts[1])[1].strip() == f"[tool call: get_weather]\n{CALL['arguments']}"


def events_of(stream: Any) -> list[Any]:
    with stream:
        return list(stream)


def test_a_stream_passes_every_event_through_unchanged() -> None:
    guard, backend = judging_guard()
    reply = FakeReply(content="It will be sunny in Valencia.", reasoning="Look it up.",
                      tool_calls=[CALL])  # fmt: skip
    with FakeChatServer(reply) as server:
        plain = OpenAI(base_url=server.url, api_key="k")
        expected = events_of(plain.responses.create(model="vlm", input="Weather?", stream=True))
        client = guard_openai(plain, guard, stream_every=8)
        got = events_of(client.responses.create(model="vlm", input="Weather?", stream=True))
    assert [e.model_dump(exclude={"response"}) for e in got] == [
        e.model_dump(exclude={"response"}) for e in expected
    ]
    final = [p for p in backend.prompts if p.score_label == "response"][-1]
    answer = slots(final)[1]
    assert "Look it up." in answer and "sunny in Valencia" in answer
    assert f"[tool call: get_weather]\n{CALL['arguments']}" in answer


@pytest.mark.parametrize("on_block", ["raise", "refuse"])
def test_a_blocked_streamed_function_call_is_never_delivered(on_block: str) -> None:
    guard, _ = judging_guard()
    reply = FakeReply(content="Let me check that for you right away.", tool_calls=[EVIL_CALL])
    with FakeChatServer(reply) as server:
        client = guard_openai(
            OpenAI(base_url=server.url, api_key="k"), guard, on_block=on_block, stream_every=8
        )
        got: list[Any] = []
        stream = client.responses.create(model="vlm", input="Weather?", stream=True)
        if on_block == "raise":
            with pytest.raises(GuardBlocked):
                got.extend(stream)
        else:
            got = events_of(stream)
    delivered = json.dumps([e.model_dump(mode="json") for e in got])
    assert "function_call" not in delivered and EVIL not in delivered
    texts = [e.delta for e in got if e.type == "response.output_text.delta"]
    assert "".join(texts).startswith("Let me check")  # the text before the call streamed out
    if on_block == "refuse":
        assert got[-1].type == "response.incomplete"
        assert got[-1].response.incomplete_details.reason == "content_filter"


def test_stream_checks_record_their_offsets() -> None:
    guard, _ = judging_guard()
    seen: list[GuardEvent] = []
    text = "One two three four five six seven eight nine ten eleven twelve."
    with FakeChatServer(text) as server:
        client = guard_openai(
            OpenAI(base_url=server.url, api_key="k"),
            guard,
            stream_every=10,
            stream_window=12,
            on_verdict=seen.append,
        )
        events_of(client.responses.create(model="vlm", input="Count.", stream=True))
    answers = [(e.partial, e.verdict.inspected[-1]) for e in seen if e.stage == "output"]
    partial = [part for streaming, part in answers if streaming]
    assert len(partial) >= 3 and partial[0].offset == 0 and partial[-1].offset > 0
    for part in partial:  # each slice [offset, offset + chars) lies in the whole answer
        assert part.offset is not None and part.chars is not None
        assert part.offset + part.chars <= len(text)
    assert answers[-1] == (False, answers[-1][1]) and answers[-1][1].offset == 0
    assert answers[-1][1].chars == len(text)


def test_what_the_guard_cannot_see_is_refused(server: Any) -> None:
    client, _ = client_for(server)
    for extra in ({"previous_response_id": "resp_1"}, {"conversation": "conv_1"},
                  {"background": True}, {"include": ["file_search_call.results"]},
                  {"prompt": {"id": "pmpt_1"}}):  # fmt: skip
        with pytest.raises(ConfigurationError, match="does not forward"):
            client.responses.create(model="vlm", input="hi", **extra)
    with pytest.raises(ConfigurationError, match="hosted tool"):
        client.responses.create(model="vlm", input="hi", tools=[{"type": "web_search"}])
    for name in ("retrieve", "stream", "parse", "compact", "with_raw_response"):
        with pytest.raises(ConfigurationError, match="not guarded"):
            getattr(client.responses, name)
    assert callable(client.responses.delete)  # what cannot generate passes through
    with pytest.raises(InvalidInputError, match="item_reference"):
        client.responses.create(model="vlm", input=[{"type": "item_reference", "id": "msg_1"}])
    assert server.requests == []


async def test_async_client_create_and_stream() -> None:
    guard, _backend = judging_guard()
    with FakeChatServer(["Sunny.", FakeReply(content="ok", tool_calls=[EVIL_CALL])]) as server:
        client = guard_openai(AsyncOpenAI(base_url=server.url, api_key="k"), guard)
        response = await client.responses.create(model="vlm", input=items())
        assert response.output_text == "Sunny."
        stream = await client.responses.create(model="vlm", input="Weather?", stream=True)
        got = []
        with pytest.raises(GuardBlocked):
            async for event in stream:
                got.append(event)
        await stream.close()
        with pytest.raises(GuardBlocked):
            await client.responses.create(model="vlm", input=items("tool_result"))
    assert all(
        e.type != "response.output_item.added" or e.item.type != "function_call" for e in got
    )


def test_text_only_a_snapshot_event_carries_is_held_and_judged() -> None:
    """A server whose done events or final response differ from its deltas: what they add is
    judged with the answer, and every event from the first such one on is held until then."""
    from pydantic import TypeAdapter

    from guardvl_sdk.hooks import StreamOptions
    from guardvl_sdk.integrations.openai_responses import _Events

    events = TypeAdapter(ResponseStreamEvent).validate_python
    at = {"item_id": "msg_0", "output_index": 0, "content_index": 0, "logprobs": []}
    gates = _Events(StreamOptions(every=4))
    due = gates.add(events({"type": "response.output_text.delta", "delta": "Hello", **at,
                            "sequence_number": 0}))  # fmt: skip
    assert [d.answer for d in due] == ["Hello"] and len(gates.release(0)) == 1
    done = events({"type": "response.output_text.done", "text": f"Hello {EVIL}", **at,
                   "sequence_number": 1})  # fmt: skip
    assert gates.add(done) == [] and gates.release(0) == []  # held: new content
    final = gates.finish()[0].answer
    assert isinstance(final, dict)
    assert [part["text"] for part in final["content"]] == ["Hello", f"Hello {EVIL}"]
    assert gates.release_all() == [done]
