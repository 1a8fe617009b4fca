"""Text every part of the SDK can encode: lone surrogates (which UTF-8 cannot hold) replaced.

The bottom layer, beside :mod:`guardvl_sdk.verdict`: verdicts, inputs and the audit log all keep
their text encodable through it.
"""

from __future__ import annotations

import re

__all__ = ["without_lone_surrogates"]

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(text: str) -> str:
    """``text`` with every lone surrogate (which UTF-8 cannot encode) replaced by U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", text)
