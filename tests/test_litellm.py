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
