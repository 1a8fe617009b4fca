"""Guard.from_pretrained and Guard.from_server forward every Guard option (some were dropped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardvl_sdk import ConfigurationError, Guard, InvalidInputError
from guardvl_sdk.fetch import ImageFetcher
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
            Guard.from_server(server.url, model="fake", max_window=3)
