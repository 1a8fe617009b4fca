"""OpenTelemetry: one span per check, with the documented attributes and no content."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from guardvl_sdk import Guard, Prompt
from guardvl_sdk.telemetry import CAPTURE_CONTENT, SPAN_NAME
from guardvl_sdk.testing import ScriptedBackend
from tests.conftest import RESULT_HARMFUL_REQUEST

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
