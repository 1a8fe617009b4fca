"""A scripted guard that judges by a marker word and a marker colour, and records what it saw.

It reads the transcript the policy rendered, exactly as a model would receive it: the request
slot (between ``Human user:`` and ``AI assistant:``) is harmful when it holds :data:`EVIL`; the
response slot likewise; any pure red image makes the request harmful. Every prompt is kept, so a
test can assert what the guard was shown, not only what it decided.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from guardvl_sdk import Guard, Prompt
from guardvl_sdk.testing import ScriptedBackend

EVIL = "EVIL-INSTRUCTION"


def transcript(prompt: Prompt) -> str:
    """All text of the prompt's user turn (the transcript), in order."""
    content = prompt.messages[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def slots(prompt: Prompt) -> tuple[str, str]:
    """The request slot and the response slot of a rendered prompt."""
    text = transcript(prompt)
    request, _, response = text.partition("\n\nAI assistant:\n")
    request = request.removeprefix("Human user:\n")
    if prompt.images:  # the vision tokens stand after "Human user:\n", then a line break
        request = request.removeprefix("\n")
    return request, response


def _red(image: Any) -> bool:
    r, g, b = image.convert("RGB").resize((1, 1)).getpixel((0, 0))
    return bool(r > 200 and g < 60 and b < 60)


def judge(prompt: Prompt) -> str:
    request, response = slots(prompt)
    request_harmful = EVIL in request or any(_red(image) for image in prompt.images)
    answer = "None"
    if prompt.score_label == "response":
        answer = "harmful" if EVIL in response else "unharmful"
    label = "harmful" if request_harmful else "unharmful"
    return f"<think>\nread it\n</think>\n<result>\nRequest: {label}\nResponse: {answer}\n</result>"


def judging_guard(**options: Any) -> tuple[Guard, ScriptedBackend]:
    backend = ScriptedBackend(judge)
    return Guard(backend, **options), backend


def png(colour: tuple[int, int, int], size: tuple[int, int] = (32, 24)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(colour: tuple[int, int, int], size: tuple[int, int] = (32, 24)) -> str:
    return "data:image/png;base64," + base64.b64encode(png(colour, size)).decode()


RED = data_url((255, 0, 0))
BLUE = data_url((0, 0, 255))


def conversation(evil_in: str | None = None) -> list[dict[str, Any]]:
    """An agent conversation; ``evil_in`` puts the harmful instruction in exactly one place:
    ``"assistant"`` (a history turn), ``"tool_result"``, ``"tool_call"`` (history arguments),
    ``"image"`` (a red image in an earlier user turn) or ``"user"`` (the newest user turn)."""

    def text(where: str, benign: str) -> str:
        return f"{benign} {EVIL}" if evil_in == where else benign

    return [
        {"role": "system", "content": "You are a helpful travel assistant."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Where was this photo taken?"},
                {"type": "image_url", "image_url": {"url": RED if evil_in == "image" else BLUE}},
            ],
        },
        {"role": "assistant", "content": text("assistant", "It looks like a beach in Spain.")},
        {"role": "user", "content": text("user", "What's the weather there tomorrow?")},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": json.dumps({"city": text("tool_call", "Valencia")}),
                    },
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": text("tool_result", '{"forecast": "sunny, 24C"}'),
        },
    ]
