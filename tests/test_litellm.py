"""The in-process LiteLLM guardrail in ``litellm.acompletion(..., mock_response=...)``."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the price list

import pytest

from guardvl_sdk import GuardBlocked
from guardvl_sdk.guard import Guard
from guardvl_sdk.testing import ScriptedBackend
from tests.test_server import judge, png_data_url

litellm = pytest.importorskip("litellm")

pytestmark = pytest.mark.slow  # importing litellm takes seconds


@pytest.fixture(scope="module")
def guardrail():  # type: ignore[no-untyped-def]
    from guardvl_sdk.integrations.litellm import GuardVLGuardrail

    backend = ScriptedBackend(judge)
    guardrail = GuardVLGuardrail(Guard(backend), event_hook=["pre_call", "post_call"])
    guardrail.backend = backend
    saved = litellm.callbacks
    litellm.callbacks = [guardrail]
    yield guardrail
    litellm.callbacks = saved


async def complete(text: str | list[dict[str, object]], answer: str) -> str:
    response = await litellm.acompletion(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be kind."}, {"role": "user", "content": text}],
        mock_response=answer,
        guardrails=["guardvl"],
    )
    return str(response.choices[0].message.content)


async def test_benign_call_passes(guardrail) -> None:  # type: ignore[no-untyped-def]
    before = len(guardrail.backend.prompts)
    parts = [
        {"type": "text", "text": "a soup recipe"},
        {"type": "image_url", "image_url": {"url": png_data_url()}},
    ]
    assert await complete(parts, "Boil water.") == "Boil water."
    request, answer = guardrail.backend.prompts[before:]
    assert len(request.images) == 1 and request.score_label == "request"
    assert answer.score_label == "response" and "Boil water." in str(answer.messages)
    assert "Be kind." in str(request.messages)  # every role of the conversation is judged


async def test_harmful_request_blocked_before_the_model(guardrail) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GuardBlocked) as caught:
        await complete("how do I build a bomb", "never sent")
    assert caught.value.verdict.request is not None and caught.value.verdict.stage == "input"
    assert isinstance(caught.value, litellm.exceptions.GuardrailRaisedException)


async def test_harmful_answer_blocked(guardrail) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GuardBlocked) as caught:
        await complete("tell me about chemistry", "first wire the detonator")
    assert caught.value.verdict.stage == "output"
    assert caught.value.blocked_output == "first wire the detonator"


async def test_unreadable_part_blocks(guardrail) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GuardBlocked, match="input_audio"):
        await complete([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}], "x")


async def test_streamed_tool_calls_are_judged_before_any_chunk_is_released() -> None:
    """The proxy's streaming hook, given LiteLLM's own stream chunks: a tool call's arguments,
    streamed in pieces, are assembled and judged before the first chunk is released."""
    import json

    from guardvl_sdk.integrations.litellm import GuardrailBlocked, GuardVLGuardrail

    from .judge import EVIL, judging_guard, slots

    def chunks(arguments: str) -> list[object]:
        deltas: list[dict[str, object]] = [{"role": "assistant", "content": "Let me check."}]
        first = {"index": 0, "id": "c1", "type": "function",
                 "function": {"name": "get_weather", "arguments": ""}}  # fmt: skip
        deltas.append({"tool_calls": [first]})
        deltas += [
            {"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 5]}}]}
            for i in range(0, len(arguments), 5)
        ]
        return [
            litellm.ModelResponseStream(id="s", choices=[{"index": 0, "delta": delta}])
            for delta in deltas
        ]

    async def run(arguments: str, released: list[object]) -> list[object]:
        async def upstream():  # type: ignore[no-untyped-def]
            for chunk in chunks(arguments):
                yield chunk

        hook = guardrail.async_post_call_streaming_iterator_hook(
            None, upstream(), {"messages": [{"role": "user", "content": "Weather?"}]}
        )
        async for chunk in hook:
            released.append(chunk)  # what the proxy would send on to the user
        return released

    guard, backend = judging_guard()
    guardrail = GuardVLGuardrail(guard)
    benign = json.dumps({"city": "Valencia"})
    assert len(await run(benign, [])) == 2 + len(range(0, len(benign), 5))
    answer = slots(backend.prompts[-1])[1].strip()
    assert answer == f"Let me check.\n[tool call: get_weather]\n{benign}"
    released: list[object] = []
    with pytest.raises(GuardrailBlocked):
        await run(json.dumps({"city": f"Valencia {EVIL}"}), released)
    assert released == []  # not one chunk, not one piece of the call


def litellm_response(**message: object) -> object:
    return litellm.ModelResponse(
        choices=[{"index": 0, "message": {"role": "assistant", **message}}]
    )


async def test_reasoning_is_judged_and_unread_answer_fields_block() -> None:
    """The OpenAI adapter's reader and allowlist: reasoning_content is output, judged with the
    text; an answer field the reader does not judge blocks instead of reaching the user."""
    from guardvl_sdk.integrations.litellm import GuardrailBlocked, GuardVLGuardrail

    from .judge import EVIL, judging_guard, slots

    guard, backend = judging_guard()
    guardrail = GuardVLGuardrail(guard)
    data = {"messages": [{"role": "user", "content": "Tell me a story."}]}
    benign = litellm_response(content="Once upon a time.", reasoning_content="A short story.")
    assert await guardrail.async_post_call_success_hook(data, None, benign) is benign
    assert slots(backend.prompts[-1])[1].strip() == "A short story.\n\nOnce upon a time."
    thinking = litellm_response(content="Once upon a time.", reasoning_content=f"Plan: {EVIL}")
    with pytest.raises(GuardrailBlocked) as caught:
        await guardrail.async_post_call_success_hook(data, None, thinking)
    assert caught.value.verdict.stage == "output"
    unread = litellm_response(
        content="Hi.", images=[{"index": 0, "type": "image_url", "image_url": {"url": "data:x"}}]
    )
    with pytest.raises(GuardrailBlocked, match="images"):
        await guardrail.async_post_call_success_hook(data, None, unread)


async def test_streamed_reasoning_is_judged_before_any_chunk_is_released() -> None:
    from guardvl_sdk.integrations.litellm import GuardrailBlocked, GuardVLGuardrail

    from .judge import EVIL, judging_guard

    async def upstream(*deltas: dict[str, object]):  # type: ignore[no-untyped-def]
        for delta in deltas:
            yield litellm.ModelResponseStream(id="s", choices=[{"index": 0, "delta": delta}])

    guardrail = GuardVLGuardrail(judging_guard()[0])
    data = {"messages": [{"role": "user", "content": "Tell me a story."}]}
    released: list[object] = []
    stream = upstream({"reasoning_content": f"Plan: {EVIL}"}, {"content": "Once upon a time."})
    with pytest.raises(GuardrailBlocked):
        async for chunk in guardrail.async_post_call_streaming_iterator_hook(None, stream, data):
            released.append(chunk)
    assert released == []
    stream = upstream({"content": "Hi."}, {"provider_specific_fields": {"citations": ["x"]}})
    with pytest.raises(GuardrailBlocked, match="provider_specific_fields"):
        async for chunk in guardrail.async_post_call_streaming_iterator_hook(None, stream, data):
            released.append(chunk)
    assert released == []
