"""OpenTelemetry: one span per check (extra ``guardvl-sdk[otel]``, ``opentelemetry-api`` only).

Without ``opentelemetry-api`` installed, or without a tracer provider set, this does nothing.
The span, ``guardvl.check``, is a child of whatever span is current when the check returns (your
request handler's, a LangChain run's), starts when the check's generation started and carries:

=============================  ==============================================================
``gen_ai.operation.name``      ``guardrail``
``gen_ai.request.model``       the guard model
``gen_ai.usage.input_tokens``  prompt tokens (images included)
``gen_ai.usage.output_tokens`` tokens the guard generated
``guardvl.stage``              ``input`` (a request) or ``output`` (a response in context)
``guardvl.policy``             the policy's name
``guardvl.decision``           ``blocked`` or ``allowed``
``guardvl.status``             ``ok``, ``parse_error``, ``truncated`` or ``error``
``guardvl.request_label``      ``harmful`` / ``unharmful``, when read
``guardvl.response_label``     the same, for a response check
``guardvl.score``              P(harmful), when the backend gives one
``guardvl.categories``         the violated categories of a custom policy, when any
``guardvl.latency_ms``         the check's wall time
``guardvl.cached``             whether the verdict came from the cache
=============================  ==============================================================

No content is recorded: neither the user's text nor images nor the guard's reasoning. Setting
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` (the GenAI conventions' switch) adds
the guard's reasoning as ``guardvl.reasoning``; the user's content is never recorded.
"""

from __future__ import annotations

import os
import time
from typing import Any

from guardvl_sdk.verdict import Status, Verdict

__all__ = ["SPAN_NAME", "record_check"]

SPAN_NAME = "guardvl.check"
CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

_tracer: Any = None


def _get_tracer() -> Any:
    global _tracer
    if _tracer is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _tracer = False
        else:  # a proxy until a provider is set, then it delegates to that provider
            from importlib.metadata import version  # not guardvl_sdk.__version__: no cycle

            _tracer = trace.get_tracer("guardvl_sdk", version("guardvl-sdk"))
    return _tracer


def attributes(verdict: Verdict) -> dict[str, Any]:
    """The span attributes of a verdict (see the module docstring)."""
    found: dict[str, Any] = {
        "gen_ai.operation.name": "guardrail",
        "gen_ai.request.model": verdict.model or "",
        "gen_ai.usage.input_tokens": verdict.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": verdict.usage.completion_tokens,
        "guardvl.stage": verdict.stage,
        "guardvl.policy": verdict.policy or "",
        "guardvl.decision": "blocked" if verdict.blocked else "allowed",
        "guardvl.status": verdict.status.value,
        "guardvl.latency_ms": verdict.latency_ms,
        "guardvl.cached": verdict.cached,
    }
    if verdict.request is not None:
        found["guardvl.request_label"] = verdict.request.value
    if verdict.response is not None:
        found["guardvl.response_label"] = verdict.response.value
    if verdict.score is not None:
        found["guardvl.score"] = verdict.score
    if verdict.categories:
        found["guardvl.categories"] = list(verdict.categories)
    if verdict.reasoning and os.environ.get(CAPTURE_CONTENT, "").lower() == "true":
        found["guardvl.reasoning"] = verdict.reasoning
    return found


def record_check(verdict: Verdict) -> None:
    """Record one finished check as a span under the current one (a no-op without a provider)."""
    tracer = _get_tracer()
    if not tracer:
        return
    end = time.time_ns()
    span = tracer.start_span(
        SPAN_NAME, start_time=end - int(verdict.latency_ms * 1e6), attributes=attributes(verdict)
    )
    if verdict.status is Status.ERROR:
        from opentelemetry.trace import StatusCode

        span.set_status(StatusCode.ERROR, verdict.error or "guard backend failed")
    span.end(end_time=end)
