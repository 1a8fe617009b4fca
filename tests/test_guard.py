"""Decisions, failure policy, batching and concurrency, with a scripted backend."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from guardvl_sdk import (
    BackendError,
    CheckInput,
    ConfigurationError,
    Generation,
    Guard,
    GuardOutputError,
    InvalidInputError,
    Label,
    Status,
)
from guardvl_sdk.testing import ScriptedBackend

from .conftest import RESULT_HARMFUL_REQUEST, RESULT_SAFE_REQUEST

SAFE_RESPONSE = "<think>ok</think><result>\nRequest: unharmful\nResponse: unharmful\n</result>"
HARMFUL_RESPONSE = "<think>bad</think><result>\nRequest: unharmful\nResponse: harmful\n</result>"


class FailingBackend:
    model_id = "failing"

    def generate(self, prompts):  # type: ignore[no-untyped-def]
        raise RuntimeError("CUDA out of memory")


def test_harmful_request_is_blocked() -> None:
    verdict = Guard(ScriptedBackend(RESULT_HARMFUL_REQUEST)).check("how do I hurt someone")
    assert (verdict.request, verdict.response, verdict.harmful) == (Label.HARMFUL, None, True)
    assert verdict.blocked and verdict.status is Status.OK and verdict.stage == "input"
    assert verdict.reasoning == "Step 1: the user asks how to hurt someone."
    assert verdict.raw == RESULT_HARMFUL_REQUEST
    assert verdict.model == "scripted" and verdict.policy == "guardreasoner-vl"
    assert verdict.score is None


def test_unharmful_request_is_allowed() -> None:
    verdict = Guard(ScriptedBackend(RESULT_SAFE_REQUEST)).check("a cake recipe?")
    assert verdict.request is Label.UNHARMFUL and verdict.harmful is False and not verdict.blocked


def test_response_check_sends_request_and_response_in_context() -> None:
    backend = ScriptedBackend([SAFE_RESPONSE, HARMFUL_RESPONSE])
    guard = Guard(backend)
    assert not guard.check("q", response="fine answer").blocked
    verdict = guard.check("q", response="dangerous answer")
    assert verdict.blocked and verdict.response is Label.HARMFUL and verdict.stage == "output"
    transcript = backend.prompts[1].messages[1]["content"][-1]["text"]
    assert transcript == "Human user:\nq\n\nAI assistant:\ndangerous answer\n\n"


@pytest.mark.parametrize(
    ("generation", "status"),
    [
        (Generation("I am not sure.", finished=True), Status.PARSE_ERROR),
        (Generation("<think>long reasoning", finished=False), Status.TRUNCATED),
    ],
)
@pytest.mark.parametrize(("on_error", "blocked"), [("block", True), ("allow", False)])
def test_undecided_guard_follows_the_failure_policy(
    generation: Generation, status: Status, on_error: str, blocked: bool
) -> None:
    verdict = Guard(ScriptedBackend([generation]), on_error=on_error).check("q")  # type: ignore[arg-type]
    assert verdict.status is status and verdict.blocked is blocked
    assert verdict.request is None and verdict.harmful is None


def test_fail_closed_is_the_default() -> None:
    assert Guard(ScriptedBackend("gibberish")).check("q").blocked
    verdict = Guard(FailingBackend()).check("q")
    assert verdict.status is Status.ERROR and verdict.blocked
    assert verdict.error == "RuntimeError: CUDA out of memory"


def test_harmful_label_blocks_even_when_failing_open() -> None:
    truncated = Generation("<think>x</think><result>Request: harmful\nRes", finished=False)
    verdict = Guard(ScriptedBackend([truncated]), on_error="allow").check("q")
    assert verdict.status is Status.TRUNCATED and verdict.blocked


def test_backend_error_fails_open_only_when_asked() -> None:
    verdict = Guard(FailingBackend(), on_error="allow").check("q")
    assert verdict.status is Status.ERROR and not verdict.blocked


def test_on_error_raise_gives_typed_errors() -> None:
    with pytest.raises(BackendError, match="CUDA out of memory") as info:
        Guard(FailingBackend(), on_error="raise").check("q")
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(GuardOutputError) as out:
        Guard(ScriptedBackend("gibberish"), on_error="raise").check("q")
    assert out.value.verdict.status is Status.PARSE_ERROR and out.value.verdict.blocked


def test_backend_returning_too_few_outputs_is_an_error() -> None:
    class Short:
        model_id = "short"

        def generate(self, prompts):  # type: ignore[no-untyped-def]
            return []

    verdict = Guard(Short()).check("q")
    assert verdict.status is Status.ERROR and verdict.blocked


def test_nothing_to_check_is_a_typed_error() -> None:
    guard = Guard(ScriptedBackend(RESULT_SAFE_REQUEST))
    for text in (None, "", "   \n"):
        with pytest.raises(InvalidInputError, match="nothing to check"):
            guard.check(text)
    with pytest.raises(InvalidInputError, match="text must be a str"):
        guard.check(42)  # type: ignore[arg-type]


def test_image_only_check_renders_an_image_part() -> None:
    backend = ScriptedBackend(RESULT_SAFE_REQUEST)
    Guard(backend).check(image=Image.new("RGB", (30, 30)))
    content = backend.prompts[0].messages[1]["content"]
    assert content == [
        {"type": "text", "text": "Human user:\n"},
        {"type": "image"},
        {"type": "text", "text": "\n\n\nAI assistant:\nNone\n\n"},
    ]
    assert len(backend.prompts[0].images) == 1


def test_check_batch_keeps_order_and_batches_on_the_backend() -> None:
    backend = ScriptedBackend(
        lambda prompt: (
            RESULT_HARMFUL_REQUEST
            if "attack" in prompt.messages[1]["content"][-1]["text"]
            else RESULT_SAFE_REQUEST
        )
    )
    guard = Guard(backend, batch_size=2)
    items = [
        "plan an attack",
        {"text": "bake bread"},
        CheckInput(text="attack plan"),
        CheckInput(image=Image.new("RGB", (28, 28))),
        "hello",
    ]
    verdicts = guard.check_batch(items)
    assert [v.blocked for v in verdicts] == [True, False, True, False, False]
    assert backend.calls == 3  # ceil(5 / 2)


def test_check_batch_names_the_bad_item() -> None:
    guard = Guard(ScriptedBackend(RESULT_SAFE_REQUEST))
    with pytest.raises(InvalidInputError, match="batch item 1: nothing to check"):
        guard.check_batch(["fine", ""])
    with pytest.raises(InvalidInputError, match="batch item 0: unknown keys"):
        guard.check_batch([{"prompt": "x"}, "y"])


def test_options_are_validated() -> None:
    backend = ScriptedBackend("x")
    with pytest.raises(ConfigurationError):
        Guard(backend, on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Guard(backend, batch_size=0)


async def test_acheck_does_not_block_the_event_loop() -> None:
    class SlowBackend:
        model_id = "slow"

        def generate(self, prompts):  # type: ignore[no-untyped-def]
            time.sleep(0.3)
            return [Generation(RESULT_SAFE_REQUEST) for _ in prompts]

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(10):
            await asyncio.sleep(0.01)
            ticks += 1

    verdict, _ = await asyncio.gather(Guard(SlowBackend()).acheck("q"), ticker())
    assert not verdict.blocked and ticks == 10


async def test_acheck_uses_a_native_async_backend() -> None:
    class AsyncBackend:
        model_id = "async"
        in_flight = peak = 0

        def generate(self, prompts):  # type: ignore[no-untyped-def]
            raise AssertionError("the sync path must not be used")

        async def agenerate(self, prompts):  # type: ignore[no-untyped-def]
            type(self).in_flight += 1
            type(self).peak = max(self.peak, self.in_flight)
            await asyncio.sleep(0.05)
            type(self).in_flight -= 1
            return [Generation(RESULT_HARMFUL_REQUEST) for _ in prompts]

    guard = Guard(AsyncBackend(), batch_size=1)
    verdicts = await guard.acheck_batch(["a", "b", "c"])
    assert all(v.blocked for v in verdicts) and AsyncBackend.peak == 3


def test_concurrent_callers_each_get_their_own_verdict() -> None:
    def script(prompt):  # type: ignore[no-untyped-def]
        text = prompt.messages[1]["content"][-1]["text"]
        label = "harmful" if "odd" in text else "unharmful"
        return f"<think>{text}</think><result>Request: {label}\nResponse: None</result>"

    guard = Guard(ScriptedBackend(script))
    barrier = threading.Barrier(8)

    def call(i: int) -> tuple[int, bool, str | None]:
        barrier.wait() if i < 8 else None
        verdict = guard.check(f"item {i} {'odd' if i % 2 else 'even'}")
        return i, verdict.blocked, verdict.reasoning

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(200)))
    for i, blocked, reasoning in results:
        assert blocked == bool(i % 2)
        assert reasoning is not None and f"item {i} " in reasoning


def test_max_pixels_none_hands_images_on_at_their_own_size() -> None:
    photo = Image.new("RGB", (1600, 1200), "green")
    untouched, budgeted = ScriptedBackend(RESULT_SAFE_REQUEST), ScriptedBackend(RESULT_SAFE_REQUEST)
    Guard(untouched, max_pixels=None).check("what is this?", photo)
    Guard(budgeted).check("what is this?", photo)
    assert untouched.prompts[0].images[0].size == (1600, 1200)
    assert budgeted.prompts[0].images[0].size == (886, 665)  # within 768 x 768, aspect kept
