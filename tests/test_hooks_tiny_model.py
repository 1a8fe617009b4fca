"""@guarded end to end with the tiny random model: it emits noise, so the guard fails closed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from guardvl_sdk import DEFAULT_REFUSAL, Guard, GuardBlocked, Status, guarded

from .test_hooks import KINDS, FakeVLM, build, call

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", KINDS)
def test_noise_from_the_guard_blocks_the_request(kind: str, tiny_guard: Guard) -> None:
    vlm = FakeVLM()
    fn = build(kind, vlm, guarded(tiny_guard))
    outcome = call(fn, "What is the capital of France?")
    assert outcome.error is not None, "an unreadable guard output must block (fail-closed)"
    verdict = outcome.error.verdict
    assert verdict.stage == "input" and verdict.status is not Status.OK
    assert verdict.harmful is None and verdict.raw  # the guard generated, but no label
    assert vlm.calls == []  # the VLM never ran


@pytest.mark.parametrize("kind", ["sync", "async_gen"])
def test_noise_from_the_guard_blocks_the_answer(kind: str, tiny_guard: Guard) -> None:
    vlm = FakeVLM()
    fn = build(kind, vlm, guarded(tiny_guard, check="output"))
    outcome = call(fn, "Describe a sunset.")
    assert outcome.error is not None and vlm.calls == ["Describe a sunset."]
    assert outcome.error.verdict.stage == "output" and outcome.error.verdict.status is not Status.OK
    assert outcome.error.blocked_output == "an answer to Describe a sunset."


def test_images_go_through_the_real_processor(tiny_guard: Guard) -> None:
    seen: list[Any] = []

    @guarded(tiny_guard, on_block=seen.append)
    def answer(prompt: str, image: Image.Image) -> str:
        raise AssertionError("blocked before the VLM")

    assert answer("What is this?", Image.new("RGB", (64, 48), (10, 200, 10))) is None
    (info,) = seen
    assert info.verdict.usage.prompt_tokens > 0 and info.verdict.blocked


def test_guard_told_to_fail_open_lets_noise_through(tiny_guard: Guard) -> None:
    guard = Guard(tiny_guard.backend, on_error="allow")
    answer: Callable[[str], Any] = guarded(guard)(lambda prompt: f"echo {prompt}")
    assert answer("hello") == "echo hello"  # only because on_error="allow" said so

    with pytest.raises(GuardBlocked):
        guarded(Guard(tiny_guard.backend))(lambda prompt: "x")("hello")  # default: fail-closed


@pytest.mark.slow
def test_guarded_vlm_example_runs_offline(demo_guard) -> None:  # type: ignore[no-untyped-def]
    import os

    script = Path(__file__).resolve().parents[1] / "examples" / "guarded_vlm.py"
    env = {**os.environ, "GUARDVL_DEMO_DIR": str(demo_guard[0].parent)}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    # The demo policy blocks a picture of a face: the request of the plain call and of the
    # session, and the buffered stream, whose caller got only the refusal.
    assert sum(line.strip().startswith("BLOCKED at input") for line in lines) == 2
    assert f"  received: {DEFAULT_REFUSAL!r}" in lines
    assert sum(" check blocked (" in line for line in lines) == 3  # one event per check
    assert not any(" allowed" in line for line in lines)
