"""``guard.session()``: explicit pre-prompt and post-response hooks, for call sites you own."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from guardvl_sdk.errors import ConfigurationError, GuardBlocked
from guardvl_sdk.hooks.events import GuardEvent, Guardian, Reporter, logger
from guardvl_sdk.hooks.messages import Request, RequestReader
from guardvl_sdk.hooks.options import HookOptions

if TYPE_CHECKING:
    from guardvl_sdk.verdict import Verdict

__all__ = ["GuardSession"]


class GuardSession:
    """Explicit pre-prompt and post-response hooks for one exchange, for call sites you own.

    Get one from :meth:`Guard.session <guardvl_sdk.guard.Guard.session>`::

        with guard.session() as s:
            s.before(prompt, image)  # raises GuardBlocked if the request is blocked
            answer = my_vlm(prompt, image)
            s.after(answer)  # judged in the context of the request given to before()

    Each check is one guard call; ``after`` does not re-run the request check. Every answer is
    checked, an empty one too. A session holds one request at a time (a later ``before``
    replaces it) and is not meant to be shared between threads. Leaving the ``with`` block after
    an allowed ``before`` without an ``after`` logs a warning: the answer went unchecked.

    Args:
        guard: The guard that decides.
        on_block: ``"raise"`` (default): a block raises
            :class:`~guardvl_sdk.errors.GuardBlocked` (with the answer as ``blocked_output`` for
            ``after``). ``"return"``: the blocked verdict is returned; the caller must act on
            ``verdict.blocked``.
        on_verdict: Called with a :class:`GuardEvent` after every check (see
            :func:`~guardvl_sdk.hooks.guarded`).
        name: Reported as :attr:`GuardEvent.function` and in log lines.
    """

    def __init__(
        self,
        guard: Guardian,
        *,
        on_block: Literal["raise", "return"] = "raise",
        on_verdict: Callable[[GuardEvent], Any] | None = None,
        name: str = "session",
    ) -> None:
        options = HookOptions(on_block=on_block, on_verdict=on_verdict).accepting("raise", "return")
        self.on_block = on_block
        self._reporter = Reporter(guard, name, options.on_verdict)
        self._request: Request | None = None
        self._pending = False

    def before(
        self, text: str | None = None, image: Any = None, *, messages: Any = None
    ) -> Verdict:
        """Check the request (text, images or both) and keep it as the context for :meth:`after`.

        ``messages``: a whole chat (OpenAI-format messages) instead, every turn of it judged;
        ``text`` and ``image`` with it are one more user turn.

        Raises:
            GuardBlocked: The request was blocked (under ``on_block="raise"``).
            InvalidInputError: Nothing to check, or an unreadable image.
        """
        return self._decide(self._reporter.check(self._start(text, image, messages)))

    def after(self, answer: str | Mapping[str, Any]) -> Verdict:
        """Check the answer in the context of the request given to :meth:`before`.

        ``answer``: its text, or an assistant message whose tool calls are judged with it.

        Raises:
            GuardBlocked: The answer was blocked (under ``on_block="raise"``); the answer is its
                ``blocked_output``.
            ConfigurationError: :meth:`before` was not called first.
        """
        return self._decide(self._reporter.check(self._answering(), answer), answer)

    async def abefore(
        self, text: str | None = None, image: Any = None, *, messages: Any = None
    ) -> Verdict:
        """Like :meth:`before`, without blocking the event loop."""
        return self._decide(await self._reporter.acheck(self._start(text, image, messages)))

    async def aafter(self, answer: str | Mapping[str, Any]) -> Verdict:
        """Like :meth:`after`, without blocking the event loop."""
        return self._decide(await self._reporter.acheck(self._answering(), answer), answer)

    def _start(self, text: str | None, image: Any, messages: Any) -> Request:
        reader = RequestReader()
        reader.add_images(image)
        if messages is not None:
            reader.add_messages(messages)
        self._request = Request(text, reader.images, reader.request().messages)
        return self._request

    def _answering(self) -> Request:
        if self._request is None:
            raise ConfigurationError("call before(request) first: after() judges its answer")
        self._pending = False
        return self._request

    def _decide(self, verdict: Verdict, answer: str | Mapping[str, Any] | None = None) -> Verdict:
        self._pending = verdict.stage == "input" and not verdict.blocked
        if verdict.blocked and self.on_block == "raise":
            raise GuardBlocked(verdict, blocked_output=answer)
        return verdict

    def __enter__(self) -> GuardSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None and self._pending:
            logger.warning(
                "%s ended after an allowed request without after(answer): the answer went "
                "unchecked",
                self._reporter.name,
            )

    async def __aenter__(self) -> GuardSession:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.__exit__(exc_type)
