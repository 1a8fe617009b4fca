"""What the guarded OpenAI chat-completions and Responses wrappers share besides their one
``create()`` flow (:mod:`~guardvl_sdk.integrations.openai_create`).

The guarded stream objects both return, and the argument allowlist check (each wrapper passes its
own list of forwarded ``create()`` arguments; the ``extra_body`` fields forwarded are the same for
both).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

from guardvl_sdk.errors import ConfigurationError

__all__ = [
    "FORWARDED_EXTRA_BODY",
    "AsyncGuardedStream",
    "GuardedStream",
    "refuse_unknown_fields",
]

T = TypeVar("T")

FORWARDED_EXTRA_BODY = frozenset(
    {"top_k", "min_p", "repetition_penalty", "length_penalty", "min_tokens", "seed"}
)
"""``extra_body`` fields forwarded to the model: sampling options that carry no content."""


def refuse_unknown_fields(
    kwargs: dict[str, Any], forwarded: frozenset[str], what: str = "guard_openai"
) -> None:
    """Refuse any create() argument, or extra_body field, outside the allowlist ``forwarded``."""
    unknown = sorted(set(kwargs) - forwarded)
    extra = kwargs.get("extra_body")
    if extra is not None and not isinstance(extra, dict):
        raise ConfigurationError("guard_openai: extra_body must be a dict")
    unknown += [f"extra_body[{key!r}]" for key in sorted(set(extra or {}) - FORWARDED_EXTRA_BODY)]
    if unknown:
        raise ConfigurationError(
            f"{what} does not forward {', '.join(unknown)}: the guard would not see what it "
            "sends, or would not judge what comes back (call .unguarded on purpose to send it "
            "without the guard)"
        )


class _Stream(Generic[T]):
    """What both guarded stream objects hold: the chunks the caller gets, and the upstream.

    Attributes:
        response: The upstream ``httpx2.Response`` (None for a refused request).
    """

    def __init__(self, chunks: Any, upstream: Any = None) -> None:
        self._chunks = chunks
        self._upstream = upstream
        self.response = getattr(upstream, "response", None)


class GuardedStream(_Stream[T]):
    """A guarded ``Stream[ChatCompletionChunk]``: iterate it, close it, use it in ``with``.

    Chunks come out once a check covering them has passed; a block closes the upstream stream.
    """

    _chunks: Iterator[T]

    def __iter__(self) -> Iterator[T]:
        return self._chunks

    def __next__(self) -> T:
        return next(self._chunks)

    def close(self) -> None:
        """Stop the stream and release the connection."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        if self._upstream is not None:
            self._upstream.close()

    def __enter__(self) -> GuardedStream[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncGuardedStream(_Stream[T]):
    """A guarded ``AsyncStream[ChatCompletionChunk]``: ``async for``, ``close()``, ``async with``.

    Chunks come out once a check covering them has passed; a block closes the upstream stream.
    """

    _chunks: AsyncIterator[T]

    def __aiter__(self) -> AsyncIterator[T]:
        return self._chunks

    async def __anext__(self) -> T:
        return await self._chunks.__anext__()

    async def close(self) -> None:
        """Stop the stream and release the connection."""
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        if self._upstream is not None:
            await self._upstream.close()

    async def __aenter__(self) -> AsyncGuardedStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
