"""guard_openai end to end: the real openai client over real HTTP to `transformers serve`.

The served model is the tiny random Qwen2.5-VL, standing in for the user's VLM. It emits noise,
so the guard that decides is a scripted one (it blocks requests holding "attack" and, where a
test says so, every answer), except in the last test, where the guard is the tiny model itself,
served by the same server: an unreadable verdict fails closed.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from PIL import Image

from guardvl_sdk import Guard, GuardBlocked, Prompt
from guardvl_sdk.integrations.openai import guard_openai
from guardvl_sdk.testing import ScriptedBackend
from tests.test_hooks import judge, transcript
from tests.test_remote_e2e import STARTUP_DEADLINE, Server, answered

pytestmark = pytest.mark.slow

MAX_TOKENS = 16


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(tiny_model_dir, tmp_path_factory.mktemp("serve-openai") / "server.log")
    try:
        started.wait_ready(time.monotonic() + STARTUP_DEADLINE)
        yield started
    finally:
        started.stop()


def shown(prompt: Prompt) -> tuple[str, str | None]:
    """What the guard was shown, with the policy's escaping of special tokens undone.

    The noise of the tiny model can hold chat-template tokens like <|image_pad|>; the policy
    escapes them HTML-style before the guard sees them (see SECURITY.md).
    """
    request, response = transcript(prompt)
    return request, None if response is None else html.unescape(response)


def block_answers(prompt: Prompt) -> str:
    _, response = transcript(prompt)
    label = "None" if response is None else "harmful"
    return f"<think>x</think><result>\nRequest: unharmful\nResponse: {label}\n</result>"


def image_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (56, 56), "orange").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_sync_call_and_stream_over_http(server: Server, tiny_model_dir: Path) -> None:
    backend = ScriptedBackend(judge)
    client = guard_openai(OpenAI(base_url=server.url, api_key="none"), Guard(backend))
    model = str(tiny_model_dir)
    parts = [
        {"type": "text", "text": "Describe this picture."},
        {"type": "image_url", "image_url": {"url": image_url()}},
    ]
    messages = [{"role": "user", "content": parts}]
    completion = client.chat.completions.create(
        model=model, messages=messages, max_tokens=MAX_TOKENS, temperature=0
    )
    assert isinstance(completion, ChatCompletion)
    answer = completion.choices[0].message.content
    assert answer  # noise, but text: the guard judged exactly it, with the request
    assert [shown(p) for p in backend.prompts] == [
        ("Describe this picture.", None),
        ("Describe this picture.", answer),
    ]
    assert [len(p.images) for p in backend.prompts] == [1, 1]

    backend.prompts.clear()
    with client.chat.completions.create(
        model=model, messages=messages, max_tokens=MAX_TOKENS, temperature=0, stream=True
    ) as stream:
        chunks = list(stream)
    assert all(isinstance(chunk, ChatCompletionChunk) for chunk in chunks)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed and shown(backend.prompts[-1]) == ("Describe this picture.", streamed)


def test_blocks_over_http(server: Server, tiny_model_dir: Path) -> None:
    model = str(tiny_model_dir)
    client = guard_openai(
        OpenAI(base_url=server.url, api_key="none"), Guard(ScriptedBackend(judge))
    )
    before = answered(server)
    with pytest.raises(GuardBlocked):
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "an attack"}], max_tokens=4
        )
    assert answered(server) == before  # the blocked request never reached the server

    refusing = guard_openai(
        OpenAI(base_url=server.url, api_key="none"),
        Guard(ScriptedBackend(block_answers)),
        on_block="refuse",
        refusal="[withheld]",
        stream_every=4,
    )
    messages = [{"role": "user", "content": "Say something."}]
    completion = refusing.chat.completions.create(model=model, messages=messages, max_tokens=8)
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == "[withheld]"
    chunks = list(
        refusing.chat.completions.create(
            model=model, messages=messages, max_tokens=MAX_TOKENS, stream=True
        )
    )
    assert [c.choices[0].delta.content for c in chunks] == ["[withheld]"]  # nothing else passed
    assert chunks[-1].choices[0].finish_reason == "content_filter"


async def test_async_stream_over_http(server: Server, tiny_model_dir: Path) -> None:
    backend = ScriptedBackend(judge)
    client = guard_openai(AsyncOpenAI(base_url=server.url, api_key="none"), Guard(backend))
    stream = await client.chat.completions.create(
        model=str(tiny_model_dir),
        messages=[{"role": "user", "content": "Tell me a story."}],
        max_tokens=MAX_TOKENS,
        stream=True,
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text and shown(backend.prompts[-1]) == ("Tell me a story.", text)
    with pytest.raises(GuardBlocked):
        await client.chat.completions.create(
            model=str(tiny_model_dir), messages=[{"role": "user", "content": "attack"}]
        )


def test_the_tiny_guard_itself_fails_closed(server: Server, tiny_model_dir: Path) -> None:
    guard = Guard.from_server(server.url, model=str(tiny_model_dir), max_new_tokens=8)
    client = guard_openai(OpenAI(base_url=server.url, api_key="none"), guard)
    with pytest.raises(GuardBlocked) as blocked:
        client.chat.completions.create(
            model=str(tiny_model_dir), messages=[{"role": "user", "content": "Hello"}], max_tokens=4
        )
    assert blocked.value.verdict.stage == "input"
    # Noise: no verdict, so blocked (fail-closed); not an error (stop strings are found refused).
    assert blocked.value.verdict.status in ("parse_error", "truncated")
