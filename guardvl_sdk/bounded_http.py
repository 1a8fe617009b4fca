"""HTTP with a total deadline per request and a cap on the body, for every call the SDK makes.

httpx's timeouts bound each socket operation, not a request: a server that drips one byte of
its headers or body just inside the read timeout holds a call forever, and one that streams a
never-ending body grows the client without limit. The transports built here give every read,
write and connect only the time left until the deadline set with :func:`deadline` (a context
variable, so it follows the request through threads' own contexts and asyncio tasks), and
:func:`read_body` / :func:`aread_body` stop at ``max_bytes``.

A ``connect`` hook sees every TCP connection attempt before it is made, and may refuse it: the
image fetcher checks the address there once more, and tests record attempts without connecting.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any, Generic, TypedDict, TypeVar, Unpack

import httpcore2
import httpx2

__all__ = [
    "BodyTooLarge",
    "ConnectHook",
    "TransportOptions",
    "aread_body",
    "async_transport",
    "deadline",
    "read_body",
    "transport",
]

ConnectHook = Callable[[str, int], None]
"""``(host, port)`` of a connection about to be made; raise to refuse it."""

_deadline: ContextVar[float | None] = ContextVar("guardvl_http_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every request made inside this block ends within ``seconds`` from now (or times out)."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """The timeout of one socket operation: the given one, cut to the time left."""
    end = _deadline.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise error("the request's total deadline passed")
    return left if timeout is None else min(timeout, left)


N = TypeVar("N")  # what a wrapper wraps


class _Wrapping(Generic[N]):
    """A wrapper of one of httpcore's network streams or backends."""

    def __init__(self, inner: N) -> None:
        self._inner = inner


class _Stream(_Wrapping[httpcore2.NetworkStream], httpcore2.NetworkStream):
    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        left = _left(timeout, httpcore2.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _AsyncStream(_Wrapping[httpcore2.AsyncNetworkStream], httpcore2.AsyncNetworkStream):
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, _left(timeout, httpcore2.ReadTimeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, _left(timeout, httpcore2.WriteTimeout))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.AsyncNetworkStream:
        left = _left(timeout, httpcore2.ConnectTimeout)
        return _AsyncStream(await self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Connecting(_Wrapping[N]):
    """What both network backends share: the ``connect`` hook, then the deadline.

    ``connect_tcp``'s other arguments (``local_address``, ``socket_options``) go on to the
    wrapped backend as httpcore gives them.
    """

    def __init__(self, inner: N, connect: ConnectHook | None) -> None:
        super().__init__(inner)
        self._connect = connect

    def _connect_timeout(self, host: str, port: int, timeout: float | None) -> float | None:
        """Run the ``connect`` hook, then give the connect timeout cut to the time left."""
        if self._connect is not None:
            self._connect(host, port)
        return _left(timeout, httpcore2.ConnectTimeout)


class _Backend(_Connecting[httpcore2.NetworkBackend], httpcore2.NetworkBackend):
    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, *args: Any, **kwargs: Any
    ) -> httpcore2.NetworkStream:
        left = self._connect_timeout(host, port, timeout)
        return _Stream(self._inner.connect_tcp(host, port, left, *args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore2.NetworkStream:
        raise httpcore2.ConnectError("unix sockets are not used")


class _AsyncBackend(_Connecting[httpcore2.AsyncNetworkBackend], httpcore2.AsyncNetworkBackend):
    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, *args: Any, **kwargs: Any
    ) -> httpcore2.AsyncNetworkStream:
        left = self._connect_timeout(host, port, timeout)
        return _AsyncStream(await self._inner.connect_tcp(host, port, left, *args, **kwargs))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("unix sockets are not used")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class TransportOptions(TypedDict, total=False):
    """What :func:`transport` and :func:`async_transport` take, all optional.

    Attributes:
        limits: The connection pool's limits (httpx2's default).
        socket_options: Socket options of every connection.
        connect: Sees (and may refuse) every TCP connection attempt.
    """

    limits: httpx2.Limits | None
    socket_options: Iterable[Any] | None
    connect: ConnectHook | None


def _pool_options(options: TransportOptions, inner: Any, backend: type[Any]) -> dict[str, Any]:
    limits = options.get("limits") or httpx2.Limits()
    return {
        "ssl_context": httpx2.create_ssl_context(trust_env=False),
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
        "socket_options": options.get("socket_options"),
        "network_backend": backend(inner, options.get("connect")),
    }


def transport(**options: Unpack[TransportOptions]) -> httpx2.HTTPTransport:
    """An ``httpx2`` transport whose requests honour :func:`deadline` (and ``connect``)."""
    result = httpx2.HTTPTransport(trust_env=False)
    # httpx2's transport takes no network backend, so its connection pool is replaced by one
    # that has ours (the pool is what the transport sends every request through).
    result._pool = httpcore2.ConnectionPool(
        **_pool_options(options, httpcore2.SyncBackend(), _Backend)
    )
    return result


def async_transport(**options: Unpack[TransportOptions]) -> httpx2.AsyncHTTPTransport:
    """Like :func:`transport`, for ``httpx2.AsyncClient``."""
    result = httpx2.AsyncHTTPTransport(trust_env=False)
    result._pool = httpcore2.AsyncConnectionPool(
        **_pool_options(options, httpcore2.AnyIOBackend(), _AsyncBackend)
    )
    return result


class BodyTooLarge(Exception):
    """A response body went past its ``max_bytes``."""


def read_body(response: httpx2.Response, max_bytes: int) -> bytes:
    """Read a streamed response's body, raising :class:`BodyTooLarge` past ``max_bytes``."""
    body = _Body(response, max_bytes)
    for chunk in response.iter_bytes():
        body.add(chunk)
    return bytes(body.data)


async def aread_body(response: httpx2.Response, max_bytes: int) -> bytes:
    """Like :func:`read_body`, for an async streamed response."""
    body = _Body(response, max_bytes)
    async for chunk in response.aiter_bytes():
        body.add(chunk)
    return bytes(body.data)


class _Body:
    """A body read so far, refused as soon as it (or its declared length) passes the cap."""

    def __init__(self, response: httpx2.Response, max_bytes: int) -> None:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise BodyTooLarge(f"body declares {declared} bytes, over the {max_bytes} byte limit")
        self.data = bytearray()
        self.max_bytes = max_bytes

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.max_bytes:
            raise BodyTooLarge(f"body is over the {self.max_bytes} byte limit")
