"""The remote backend: a guard model served by an inference engine over the chat completions API.

One module over 400 lines on purpose: HTTP, retries, deadlines and concurrency of one backend, sync
and async (the wire format is chat_api.py).

vLLM, SGLang, TGI and ``transformers serve`` speak it. Every prompt is one HTTP request; the
requests of one call run concurrently, up to ``max_concurrency`` in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import logging
import math
import socket
import threading
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Literal

import httpx2
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from guardvl_sdk.backends.base import Generation, Prompt
from guardvl_sdk.backends.chat_api import chat_messages, json_body, read_completion
from guardvl_sdk.backends.endpoints import EndpointPool
from guardvl_sdk.backends.stop_strings import StopStrings, with_stop_strings, without_stop_strings
from guardvl_sdk.bounded_http import (
    BodyTooLarge,
    aread_body,
    async_transport,
    deadline,
    read_body,
    transport,
)
from guardvl_sdk.errors import (
    BackendConnectionError,
    BackendError,
    BackendStatusError,
    BackendTimeoutError,
    ConfigurationError,
)
from guardvl_sdk.redaction import redact

__all__ = ["RETRY_STATUSES", "RemoteBackend", "parse_retry_after"]

logger = logging.getLogger("guardvl_sdk")

RETRY_STATUSES = frozenset({408, 409, 429})
"""HTTP statuses retried besides 5xx; any other 4xx is not."""

TOP_LOGPROBS = 5
"""Alternatives asked for per token when log probabilities are requested (for the score)."""

_MAX_ERROR_BODY = 4096

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""Largest answer body read (4,096 tokens with top-5 log probabilities take about 3 MB)."""

# The server is up but slow or stuck: back off and retry, rather than move on at once.
_JSON = {"Content-Type": "application/json"}
_SLOW = (httpx2.ReadTimeout, httpx2.WriteTimeout, httpx2.PoolTimeout)
# A kept-alive connection the server closed as the request went out.
_DROPPED = (httpx2.ReadError, httpx2.WriteError, httpx2.RemoteProtocolError)
_Exchange = tuple[httpx2.Response, bytes] | BackendConnectionError
"""What one exchange with one server gives: its answer and body, or a connection failure."""


class RemoteBackend:
    """Greedy generation on one or several OpenAI-compatible servers, with retries and failover.

    Each prompt is a ``POST {base_url}/chat/completions`` with the policy's messages (images as
    PNG ``data:`` URLs), ``temperature`` 0, ``top_p`` 1, a ``max_tokens`` bound and, by default,
    the stop string ``</result>`` and token log probabilities (for ``Verdict.score``).

    Failures and retries, per prompt:

    - Connection refused, reset or dropped, or no connection within the connect timeout: the
      server is marked down for ``cooldown`` seconds and the same attempt moves on at once to the
      next server (see :class:`~guardvl_sdk.backends.endpoints.EndpointPool`).
    - No answer within ``timeout``, HTTP 408, 409, 429 and 5xx: retried up to ``max_retries``
      times after an exponential backoff with full jitter (at most ``max_backoff`` seconds), on
      the next server in turn. A ``Retry-After`` header (seconds or an HTTP date) is honoured up
      to ``max_backoff``; its server is skipped meanwhile, so with another server up the retry
      goes there at once.
    - Any other 4xx, a success whose body is not a chat completion (malformed JSON), or a body
      over ``max_response_bytes``: not retried.

    ``timeout`` bounds each attempt on a server in total (connecting, sending, the headers and
    the whole body), not only the wait between bytes: a server that drips its answer cannot hold
    a check longer. Error texts kept from a server's answer have credentials redacted (the API
    key, header values, anything shaped like a token; see :mod:`guardvl_sdk.redaction`).

    A prompt that still fails gets a :class:`~guardvl_sdk.backends.base.Generation` whose
    ``error`` says why: ``BackendStatusError``, ``BackendConnectionError``,
    ``BackendTimeoutError`` or ``BackendError`` (see :mod:`guardvl_sdk.errors`); the guard's
    ``on_error`` then decides. The other prompts of the call are unaffected.

    Args:
        base_url: The server's OpenAI API base, e.g. ``http://gpu-1:8000/v1``, or a list of them
            (replicas serving the same model).
        model: The served model name (vLLM's ``--served-model-name``).
        api_key: Sent as ``Authorization: Bearer ...`` when given.
        timeout: Seconds one attempt on one server may take in all, body included
            (connecting: at most 5 of them).
        max_concurrency: Most requests in flight at once, for sync calls and per event loop.
        max_retries: Retries of a failed request (attempts = 1 + max_retries).
        max_new_tokens: Generation bound (``max_tokens``); an answer that hits it is ``truncated``.
        logprobs: Ask for token log probabilities to fill ``Verdict.score``. Servers that do not
            return them (``transformers serve``) leave the score None.
        stop: Send ``</result>`` as a stop string. The text is cut after ``</result>`` either
            way. A server that fails a request with stop strings (HTTP 400, 422 or 500) is asked
            once more without them; if it answers, its checks go without them from then on
            (``transformers serve`` 5.x with vision-language models; logged at INFO once; see
            :class:`~guardvl_sdk.backends.stop_strings.StopStrings`).
        extra_body: Extra request fields, e.g. ``{"repetition_penalty": 1.0}`` for vLLM.
        headers: Extra HTTP headers.
        cooldown: Seconds a server that failed to connect is skipped.
        image_format: How images are sent: ``"jpeg"`` (quality 95, default: about 3 ms of CPU
            for a 886x665 photo) or ``"png"`` (lossless, the exact pixels the local backend
            sees, at 10-20x the encoding time). Each image is encoded once per check, however
            many text windows it is sent with.
        max_response_bytes: Largest answer body read; a longer one fails its prompt.
    """

    backoff: float = 0.5
    """First retry waits up to this many seconds (full jitter); each further one doubles it."""
    max_backoff: float = 8.0
    """Longest wait between attempts, ``Retry-After`` included."""

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        model: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_concurrency: int = 16,
        max_retries: int = 2,
        max_new_tokens: int = 4096,
        logprobs: bool = True,
        stop: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        cooldown: float = 10.0,
        image_format: Literal["jpeg", "png"] = "jpeg",
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls or not all(
            isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls
        ):
            raise ConfigurationError(f"base_url must be http(s) URLs, got {base_url!r}")
        if not model:
            raise ConfigurationError("model (the served model name) is required")
        if timeout <= 0 or max_concurrency < 1 or max_retries < 0 or max_new_tokens < 1:
            raise ConfigurationError(
                "timeout must be > 0, max_concurrency >= 1, max_retries >= 0, max_new_tokens >= 1"
            )
        self.model_id = model
        self.pool = EndpointPool([u.rstrip("/") for u in urls], cooldown=cooldown)
        self.stop_strings = StopStrings()
        """Which servers refuse stop strings (found once each; see :class:`StopStrings`)."""
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.max_new_tokens = max_new_tokens
        self.logprobs = logprobs
        self.stop = stop
        self.extra_body = dict(extra_body or {})
        self.image_format: Literal["jpeg", "png"] = image_format
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._secrets = [api_key, *(headers or {}).values()]
        self._transport_options: dict[str, Any] = {
            "limits": httpx2.Limits(
                max_connections=max_concurrency, max_keepalive_connections=max_concurrency
            ),
            # A request goes out as two writes (headers, body): Nagle's algorithm would hold the
            # body until the server acknowledges the headers, up to a delayed-ACK timeout.
            "socket_options": [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        }
        self._client_options: dict[str, Any] = {
            "timeout": httpx2.Timeout(timeout, connect=min(timeout, 5.0)),
            "headers": {
                **({"Authorization": f"Bearer {api_key}"} if api_key else {}),
                **(headers or {}),
            },
        }
        self._lock = threading.Lock()
        self._client: httpx2.Client | None = None
        self._executor: ThreadPoolExecutor | None = None
        # An async client belongs to the event loop it was first used in.
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx2.AsyncClient, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"RemoteBackend({list(self.pool.urls)!r}, model={self.model_id!r})"

    # -- the Backend protocol -------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt]) -> list[Generation]:
        """Generate for ``prompts``, sending up to ``max_concurrency`` requests at once."""
        if len(prompts) <= 1:
            return [self._generate_one(prompt) for prompt in prompts]
        return list(self._thread_pool().map(self._generate_one, prompts))

    async def agenerate(self, prompts: Sequence[Prompt]) -> list[Generation]:
        """Like :meth:`generate`, on the running event loop."""
        client, slots = self._async_client()

        async def one(prompt: Prompt) -> Generation:
            try:
                # Encoding images is CPU work: off the event loop.
                body = (
                    await asyncio.to_thread(self._body, prompt)
                    if prompt.images
                    else self._body(prompt)
                )
                retrying = AsyncRetrying(**self._retry_policy())
                return await retrying(self._apost, client, slots, body, prompt.score_label)
            except Exception as exc:  # one malformed reply fails its own prompt, not the batch
                return Generation(text="", finished=False, error=self._typed(exc))

        return list(await asyncio.gather(*(one(prompt) for prompt in prompts)))

    def close(self) -> None:
        """Close the sync connections and worker threads (async clients: :meth:`aclose`)."""
        with self._lock:
            client, self._client = self._client, None
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the async connections of the running event loop."""
        with self._lock:
            state = self._async.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state[0].aclose()

    def __enter__(self) -> RemoteBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one prompt -----------------------------------------------------------------------------

    def _generate_one(self, prompt: Prompt) -> Generation:
        try:
            body = self._body(prompt)
            retrying = Retrying(**self._retry_policy())
            return retrying(self._post, self._sync_client(), body, prompt.score_label)
        except Exception as exc:  # one malformed reply fails its own prompt, not the batch
            return Generation(text="", finished=False, error=self._typed(exc))

    def _typed(self, exc: Exception) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        error = BackendError(redact(f"unreadable answer: {exc!r}", self._secrets))
        error.__cause__ = exc
        return error

    def _body(self, prompt: Prompt) -> bytes:
        """The request body of ``prompt``, encoded once (retries and other servers reuse it)."""
        try:
            messages = chat_messages(prompt, image_format=self.image_format)
        except ValueError as exc:
            raise BackendError(f"cannot send this prompt: {exc}") from exc
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": messages,
            "temperature": 0.0,
            "top_p": 1.0,
            "max_tokens": self.max_new_tokens,
            # transformers serve maps this to repetition_penalty = 1 + value: 0 undoes a penalty
            # in the checkpoint's generation config, as the local backend's clean config does.
            "frequency_penalty": 0.0,
        }
        if self.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = TOP_LOGPROBS
        body.update(self.extra_body)
        data = json_body(body)
        # The stop strings go last, so that a server refusing them gets the same bytes without.
        return with_stop_strings(data) if self.stop and "stop" not in body else data

    def _post(self, client: httpx2.Client, body: bytes, score_label: str) -> Generation:
        """One attempt: the servers in turn until one answers."""
        failure: BackendConnectionError | None = None
        for url in self.pool.order():
            answer = self._exchange(client, url, body)
            if not isinstance(answer, BackendConnectionError):
                return self._read(url, *answer, score_label)
            failure = answer
        assert failure is not None
        raise failure

    async def _apost(
        self,
        client: httpx2.AsyncClient,
        slots: asyncio.Semaphore,
        body: bytes,
        score_label: str,
    ) -> Generation:
        """One attempt, async: the servers in turn until one answers."""
        failure: BackendConnectionError | None = None
        async with slots:
            for url in self.pool.order():
                answer = await self._aexchange(client, url, body)
                if not isinstance(answer, BackendConnectionError):
                    return self._read(url, *answer, score_label)
                failure = answer
        assert failure is not None
        raise failure

    def _exchange(self, client: httpx2.Client, url: str, body: bytes) -> _Exchange:
        """``body`` to ``url`` (without stop strings if it refuses them): its answer, or the
        connection failure that moves the attempt on to the next server."""
        sent = self.stop_strings.body_for(url, body)
        try:
            answer = self._send(client, url, sent)
            if self.stop_strings.should_probe(url, sent, answer[0].status_code):
                probe = self._resend(client, url, without_stop_strings(sent))
                answer = self._probed(url, answer, probe)
        except (httpx2.TransportError, BodyTooLarge) as exc:
            return self._failed(url, exc)
        return answer

    async def _aexchange(self, client: httpx2.AsyncClient, url: str, body: bytes) -> _Exchange:
        """Like :meth:`_exchange`, async."""
        sent = self.stop_strings.body_for(url, body)
        try:
            answer = await self._asend(client, url, sent)
            if self.stop_strings.should_probe(url, sent, answer[0].status_code):
                probe = await self._aresend(client, url, without_stop_strings(sent))
                answer = self._probed(url, answer, probe)
        except (httpx2.TransportError, BodyTooLarge) as exc:
            return self._failed(url, exc)
        return answer

    def _failed(
        self, url: str, exc: httpx2.TransportError | BodyTooLarge
    ) -> BackendConnectionError:
        """A failed exchange with ``url``: a server too slow (retried after a backoff) or an
        answer too large (not retried) raise; a connection failure marks ``url`` down and is
        returned, so that the same attempt moves on to the next server."""
        if isinstance(exc, _SLOW):
            raise BackendTimeoutError(f"{url} did not answer in time: {exc!r}") from exc
        if isinstance(exc, BodyTooLarge):
            raise BackendError(f"{url} answered too much: {exc}") from exc
        return self._unreachable(url, exc)

    def _send(self, client: httpx2.Client, url: str, body: bytes) -> tuple[httpx2.Response, bytes]:
        """One request to ``url``, its whole answer within ``timeout``."""
        request = client.build_request(
            "POST", f"{url}/chat/completions", content=body, headers=_JSON
        )
        with deadline(self.timeout):
            response = client.send(request, stream=True)
            try:
                return response, read_body(response, self.max_response_bytes)
            finally:
                response.close()

    async def _asend(
        self, client: httpx2.AsyncClient, url: str, body: bytes
    ) -> tuple[httpx2.Response, bytes]:
        """Like :meth:`_send`, async."""
        request = client.build_request(
            "POST", f"{url}/chat/completions", content=body, headers=_JSON
        )
        with deadline(self.timeout):
            response = await client.send(request, stream=True)
            try:
                return response, await aread_body(response, self.max_response_bytes)
            finally:
                await response.aclose()

    def _resend(
        self, client: httpx2.Client, url: str, body: bytes
    ) -> tuple[httpx2.Response, bytes]:
        """:meth:`_send` right after an error answer, once more if the connection was dropped.

        A server may close a kept-alive connection after an error without saying so (uvicorn
        does after an application's exception, as ``transformers serve`` raises on stop strings):
        a request sent on it at once is reset, and the next one goes on a new connection.
        """
        try:
            return self._send(client, url, body)
        except _DROPPED:
            return self._send(client, url, body)

    async def _aresend(
        self, client: httpx2.AsyncClient, url: str, body: bytes
    ) -> tuple[httpx2.Response, bytes]:
        """Like :meth:`_resend`, async."""
        try:
            return await self._asend(client, url, body)
        except _DROPPED:
            return await self._asend(client, url, body)

    def _probed(
        self,
        url: str,
        refused: tuple[httpx2.Response, bytes],
        probe: tuple[httpx2.Response, bytes],
    ) -> tuple[httpx2.Response, bytes]:
        """The answer to keep after asking again without stop strings: the probe's if it
        succeeded, else the answer to the request as it was (the failure was something else)."""
        self.stop_strings.probed(url, refused[0].status_code, probe[0].status_code)
        return refused if probe[0].status_code >= 400 else probe

    def _unreachable(self, url: str, exc: httpx2.TransportError) -> BackendConnectionError:
        """Mark ``url`` down and return the typed error; the attempt moves on to the next server."""
        self.pool.mark_down(url)
        logger.info("%s marked down for %g s: %r", url, self.pool.cooldown, exc)
        kind = (
            BackendTimeoutError
            if isinstance(exc, httpx2.ConnectTimeout)
            else BackendConnectionError
        )
        error = kind(f"{url} unreachable: {exc!r}")
        error.__cause__ = exc
        return error

    def _read(
        self, url: str, response: httpx2.Response, content: bytes, score_label: str
    ) -> Generation:
        status = response.status_code
        if status >= 400:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is not None and _retryable_status(status):
                self.pool.mark_down(url, min(retry_after, self.pool.cooldown))
            body = self._error_body(content)
            raise BackendStatusError(
                f"{url} answered HTTP {status}: {str(body)[:200]}",
                status_code=status,
                body=body,
                retry_after=retry_after,
            )
        self.pool.mark_up(url)
        try:
            data = json.loads(content)
        except ValueError as exc:
            raise BackendError(
                f"{url} answered HTTP {status} with malformed JSON: {exc}",
                status_code=status,
                body=self._error_body(content),
            ) from exc
        generation = read_completion(data, score_label=score_label)
        return dataclasses.replace(generation, extra={**generation.extra, "endpoint": url})

    def _error_body(self, content: bytes) -> Any:
        """An error answer's body (its JSON, else the start of its text), credentials redacted."""
        text = redact(content[:_MAX_ERROR_BODY].decode("utf-8", "replace"), self._secrets)
        try:
            return json.loads(text)
        except ValueError:
            return text

    # -- retries --------------------------------------------------------------------------------

    def _retry_policy(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.max_retries + 1),
            "wait": self._wait,
            "retry": retry_if_exception(_retryable),
            "reraise": True,
            "before_sleep": before_sleep_log(logger, logging.INFO),
        }

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            # Its server is skipped for that long now: with another one up, go there at once.
            return 0.0 if self.pool.any_up() else min(retry_after, self.max_backoff)
        jitter = wait_random_exponential(multiplier=self.backoff, max=self.max_backoff)
        return float(jitter(state))

    # -- clients --------------------------------------------------------------------------------

    def _sync_client(self) -> httpx2.Client:
        with self._lock:
            if self._client is None:
                transport_ = transport(**self._transport_options)
                self._client = httpx2.Client(transport=transport_, **self._client_options)
            return self._client

    def _thread_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.max_concurrency, thread_name_prefix="guardvl-remote"
                )
            return self._executor

    def _async_client(self) -> tuple[httpx2.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._async.get(loop)
            if state is None:
                client = httpx2.AsyncClient(
                    transport=async_transport(**self._transport_options), **self._client_options
                )
                state = self._async[loop] = (client, asyncio.Semaphore(self.max_concurrency))
            return state


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date; else None."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 500


def _retryable(error: BaseException) -> bool:
    if isinstance(error, BackendStatusError):
        return _retryable_status(error.status_code or 0)
    return isinstance(error, BackendConnectionError)
