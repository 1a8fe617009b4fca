"""Which guard servers refuse stop strings: found once per server, then sent none.

``transformers serve`` 5.x answers HTTP 500 to any request with ``stop`` when it serves a
vision-language model (its stop-string criteria ask the processor for a vocabulary it does not
have). Leaving the stop strings out costs only the few tokens such a server generates after
``</result>``: the answer is cut there anyway (see
:func:`~guardvl_sdk.backends.chat_api.read_completion`) and the parser never reads past it.
"""

from __future__ import annotations

import enum
import json
import logging
import threading

from guardvl_sdk.backends.scoring import STOP_STRINGS

__all__ = ["STOP_REFUSED", "StopStrings", "with_stop_strings", "without_stop_strings"]

logger = logging.getLogger("guardvl_sdk")

STOP_REFUSED = frozenset({400, 422, 500})
"""Statuses that may mean "no stop strings here": transformers serve fails with 500; a server
that rejects the field answers 400 or 422."""


# The request body's last field: taken off again by slicing, with no JSON decoding.
_FIELD = b',"stop":' + json.dumps(list(STOP_STRINGS), separators=(",", ":")).encode() + b"}"


class _Support(enum.Enum):
    UNKNOWN = enum.auto()
    ACCEPTED = enum.auto()  # a request with stop strings was answered, or leaving them out did
    # not help either: the failure was something else, and the stop strings stay
    REFUSED = enum.auto()


class StopStrings:
    """What each server does with stop strings, learned from the answers. Thread-safe.

    A server is asked with stop strings until it is known. A request with them answered with
    success settles that it accepts them; one refused (a status in :data:`STOP_REFUSED`) while
    unknown is sent once more without them, and if that is answered the server refuses them: its
    requests go without from then on (one INFO log), so no check pays a second request once it is
    known. If the request without stop strings fails too, the failure was something else: the
    server is taken to accept them and is not probed again.

    Requests sent while a server is unknown may each probe once (none fails for being early); the
    first answer settles it.
    """

    def __init__(self) -> None:
        self._support: dict[str, _Support] = {}
        self._lock = threading.Lock()

    def body_for(self, url: str, body: bytes) -> bytes:
        """The request body to send ``url``: without stop strings if it refuses them."""
        if self._get(url) is _Support.REFUSED:
            return without_stop_strings(body)
        return body

    def should_probe(self, url: str, sent: bytes, status: int) -> bool:
        """Whether to send the request again without stop strings, after ``status`` to ``sent``."""
        if not sent.endswith(_FIELD):
            return False
        if status < 400:
            self._settle(url, _Support.ACCEPTED)
            return False
        # Refused: sent while the server was unknown, and answered after another probe found out.
        return status in STOP_REFUSED and self._get(url) is not _Support.ACCEPTED

    def probed(self, url: str, refused_status: int, status: int) -> None:
        """Record the answer (``status``) to a request sent again without stop strings."""
        if status >= 400:
            self._settle(url, _Support.ACCEPTED)
        elif self._settle(url, _Support.REFUSED):
            logger.info(
                "%s refuses stop strings (HTTP %d with them, HTTP %d without): its checks are "
                "sent without them; answers are still cut after </result>",
                url,
                refused_status,
                status,
            )

    def _get(self, url: str) -> _Support:
        with self._lock:
            return self._support.get(url, _Support.UNKNOWN)

    def _settle(self, url: str, support: _Support) -> bool:
        """Record ``support`` if ``url`` is still unknown; whether this call settled it."""
        with self._lock:
            if self._support.get(url, _Support.UNKNOWN) is not _Support.UNKNOWN:
                return False
            self._support[url] = support
            return True


def with_stop_strings(body: bytes) -> bytes:
    """A JSON object request body (compact, without ``stop``) with the stop strings added last."""
    return body[:-1] + _FIELD


def without_stop_strings(body: bytes) -> bytes:
    """``body`` without the stop strings :func:`with_stop_strings` added (else unchanged)."""
    return body[: -len(_FIELD)] + b"}" if body.endswith(_FIELD) else body
