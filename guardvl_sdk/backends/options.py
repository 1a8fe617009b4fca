"""The remote backend's keyword options as a ``TypedDict``, for the factories that pass them on.

``Guard.from_server(url, model=..., **options)`` takes them (with the guard's) as
``**options: Unpack[...]``: type checkers and editors see every keyword and its type, and the
default and meaning of each stay in one place, :class:`~guardvl_sdk.backends.remote.RemoteBackend`.
Light on purpose: importing it loads no HTTP client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict

__all__ = ["RemoteOptions"]


class RemoteOptions(TypedDict, total=False):
    """The keyword options of :class:`~guardvl_sdk.backends.remote.RemoteBackend` but ``model``
    (documented there; tests/test_factories.py holds the two to the same names)."""

    api_key: str | None
    timeout: float
    max_concurrency: int
    max_retries: int
    max_new_tokens: int
    logprobs: bool
    stop: bool
    extra_body: Mapping[str, Any] | None
    headers: Mapping[str, str] | None
    cooldown: float
    image_format: Literal["jpeg", "png"]
    max_response_bytes: int
