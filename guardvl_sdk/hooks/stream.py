"""The stream gate: what of a streamed answer is released to the caller, and when.

A streamed answer's chunks are held back until a check covering them has passed: a check is due
each ``stream_every`` characters (sending the text since the last check, extended back
``stream_window`` characters, or all of it), and a final check sees the whole answer. Without
``buffered``, chunks are released when a mid-stream check passes, so everything the caller gets
has passed a check of the text up to it; with ``buffered``, only after the final check. Content
a mid-stream check does not judge (a tool call's arguments, which are judged whole as part of the
answer) holds its chunk and every chunk after it until the final check has passed.

:class:`StreamGate` holds one answer; a :class:`Gates` holds the answers of one stream (one for
most, one per choice for an OpenAI stream with ``n > 1``). :func:`guard_stream` and
:func:`aguard_stream` are the one sync and the one async driver every streaming entry point runs:
to change *when* a stream is checked or released, change this module.
"""

from __future__ import annotations

import inspect
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from guardvl_sdk.checks import Due
from guardvl_sdk.hooks.options import StreamOptions

if TYPE_CHECKING:
    from guardvl_sdk.verdict import Verdict

__all__ = ["Due", "Gates", "OneAnswer", "StreamGate", "aguard_stream", "guard_stream"]

C = TypeVar("C")
O = TypeVar("O")  # noqa: E741  # the output chunk type
C_contra = TypeVar("C_contra", contravariant=True)


@dataclass
class StreamGate(Generic[C]):
    """The chunks of one streamed answer, held back until a check covering them has passed.

    Attributes:
        options: When checks are due and whether release waits for the end.
        text: All the answer's text so far.
        released: The text the caller has received.
        held: Chunks not yet released.
        to_end: Whether a chunk held until the final check was added (see :meth:`add`).
    """

    options: StreamOptions
    text: str = ""
    released: str = ""
    held: list[C] = field(default_factory=list)
    checked_chars: int = 0
    checked_all: bool = False
    to_end: bool = False
    _held_chars: list[int] = field(default_factory=list)  # the text length after each held chunk
    _barrier: int | None = None  # held[_barrier:] wait for the final check

    def add(self, chunk: C, chunk_text: str, *, to_end: bool = False) -> tuple[str, int] | None:
        """Hold a chunk; return the text to check now and where it starts, or None.

        Args:
            chunk: The chunk.
            chunk_text: The text it adds to the answer (judged mid-stream).
            to_end: The chunk carries content judged only by the final check (a tool call's
                arguments): it and every chunk after it are held until that check passed.
        """
        if to_end and self._barrier is None:
            self._barrier = len(self.held)
            self.to_end = True
        self.held.append(chunk)
        self.text += chunk_text
        self._held_chars.append(len(self.text))
        every = self.options.every
        if every is None or len(self.text) - self.checked_chars < every:
            return None
        # The window reaches back `window` characters but never starts after the text the last
        # check ended at: a chunk longer than the window must not slip between two checks.
        start = 0 if self.options.window is None else len(self.text) - self.options.window
        start = max(0, min(start, self.checked_chars))
        self.checked_chars, self.checked_all = len(self.text), start == 0
        return self.text[start:], start

    def finish(self) -> str | None:
        """The whole answer for the final check, or None if the last check already saw it all.

        An empty answer is returned too (``""``): it is checked like any other; so is one whose
        chunks carried content held to the end (``to_end``), which only the final check judges.
        """
        if self.checked_all and self.checked_chars == len(self.text) and not self.to_end:
            return None
        self.checked_chars, self.checked_all = len(self.text), True
        return self.text

    def release(self, final: bool = False) -> list[C]:
        """The held chunks the caller may now have (all of them after the final check)."""
        if self.options.buffered and not final:
            return []
        cut = len(self.held) if final or self._barrier is None else self._barrier
        chunks, self.held = self.held[:cut], self.held[cut:]
        if cut:
            self.released = self.text[: self._held_chars[cut - 1]]
        self._held_chars = self._held_chars[cut:]
        if self._barrier is not None:
            self._barrier = 0
        return chunks


class Gates(Protocol[C_contra, O]):
    """The answers of one stream, by key, as the drivers use them."""

    def add(self, chunk: C_contra) -> list[Due]:
        """Hold a chunk; return the checks due now."""
        ...

    def release(self, key: int) -> list[O]:
        """What the caller may have of answer ``key`` after a mid-stream check passed."""
        ...

    def finish(self) -> list[Due]:
        """The final checks still due (each of a whole answer)."""
        ...

    def release_all(self) -> list[O]:
        """Everything held, after the final checks passed."""
        ...


class OneAnswer(Generic[C, O]):
    """:class:`Gates` for a stream of one answer.

    Args:
        options: The stream options.
        text_of: The text of a chunk (it may raise to refuse a chunk it cannot read).
        wrap: What the caller gets for a released chunk (default: the chunk).
        held: Whether a chunk carries content only the final check judges (a tool call's
            arguments): it and every chunk after it are held until that check passed.
        answer_of: The answer the final check judges, from the whole text and every chunk of
            the stream (an assistant message with the tool calls the chunks assembled); default:
            the text.
    """

    def __init__(
        self,
        options: StreamOptions,
        text_of: Callable[[C], str],
        wrap: Callable[[C], O] | None = None,
        *,
        held: Callable[[C], bool] | None = None,
        answer_of: Callable[[str, list[C]], str | Mapping[str, Any]] | None = None,
    ) -> None:
        self.gate: StreamGate[C] = StreamGate(options)
        self._text_of = text_of
        self._wrap = wrap
        self._held = held
        self._answer_of = answer_of
        self._chunks: list[C] = []  # every chunk, kept only for answer_of

    def add(self, chunk: C) -> list[Due]:
        if self._answer_of is not None:
            self._chunks.append(chunk)
        to_end = self._held is not None and self._held(chunk)
        due = self.gate.add(chunk, self._text_of(chunk), to_end=to_end)
        return [] if due is None else [Due(0, *due)]

    def release(self, key: int) -> list[O]:
        return self._out(self.gate.release())

    def finish(self) -> list[Due]:
        due = self.gate.finish()
        if due is None:
            return []
        return [Due(0, due if self._answer_of is None else self._answer_of(due, self._chunks))]

    def release_all(self) -> list[O]:
        return self._out(self.gate.release(final=True))

    def _out(self, chunks: list[C]) -> list[O]:
        wrap = self._wrap
        return [wrap(c) for c in chunks] if wrap is not None else chunks  # type: ignore[return-value]


def guard_stream(
    chunks: Iterable[C],
    gates: Gates[C, O],
    check: Callable[[Due, bool], Verdict],
    on_block: Callable[[Verdict, int], Iterable[O]],
    close: Callable[[], object] | None = None,
) -> Iterator[O]:
    """Stream ``chunks`` to the caller through ``gates``, checking as they come.

    Args:
        chunks: The upstream stream.
        gates: Holds the answers and says when checks are due.
        check: Called with the check due and whether the answer is still streaming; returns
            the verdict (reported).
        on_block: Called with a blocking verdict and the key of the answer it blocked; raises, or
            returns what the caller gets instead (the stream then ends).
        close: Called when the stream ends, is blocked or is abandoned: stops the upstream
            generation.
    """
    try:
        for chunk in chunks:
            for due in gates.add(chunk):
                verdict = check(due, True)
                if verdict.blocked:
                    yield from on_block(verdict, due.key)
                    return
                yield from gates.release(due.key)
        for due in gates.finish():
            verdict = check(due, False)
            if verdict.blocked:
                yield from on_block(verdict, due.key)
                return
        yield from gates.release_all()
    finally:
        if close is not None:
            close()


async def aguard_stream(
    chunks: AsyncIterable[C],
    gates: Gates[C, O],
    check: Callable[[Due, bool], Awaitable[Verdict]],
    on_block: Callable[[Verdict, int], Iterable[O] | Awaitable[Iterable[O]]],
    close: Callable[[], Awaitable[object]] | None = None,
) -> AsyncGenerator[O, None]:
    """Like :func:`guard_stream`, for an async stream; ``on_block`` may be a coroutine."""
    try:
        async for chunk in chunks:
            for due in gates.add(chunk):
                verdict = await check(due, True)
                if verdict.blocked:
                    for item in await _resolved(on_block(verdict, due.key)):
                        yield item
                    return
                for item in gates.release(due.key):
                    yield item
        for due in gates.finish():
            verdict = await check(due, False)
            if verdict.blocked:
                for item in await _resolved(on_block(verdict, due.key)):
                    yield item
                return
        for item in gates.release_all():
            yield item
    finally:
        if close is not None:
            await close()


async def _resolved(value: Iterable[O] | Awaitable[Iterable[O]]) -> Iterable[O]:
    return await value if inspect.isawaitable(value) else value
