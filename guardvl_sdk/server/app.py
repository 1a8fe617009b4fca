"""The ASGI app of ``guardvl serve``: a moderation API, the native check API, LiteLLM's guardrail.

Every check request passes the same gates, in order: draining (503), API key (401), body size
(413), JSON (400), the fields (400), the image count (413); then the guard checks within the
request timeout. When the guard cannot decide (backend down, timeout), the answer is a
fail-closed verdict (``flagged: true`` with the error), never an unflagged 200.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from guardvl_sdk.backends.base import AsyncBackend
from guardvl_sdk.checks import CheckInput
from guardvl_sdk.errors import AuditError, BackendError, GuardOutputError, InvalidInputError
from guardvl_sdk.guard import Guard
from guardvl_sdk.server.answers import litellm_answer, moderation_result
from guardvl_sdk.server.metrics import Metrics
from guardvl_sdk.server.parsing import count_images, read_check, read_litellm, read_moderation
from guardvl_sdk.verdict import Status, Verdict

__all__ = ["LITELLM_PATH", "ServerSettings", "ServerState", "create_app"]

logger = logging.getLogger("guardvl_sdk.server")

LITELLM_PATH = "/beta/litellm_basic_guardrail_api"
"""Where LiteLLM's Generic Guardrail API posts (it appends this path to the ``api_base``)."""

_READY_TTL = 5.0  # seconds a readiness probe's answer is reused


@dataclass(frozen=True)
class ServerSettings:
    """How the service guards itself.

    Attributes:
        api_keys: Accepted keys, sent as ``Authorization: Bearer KEY`` or ``x-api-key: KEY``
            (LiteLLM's header). Empty: no authentication (bind to loopback only).
        max_body_bytes: Largest request body; a larger one gets 413.
        max_images: Most images one request may carry; more get 413.
        timeout: Seconds one request's checks may take; past it the answer is fail-closed.
        shutdown_grace: Seconds a shutdown waits for checks in flight before stopping.
    """

    api_keys: tuple[str, ...] = ()
    max_body_bytes: int = 16 * 1024 * 1024
    max_images: int = 8
    timeout: float = 60.0
    shutdown_grace: float = 30.0


class ServerState:
    """What the app's handlers share: the guard, the settings, metrics, and the drain flag."""

    def __init__(self, guard: Guard, settings: ServerSettings) -> None:
        self.guard = guard
        self.settings = settings
        self.metrics = Metrics()
        self.draining = False
        self.in_flight = 0
        self._keys = [key.encode() for key in settings.api_keys]
        self._ready_at = -_READY_TTL
        self._ready = False

    def authorized(self, request: Request) -> bool:
        """Whether the request carries an accepted key (compared in constant time)."""
        if not self._keys:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key")
        if not given:
            return False
        # Compare against every key, so the time taken does not tell which one nearly matched.
        matches = [hmac.compare_digest(given.encode(), key) for key in self._keys]
        return any(matches)

    async def ready(self) -> bool:
        """Whether the guard's backend answers a probe (cached for a few seconds)."""
        if self.draining:
            return False
        now = time.monotonic()
        if now - self._ready_at < _READY_TTL:
            return self._ready
        self._ready = await self._probe()
        self._ready_at = time.monotonic()
        return self._ready

    async def _probe(self) -> bool:
        backend = self.guard.backend
        prompt = self.guard.policy.render("readiness probe")
        try:
            work = (
                backend.agenerate([prompt])
                if isinstance(backend, AsyncBackend)
                else asyncio.to_thread(backend.generate, [prompt])
            )
            generations = await asyncio.wait_for(work, self.settings.timeout)
        except Exception as exc:
            logger.warning(json.dumps({"event": "ready_probe_failed", "error": repr(exc)}))
            return False
        return all(g.error is None for g in generations)


class _Refused(Exception):
    """A request refused before checking: an HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def _error(status: int, message: str, kind: str) -> JSONResponse:
    # OpenAI's error shape, so its clients raise their typed errors with our message.
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status)


async def _read_json(request: Request, state: ServerState) -> Any:
    limit = state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _Refused(413, f"request body over {limit} bytes", "request_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _Refused(413, f"request body over {limit} bytes", "request_too_large")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Refused(400, f"the body is not valid JSON: {exc}", "invalid_request_error") from exc


def _count_images(items: Sequence[CheckInput], state: ServerState) -> None:
    count = sum(count_images(item) for item in items)
    if count > state.settings.max_images:
        limit = state.settings.max_images
        raise _Refused(413, f"{count} images, over the limit of {limit}", "request_too_large")


def _undecided(guard: Guard, item: CheckInput, error: str) -> Verdict:
    """The fail-closed verdict of a check the guard could not finish in time."""
    return Verdict(
        status=Status.ERROR,
        error=error,
        blocked=guard.on_error != "allow",
        stage="output" if item.response is not None else "input",
        model=guard.model_id,
        policy=guard.policy.name,
    )


async def _check(state: ServerState, items: list[CheckInput]) -> list[Verdict]:
    guard, timeout = state.guard, state.settings.timeout
    try:
        return await asyncio.wait_for(guard.acheck_batch(items), timeout)
    except TimeoutError:
        return [
            _undecided(guard, item, f"timeout: no verdict within {timeout} s") for item in items
        ]


Reader = Callable[[Any], list[CheckInput]]
Answer = Callable[[list[Verdict], list[CheckInput], ServerState], Any]


def _endpoint(api: str, read: Reader, answer: Answer, *, block_invalid: bool = False) -> Any:
    """A check endpoint: the gates, the checks, metrics and one JSON log line."""

    async def handle(request: Request) -> Response:
        state: ServerState = request.app.state.guardvl
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        began = time.perf_counter()
        fields: dict[str, Any] = {"event": "check", "api": api, "request_id": request_id}
        state.in_flight += 1
        state.metrics.in_flight.inc()
        try:
            response = await _answer(request, state, read, answer, block_invalid, fields)
        finally:
            state.in_flight -= 1
            state.metrics.in_flight.dec()
        seconds = time.perf_counter() - began
        state.metrics.latency.labels(api).observe(seconds)
        if logger.isEnabledFor(logging.INFO):  # no JSON encoding for a line nobody reads
            fields.update(status=response.status_code, duration_ms=round(seconds * 1000, 2))
            logger.info(json.dumps(fields))
        response.headers["x-request-id"] = request_id
        return response

    async def _answer(
        request: Request,
        state: ServerState,
        read: Reader,
        answer: Answer,
        block_invalid: bool,
        fields: dict[str, Any],
    ) -> Response:
        try:
            if state.draining:
                raise _Refused(503, "the guard service is shutting down", "unavailable")
            if not state.authorized(request):
                raise _Refused(401, "missing or invalid API key", "authentication_error")
            body = await _read_json(request, state)
            items = read(body)
            _count_images(items, state)
            verdicts = await _check(state, items)
        except _Refused as exc:
            state.metrics.refused.labels(str(exc.status)).inc()
            fields["error"] = exc.kind
            return _error(exc.status, str(exc), exc.kind)
        except InvalidInputError as exc:
            fields["error"] = "invalid_input"
            if block_invalid:  # LiteLLM: content the guard cannot check is blocked, not passed
                return JSONResponse({"action": "BLOCKED", "blocked_reason": f"guardvl: {exc}"})
            state.metrics.refused.labels("400").inc()
            return _error(400, str(exc), "invalid_request_error")
        except (BackendError, GuardOutputError) as exc:  # on_error="raise"
            fields["error"] = type(exc).__name__
            return _error(502, f"the guard could not decide: {exc}", "guard_error")
        except AuditError as exc:  # no decision goes out without its audit record
            fields["error"] = "audit"
            return _error(500, f"audit log failed: {exc}", "audit_error")
        for verdict in verdicts:
            state.metrics.observe(api, verdict)
        fields["checks"] = [
            {"stage": v.stage, "status": v.status.value, "blocked": v.blocked} for v in verdicts
        ]
        answered = answer(verdicts, items, state)
        if isinstance(answered, bytes):  # JSON already (a verdict as the Python API dumps it)
            return Response(answered, media_type="application/json")
        return JSONResponse(answered)

    return handle


def _moderations(verdicts: list[Verdict], items: list[CheckInput], state: ServerState) -> Any:
    categories = [c.name for c in state.guard.policy.categories]
    return {
        "id": f"modr-{uuid.uuid4().hex}",
        "model": state.guard.model_id,
        "results": [
            moderation_result(v, item, categories) for v, item in zip(verdicts, items, strict=True)
        ],
    }


def _native(verdicts: list[Verdict], items: list[CheckInput], state: ServerState) -> Any:
    return verdicts[0].model_dump_json().encode()  # pydantic's own encoder: no dict in between


def _litellm(verdicts: list[Verdict], items: list[CheckInput], state: ServerState) -> Any:
    return litellm_answer(verdicts[0])


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _ready(request: Request) -> Response:
    state: ServerState = request.app.state.guardvl
    if await state.ready():
        return JSONResponse({"status": "ready", "model": state.guard.model_id})
    reason = "shutting down" if state.draining else "the guard backend does not answer"
    return JSONResponse({"status": "unavailable", "reason": reason}, 503)


async def _metrics(request: Request) -> Response:
    state: ServerState = request.app.state.guardvl
    if not state.authorized(request):
        return _error(401, "missing or invalid API key", "authentication_error")
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")


def create_app(guard: Guard, settings: ServerSettings | None = None) -> Starlette:
    """The service's ASGI app around ``guard``; run it with uvicorn (see :func:`serve`).

    Args:
        guard: Any guard; its options (``on_error``, ``fetch_images``, ``audit``, cache) apply.
        settings: Keys, limits and timeouts; default :class:`ServerSettings`.
    """
    state = ServerState(guard, settings or ServerSettings())
    routes = [
        Route(
            "/v1/moderations",
            _endpoint("moderations", read_moderation, _moderations),
            methods=["POST"],
        ),
        Route("/v1/guard/check", _endpoint("check", _one(read_check), _native), methods=["POST"]),
        Route(
            LITELLM_PATH,
            _endpoint(
                "litellm", lambda body: [read_litellm(body).check], _litellm, block_invalid=True
            ),
            methods=["POST"],
        ),
        Route("/health", _health, methods=["GET"]),
        Route("/ready", _ready, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.guardvl = state
    return app


def _one(read: Callable[[Any], CheckInput]) -> Reader:
    return lambda body: [read(body)]
