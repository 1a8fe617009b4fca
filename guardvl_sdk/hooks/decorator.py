"""``@guarded``: checks around any VLM function, sync or async, plain or streaming.

``@guarded(guard)`` checks the request before the wrapped function runs and its answer before the
caller gets it. It works on sync and async functions, sync and async generators (streamed
answers) and methods, and keeps the function's name, docstring and signature::

    @guarded(guard)
    def answer(prompt: str, image: Image.Image) -> str: ...
"""

from __future__ import annotations

import collections.abc as abc
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from guardvl_sdk.errors import ConfigurationError, GuardBlocked
from guardvl_sdk.hooks import flow
from guardvl_sdk.hooks.events import BlockedCall, Guardian, Reporter
from guardvl_sdk.hooks.options import HookArgs, HookOptions, OnBlock
from guardvl_sdk.hooks.signature import Extractor, RequestFinder, require_str_output
from guardvl_sdk.hooks.stream import OneAnswer
from guardvl_sdk.inputs import clean_text

if TYPE_CHECKING:
    from typing import Unpack

    from guardvl_sdk.verdict import Verdict

__all__ = ["guarded"]

F = TypeVar("F", bound=Callable[..., Any])


def guarded(
    guard: Guardian,
    *,
    on_block: OnBlock = "raise",
    text: Extractor | None = None,
    image: Extractor | None = None,
    output: Callable[[Any], str | None] | None = None,
    **options: Unpack[HookArgs],
) -> Callable[[F], F]:
    """Check every call of a VLM function: the request on the way in, the answer on the way out.

    The request is read from parameters named like :data:`TEXT_PARAMETERS` (a str, or an
    OpenAI-format chat ``messages`` list: the text and image parts of its user turns) and
    :data:`IMAGE_PARAMETERS`, unless ``text`` / ``image`` extractors say otherwise. The answer is
    the returned str (or each yielded str chunk), unless ``output`` says where its text is. The
    output check sends the request with the answer, so the guard judges the answer in context; it
    does not re-run the request check. Every answer is checked, an empty one too. One call costs
    one input and one output check (a stream, one more per ``stream_every`` characters).

    Args:
        guard: The guard that decides. Its ``on_error`` applies when it cannot decide
            (fail-closed by default).
        check: ``"both"`` (default), ``"input"`` or ``"output"``.
        on_block: ``"raise"`` (default): raise :class:`~guardvl_sdk.errors.GuardBlocked` with the
            verdict and, for an output block, the withheld answer as ``blocked_output``.
            ``"refuse"``: return (or, for a stream, yield) ``refusal`` instead; only for
            functions whose answer is a str. A callable: called with a :class:`BlockedCall`; what
            it returns is returned to the caller (for a stream, yielded last unless ``None``).
        refusal: The answer given instead of a blocked one under ``on_block="refuse"``.
        text: Called with the call's arguments (``self`` first for a method); returns the
            request text, or a chat message list.
        image: Called with the call's arguments; returns an image, a list of images, or None.
        output: Called with the return value (or each streamed chunk); returns its text, or
            None for no text.
        stream_every: Check a streamed answer each time this many characters were added
            (default 500); None checks only the complete answer.
        stream_window: Bound the cost of mid-stream checks: each sends the text added since the
            previous check, extended back to this many characters of context (choose it larger
            than ``stream_every`` so checks overlap). None sends all the text so far. The final
            check always sees the whole answer.
        buffered: Release nothing from a stream before the final check of the whole answer has
            passed (mid-stream checks then only stop a harmful stream early).
        on_verdict: Called with a :class:`GuardEvent` after every check. Its exceptions are
            logged, never propagated, and never change the decision.

    Raises:
        ConfigurationError: At decoration, for invalid options or a function with nothing
            checkable; at the first call, when the arguments or the answer hold nothing checkable.
    """
    settings = HookOptions.of(on_block=on_block, **options)
    settings = settings.accepting("raise", "refuse", handler=True)
    for option, value in (("text", text), ("image", image), ("output", output)):
        if value is not None and not callable(value):
            raise ConfigurationError(f"{option}= must be a callable, not {type(value).__name__}")

    def decorate(fn: F) -> F:
        if isinstance(fn, staticmethod | classmethod):
            raise ConfigurationError(
                f"put @guarded below @{type(fn).__name__}, so it wraps the function itself"
            )
        if not callable(fn):
            raise ConfigurationError(f"@guarded needs a function, not {type(fn).__name__}")
        name = getattr(fn, "__qualname__", repr(fn))
        stream = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        if inspect.iscoroutinefunction(on_block) and not is_async:
            raise ConfigurationError(f"an async on_block handler needs an async {name}()")
        call = _Guarded(
            fn=fn,
            reporter=Reporter(guard, name, settings.on_verdict),
            options=settings,
            find_request=RequestFinder.for_function(fn, name, text, image),
            output=output,
        )
        if settings.checks_output and output is None:
            require_str_output(fn, name, stream, "its answer is not a str: pass output=")
        if on_block == "refuse":
            require_str_output(fn, name, stream, "on_block='refuse' answers with a str")
        if inspect.isasyncgenfunction(fn):
            wrapper: Callable[..., Any] = _async_gen_wrapper(call)
        elif inspect.isgeneratorfunction(fn):
            wrapper = _gen_wrapper(call)
        elif inspect.iscoroutinefunction(fn):
            wrapper = _async_wrapper(call)
        else:
            wrapper = _sync_wrapper(call)
        return cast("F", functools.wraps(fn)(wrapper))

    return decorate


@dataclass(frozen=True)
class _Guarded:
    """Everything one guarded function needs at call time; the wrappers hold one each."""

    fn: Callable[..., Any]
    reporter: Reporter
    options: HookOptions
    find_request: RequestFinder
    output: Callable[[Any], str | None] | None

    @property
    def name(self) -> str:
        return self.reporter.name

    def answer_text(self, value: Any) -> str:
        """The text of an answer (or of one streamed chunk) to check."""
        self.require_str(value)
        if self.output is not None:
            found = self.output(value)
            if found is None:
                return ""
            return clean_text(found, what=f"the text output= found in {self.name}()'s answer")
        if isinstance(value, str):
            return value
        hint = ""
        if isinstance(value, abc.Iterator | abc.AsyncIterator | abc.Awaitable):
            hint = " (to check a stream, make the function a generator that yields its chunks)"
        raise ConfigurationError(
            f"{self.name}() answered with {type(value).__name__}, not a str: pass output= to say "
            f"where its text is{hint}"
        )

    def require_str(self, value: Any) -> None:
        if self.options.on_block == "refuse" and not isinstance(value, str):
            raise ConfigurationError(
                f"on_block='refuse' replaces answers with a str, but {self.name}() answered with "
                f"{type(value).__name__}: use on_block='raise' or a handler"
            )

    def blocked(
        self,
        verdict: Verdict,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        output: Any = None,
        released: str = "",
    ) -> Any:
        """Act on a block: raise, or return the refusal or the handler's value."""
        on_block = self.options.on_block
        if on_block == "raise":
            raise GuardBlocked(verdict, blocked_output=output)
        if on_block == "refuse":
            return self.options.refusal
        assert callable(on_block)  # validated at decoration
        return on_block(BlockedCall(self.name, verdict, args, dict(kwargs), output, released))

    def gates(self) -> OneAnswer[Any, Any]:
        return OneAnswer(self.options.stream, self.answer_text)

    def stream_blocked(
        self, gates: OneAnswer[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Callable[[Verdict, int], Any]:
        """The stream driver's ``on_block``: the withheld output is all the text so far."""

        def on_block(verdict: Verdict, key: int) -> Any:
            gate = gates.gate
            value = self.blocked(verdict, args, kwargs, output=gate.text, released=gate.released)
            if isinstance(value, Awaitable):
                return _yielding_awaited(value)
            return _yielding(value)

        return on_block


def _yielding(value: Any) -> list[Any]:
    """What a stream yields for a block's value: nothing for None, else the value."""
    return [] if value is None else [value]


async def _yielding_awaited(value: Awaitable[Any]) -> list[Any]:
    return _yielding(await value)


def _answer_flow(call: _Guarded, args: tuple[Any, ...], kwargs: dict[str, Any]) -> flow.Flow[Any]:
    """One call of a function that returns its answer: check, call, check the answer."""
    request = call.find_request(args, kwargs)
    if call.options.checks_input:
        (verdict,) = yield flow.Check(call.reporter, request)
        if verdict.blocked:
            return (yield flow.Resolve(call.blocked(verdict, args, kwargs)))
    result = yield flow.Call(call.fn, args, kwargs)
    call.require_str(result)
    if not call.options.checks_output:
        return result
    (verdict,) = yield flow.Check(call.reporter, request, (call.answer_text(result),))
    if verdict.blocked:
        return (yield flow.Resolve(call.blocked(verdict, args, kwargs, output=result)))
    return result


def _stream_flow(call: _Guarded, args: tuple[Any, ...], kwargs: dict[str, Any]) -> flow.Flow[Any]:
    """One call of a generator: check, then its chunks through the stream gate (an iterator)."""
    request = call.find_request(args, kwargs)
    if call.options.checks_input:
        (verdict,) = yield flow.Check(call.reporter, request)
        if verdict.blocked:
            value = yield flow.Resolve(call.blocked(verdict, args, kwargs))
            return (yield flow.PassStream(_yielding(value)))
    chunks = call.fn(*args, **kwargs)  # a generator: calling it runs nothing yet
    close = chunks.close if hasattr(chunks, "close") else chunks.aclose
    if not call.options.checks_output:
        return (yield flow.PassStream(chunks, call.require_str, close))
    gates = call.gates()
    on_block = call.stream_blocked(gates, args, kwargs)
    # close: stops the VLM's generation when blocked or abandoned
    return (yield flow.GuardStream(chunks, gates, call.reporter, request, on_block, close))


def _sync_wrapper(call: _Guarded) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return flow.run_flow(_answer_flow(call, args, kwargs))

    return wrapper


def _async_wrapper(call: _Guarded) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await flow.arun_flow(_answer_flow(call, args, kwargs))

    return wrapper


def _gen_wrapper(call: _Guarded) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        yield from flow.run_flow(_stream_flow(call, args, kwargs))

    return wrapper


def _async_gen_wrapper(call: _Guarded) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        chunks = await flow.arun_flow(_stream_flow(call, args, kwargs))
        try:
            async for item in chunks:
                yield item
        finally:
            await chunks.aclose()  # stops the VLM's generation when blocked or abandoned

    return wrapper
