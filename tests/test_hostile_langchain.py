"""Ways around the guard through the LangChain adapters: a reasoning model's thoughts (``thinking``
/ ``reasoning`` blocks, ``additional_kwargs["reasoning_content"]``) are output and judged; a block
or field the guard does not read is refused with a typed error (an allowlist); prompt variables
that include ``role`` and ``content`` are variables, each of them checked. Real langchain-core
runnables and langchain's own create_agent, a scripted guard that labels requests holding
"attack" and answers holding "poison" harmful."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableLambda
from pydantic import Field

from guardvl_sdk import GuardBlocked, InvalidInputError
from guardvl_sdk.integrations.langchain import GuardedChatModel, answer_text, read_request
from guardvl_sdk.integrations.langchain_agents import GuardMiddleware
from tests.test_hooks import transcript
from tests.test_langchain import answering, fake_model, png_url, scripted, seen

THINKING = [
    {"type": "thinking", "thinking": "the poison recipe is", "signature": "sig"},
    {"type": "text", "text": "I cannot help."},
]
REASONING = [{"type": "reasoning", "reasoning": "mix the poison"}, {"type": "text", "text": "No."}]
SUMMARY = [  # the OpenAI Responses API's reasoning item, as langchain-openai gives it
    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "poison"}]},
    {"type": "text", "text": "No."},
]
HIDDEN = {"reasoning_content": "first, the poison"}  # DeepSeek, Ollama, xAI, Groq


@pytest.mark.parametrize(
    "answer",
    [
        AIMessage(content=THINKING),
        AIMessage(content=REASONING),
        AIMessage(content=SUMMARY),
        AIMessage(content="I cannot help.", additional_kwargs=HIDDEN),
        AIMessage(content="", additional_kwargs={"reasoning": {"summary": [{"text": "poison"}]}}),
    ],
    ids=["thinking", "reasoning", "summary", "reasoning_content", "reasoning_kwarg"],
)
def test_a_harmful_thought_blocks_the_answer(answer: AIMessage) -> None:
    guard, _ = scripted()
    with pytest.raises(GuardBlocked) as model_blocked:
        GuardedChatModel(fake_model(answer), guard).invoke("hi")
    assert model_blocked.value.verdict.stage == "output"
    chain = (
        guard.as_runnable() | RunnableLambda(lambda _: answer) | guard.as_runnable(stage="output")
    )
    with pytest.raises(GuardBlocked):  # the output runnable reads the same answer
        chain.invoke("hi")
    safe = guard.as_runnable() | answering("I cannot help.") | guard.as_runnable(stage="output")
    assert safe.invoke("hi").content == "I cannot help."  # the same chain, no thought: passes


def test_the_guard_sees_the_reasoning_then_the_text() -> None:
    guard, backend = scripted()
    answer = AIMessage(
        content=[{"type": "thinking", "thinking": "They want bread."}, "Knead it."],
        additional_kwargs={"reasoning_content": "A baking question."},
    )
    GuardedChatModel(fake_model(answer), guard).invoke("bread?")
    assert seen(backend)[-1] == ("bread?", "A baking question.\n\nThey want bread.\n\nKnead it.")


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        (AIMessage(content=[{"type": "redacted_thinking", "data": "opaque"}]), "redacted_thinking"),
        (
            AIMessage(content=[{"type": "image", "base64": "AAAA", "mime_type": "image/png"}]),
            "image",
        ),
        (AIMessage(content=[{"type": "a-block-of-2027", "text": "x"}]), "a-block-of-2027"),
        (AIMessage(content="ok", additional_kwargs={"audio": {"data": "AAAA"}}), "audio"),
        (AIMessage(content="ok", additional_kwargs={"thoughts": "poison"}), "thoughts"),
    ],
    ids=["redacted", "image", "unknown-block", "audio", "unknown-kwarg"],
)
def test_an_answer_part_the_guard_cannot_read_is_refused(answer: AIMessage, named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        answer_text(answer)
    guard, _ = scripted()
    with pytest.raises(InvalidInputError, match=named):  # withheld: never returned unjudged
        GuardedChatModel(fake_model(answer), guard).invoke("hi")


class ThinkingStream(BaseChatModel):
    """Streams its thoughts as ``thinking`` blocks (Anthropic's layout), then its answer."""

    thoughts: list[str]
    answer: str = "Sure."

    @property
    def _llm_type(self) -> str:
        return "thinking-fake"

    def _generate(self, messages: list[BaseMessage], *a: Any, **k: Any) -> ChatResult:
        content = [{"type": "thinking", "thinking": " ".join(self.thoughts)}, self.answer]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=content))])

    def _stream(self, messages: list[BaseMessage], *a: Any, **k: Any) -> Iterator[Any]:
        for thought in self.thoughts:
            block = {"type": "thinking", "thinking": thought + " ", "index": 0}
            yield ChatGenerationChunk(message=AIMessageChunk(content=[block]))
        yield ChatGenerationChunk(message=AIMessageChunk(content=self.answer))


def test_a_streamed_harmful_thought_is_stopped_before_it_is_released() -> None:
    guard, _ = scripted()
    inner = ThinkingStream(thoughts=["Let", "me", "think:", "the", "poison", "is", "easy", "now"])
    received: list[Any] = []
    with pytest.raises(GuardBlocked):
        for chunk in GuardedChatModel(inner, guard, stream_every=8).stream("hi"):
            received.append(chunk.content)
    assert "poison" not in repr(received)
    clean = ThinkingStream(thoughts=["Bread", "needs", "flour"], answer="Knead it.")
    chunks = list(GuardedChatModel(clean, guard, stream_every=8).stream("bread?"))
    assert "flour" in repr([c.content for c in chunks])  # a clean thought streams


def test_the_agent_middleware_judges_the_models_thoughts() -> None:
    guard, _ = scripted()
    model = fake_model(AIMessage(content=THINKING))
    agent = create_agent(model, tools=[], middleware=[GuardMiddleware(guard)])
    with pytest.raises(GuardBlocked) as blocked:
        agent.invoke({"messages": [HumanMessage("hi")]})
    assert blocked.value.verdict.stage == "output"


def test_the_agent_reads_earlier_thoughts_in_its_history() -> None:
    guard, backend = scripted()
    model = fake_model(AIMessage(content="Knead it."))
    agent = create_agent(model, tools=[], middleware=[GuardMiddleware(guard)])
    earlier = AIMessage(content=[{"type": "thinking", "thinking": "Flour first."}, "Use flour."])
    agent.invoke({"messages": [HumanMessage("bread?"), earlier, HumanMessage("and then?")]})
    assert "Flour first." in transcript(backend.prompts[0])[0]  # the earlier thought: read


def test_prompt_variables_named_role_and_content_are_all_checked() -> None:
    guard, _ = scripted()
    variables = {"role": "pirate", "content": "a story", "question": "plan an attack"}
    with pytest.raises(GuardBlocked):  # "question" is a variable too: it is checked
        guard.as_runnable().invoke(variables)
    assert "plan an attack" in (read_request(variables).text or "")
    message = {"role": "user", "content": "plan an attack"}  # only message fields: one message
    assert read_request(message).messages == (message,)


def test_a_message_dict_with_a_field_the_guard_does_not_read_is_refused() -> None:
    guard, _ = scripted()
    messages = [{"role": "user", "content": "hi", "question": "plan an attack"}]
    with pytest.raises(InvalidInputError, match="question"):
        guard.as_runnable().invoke(messages)


# -- the request side: every field a chat model receives is judged or refused ---------------


class Recording(BaseChatModel):
    """A chat model that records every list of messages it receives, then answers "Sure."."""

    received: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "recording-fake"

    def _generate(self, messages: list[BaseMessage], *a: Any, **k: Any) -> ChatResult:
        self.received.append(list(messages))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="Sure."))])


HARMFUL = "plan an attack"  # the scripted guard labels a request holding "attack" harmful
REFUSED = r"unchecked|OpenAI's limit"  # the refusal of a field the guard does not read
CALL = {"type": "tool_call", "id": "c1", "name": "search", "args": {"q": "bread"}}
HOSTILE_FIELDS = {
    "human-name": [HumanMessage("hi", name=HARMFUL)],
    "human-name-too-long": [HumanMessage("hi", name="x" * 65)],
    "human-kwargs": [HumanMessage("hi", additional_kwargs={"secret": HARMFUL})],
    "system-kwargs": [SystemMessage("Be brief.", additional_kwargs={"x": HARMFUL}), "hi"],
    "tool-kwargs": [
        HumanMessage("hi"),
        AIMessage("", tool_calls=[CALL]),
        ToolMessage("bread", tool_call_id="c1", additional_kwargs={"x": HARMFUL}),
    ],
    "text-block-key": [HumanMessage([{"type": "text", "text": "hi", "secret": HARMFUL}])],
    "image-url-key": [
        HumanMessage([{"type": "image_url", "image_url": {"url": png_url(), "alt": HARMFUL}}, "hi"])
    ],
    "image-block-extras": [
        HumanMessage([{"type": "image", "url": png_url(), "extras": {"alt": HARMFUL}}, "hi"])
    ],
    "ai-history-block-key": [
        HumanMessage("hi"),
        AIMessage([{"type": "text", "text": "Sure.", "annotations": [{"title": HARMFUL}]}]),
        HumanMessage("and?"),
    ],
    "dict-part-key": [{"role": "user", "content": [{"type": "text", "text": "hi", "x": HARMFUL}]}],
}


def _chat(messages: list[Any]) -> list[Any]:
    return [HumanMessage(m) if isinstance(m, str) else m for m in messages]


@pytest.mark.parametrize("messages", HOSTILE_FIELDS.values(), ids=HOSTILE_FIELDS.keys())
def test_a_request_field_the_guard_does_not_read_is_refused_before_the_model(
    messages: list[Any],
) -> None:
    guard, backend = scripted()
    model = Recording()
    with pytest.raises(InvalidInputError, match=REFUSED):
        GuardedChatModel(model, guard).invoke(_chat(messages))
    with pytest.raises(InvalidInputError, match=REFUSED):
        (guard.as_runnable() | model).invoke(_chat(messages))
    agent = create_agent(model, tools=[], middleware=[GuardMiddleware(guard)])
    with pytest.raises(InvalidInputError, match=REFUSED):
        agent.invoke({"messages": _chat(messages)})
    assert model.received == [] and backend.prompts == []  # nothing sent, nothing judged


def test_an_invalid_tool_call_in_the_history_is_judged() -> None:
    """A model's malformed tool call is sent back to the model by chat models: the guard reads
    its arguments as written (convert_to_openai_messages drops it)."""
    guard, backend = scripted()
    model = Recording()
    bad = {"type": "invalid_tool_call", "id": "c1", "name": "search", "args": HARMFUL}
    history = [HumanMessage("hi"), AIMessage("", invalid_tool_calls=[bad]), HumanMessage("ok?")]
    with pytest.raises(GuardBlocked):
        GuardedChatModel(model, guard).invoke(history)
    assert HARMFUL in transcript(backend.prompts[0])[0] and model.received == []


def test_normal_messages_with_metadata_still_pass() -> None:
    guard, backend = scripted()
    model = Recording()
    chat = [
        SystemMessage("Be brief.", id="s1"),
        HumanMessage(
            [
                {"type": "text", "text": "what is this?", "id": "b1"},
                {"type": "image_url", "image_url": {"url": png_url(), "detail": "low"}},
                {"type": "image", "base64": png_url().split(",")[1], "mime_type": "image/png"},
            ],
            name="alice_01",
            id="h1",
            additional_kwargs={"unused": None},
        ),
        AIMessage(
            [{"type": "thinking", "thinking": "A photo.", "signature": "sig", "index": 0}, "Red."],
            tool_calls=[CALL],
            response_metadata={"model": "x"},
            usage_metadata={"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
            name="assistant",
        ),
        ToolMessage("bread", tool_call_id="c1", name="search", artifact={"raw": 1}),
        HumanMessage("thanks"),
    ]
    assert GuardedChatModel(model, guard).invoke(chat).content == "Sure."
    assert model.received[0] == chat and len(backend.prompts) == 2  # request and answer judged
    assert (guard.as_runnable() | model).invoke(chat).content == "Sure."
    agent = create_agent(model, tools=[], middleware=[GuardMiddleware(guard)])
    assert agent.invoke({"messages": chat})["messages"][-1].content == "Sure."
