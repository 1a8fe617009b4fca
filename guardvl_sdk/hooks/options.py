"""The options every way of guarding a call shares, as one validated object.

``@guarded``, :class:`~guardvl_sdk.hooks.GuardSession`, ``guard_openai`` and the LangChain
adapters take the same options with the same meaning; :class:`HookOptions` checks them once, with
one vocabulary for ``on_block``:

- ``"raise"``: a block raises :class:`~guardvl_sdk.errors.GuardBlocked` (every entry point);
- ``"refuse"``: the blocked answer is replaced by ``refusal`` (entry points that answer);
- ``"return"``: the blocked verdict is returned for the caller to act on (explicit hooks);
- a callable: called with what the entry point documents; its value stands for the answer.

Each entry point accepts the modes that make sense for it (:meth:`HookOptions.accepting`), and
takes the other options as keyword arguments typed by :class:`HookArgs`
(``**options: Unpack[HookArgs]``), passed on to :meth:`HookOptions.of`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from guardvl_sdk.errors import ConfigurationError

if TYPE_CHECKING:
    from typing import Unpack

    from guardvl_sdk.hooks.events import BlockedCall, GuardEvent

__all__ = [
    "DEFAULT_REFUSAL",
    "BlockMode",
    "CheckMode",
    "HookArgs",
    "HookOptions",
    "OnBlock",
    "StreamOptions",
]

CheckMode = Literal["both", "input", "output"]

BlockMode = Literal["raise", "refuse", "return"]
"""The named ways to act on a block (see the module docstring)."""

OnBlock = Literal["raise", "refuse"] | Callable[["BlockedCall"], Any]
"""What ``@guarded`` accepts as ``on_block``."""

DEFAULT_REFUSAL = "Sorry, I can't help with that."

_BLOCK_MODES: tuple[BlockMode, ...] = ("raise", "refuse", "return")


@dataclass(frozen=True)
class StreamOptions:
    """How a streamed answer is checked while it streams.

    Attributes:
        every: Check each time this many characters were added; None checks only the whole
            answer.
        window: Characters of earlier context each mid-stream check includes; None: all the
            text so far. The final check always sees the whole answer.
        buffered: Release nothing before the final check of the whole answer has passed.
    """

    every: int | None = 500
    window: int | None = None
    buffered: bool = False

    def __post_init__(self) -> None:
        for option, value in (("stream_every", self.every), ("stream_window", self.window)):
            if value is not None and (type(value) is not int or value < 1):
                raise ConfigurationError(f"{option} must be a positive int or None, not {value!r}")


class HookArgs(TypedDict, total=False):
    """The keyword options every entry point takes besides ``on_block`` (its modes differ).

    Attributes:
        check: ``"both"`` (default), ``"input"`` or ``"output"``.
        refusal: The answer given instead of a blocked one under ``on_block="refuse"``.
        stream_every: Check a streamed answer each time this many characters were added (default
            500); None checks only the whole answer.
        stream_window: Characters of earlier context each mid-stream check includes (default
            None: all the text so far).
        buffered: Release nothing from a stream before the final check has passed.
        on_verdict: Called with a :class:`~guardvl_sdk.hooks.GuardEvent` after every check.
    """

    check: CheckMode
    refusal: str
    stream_every: int | None
    stream_window: int | None
    buffered: bool
    on_verdict: Callable[[GuardEvent], Any] | None


# The flat stream option names entry points take, as StreamOptions names them.
_STREAM_ARGS = {"stream_every": "every", "stream_window": "window", "buffered": "buffered"}


@dataclass(frozen=True)
class HookOptions:
    """The options of one guarded call site, validated when built.

    Attributes:
        check: ``"both"`` (default), ``"input"`` (the request only) or ``"output"`` (the answer,
            judged with its request).
        on_block: A :data:`BlockMode` or a handler (see the module docstring).
        refusal: The answer given instead of a blocked one under ``on_block="refuse"``.
        stream: How streamed answers are checked.
        on_verdict: Called with a :class:`~guardvl_sdk.hooks.GuardEvent` after every check; its
            exceptions are logged, never propagated, and never change the decision.
    """

    check: CheckMode = "both"
    on_block: BlockMode | Callable[..., Any] = "raise"
    refusal: str = DEFAULT_REFUSAL
    stream: StreamOptions = field(default_factory=StreamOptions)
    on_verdict: Callable[[GuardEvent], Any] | None = None

    def __post_init__(self) -> None:
        if self.check not in ("both", "input", "output"):
            raise ConfigurationError(
                f"check must be 'both', 'input' or 'output', not {self.check!r}"
            )
        if not (self.on_block in _BLOCK_MODES or callable(self.on_block)):
            raise ConfigurationError(
                f"on_block must be 'raise', 'refuse', 'return' or a callable: {self.on_block!r}"
            )
        if not isinstance(self.refusal, str):
            raise ConfigurationError(f"refusal must be a str, not {type(self.refusal).__name__}")
        if self.on_verdict is not None and not callable(self.on_verdict):
            raise ConfigurationError(
                f"on_verdict must be a callable, not {type(self.on_verdict).__name__}"
            )

    @classmethod
    def of(
        cls, *, on_block: BlockMode | Callable[..., Any] = "raise", **options: Unpack[HookArgs]
    ) -> HookOptions:
        """Build from the flat keyword options the entry points take (the defaults: above)."""
        flat: dict[str, Any] = dict(options)
        stream = {_STREAM_ARGS[name]: flat.pop(name) for name in _STREAM_ARGS if name in flat}
        return cls(on_block=on_block, stream=StreamOptions(**stream), **flat)

    def accepting(self, *modes: BlockMode, handler: bool = False) -> HookOptions:
        """These options, or ``ConfigurationError`` if ``on_block`` is not one of ``modes``.

        Args:
            modes: The named modes the entry point supports.
            handler: Whether it supports a callable ``on_block``.
        """
        if self.on_block in modes or (handler and callable(self.on_block)):
            return self
        names = [repr(mode) for mode in modes] + (["a callable"] if handler else [])
        listed = ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1]
        raise ConfigurationError(f"on_block must be {listed}, not {self.on_block!r}")

    @property
    def checks_input(self) -> bool:
        """Whether the request is checked before the call."""
        return self.check != "output"

    @property
    def checks_output(self) -> bool:
        """Whether the answer is checked after the call."""
        return self.check != "input"
