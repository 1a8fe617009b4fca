"""The exception tree of guardvl-sdk.

Every error the SDK raises on purpose derives from one base, so callers can catch them all::

    GuardVLError
    ├── InvalidInputError        the caller's text or image cannot be checked
    │   └── InvalidDataError     a labelled data file has bad records (problems, by line)
    ├── ConfigurationError       the SDK was set up wrongly (bad option, nothing to check)
    ├── ModelLoadError           the guard model or its processor could not be loaded
    ├── MissingExtraError        a feature needs an optional extra that is not installed (install)
    ├── BackendError             the backend failed while generating (status_code, body)
    │   ├── BackendStatusError       a guard server answered with an error status (retry_after)
    │   └── BackendConnectionError   a guard server could not be reached or dropped the line
    │       └── BackendTimeoutError  a guard server did not answer in time
    ├── AuditError               an audit record could not be written
    ├── GuardOutputError         the guard answered, but not with a usable verdict (verdict)
    └── GuardBlocked             the guard blocked a request or response (verdict, blocked_output)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardvl_sdk.verdict import Verdict

__all__ = [
    "AuditError",
    "BackendConnectionError",
    "BackendError",
    "BackendStatusError",
    "BackendTimeoutError",
    "ConfigurationError",
    "GuardBlocked",
    "GuardOutputError",
    "GuardVLError",
    "InvalidDataError",
    "InvalidInputError",
    "MissingExtraError",
    "ModelLoadError",
]


class GuardVLError(Exception):
    """Base class of every error raised by guardvl-sdk."""


class InvalidInputError(GuardVLError, ValueError):
    """The text or image given to the guard cannot be checked; the message names the problem."""


class InvalidDataError(InvalidInputError):
    """A labelled data file has bad records.

    Attributes:
        problems: ``(line number, reason)`` for every bad record, in file order.
    """

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        shown = "\n".join(f"  line {line}: {reason}" for line, reason in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{path}: {len(problems)} bad record(s)\n{shown}{more}")
        self.path = path
        self.problems = problems


class ConfigurationError(GuardVLError, ValueError):
    """An option or a combination of options is invalid."""


class ModelLoadError(GuardVLError, OSError):
    """The guard model, its processor or its quantization backend could not be loaded."""


class MissingExtraError(GuardVLError, ImportError):
    """A feature needs an optional extra of guardvl-sdk that is not installed.

    The message ends with the one line that installs it.

    Attributes:
        extra: The extra to install, e.g. ``"local"``.
        install: The command that installs it, e.g. ``pip install "guardvl-sdk[local]"``.
        missing: The modules that could not be found.
    """

    def __init__(self, feature: str, extra: str, missing: list[str]) -> None:
        self.extra = extra
        self.install = f'pip install "guardvl-sdk[{extra}]"'
        self.missing = missing
        super().__init__(
            f"{feature} needs the [{extra}] extra ({', '.join(missing)} not installed): "
            f"{self.install}"
        )


class BackendError(GuardVLError):
    """The backend failed to produce a generation.

    Attributes:
        status_code: The HTTP status of a remote backend, when there was one.
        body: The response body of a remote backend, when there was one.
    """

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class BackendStatusError(BackendError):
    """A guard server answered with an HTTP error status.

    Attributes:
        retry_after: Seconds the server asked the client to wait (``Retry-After``), if it did.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, body=body)
        self.retry_after = retry_after


class BackendConnectionError(BackendError):
    """A guard server could not be reached, or dropped the connection before answering."""


class BackendTimeoutError(BackendConnectionError):
    """A guard server did not answer within the request timeout."""


class AuditError(GuardVLError):
    """An audit record could not be written; the decision it belongs to is not returned."""


class GuardOutputError(GuardVLError):
    """The guard's output could not be read as a verdict (raised under ``on_error="raise"``).

    Attributes:
        verdict: The verdict with ``status`` ``parse_error``, ``truncated`` or ``error``.
    """

    def __init__(self, message: str, *, verdict: Verdict) -> None:
        super().__init__(message)
        self.verdict = verdict


class GuardBlocked(GuardVLError):
    """The guard blocked a request or a response.

    Attributes:
        verdict: The verdict that led to the block.
        blocked_output: For a blocked response, the answer that was withheld from the user, so
            the caller can still review or log it. ``None`` for a blocked request.
    """

    def __init__(self, verdict: Verdict, *, blocked_output: Any = None, message: str | None = None):
        super().__init__(message or f"guard blocked the {verdict.stage}: {verdict.summary()}")
        self.verdict = verdict
        self.blocked_output = blocked_output
