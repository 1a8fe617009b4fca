"""GuardedChatModel streaming: tool-call chunks are held and judged whole before any is delivered.

The inner model is a real langchain-core chat model whose ``_stream`` yields text chunks, then
a tool call's arguments in pieces (``tool_call_chunks``), as provider integrations do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from guardvl_sdk import GuardBlocked, Label
from guardvl_sdk.integrations.langchain import GuardedChatModel

from .judge import EVIL, judging_guard, slots


class ToolStreamingModel(BaseChatModel):
    """Streams ``text`` word by word, then one call of ``tool`` with ``arguments`` in pieces."""

    text: str
    arguments: str
    tool: str = "get_weather"

    @property
    def _llm_type(self) -> str:
        return "tool-streaming"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        call = {"name": self.tool, "args": json.loads(self.arguments), "id": "c1"}
        message = AIMessage(self.text, tool_calls=[call])
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        for word in self.text.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
        pieces = [self.arguments[i : i + 5] for i in range(0, len(self.arguments), 5)]
        for n, piece in enumerate(pieces):
            first = n == 0
            chunk = {"name": self.tool if first else None, "args": piece,
                     "id": "c1" if first else None, "index": 0}  # fmt: skip
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[chunk]))


def calls_of(chunks: list[AIMessageChunk]) -> str:
    return "".join(c.get("args") or "" for chunk in chunks for c in chunk.tool_call_chunks)


def test_a_streamed_tool_call_is_judged_whole_then_delivered() -> None:
    guard, backend = judging_guard()
    arguments = json.dumps({"city": "Valencia"})
    model = GuardedChatModel(ToolStreamingModel(text="Let me check.", arguments=arguments), guard)
    chunks = list(model.stream("Weather in Valencia?"))
    assert calls_of(chunks) == arguments
    assert slots(backend.prompts[-1])[1].strip() == (
        f"Let me check. \n[tool call: get_weather]\n{arguments}"
    )


@pytest.mark.parametrize("on_block", ["raise", "refuse"])
def test_a_blocked_streamed_tool_call_is_never_delivered(on_block: str) -> None:
    guard, _ = judging_guard()
    arguments = json.dumps({"city": f"Valencia {EVIL}"})
    inner = ToolStreamingModel(text="Let me look that up for you right now.", arguments=arguments)
    model = GuardedChatModel(inner, guard, on_block=on_block, stream_every=8)
    got: list[AIMessageChunk] = []
    if on_block == "raise":
        with pytest.raises(GuardBlocked) as blocked:
            got.extend(model.stream("Weather?"))
        assert blocked.value.verdict.response is Label.HARMFUL
    else:
        got = list(model.stream("Weather?"))
    assert calls_of(got) == ""  # not one piece of the call reached the caller
    assert "".join(str(c.content) for c in got).startswith("Let me look")  # checked text streamed


async def test_async_stream_holds_tool_calls_too() -> None:
    guard, _ = judging_guard()
    arguments = json.dumps({"city": f"Valencia {EVIL}"})
    model = GuardedChatModel(ToolStreamingModel(text="Sure.", arguments=arguments), guard)
    got: list[AIMessageChunk] = []
    with pytest.raises(GuardBlocked):
        async for chunk in model.astream("Weather?"):
            got.append(chunk)
    assert calls_of(got) == ""
