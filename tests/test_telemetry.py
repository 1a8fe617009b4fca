"""OpenTelemetry: one span per check, with the documented attributes and no content."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from guardvl_sdk import Guard, Prompt
from guardvl_sdk.telemetry import CAPTURE_CONTENT, SPAN_NAME
from guardvl_sdk.testing import FakeChatServer, ScriptedBackend
from tests.conftest import RESULT_HARMFUL_REQUEST
from tests.test_hooks import judge

SECRET = "my-secret-request-text"

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)  # once per process: the API refuses a second one
    return _EXPORTER


def test_one_check_one_span_without_content(exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    guard = Guard(ScriptedBackend(RESULT_HARMFUL_REQUEST, model_id="scripted-guard"))
    tracer = trace.get_tracer("the-app")
    with tracer.start_as_current_span("handle-request") as parent:
        verdict = guard.check(SECRET)
    spans = [s for s in exporter.get_finished_spans() if s.name == SPAN_NAME]
    assert len(spans) == 1
    (span,) = spans
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "guardrail",
        "gen_ai.request.model": "scripted-guard",
        "gen_ai.usage.input_tokens": 0,
        "gen_ai.usage.output_tokens": verdict.usage.completion_tokens,
        "guardvl.stage": "input",
        "guardvl.policy": verdict.policy,
        "guardvl.decision": "blocked",
        "guardvl.status": "ok",
        "guardvl.request_label": "harmful",
        "guardvl.latency_ms": verdict.latency_ms,
        "guardvl.cached": False,
    }
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time == pytest.approx(verdict.latency_ms * 1e6, abs=2e6)
    recorded = str(span.to_json())
    assert SECRET not in recorded and "hurt" not in recorded  # neither request nor reasoning


def test_reasoning_only_when_turned_on(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter.clear()
    monkeypatch.setenv(CAPTURE_CONTENT, "true")
    Guard(ScriptedBackend(RESULT_HARMFUL_REQUEST)).check(SECRET)
    (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})[
        "guardvl.reasoning"
    ] == "Step 1: the user asks how to hurt someone."
    assert SECRET not in str(span.to_json())


class Down:
    model_id = "down"

    def generate(self, prompts: list[Prompt]) -> list[object]:
        raise ConnectionError("refused")


def test_a_failed_check_is_an_error_span(exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    Guard(Down()).check("hi")  # type: ignore[arg-type]
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert (span.attributes or {})["guardvl.decision"] == "blocked"


# -- the adapters' checks nest under the caller's span ------------------------------------------
#
# A LangChain run may hop threads (RunnableParallel runs its branches in an executor) and an
# async call may go through the event loop's executor: the check spans must still be children of
# the span the caller had open, in the caller's trace.


def _nested_checks(exporter: InMemorySpanExporter, parent: trace.Span, expected: int) -> None:
    spans = [s for s in exporter.get_finished_spans() if s.name == SPAN_NAME]
    context = parent.get_span_context()
    assert len(spans) == expected
    for span in spans:
        assert span.parent is not None and span.parent.span_id == context.span_id
        assert span.context is not None and span.context.trace_id == context.trace_id


def _langchain_chain(guard: Guard) -> Any:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.runnables import RunnableParallel

    from guardvl_sdk.integrations.langchain import GuardedChatModel

    def model() -> GuardedChatModel:
        return GuardedChatModel(GenericFakeChatModel(messages=iter(["Knead it."] * 4)), guard)

    # Two guarded models side by side: LangChain runs the branches on its executor threads.
    return guard.as_runnable() | RunnableParallel(first=model(), second=model())


def test_langchain_checks_nest_under_the_callers_span(exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    guard = Guard(ScriptedBackend(judge))
    with trace.get_tracer("the-app").start_as_current_span("handle-request") as parent:
        answers = _langchain_chain(guard).invoke("How do I bake bread?")
    assert answers["first"].content == "Knead it."
    # The chain's input guard, then each guarded model's input and output checks.
    _nested_checks(exporter, parent, expected=5)


async def test_langchain_async_checks_nest_under_the_callers_span(
    exporter: InMemorySpanExporter,
) -> None:
    exporter.clear()
    guard = Guard(ScriptedBackend(judge))
    with trace.get_tracer("the-app").start_as_current_span("handle-request") as parent:
        answers = await _langchain_chain(guard).ainvoke("How do I bake bread?")
    assert answers["second"].content == "Knead it."
    _nested_checks(exporter, parent, expected=5)


@pytest.fixture
def upstream() -> Iterator[FakeChatServer]:
    """The app's model, over real loopback HTTP."""
    with FakeChatServer("Knead it.") as fake:
        yield fake


def test_openai_checks_nest_under_the_callers_span(
    exporter: InMemorySpanExporter, upstream: FakeChatServer
) -> None:
    from openai import OpenAI

    from guardvl_sdk.integrations.openai import guard_openai

    exporter.clear()
    client = guard_openai(
        OpenAI(base_url=upstream.url, api_key="none"), Guard(ScriptedBackend(judge))
    )
    messages: Any = [{"role": "user", "content": "How do I bake bread?"}]
    with trace.get_tracer("the-app").start_as_current_span("handle-request") as parent:
        completion = client.chat.completions.create(model="app-model", messages=messages)
        stream = client.chat.completions.create(model="app-model", messages=messages, stream=True)
        streamed = "".join(
            chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
        )
    assert completion.choices[0].message.content == streamed == "Knead it."
    # Each call: the request, then the answer (a stream's final check at least).
    spans = [s for s in exporter.get_finished_spans() if s.name == SPAN_NAME]
    assert len(spans) >= 4
    _nested_checks(exporter, parent, expected=len(spans))


async def test_openai_async_checks_nest_under_the_callers_span(
    exporter: InMemorySpanExporter, upstream: FakeChatServer
) -> None:
    from openai import AsyncOpenAI

    from guardvl_sdk.integrations.openai import guard_openai

    exporter.clear()
    client = guard_openai(
        AsyncOpenAI(base_url=upstream.url, api_key="none"), Guard(ScriptedBackend(judge))
    )
    messages: Any = [{"role": "user", "content": "How do I bake bread?"}]
    with trace.get_tracer("the-app").start_as_current_span("handle-request") as parent:
        completion = await client.chat.completions.create(model="app-model", messages=messages)
        stream = await client.chat.completions.create(
            model="app-model", messages=messages, stream=True
        )
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert completion.choices[0].message.content == streamed == "Knead it."
    spans = [s for s in exporter.get_finished_spans() if s.name == SPAN_NAME]
    assert len(spans) >= 4
    _nested_checks(exporter, parent, expected=len(spans))


def test_a_check_outside_any_span_is_a_root(exporter: InMemorySpanExporter) -> None:
    """The nesting above is the caller's span, not one the adapters or the guard left open."""
    exporter.clear()
    Guard(ScriptedBackend(judge)).check("How do I bake bread?")
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
