"""guard_openai with the real openai client over a scripted transport (httpx2.MockTransport).

The client, its request building, response parsing and SSE streaming are the real openai 3.x
code; only the network is replaced by a handler that answers like an OpenAI-compatible server.
The guard is a Guard on a scripted backend that labels requests holding "attack" and answers
holding "poison" harmful. End-to-end tests over real HTTP are in test_openai_e2e.py.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from PIL import Image

from guardvl_sdk import ConfigurationError, Guard, GuardBlocked, InvalidInputError
from guardvl_sdk.integrations.openai import (
    AsyncGuardedOpenAI,
    GuardedOpenAI,
    GuardedStream,
    guard_openai,
)
from guardvl_sdk.testing import ScriptedBackend
from tests.test_hooks import judge, newest_turn, transcript


def png_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "green").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class Events(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """An SSE body sent event by event; records how far it got and whether it was closed."""

    def __init__(self, events: list[bytes]) -> None:
        self.events = events
        self.sent = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for event in self.events:
            self.sent += 1
            yield event

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self.events:
            self.sent += 1
            yield event

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


class Upstream:
    """Answers chat completions like an OpenAI-compatible server, from a script of answers."""

    def __init__(self, answer: Callable[[str, int], str | dict[str, Any]]) -> None:
        self.answer = answer  # (last user text, choice index) -> content, or a whole message
        self.requests: list[dict[str, Any]] = []
        self.streams: list[Events] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "GET" and request.url.path.endswith("/models"):
            return httpx2.Response(
                200,
                json={
                    "object": "list",
                    "data": [{"id": "vlm", "object": "model", "created": 0, "owned_by": "me"}],
                },
            )
        body = json.loads(request.content)
        self.requests.append(body)
        content = body["messages"][-1]["content"]
        asked = (
            content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
        )
        messages = [self.message(self.answer(asked, i)) for i in range(body.get("n") or 1)]
        if not body.get("stream"):
            choices = [
                {
                    "index": i,
                    "message": m,
                    "finish_reason": "tool_calls" if m.get("tool_calls") else "stop",
                }
                for i, m in enumerate(messages)
            ]
            return httpx2.Response(
                200, json={**self.head(body, "chat.completion"), "choices": choices}
            )
        events: list[bytes] = []
        for i, message in enumerate(messages):
            words = (message.get("content") or "").split(" ")
            for word in words:
                delta = {"index": i, "delta": {"content": word + " "}, "finish_reason": None}
                events.append(self.event(body, [delta]))
            events.append(self.event(body, [{"index": i, "delta": {}, "finish_reason": "stop"}]))
        events.append(b"data: [DONE]\n\n")
        stream = Events(events)
        self.streams.append(stream)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)

    @staticmethod
    def message(answer: str | dict[str, Any]) -> dict[str, Any]:
        return {"role": "assistant", "content": answer} if isinstance(answer, str) else answer

    @staticmethod
    def head(body: dict[str, Any], kind: str) -> dict[str, Any]:
        return {"id": "cmpl-1", "object": kind, "created": int(time.time()), "model": body["model"]}

    def event(self, body: dict[str, Any], choices: list[dict[str, Any]]) -> bytes:
        chunk = {**self.head(body, "chat.completion.chunk"), "choices": choices}
        return f"data: {json.dumps(chunk)}\n\n".encode()


def default_answer(asked: str, index: int) -> str:
    if "give poison" in asked:
        return "here is the poison you asked for"
    return f"answer {index} to {asked}"


def scripted() -> tuple[Guard, ScriptedBackend]:
    backend = ScriptedBackend(judge)
    return Guard(backend), backend


def seen(backend: ScriptedBackend) -> list[tuple[str, str | None]]:
    """(newest user turn, response) of every prompt the guard was shown (the earlier turns it
    saw as context are asserted in tests/test_conversation.py)."""
    return [(newest_turn(r), a) for r, a in map(transcript, backend.prompts)]


def make_client(upstream: Upstream) -> OpenAI:
    http = httpx2.Client(transport=httpx2.MockTransport(upstream))
    return OpenAI(base_url="http://vlm.test/v1", api_key="k", http_client=http, max_retries=0)


def make_async_client(upstream: Upstream) -> AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(upstream))
    return AsyncOpenAI(base_url="http://vlm.test/v1", api_key="k", http_client=http, max_retries=0)


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


# -- the wrapper ----------------------------------------------------------------------------


def test_wraps_without_mutating_and_passes_the_rest_through() -> None:
    upstream = Upstream(default_answer)
    client = make_client(upstream)
    original_completions = client.chat.completions
    guard, _ = scripted()
    guarded = guard_openai(client, guard)
    assert isinstance(guarded, GuardedOpenAI) and guarded.unguarded is client
    assert client.chat.completions is original_completions  # the user's client is untouched
    assert type(client.chat.completions).create is openai.resources.chat.Completions.create
    assert [m.id for m in guarded.models.list()] == ["vlm"]
    assert guarded.base_url == client.base_url
    assert isinstance(guard_openai(make_async_client(upstream), guard), AsyncGuardedOpenAI)


def test_unguarded_ways_to_generate_are_refused() -> None:
    guarded = guard_openai(make_client(Upstream(default_answer)), scripted()[0])
    for attempt in (
        lambda: guarded.responses.retrieve,  # responses.create is guarded (test_openai_responses)
        lambda: guarded.completions,
        lambda: guarded.chat.completions.parse,
        lambda: guarded.chat.completions.with_raw_response,
    ):
        with pytest.raises(ConfigurationError, match="not guarded"):
            attempt()
    assert guarded.unguarded.responses is not None  # explicitly unguarded: allowed
    assert isinstance(guarded.with_options(timeout=5), GuardedOpenAI)
    with pytest.raises(ConfigurationError):
        guard_openai(object(), scripted()[0])  # type: ignore[call-overload]


def test_allowed_call_returns_the_real_completion() -> None:
    upstream = Upstream(default_answer)
    guard, backend = scripted()
    client = guard_openai(make_client(upstream), guard)
    completion = client.chat.completions.create(model="vlm", messages=ask("bread?"))
    assert isinstance(completion, ChatCompletion)
    assert completion.choices[0].message.content == "answer 0 to bread?"
    assert seen(backend) == [("bread?", None), ("bread?", "answer 0 to bread?")]


def test_blocked_request_never_reaches_the_server() -> None:
    upstream = Upstream(default_answer)
    guard, _ = scripted()
    with pytest.raises(GuardBlocked) as blocked:
        guard_openai(make_client(upstream), guard).chat.completions.create(
            model="vlm", messages=ask("an attack")
        )
    assert blocked.value.verdict.stage == "input"
    refusing = guard_openai(make_client(upstream), guard, on_block="refuse", refusal="No.")
    completion = refusing.chat.completions.create(model="vlm", messages=ask("attack"), n=2)
    assert isinstance(completion, ChatCompletion)
    assert [(c.finish_reason, c.message.content) for c in completion.choices] == [
        ("content_filter", "No."),
        ("content_filter", "No."),
    ]
    assert upstream.requests == []


def test_blocked_answer_raises_or_is_refused() -> None:
    upstream = Upstream(default_answer)
    guard, _ = scripted()
    with pytest.raises(GuardBlocked) as blocked:
        guard_openai(make_client(upstream), guard).chat.completions.create(
            model="vlm", messages=ask("give poison")
        )
    assert isinstance(blocked.value.blocked_output, ChatCompletion)
    assert "poison" in blocked.value.blocked_output.choices[0].message.content
    refusing = guard_openai(make_client(upstream), guard, on_block="refuse")
    completion = refusing.chat.completions.create(model="vlm", messages=ask("give poison"))
    assert completion.choices[0].finish_reason == "content_filter"
    assert "poison" not in (completion.choices[0].message.content or "")
    assert completion.id == "cmpl-1"  # the server's completion, with the choice replaced


def test_every_choice_is_checked() -> None:
    def answer(asked: str, index: int) -> str:
        return "the poison" if index == 1 else f"fine {index}"

    guard, backend = scripted()
    events: list[Any] = []
    client = guard_openai(
        make_client(Upstream(answer)), guard, on_block="refuse", on_verdict=events.append
    )
    completion = client.chat.completions.create(model="vlm", messages=ask("hi"), n=3)
    assert [(e.stage, e.verdict.blocked) for e in events] == [
        ("input", False),
        ("output", False),
        ("output", True),
        ("output", False),
    ]
    assert [c.finish_reason for c in completion.choices] == ["stop", "content_filter", "stop"]
    assert [c.message.content for c in completion.choices][::2] == ["fine 0", "fine 2"]
    assert sorted(r for _, r in seen(backend) if r) == ["fine 0", "fine 2", "the poison"]
    assert backend.calls == 2  # the request, then the three answers in one guard batch


def test_tool_calls_pass_through_untouched() -> None:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"q": "x"}'},
    }
    guard, backend = scripted()
    upstream = Upstream(
        lambda asked, i: {"role": "assistant", "content": None, "tool_calls": [call]}
    )
    completion = guard_openai(make_client(upstream), guard).chat.completions.create(
        model="vlm",
        messages=ask("look it up"),
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
    )
    assert completion.choices[0].message.tool_calls[0].model_dump() == call
    assert completion.choices[0].finish_reason == "tool_calls"
    # The one empty-answer rule: an answer without text is still checked, as an empty response.
    # the call's name and arguments are judged as the answer
    assert seen(backend) == [
        ("look it up", None),
        ("look it up", '[tool call: lookup]\n{"q": "x"}'),
    ]


def test_images_are_checked_and_urls_refused() -> None:
    upstream = Upstream(default_answer)
    guard, backend = scripted()
    client = guard_openai(make_client(upstream), guard)
    parts = [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": png_url()}},
    ]
    client.chat.completions.create(model="vlm", messages=[{"role": "user", "content": parts}])
    assert [len(p.images) for p in backend.prompts] == [1, 1]
    assert backend.prompts[0].images[0].getpixel((0, 0)) == (0, 128, 0)
    remote = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    with pytest.raises(InvalidInputError, match="URL"):
        client.chat.completions.create(model="vlm", messages=[{"role": "user", "content": remote}])
    audio = [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]
    with pytest.raises(InvalidInputError, match="input_audio"):
        client.chat.completions.create(model="vlm", messages=[{"role": "user", "content": audio}])
    assert len(upstream.requests) == 1


def test_server_errors_reach_the_caller_unchanged() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(503, json={"error": {"message": "overloaded"}})

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    client = OpenAI(base_url="http://vlm.test/v1", api_key="k", http_client=http, max_retries=0)
    guarded = guard_openai(client, scripted()[0])
    with pytest.raises(openai.InternalServerError):
        guarded.chat.completions.create(model="vlm", messages=ask("hi"))


# -- streaming ------------------------------------------------------------------------------


def test_stream_allowed() -> None:
    upstream = Upstream(default_answer)
    guard, backend = scripted()
    client = guard_openai(make_client(upstream), guard, stream_every=10)
    with client.chat.completions.create(model="vlm", messages=ask("bread?"), stream=True) as stream:
        assert isinstance(stream, GuardedStream)
        chunks = list(stream)
    assert all(isinstance(chunk, ChatCompletionChunk) for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "answer 0 to bread? "
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert seen(backend)[0] == ("bread?", None)
    assert seen(backend)[-1] == ("bread?", "answer 0 to bread? ")
    assert upstream.streams[0].closed


def test_stream_blocked_midway_stops_the_server_stream() -> None:
    answer = "one two three four five six seven poison " + "filler " * 40
    upstream = Upstream(lambda asked, i: answer.strip())
    guard, _ = scripted()
    client = guard_openai(make_client(upstream), guard, stream_every=12)
    received: list[str] = []
    with pytest.raises(GuardBlocked) as blocked:
        for chunk in client.chat.completions.create(model="vlm", messages=ask("hi"), stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "poison" in blocked.value.blocked_output
    assert "poison" not in "".join(received)
    assert upstream.streams[0].closed
    assert upstream.streams[0].sent < len(upstream.streams[0].events)  # not read to the end


def test_stream_refusal_chunk_and_refused_request() -> None:
    upstream = Upstream(lambda asked, i: "a b c poison d")
    guard, _ = scripted()
    client = guard_openai(make_client(upstream), guard, on_block="refuse", refusal="[removed]")
    chunks = list(client.chat.completions.create(model="vlm", messages=ask("hi"), stream=True))
    assert chunks[-1].choices[0].delta.content == "[removed]"
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert "poison" not in "".join(c.choices[0].delta.content or "" for c in chunks)
    refused = list(client.chat.completions.create(model="vlm", messages=ask("attack"), stream=True))
    assert [c.choices[0].finish_reason for c in refused] == ["content_filter"]
    assert len(upstream.requests) == 1


def test_stream_with_several_choices_checks_each() -> None:
    upstream = Upstream(lambda asked, i: "fine words here" if i == 0 else "bad poison words")
    guard, backend = scripted()
    client = guard_openai(make_client(upstream), guard, on_block="refuse", stream_every=None)
    chunks = list(client.chat.completions.create(model="vlm", messages=ask("hi"), stream=True, n=2))
    assert sorted(r for _, r in seen(backend) if r) == ["bad poison words ", "fine words here "]
    assert "poison" not in "".join(c.choices[0].delta.content or "" for c in chunks)
    assert {
        c.choices[0].index for c in chunks if c.choices[0].finish_reason == "content_filter"
    } == {0, 1}


# -- async ----------------------------------------------------------------------------------


async def test_async_client() -> None:
    upstream = Upstream(default_answer)
    guard, backend = scripted()
    client = guard_openai(make_async_client(upstream), guard, stream_every=12)
    completion = await client.chat.completions.create(model="vlm", messages=ask("bread?"))
    assert isinstance(completion, ChatCompletion)
    assert completion.choices[0].message.content == "answer 0 to bread?"
    with pytest.raises(GuardBlocked):
        await client.chat.completions.create(model="vlm", messages=ask("attack"))
    with pytest.raises(GuardBlocked):
        await client.chat.completions.create(model="vlm", messages=ask("give poison"))
    stream = await client.chat.completions.create(model="vlm", messages=ask("bread?"), stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "answer 0 to bread? "
    received: list[str] = []
    with pytest.raises(GuardBlocked):
        async with await client.chat.completions.create(
            model="vlm", messages=ask("give poison"), stream=True
        ) as blocked:
            async for chunk in blocked:
                received.append(chunk.choices[0].delta.content or "")
    assert "poison" not in "".join(received)
    assert upstream.streams[-1].closed
    assert [m.id async for m in client.models.list()] == ["vlm"]
    assert seen(backend)[:2] == [("bread?", None), ("bread?", "answer 0 to bread?")]


def test_the_adapters_import_no_torch() -> None:
    """A remote-only app that guards its OpenAI client or LangChain chain never imports torch."""
    code = (
        "import sys; import guardvl_sdk.integrations.openai, guardvl_sdk.integrations.langchain;"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_over_loopback_http_with_the_fake_chat_server() -> None:
    """Real HTTP without a model: FakeChatServer answers, streaming as server-sent events."""
    from guardvl_sdk.testing import FakeChatServer

    guard, backend = scripted()
    answers = ["A calm answer.", "Some poison here, then more words."]
    with FakeChatServer(answers) as server:
        client = guard_openai(
            OpenAI(base_url=server.url, api_key="k"), guard, on_block="refuse", stream_every=8
        )
        first = client.chat.completions.create(model="m", messages=ask("hi"), stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in first) == "A calm answer."
        second = list(client.chat.completions.create(model="m", messages=ask("hi"), stream=True))
        assert second[-1].choices[0].finish_reason == "content_filter"
        assert "poison" not in "".join(c.choices[0].delta.content or "" for c in second)
        assert [r["stream"] for r in server.requests] == [True, True]
    assert seen(backend)[1] == ("hi", "A calm answer.")


def test_the_example_runs_offline() -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "openai_client.py"
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=180
    ).stdout
    assert "BLOCKED at input" in out and "BLOCKED at output" in out
    assert "(content_filter)" in out and "knead, rest, bake" in out


def test_a_block_ends_only_the_choices_still_open() -> None:
    """Choice 0 ends (content and finish_reason in one chunk) and passes; choice 1 is blocked."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        done = {"index": 0, "delta": {"content": "all fine here."}, "finish_reason": "stop"}
        bad = {"index": 1, "delta": {"content": "some poison now"}, "finish_reason": None}
        upstream = Upstream(default_answer)
        events = [upstream.event(body, [done]), upstream.event(body, [bad]), b"data: [DONE]\n\n"]
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, stream=Events(events)
        )

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    client = guard_openai(
        OpenAI(base_url="http://vlm.test/v1", api_key="k", http_client=http, max_retries=0),
        scripted()[0],
        on_block="refuse",
        stream_every=8,
    )
    chunks = list(client.chat.completions.create(model="vlm", messages=ask("hi"), stream=True, n=2))
    ends = [(c.choices[0].index, c.choices[0].finish_reason) for c in chunks]
    assert ends == [(0, "stop"), (1, "content_filter")]
