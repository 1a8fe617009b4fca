"""The one guarded ``create()`` both OpenAI wrappers run: chat completions and the Responses API.

:meth:`GuardedCreate._flow` is the whole rule of a guarded call: check the request; on a block
raise, or answer with the API's refusal (a result, or a stream of it); call the client's
``create``; then judge every answer in the request's context and decide, or send a stream
through the stream gate. What differs between the two APIs (reading the request, its answers, its
refusals, its stream's gates) is what a subclass defines; what differs between sync and async is
only the driver (:func:`~guardvl_sdk.hooks.run_flow` or :func:`~guardvl_sdk.hooks.arun_flow`)
and the stream object the caller gets (:class:`GuardedStream` or :class:`AsyncGuardedStream`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from guardvl_sdk.errors import GuardBlocked
from guardvl_sdk.hooks import (
    Call,
    Check,
    Flow,
    Gates,
    GuardStream,
    HookOptions,
    PassStream,
    Reporter,
    Request,
)

if TYPE_CHECKING:
    from guardvl_sdk.guard import Guard
    from guardvl_sdk.verdict import Verdict

__all__ = ["GuardedCreate"]

R = TypeVar("R")  # the API's result: ChatCompletion, Response
C = TypeVar("C")  # one chunk (event) of its stream
S = TypeVar("S")  # the guarded stream object the caller gets

Answer = str | Mapping[str, Any]


class GuardedCreate(ABC, Generic[R, C]):
    """A guarded ``create()`` of one OpenAI API; the sync and async classes only drive it.

    Attributes:
        what: The call's name, as the reporter and error messages give it.
    """

    what: ClassVar[str]

    def __init__(self, wrapped: Any, guard: Guard, options: HookOptions) -> None:
        self._wrapped = wrapped
        self._options = options
        self._reporter = Reporter(guard, self.what, options.on_verdict)

    def _flow(self, kwargs: dict[str, Any], stream_type: Callable[[Any, Any], S]) -> Flow[R | S]:
        """One guarded ``create(**kwargs)``; a stream as ``stream_type(chunks, upstream)``."""
        request = self._start(kwargs)
        stream = bool(kwargs.get("stream"))
        if self._options.checks_input:
            (verdict,) = yield Check(self._reporter, request)
            if verdict.blocked:
                if self._options.on_block == "raise":
                    raise GuardBlocked(verdict)
                if stream:
                    return stream_type((yield PassStream(self._refusal_stream(kwargs))), None)
                return self._refusal(kwargs)
        result = yield Call(self._wrapped.create, (), kwargs)
        if not self._options.checks_output:
            return stream_type((yield PassStream(result)), result) if stream else result
        if stream:
            gates, on_block = self._stream_gates(kwargs)
            # close: stops the server's generation when blocked or abandoned
            guarded = GuardStream(result, gates, self._reporter, request, on_block, result.close)
            return stream_type((yield guarded), result)
        answers = self._answers(result)  # n > 1: every choice, in one guard batch
        verdicts = yield Check(self._reporter, request, list(answers.values()))
        return self._decided(result, dict(zip(answers, verdicts, strict=True)))

    @abstractmethod
    def _start(self, kwargs: dict[str, Any]) -> Request:
        """Read the request, refusing any argument the guard does not forward."""

    @abstractmethod
    def _refusal(self, kwargs: dict[str, Any]) -> R:
        """The answer to a blocked request under ``on_block="refuse"``."""

    @abstractmethod
    def _refusal_stream(self, kwargs: dict[str, Any]) -> list[C]:
        """The stream answering a blocked request under ``on_block="refuse"``."""

    @abstractmethod
    def _answers(self, result: R) -> Mapping[int, Answer]:
        """What the guard judges of a result: each answer (its text, or an assistant message
        with its tool calls), by the key :meth:`_decided` gets its verdict under."""

    @abstractmethod
    def _decided(self, result: R, verdicts: dict[int, Verdict]) -> R:
        """The result, with blocked answers refused, or ``GuardBlocked``."""

    @abstractmethod
    def _stream_gates(
        self, kwargs: dict[str, Any]
    ) -> tuple[Gates[C, C], Callable[[Verdict, int], list[C]]]:
        """A stream's gates, and what a block does (raise, or the refusal that ends it)."""
