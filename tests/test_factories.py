"""Guard.from_pretrained and Guard.from_server forward every Guard option (some were dropped),
and from_server every option of the remote backend."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from guardvl_sdk import ConfigurationError, Guard, InvalidInputError
from guardvl_sdk.backends.options import RemoteOptions
from guardvl_sdk.backends.remote import RemoteBackend
from guardvl_sdk.fetch import ImageFetcher
from guardvl_sdk.guard import GuardOptions, ServerOptions
from guardvl_sdk.testing import FakeChatServer

OPTIONS = {
    "max_text_chars": 800,
    "window_overlap": 100,
    "max_windows": 3,
    "triage": (0.1, 0.9),
    "fetch_images": True,
}


def assert_forwarded(guard: Guard) -> None:
    assert (guard.max_text_chars, guard.window_overlap, guard.max_windows) == (800, 100, 3)
    assert guard.triage == (0.1, 0.9)
    assert isinstance(guard._fetch, ImageFetcher)


def test_from_pretrained_forwards_guard_options(tiny_model_dir: Path) -> None:
    guard = Guard.from_pretrained(tiny_model_dir, quantization=None, **OPTIONS)  # type: ignore[arg-type]
    assert_forwarded(guard)
    # ... and what the guard is given it uses: too long for 3 windows of 800 characters.
    with pytest.raises(InvalidInputError, match="too long"):
        guard.check("word " * 1000)


def test_from_server_forwards_guard_options_and_refuses_unknown_ones() -> None:
    with FakeChatServer("<result>\nRequest: unharmful\n</result>") as server:
        guard = Guard.from_server(server.url, model="fake", **OPTIONS)  # type: ignore[arg-type]
        assert_forwarded(guard)
        with pytest.raises(ConfigurationError, match=r"unknown option\(s\) \['max_window'\]"):
            Guard.from_server(server.url, model="fake", max_window=3)  # type: ignore[call-arg]


def keyword_options(function: Callable[..., Any]) -> set[str]:
    parameters = inspect.signature(function).parameters.values()
    return {p.name for p in parameters if p.kind is p.KEYWORD_ONLY}


def test_the_option_types_name_every_option_of_what_they_forward_to() -> None:
    # The factories pass on what these TypedDicts name: an option added to Guard or to the
    # remote backend without them could not be reached from Guard.from_server.
    assert GuardOptions.__optional_keys__ == keyword_options(Guard.__init__)
    assert RemoteOptions.__optional_keys__ == keyword_options(RemoteBackend.__init__) - {"model"}
    assert ServerOptions.__optional_keys__ == GuardOptions.__optional_keys__ | (
        RemoteOptions.__optional_keys__
    )


def test_from_server_forwards_every_remote_backend_option() -> None:
    guard = Guard.from_server(
        "http://gpu-1:8000/v1",
        model="fake",
        image_format="png",
        cooldown=3.0,
        max_response_bytes=1024,
        headers={"X-Tenant": "a"},
        timeout=7.0,
        max_concurrency=4,
    )
    backend = guard.backend
    assert isinstance(backend, RemoteBackend)
    assert (backend.image_format, backend.pool.cooldown, backend.max_response_bytes) == (
        "png",
        3.0,
        1024,
    )
    assert (backend.timeout, backend.max_concurrency, guard.batch_size) == (7.0, 4, 4)
