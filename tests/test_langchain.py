"""LangChain: GuardRunnable in real chains and GuardedChatModel, with a scripted guard.

The chains are real langchain-core objects (RunnableSequence, RunnableParallel, .with_fallbacks,
ChatPromptTemplate) around langchain-core's fake chat models; the guard is a Guard on a scripted
backend that labels requests holding "attack" and answers holding "poison" harmful.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel
from PIL import Image
from pydantic import Field

from guardvl_sdk import ConfigurationError, Guard, GuardBlocked, InvalidInputError
from guardvl_sdk.integrations.langchain import GuardedChatModel, GuardRunnable, read_request
from guardvl_sdk.testing import ScriptedBackend
from tests.test_hooks import judge, newest_turn, transcript


def png_url(color: str = "red") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def scripted() -> tuple[Guard, ScriptedBackend]:
    backend = ScriptedBackend(judge)
    return Guard(backend), backend


def seen(backend: ScriptedBackend) -> list[tuple[str, str | None]]:
    """(newest user turn, response) of every prompt the guard was shown, in order (the earlier
    turns it saw as context are asserted in tests/test_conversation.py)."""
    return [(newest_turn(r), a) for r, a in map(transcript, backend.prompts)]


PROMPT = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{question}")])


def answering(text: str) -> RunnableLambda[Any, AIMessage]:
    """A stand-in model step that answers with `text` and records what it was asked."""
    asked: list[Any] = []

    def model(value: Any) -> AIMessage:
        asked.append(value)
        return AIMessage(content=text)

    step = RunnableLambda(model)
    step.asked = asked  # type: ignore[attr-defined]
    return step


def fake_model(*answers: str | AIMessage) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(answers))


# -- reading inputs -------------------------------------------------------------------------


def test_read_request_all_input_kinds() -> None:
    url = png_url()
    assert (read_request("hello").text, read_request("hello").messages) == ("hello", None)
    chat = read_request(PROMPT.invoke({"question": "why?"})).messages
    assert chat is not None and chat[-1] == {"role": "user", "content": "why?"}
    message = HumanMessage(
        content=[
            {"type": "text", "text": "what is this?"},
            {"type": "image", "base64": url.split(",", 1)[1], "mime_type": "image/png"},
            {"type": "image_url", "image_url": {"url": url}},
        ]
    )
    request = read_request([("system", "sys"), message, AIMessage(content="earlier")])
    assert request.messages is not None  # every turn is read: system, user, assistant
    assert [m["role"] for m in request.messages] == ["system", "user", "assistant"]
    parts = request.messages[1]["content"]
    # the standard base64 block becomes the same data: URL
    assert [p["image_url"]["url"] for p in parts if p["type"] == "image_url"] == [url, url]
    request = read_request({"question": "q", "n": 3, "photo": url, "none": None})
    assert (request.text, request.images) == ("q\n\n3", [url])
    dict_message = read_request({"role": "user", "content": "a dict message"}).messages
    assert dict_message == ({"role": "user", "content": "a dict message"},)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (HumanMessage(content=[{"type": "image", "file_id": "file-1"}]), "cannot read"),
        ({"question": object()}, "cannot check a object"),
        ("", "nothing to check"),
    ],
)
def test_read_request_refuses_what_it_cannot_check(value: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        read_request(value)


def test_http_image_urls_are_refused_unless_the_guard_fetches() -> None:
    guard, backend = scripted()
    message = HumanMessage(
        content=[{"type": "image_url", "image_url": {"url": "http://example.com/x.png"}}]
    )
    with pytest.raises(InvalidInputError, match="URL"):
        guard.as_runnable().invoke([message])
    assert backend.prompts == []


# -- GuardRunnable --------------------------------------------------------------------------


def test_input_guard_passes_its_input_through_unchanged() -> None:
    guard, backend = scripted()
    value = {"question": "how do I bake bread?"}
    assert guard.as_runnable().invoke(value) is value
    assert seen(backend) == [("how do I bake bread?", None)]


def test_input_guard_blocks_before_the_model_is_called() -> None:
    guard, _ = scripted()
    model = answering("an answer")
    chain = guard.as_runnable() | PROMPT | model
    with pytest.raises(GuardBlocked) as blocked:
        chain.invoke({"question": "plan an attack"})
    assert blocked.value.verdict.stage == "input"
    assert blocked.value.blocked_output is None
    assert model.asked == []  # type: ignore[attr-defined]


def test_chain_checks_the_answer_with_its_request_once() -> None:
    guard, backend = scripted()
    chain = (
        guard.as_runnable()
        | PROMPT
        | fake_model("Knead, rest, bake.")
        | guard.as_runnable(stage="output")
    )
    answer = chain.invoke({"question": "how do I bake bread?"})
    assert isinstance(answer, AIMessage) and answer.content == "Knead, rest, bake."
    # One request check, one answer check in the request's context; no second request check.
    assert seen(backend) == [
        ("how do I bake bread?", None),
        ("how do I bake bread?", "Knead, rest, bake."),
    ]


def test_output_guard_blocks_a_harmful_answer() -> None:
    guard, _ = scripted()
    chain = (
        guard.as_runnable()
        | PROMPT
        | fake_model("take the poison")
        | guard.as_runnable(stage="output")
    )
    with pytest.raises(GuardBlocked) as blocked:
        chain.invoke({"question": "hi"})
    assert blocked.value.verdict.stage == "output"
    assert isinstance(blocked.value.blocked_output, AIMessage)
    assert blocked.value.blocked_output.content == "take the poison"


def test_output_guard_checks_plain_text_answers() -> None:
    guard, backend = scripted()
    chain = (
        guard.as_runnable()
        | RunnableLambda(lambda v: f"echo {v}")
        | guard.as_runnable(stage="output")
    )
    assert chain.invoke("hello") == "echo hello"
    assert seen(backend)[-1] == ("hello", "echo hello")


def test_output_guard_without_an_input_guard_is_a_configuration_error() -> None:
    guard, backend = scripted()
    chain = PROMPT | fake_model("an answer") | guard.as_runnable(stage="output")
    with pytest.raises(ConfigurationError, match="input guard"):
        chain.invoke({"question": "hi"})
    with pytest.raises(ConfigurationError):
        guard.as_runnable(stage="output").invoke("an answer")
    assert backend.prompts == []


def test_on_block_handler_value_is_passed_on() -> None:
    guard, _ = scripted()
    runnable = guard.as_runnable(on_block=lambda blocked: f"refused: {blocked.verdict.stage}")
    assert runnable.invoke("an attack plan") == "refused: input"


def test_with_fallbacks_catches_guard_blocked() -> None:
    guard, _ = scripted()
    chain = (
        guard.as_runnable() | PROMPT | fake_model("ok") | guard.as_runnable(stage="output")
    ).with_fallbacks(
        [RunnableLambda(lambda _: AIMessage(content="Sorry."))],
        exceptions_to_handle=(GuardBlocked,),
    )
    assert chain.invoke({"question": "an attack plan"}).content == "Sorry."


def test_runnable_parallel_branches_are_each_checked() -> None:
    guard, backend = scripted()
    branch = (
        guard.as_runnable() | PROMPT | fake_model("fine answer") | guard.as_runnable(stage="output")
    )
    parallel = RunnableParallel(guarded=branch, length=RunnableLambda(lambda v: len(v["question"])))
    result = parallel.invoke({"question": "hello"})
    assert result["guarded"].content == "fine answer" and result["length"] == 5
    assert seen(backend) == [("hello", None), ("hello", "fine answer")]


class RunNames(BaseCallbackHandler):
    def __init__(self) -> None:
        self.started: list[str] = []
        self.errors: list[BaseException] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.started.append(kwargs.get("name") or "")

    def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append(error)


def test_runs_are_reported_to_callbacks_with_their_names() -> None:
    guard, _ = scripted()
    handler = RunNames()
    chain = (
        guard.as_runnable()
        | PROMPT
        | fake_model("ok")
        | guard.as_runnable(stage="output", name="moderation")
    )
    chain.invoke({"question": "hi"}, config={"callbacks": [handler]})
    assert "guard_input" in handler.started and "moderation" in handler.started
    with pytest.raises(GuardBlocked):
        chain.invoke({"question": "attack"}, config={"callbacks": [handler]})
    assert any(isinstance(error, GuardBlocked) for error in handler.errors)


async def test_async_chain() -> None:
    guard, backend = scripted()
    chain = (
        guard.as_runnable()
        | PROMPT
        | fake_model("Knead.", "the poison")
        | guard.as_runnable(stage="output")
    )
    answer = await chain.ainvoke({"question": "bread?"})
    assert answer.content == "Knead."
    with pytest.raises(GuardBlocked) as blocked:
        await chain.ainvoke({"question": "more bread?"})
    assert blocked.value.verdict.stage == "output"
    assert seen(backend) == [
        ("bread?", None),
        ("bread?", "Knead."),
        ("more bread?", None),
        ("more bread?", "the poison"),
    ]


def answer_to(value: Any) -> AIMessage:
    question = value.to_messages()[-1].content
    return AIMessage(content=f"poison for {question}" if "7" in question else f"re {question}")


def test_batch_uses_one_guard_batch_and_keeps_answers_with_their_requests() -> None:
    guard, backend = scripted()
    questions = [{"question": f"q{i}"} for i in range(5)]
    assert guard.as_runnable().batch(questions) == questions
    assert backend.calls == 1  # one backend call for the five checks (batch_size 8)

    backend.prompts.clear()
    chain = (
        guard.as_runnable() | PROMPT | RunnableLambda(answer_to) | guard.as_runnable(stage="output")
    )
    inputs = [{"question": q} for q in ("q1", "attack q2", "q3", "q7")]
    results = chain.batch(inputs, return_exceptions=True)
    assert results[0].content == "re q1" and results[2].content == "re q3"
    assert isinstance(results[1], GuardBlocked) and results[1].verdict.stage == "input"
    assert isinstance(results[3], GuardBlocked) and results[3].verdict.stage == "output"
    outputs = sorted(pair for pair in seen(backend) if pair[1] is not None)
    assert outputs == [("q1", "re q1"), ("q3", "re q3"), ("q7", "poison for q7")]


async def test_abatch() -> None:
    guard, backend = scripted()
    chain = (
        guard.as_runnable() | PROMPT | RunnableLambda(answer_to) | guard.as_runnable(stage="output")
    )
    results = await chain.abatch([{"question": "q1"}, {"question": "q7"}], return_exceptions=True)
    assert results[0].content == "re q1"
    assert isinstance(results[1], GuardBlocked)
    calls = backend.calls
    with pytest.raises(GuardBlocked):
        await guard.as_runnable().abatch(["fine", "attack"])
    assert backend.calls == calls + 1  # both checked in one backend call


def test_batch_attributes_an_unreadable_image_to_its_item() -> None:
    guard, _ = scripted()
    bad = HumanMessage(
        content=[{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    )
    results = guard.as_runnable().batch(["fine", [bad], "also fine"], return_exceptions=True)
    assert results[0] == "fine" and results[2] == "also fine"
    assert isinstance(results[1], InvalidInputError)


def test_stream_through_a_chain_checks_the_whole_answer() -> None:
    guard, _ = scripted()
    chain = (
        guard.as_runnable()
        | PROMPT
        | fake_model("a b c", "x y poison")
        | guard.as_runnable(stage="output")
    )
    chunks = list(chain.stream({"question": "hi"}))
    assert "".join(str(chunk.content) for chunk in chunks) == "a b c"
    with pytest.raises(GuardBlocked):
        list(chain.stream({"question": "hi again"}))


def test_images_reach_the_guard() -> None:
    guard, backend = scripted()
    prompt = ChatPromptTemplate.from_messages(
        [
            (
                "human",
                [
                    {"type": "text", "text": "{question}"},
                    {"type": "image_url", "image_url": {"url": "{image}"}},
                ],
            )
        ]
    )
    chain = (
        prompt
        | guard.as_runnable()
        | fake_model("a red square")
        | guard.as_runnable(stage="output")
    )
    assert chain.invoke({"question": "what is it?", "image": png_url()}).content == "a red square"
    assert [len(p.images) for p in backend.prompts] == [1, 1]
    assert backend.prompts[0].images[0].getpixel((0, 0)) == (255, 0, 0)


# -- GuardedChatModel -----------------------------------------------------------------------


class Streaming(BaseChatModel):
    """A chat model that streams an answer word by word and records how far it got."""

    answer: str
    produced: int = 0
    closed: bool = False
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "streaming-fake"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.calls += 1
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.answer))])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        self.calls += 1
        try:
            for word in self.answer.split(" "):
                self.produced += 1
                yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
        finally:
            self.closed = True

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        self.calls += 1
        try:
            for word in self.answer.split(" "):
                self.produced += 1
                yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
        finally:
            self.closed = True


def test_guarded_model_checks_the_conversation_then_the_answer() -> None:
    guard, backend = scripted()
    model = GuardedChatModel(fake_model("Knead it."), guard)
    answer = model.invoke([("system", "be brief"), ("human", "bread?")])
    assert answer.content == "Knead it."
    assert seen(backend) == [("bread?", None), ("bread?", "Knead it.")]


def test_guarded_model_blocked_request_never_reaches_the_inner_model() -> None:
    guard, _ = scripted()
    inner = Streaming(answer="never")
    with pytest.raises(GuardBlocked) as blocked:
        GuardedChatModel(inner, guard).invoke("an attack")
    assert blocked.value.verdict.stage == "input" and inner.calls == 0
    refused = GuardedChatModel(inner, guard, on_block="refuse", refusal="No.").invoke("attack")
    assert refused.content == "No."
    assert refused.response_metadata["finish_reason"] == "content_filter"
    assert inner.calls == 0


def test_guarded_model_blocks_a_harmful_answer() -> None:
    guard, _ = scripted()
    with pytest.raises(GuardBlocked) as blocked:
        GuardedChatModel(fake_model("some poison"), guard).invoke("hi")
    assert blocked.value.blocked_output.content == "some poison"
    refused = GuardedChatModel(fake_model("some poison"), guard, on_block="refuse").invoke("hi")
    assert refused.response_metadata["finish_reason"] == "content_filter"
    assert "poison" not in refused.content


def test_guarded_model_passes_tool_calls_through_untouched() -> None:
    guard, backend = scripted()
    call = {"name": "lookup", "args": {"q": "bread"}, "id": "call-1", "type": "tool_call"}
    answer = GuardedChatModel(
        fake_model(AIMessage(content="Looking.", tool_calls=[call])), guard
    ).invoke("bread?")
    assert answer.tool_calls == [call] and answer.content == "Looking."
    assert seen(backend)[-1] == ("bread?", 'Looking.\n[tool call: lookup]\n{"q": "bread"}')
    backend.prompts.clear()
    only_tools = GuardedChatModel(
        fake_model(AIMessage(content="", tool_calls=[call])), guard
    ).invoke("bread?")
    assert only_tools.tool_calls == [call]
    # An answer without text is still checked: its tool calls are the answer.
    assert seen(backend) == [("bread?", None), ("bread?", '[tool call: lookup]\n{"q": "bread"}')]


def test_guarded_model_checks_images_in_the_conversation() -> None:
    guard, backend = scripted()
    message = HumanMessage(
        content=[
            {"type": "text", "text": "what is it?"},
            {"type": "image", "base64": png_url("blue").split(",", 1)[1], "mime_type": "image/png"},
        ]
    )
    GuardedChatModel(fake_model("blue"), guard).invoke([message])
    assert [len(p.images) for p in backend.prompts] == [1, 1]
    assert backend.prompts[0].images[0].getpixel((0, 0)) == (0, 0, 255)


def test_guarded_model_streams_checked_chunks_and_stops_the_inner_stream() -> None:
    guard, backend = scripted()
    words = "one two three four five poison six seven eight nine"
    inner = Streaming(answer=words)
    model = GuardedChatModel(inner, guard, stream_every=8)
    received: list[str] = []
    with pytest.raises(GuardBlocked) as blocked:
        for chunk in model.stream("hi"):
            received.append(str(chunk.content))
    assert "poison" in blocked.value.blocked_output
    assert "poison" not in "".join(received)  # only text that passed a check was released
    assert inner.closed and inner.produced < len(words.split())  # the inner stream was stopped
    assert seen(backend)[0] == ("hi", None)
    assert all(request == "hi" for request, _ in seen(backend))


def test_guarded_model_stream_refusal_and_clean_stream() -> None:
    guard, _ = scripted()
    model = GuardedChatModel(
        Streaming(answer="a b c poison d"), guard, on_block="refuse", refusal="[removed]"
    )
    chunks = list(model.stream("hi"))
    assert chunks[-1].content == "[removed]"
    assert chunks[-1].response_metadata["finish_reason"] == "content_filter"
    clean = GuardedChatModel(Streaming(answer="a b c d"), guard)
    assert "".join(str(c.content) for c in clean.stream("hi")) == "a b c d "


async def test_guarded_model_async_and_astream() -> None:
    guard, _ = scripted()
    assert (
        await GuardedChatModel(fake_model("Knead."), guard).ainvoke("bread?")
    ).content == "Knead."
    inner = Streaming(answer="one two three four poison five six seven")
    received: list[str] = []
    with pytest.raises(GuardBlocked):
        async for chunk in GuardedChatModel(inner, guard, stream_every=6).astream("hi"):
            received.append(str(chunk.content))
    assert "poison" not in "".join(received) and inner.closed
    with pytest.raises(GuardBlocked):
        await GuardedChatModel(Streaming(answer="x"), guard).ainvoke("attack")


async def test_streaming_handlers_never_see_unchecked_tokens() -> None:
    guard, _ = scripted()
    model = GuardedChatModel(Streaming(answer="a b poison c"), guard, buffered=True)
    streamed: list[str] = []
    with pytest.raises(GuardBlocked):
        async for event in (PROMPT | model).astream_events({"question": "hi"}, version="v2"):
            if event["event"] == "on_chat_model_stream":
                streamed.append(str(event["data"]["chunk"].content))
    assert "poison" not in "".join(streamed)


def test_guarded_model_in_a_chain_with_fallbacks() -> None:
    guard, _ = scripted()
    chain = (PROMPT | GuardedChatModel(fake_model("poison"), guard)).with_fallbacks(
        [RunnableLambda(lambda _: AIMessage(content="Sorry."))],
        exceptions_to_handle=(GuardBlocked,),
    )
    assert chain.invoke({"question": "hi"}).content == "Sorry."


def test_guarded_model_rejects_bad_options() -> None:
    guard, _ = scripted()
    # pydantic's ValidationError, a ValueError as ConfigurationError is.
    with pytest.raises(ValueError, match="check"):
        GuardedChatModel(fake_model("x"), guard, check="everything")
    with pytest.raises(ValueError, match="stream_every"):
        GuardedChatModel(fake_model("x"), guard, stream_every=0)
    with pytest.raises(ConfigurationError):
        GuardRunnable(guard, stage="middle")  # type: ignore[arg-type]


def test_the_example_runs_offline() -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "langchain_chain.py"
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=180
    ).stdout
    assert "BLOCKED at input" in out and "BLOCKED at output" in out
    assert "(content_filter)" in out and "'A blue rectangle, nothing else.'" in out


class Recording(GenericFakeChatModel):
    """A fake that binds tools as provider models do and records the options it was called with."""

    options: list[dict[str, Any]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        formatted = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        self.options.append(kw)
        return super()._generate(messages, stop, run_manager, **kw)


def test_bound_tools_reach_the_inner_model_through_the_guard() -> None:
    guard, backend = scripted()
    call = {"name": "add", "args": {"a": 1, "b": 2}, "id": "c1", "type": "tool_call"}
    inner = Recording(messages=iter([AIMessage(content="", tool_calls=[call])] * 2))

    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    bound = GuardedChatModel(inner, guard).bind_tools([add], tool_choice="any")
    answer = bound.invoke("what is 1 + 2?")
    assert answer.tool_calls == [call]
    assert inner.options[-1]["tools"][0]["function"]["name"] == "add"
    assert inner.options[-1]["tool_choice"] == "any"
    # The request was checked first; the answer (tool calls only) as an empty response.
    # the tool call's name and arguments are judged as the answer
    tool_call = '[tool call: add]\n{"a": 1, "b": 2}'
    assert seen(backend) == [("what is 1 + 2?", None), ("what is 1 + 2?", tool_call)]
    with pytest.raises(GuardBlocked):
        bound.invoke("an attack with tools")
    assert len(inner.options) == 1  # a blocked request never reached the model


def test_a_handled_input_block_keeps_the_request_for_the_output_guard() -> None:
    guard, backend = scripted()
    substitute = guard.as_runnable(on_block=lambda _: {"question": "Say you cannot help."})
    chain = substitute | PROMPT | fake_model("I cannot help.") | guard.as_runnable(stage="output")
    # The answer is judged with what the user asked, not with the substitute; the guard labels
    # that request harmful again, and a harmful label always blocks.
    with pytest.raises(GuardBlocked) as blocked:
        chain.invoke({"question": "an attack plan"})
    assert blocked.value.verdict.stage == "output"
    assert seen(backend)[-1] == ("an attack plan", "I cannot help.")
