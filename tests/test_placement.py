"""Every entry point lays a conversation out exactly as docs/middleware.md says, and blocks a
harmful instruction wherever it sits in it.

The same agent conversation (a system prompt, a user turn with a photo, an assistant history
turn, the newest user turn, the assistant's tool call and the tool's result) goes in through each
entry point; the scripted guard keeps the prompt it was shown, and the test compares the request
slot with the example printed in the docs, character for character, checks that the one image
stands right after ``Human user:`` (where the trained format puts it), and that the tool call an
answer makes lands in the response slot as ``[tool call: NAME]`` and its arguments. The guards
here remember nothing (``conversation_memory=0``), so the output check shows the whole layout
too; with the memory on, what it sends again is in test_conversation.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from openai import OpenAI

from guardvl_sdk import Guard, GuardBlocked, GuardEvent, Label, Prompt
from guardvl_sdk.hooks import guarded
from guardvl_sdk.integrations.langchain import GuardedChatModel
from guardvl_sdk.integrations.openai import guard_openai
from guardvl_sdk.testing import FakeChatServer, FakeReply

from .judge import BLUE, EVIL, conversation, judging_guard, slots

DOCS = Path(__file__).resolve().parents[1] / "docs" / "middleware.md"
ANSWER_CALL = {"name": "book_hotel", "arguments": json.dumps({"city": "Valencia", "nights": 2})}
ANSWER_SLOT = f"[tool call: book_hotel]\n{ANSWER_CALL['arguments']}"


def documented_request() -> str:
    """The request slot of the travel-agent example in docs/middleware.md."""
    found = re.search(r"the request slot reads:\n\n```\n(.*?)\n```", DOCS.read_text(), re.S)
    assert found, "docs/middleware.md lost its layout example"
    return found.group(1)


def assert_laid_out_as_documented(prompt: Prompt) -> None:
    content = prompt.messages[-1]["content"]
    kinds = [part["type"] for part in content]
    assert kinds.count("image") == 1 and len(prompt.images) == 1
    before = content[kinds.index("image") - 1]["text"]
    assert before.endswith("Human user:\n")  # the image right after "Human user:\n"
    assert prompt.images[0].convert("RGB").getpixel((0, 0)) == (0, 0, 255)  # the blue photo
    request, _ = slots(prompt)
    assert request == documented_request()


def answer_message() -> dict[str, Any]:
    call = {"id": "call_9", "type": "function", "function": ANSWER_CALL}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def request_and_answer_prompts(guard: Guard) -> tuple[Prompt, Prompt]:
    prompts = guard.backend.prompts  # type: ignore[attr-defined]
    inputs = [p for p in prompts if p.score_label == "request"]
    outputs = [p for p in prompts if p.score_label == "response"]
    assert len(inputs) == 1 and len(outputs) == 1
    return inputs[0], outputs[0]


def test_guard_check_messages() -> None:
    guard, _ = judging_guard(conversation_memory=0)
    guard.check(messages=conversation())
    guard.check(messages=conversation(), response=answer_message())
    request, answer = request_and_answer_prompts(guard)
    assert_laid_out_as_documented(request)
    assert_laid_out_as_documented(answer)
    assert slots(answer)[1].strip() == ANSWER_SLOT


def test_guarded_decorator_with_messages() -> None:
    guard, _ = judging_guard(conversation_memory=0)

    @guarded(guard)
    def agent_step(messages: list[dict[str, Any]]) -> str:
        return "Booked."

    agent_step(conversation())
    request, answer = request_and_answer_prompts(guard)
    assert_laid_out_as_documented(request)
    assert slots(answer)[1].strip() == "Booked."


def test_guard_session() -> None:
    guard, _ = judging_guard(conversation_memory=0)
    with guard.session() as session:
        session.before(messages=conversation())
        session.after(answer_message())
    request, answer = request_and_answer_prompts(guard)
    assert_laid_out_as_documented(request)
    assert_laid_out_as_documented(answer)
    assert slots(answer)[1].strip() == ANSWER_SLOT


@pytest.mark.parametrize("stream", [False, True])
def test_guard_openai_chat_completions(stream: bool) -> None:
    guard, _ = judging_guard(conversation_memory=0)
    with FakeChatServer(FakeReply(content="", tool_calls=[ANSWER_CALL])) as server:
        client = guard_openai(OpenAI(base_url=server.url, api_key="k"), guard)
        result = client.chat.completions.create(model="vlm", messages=conversation(), stream=stream)
        if stream:
            list(result)
        assert server.requests[0]["messages"] == conversation()  # forwarded as given
    request, answer = request_and_answer_prompts(guard)
    assert_laid_out_as_documented(request)
    assert_laid_out_as_documented(answer)
    assert slots(answer)[1].strip() == ANSWER_SLOT


@pytest.mark.parametrize("stream", [False, True])
def test_guard_openai_responses(stream: bool) -> None:
    system, photo, history, newest, call, result = conversation()
    function = call["tool_calls"][0]["function"]
    items = [
        {"role": "user", "content": [
            {"type": "input_text", "text": photo["content"][0]["text"]},
            {"type": "input_image", "image_url": BLUE},
        ]},
        {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": history["content"], "annotations": []}]},
        newest,
        {"type": "function_call", "call_id": "call_1", **function},
        {"type": "function_call_output", "call_id": "call_1", "output": result["content"]},
    ]  # fmt: skip
    guard, _ = judging_guard(conversation_memory=0)
    with FakeChatServer(FakeReply(content="", tool_calls=[ANSWER_CALL])) as server:
        client = guard_openai(OpenAI(base_url=server.url, api_key="k"), guard)
        answer = client.responses.create(
            model="vlm", instructions=system["content"], input=items, stream=stream
        )
        if stream:
            list(answer)
    request, answered = request_and_answer_prompts(guard)
    assert_laid_out_as_documented(request)
    assert_laid_out_as_documented(answered)
    assert slots(answered)[1].strip() == ANSWER_SLOT


def langchain_conversation(evil_in: str | None = None) -> list[Any]:
    system, photo, history, newest, call, result = conversation(evil_in)
    tool_call = call["tool_calls"][0]
    return [
        SystemMessage(system["content"]),
        HumanMessage(photo["content"]),
        AIMessage(history["content"]),
        HumanMessage(newest["content"]),
        AIMessage(
            "",
            tool_calls=[
                {
                    "name": tool_call["function"]["name"],
                    "args": json.loads(tool_call["function"]["arguments"]),
                    "id": tool_call["id"],
                }
            ],
        ),
        ToolMessage(result["content"], tool_call_id=tool_call["id"]),
    ]


def test_guarded_chat_model() -> None:
    guard, _ = judging_guard(conversation_memory=0)
    args = json.loads(ANSWER_CALL["arguments"])
    reply = AIMessage("", tool_calls=[{"name": "book_hotel", "args": args, "id": "call_9"}])
    model = GuardedChatModel(GenericFakeChatModel(messages=iter([reply])), guard)
    model.invoke(langchain_conversation())
    request, answer = request_and_answer_prompts(guard)
    assert_laid_out_as_documented(request)
    assert_laid_out_as_documented(answer)
    # LangChain keeps arguments parsed: they are judged as JSON with sorted keys.
    expected = json.dumps(args, sort_keys=True)
    assert slots(answer)[1].strip() == f"[tool call: book_hotel]\n{expected}"


# -- every entry point blocks a harmful instruction wherever it is, and lists every part once --

PLACES = ["assistant", "tool_result", "tool_call", "image", "user"]
RECEIPT = [
    (0, "system", "text"),
    (1, "user", "text"),
    (1, "user", "image"),
    (2, "assistant", "text"),
    (3, "user", "text"),
    (4, "assistant", "tool_call"),
    (5, "tool", "tool_result"),
]


def through_decorator(guard: Guard, evil_in: str | None, seen: list[GuardEvent]) -> None:
    @guarded(guard, on_verdict=seen.append)
    def agent_step(messages: list[dict[str, Any]]) -> str:
        return "Fine."

    agent_step(conversation(evil_in))


def through_session(guard: Guard, evil_in: str | None, seen: list[GuardEvent]) -> None:
    with guard.session(on_verdict=seen.append) as session:
        session.before(messages=conversation(evil_in))
        session.after("Fine.")


def through_openai_chat(guard: Guard, evil_in: str | None, seen: list[GuardEvent]) -> None:
    with FakeChatServer("Fine.") as server:
        client = guard_openai(
            OpenAI(base_url=server.url, api_key="k"), guard, on_verdict=seen.append
        )
        try:
            client.chat.completions.create(model="vlm", messages=conversation(evil_in))
        finally:
            assert len(server.requests) == (0 if evil_in else 1)  # blocked before the model


def through_guarded_chat_model(guard: Guard, evil_in: str | None, seen: list[GuardEvent]) -> None:
    model = GuardedChatModel(
        GenericFakeChatModel(messages=iter([AIMessage("Fine.")])), guard, on_verdict=seen.append
    )
    model.invoke(langchain_conversation(evil_in))


ENTRY_POINTS = [through_decorator, through_session, through_openai_chat, through_guarded_chat_model]


@pytest.mark.parametrize("where", PLACES)
@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_a_harmful_instruction_anywhere_is_blocked(entry: Any, where: str) -> None:
    guard, _ = judging_guard()
    seen: list[GuardEvent] = []
    with pytest.raises(GuardBlocked) as blocked:
        entry(guard, where, seen)
    assert blocked.value.verdict.request is Label.HARMFUL
    assert [e.stage for e in seen] == ["input"]


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_a_benign_conversation_passes_and_the_receipt_lists_every_part_once(entry: Any) -> None:
    guard, _ = judging_guard()
    seen: list[GuardEvent] = []
    entry(guard, None, seen)
    assert [(e.stage, e.verdict.blocked) for e in seen] == [("input", False), ("output", False)]
    parts = [(p.message, p.role, p.kind) for p in seen[0].verdict.inspected]
    if entry is through_guarded_chat_model:  # LangChain's tool-calling turn has content ""
        assert parts.pop(5) == (4, "assistant", "text")
    assert parts == RECEIPT
    assert EVIL not in str(seen)
