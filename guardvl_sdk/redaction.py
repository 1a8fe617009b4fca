"""Credentials never reach a kept error text: logs, ``Verdict.error``, audit records.

A server that echoes the request's ``Authorization`` header in its error body would otherwise put
the API key everywhere the error goes. :func:`redact` removes the secrets it is told (the API key
and header values a backend sends) and anything shaped like a credential.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote

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
    """``text`` with every given secret, in the forms a server may echo it, and every
    credential-shaped value replaced.

    The forms: as given, percent-encoded, hex, and base64 (standard or URL-safe alphabet) at any
    offset inside a longer base64 text, such as an echoed ``Basic`` or ``Bearer`` header.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            for form in sorted(_forms(secret), key=len, reverse=True):
                text = text.replace(form, REDACTED)
    return _SHAPES.sub(lambda m: (m.group(1) or m.group(2) or "") + REDACTED, text)


def _forms(secret: str) -> set[str]:
    raw = secret.encode("utf-8")
    forms = {secret, quote(secret, safe=""), raw.hex(), raw.hex().upper()}
    for shift in range(3):  # the base64 characters that depend on the secret's bytes alone
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        core = encoded[-(-8 * shift // 6) : 8 * (shift + len(raw)) // 6]
        if len(core) >= 6:
            forms |= {core, core.replace("+", "-").replace("/", "_")}
    return {form for form in forms if len(form) >= 4}
