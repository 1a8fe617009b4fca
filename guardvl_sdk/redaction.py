"""Credentials never reach a kept error text: logs, ``Verdict.error``, audit records.

A server that echoes the request's ``Authorization`` header in its error body would otherwise put
the API key everywhere the error goes. :func:`redact` removes the secrets it is told (the API key
and header values a backend sends) and anything shaped like a credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "redact"]

REDACTED = "[REDACTED]"

_SHAPES = re.compile(
    r"(?i)"
    r"(\b(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=-]{6,}"  # Authorization: Bearer sk-...
    r"|(\b(?:authorization|proxy-authorization|x-api-key|api[-_]?key|access[-_]?token"
    r"|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{4,}"  # "api_key": "...", key=...
    r"|\bsk-[A-Za-z0-9_-]{8,}"  # OpenAI-style keys wherever they stand
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every given secret and every credential-shaped value replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return _SHAPES.sub(lambda m: (m.group(1) or m.group(2) or "") + REDACTED, text)
