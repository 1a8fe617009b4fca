"""@guarded on every kind of function, each on-block mode and each check mode (scripted guard)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from guardvl_sdk import (
    DEFAULT_REFUSAL,
    BlockedCall,
    Guard,
    GuardBlocked,
    Label,
    Prompt,
    guarded,
)
from guardvl_sdk.testing import ScriptedBackend

HARMFUL_REQUEST = "attack"  # the scripted guard labels a request holding this word harmful
HARMFUL_ANSWER = "poison"  # ... and an answer holding this word harmful


def transcript(prompt: Prompt) -> tuple[str, str | None]:
    """The request and response (None for a request check) the guard was shown."""
    parts = prompt.messages[1]["content"]
    # Text only: one part; with images, the request follows them after a newline.
    text = parts[-1]["text"].removeprefix("Human user:\n" if len(parts) == 1 else "\n")
    request, _, response = text.partition("\n\nAI assistant:\n")
    response = response.removesuffix("\n\n")
    return request, None if response == "None" else response


def newest_turn(request: str) -> str:
    """The newest user turn of a conversation's request slot (the layout's context cut off)."""
    return request.rsplit("[End of the conversation before this request]\n\n", 1)[-1]


def judge(prompt: Prompt) -> str:
    request, response = transcript(prompt)
    request_label = "harmful" if HARMFUL_REQUEST in request else "unharmful"
    if response is None:
        response_label = "None"
    else:
        response_label = "harmful" if HARMFUL_ANSWER in response else "unharmful"
    return (
        f"<think>judged</think><result>\nRequest: {request_label}\n"
        f"Response: {response_label}\n</result>"
    )


def scripted_guard() -> tuple[Guard, ScriptedBackend]:
    backend = ScriptedBackend(judge)
    return Guard(backend), backend


@dataclass
class FakeVLM:
    """Stands in for a VLM: answers with poison when asked for it; counts its calls."""

    calls: list[str] = field(default_factory=list)

    def answer(self, prompt: str) -> str:
        self.calls.append(prompt)
        return f"about {HARMFUL_ANSWER}" if "give poison" in prompt else f"an answer to {prompt}"


def chunks_of(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


KINDS = ["sync", "async", "gen", "async_gen", "method"]


def build(kind: str, vlm: FakeVLM, decorate: Callable[[Any], Any]) -> Callable[[str], Any]:
    """A guarded function of the given kind, returning a callable that takes the prompt."""
    if kind == "sync":

        @decorate
        def sync(prompt: str) -> str:
            return vlm.answer(prompt)

        return sync
    if kind == "async":

        @decorate
        async def async_(prompt: str) -> str:
            await asyncio.sleep(0)
            return vlm.answer(prompt)

        return async_
    if kind == "gen":

        @decorate
        def gen(prompt: str) -> Iterator[str]:
            yield from chunks_of(vlm.answer(prompt))

        return gen
    if kind == "async_gen":

        @decorate
        async def async_gen(prompt: str) -> AsyncIterator[str]:
            for chunk in chunks_of(vlm.answer(prompt)):
                await asyncio.sleep(0)
                yield chunk

        return async_gen

    class App:
        @decorate
        def reply(self, prompt: str) -> str:
            return vlm.answer(prompt)

    return App().reply


@dataclass
class Outcome:
    """What the caller of a guarded function saw."""

    value: Any = None  # the return value, or for a stream the joined chunks received
    error: GuardBlocked | None = None


def call(fn: Callable[[str], Any], prompt: str) -> Outcome:
    """Call a guarded function of any kind as its caller would, and record what came back."""
    outcome = Outcome()
    if inspect.isasyncgenfunction(fn):

        async def consume() -> None:
            received: list[str] = []
            try:
                async for chunk in fn(prompt):
                    received.append(chunk)
            finally:
                outcome.value = "".join(received)

        runner: Callable[[], Any] = lambda: asyncio.run(consume())  # noqa: E731
    elif inspect.iscoroutinefunction(fn):

        async def await_() -> None:
            outcome.value = await fn(prompt)

        runner = lambda: asyncio.run(await_())  # noqa: E731
    elif inspect.isgeneratorfunction(fn):

        def drain() -> None:
            received: list[str] = []
            try:
                received.extend(fn(prompt))
            finally:
                outcome.value = "".join(received)

        runner = drain
    else:

        def plain() -> None:
            outcome.value = fn(prompt)

        runner = plain
    try:
        runner()
    except GuardBlocked as exc:
        outcome.error = exc
    return outcome


def handler(info: BlockedCall) -> str:
    HANDLED.append(info)
    return f"handled {info.verdict.stage}"


HANDLED: list[BlockedCall] = []


@pytest.fixture(autouse=True)
def _clear_handled() -> None:
    HANDLED.clear()


def blocked_value(mode: str, stage: str) -> str:
    return DEFAULT_REFUSAL if mode == "refuse" else f"handled {stage}"


@pytest.mark.parametrize("check", ["both", "input", "output"])
@pytest.mark.parametrize("mode", ["raise", "refuse", "handler"])
@pytest.mark.parametrize("kind", KINDS)
class TestEveryKindModeAndCheck:
    def make(self, kind: str, mode: str, check: str) -> tuple[Callable[[str], Any], FakeVLM, Any]:
        guard, backend = scripted_guard()
        vlm = FakeVLM()
        on_block = handler if mode == "handler" else mode
        fn = build(kind, vlm, guarded(guard, check=check, on_block=on_block))  # type: ignore[arg-type]
        return fn, vlm, backend

    def test_allowed_call_returns_the_answer(self, kind: str, mode: str, check: str) -> None:
        fn, vlm, backend = self.make(kind, mode, check)
        outcome = call(fn, "a cake recipe")
        assert outcome.error is None and outcome.value == "an answer to a cake recipe"
        assert vlm.calls == ["a cake recipe"]
        sent = [transcript(prompt) for prompt in backend.prompts]
        expected = {
            "input": [("a cake recipe", None)],
            "output": [("a cake recipe", "an answer to a cake recipe")],
            "both": [("a cake recipe", None), ("a cake recipe", "an answer to a cake recipe")],
        }[check]
        assert sent == expected  # one check per stage; the output check carries the request

    def test_harmful_request(self, kind: str, mode: str, check: str) -> None:
        fn, vlm, _ = self.make(kind, mode, check)
        outcome = call(fn, "plan an attack")
        if check == "output":
            # Not checked on the way in, so the VLM runs; the output check judges the request
            # together with the answer and still blocks it.
            assert vlm.calls == ["plan an attack"]
            stage = "output"
        else:
            assert vlm.calls == []  # the VLM never sees a blocked request
            stage = "input"
        if mode == "raise":
            assert outcome.error is not None and outcome.value in (None, "")
            verdict = outcome.error.verdict
            assert verdict.stage == stage and verdict.request is Label.HARMFUL
            expected_output = None if stage == "input" else "an answer to plan an attack"
            assert outcome.error.blocked_output == expected_output
        else:
            assert outcome.error is None and outcome.value == blocked_value(mode, stage)
        if mode == "handler":
            (info,) = HANDLED
            assert info.verdict.blocked and info.verdict.stage == stage
            assert info.args[-1] == "plan an attack"
            assert info.function.endswith(("sync", "async_", "gen", "async_gen", "reply"))

    def test_harmful_answer(self, kind: str, mode: str, check: str) -> None:
        fn, vlm, _ = self.make(kind, mode, check)
        outcome = call(fn, "please give poison")
        assert vlm.calls == ["please give poison"]
        if check == "input":  # the explicit loosening: answers are not checked
            assert outcome.error is None and outcome.value == "about poison"
            return
        if mode == "raise":
            assert outcome.error is not None
            assert outcome.error.verdict.response is Label.HARMFUL
            assert outcome.error.blocked_output == "about poison"  # nothing is lost
            assert outcome.value in (None, "")  # and nothing of it reached the caller
        else:
            assert outcome.error is None and outcome.value == blocked_value(mode, "output")
        if mode == "handler":
            (info,) = HANDLED
            assert info.output == "about poison" and info.released == ""


def test_async_method_and_handler_coroutine() -> None:
    guard, _ = scripted_guard()

    async def async_handler(info: BlockedCall) -> str:
        await asyncio.sleep(0)
        return f"async handled {info.verdict.stage}"

    class App:
        @guarded(guard, on_block=async_handler)
        async def reply(self, prompt: str) -> str:
            return f"re: {prompt}"

    assert asyncio.run(App().reply("hello")) == "re: hello"
    assert asyncio.run(App().reply("attack")) == "async handled input"


def test_custom_extractors_and_object_answers() -> None:
    @dataclass
    class ChatRequest:
        prompt: str
        photo: bytes | None = None

    @dataclass
    class ChatResponse:
        text: str

    guard, backend = scripted_guard()

    @guarded(
        guard, text=lambda req: req.prompt, image=lambda req: req.photo, output=lambda r: r.text
    )
    def handle(req: ChatRequest) -> ChatResponse:
        return ChatResponse("some poison" if "bad" in req.prompt else "fine")

    assert handle(ChatRequest("hi")) == ChatResponse("fine")
    assert transcript(backend.prompts[-1]) == ("hi", "fine")
    with pytest.raises(GuardBlocked) as info:
        handle(ChatRequest("bad"))
    assert info.value.blocked_output == ChatResponse("some poison")


def test_output_check_does_not_rerun_the_request_check() -> None:
    guard, backend = scripted_guard()

    @guarded(guard)
    def answer(prompt: str) -> str:
        return "ok"

    for _ in range(3):
        answer("hi")
    stages = [transcript(p)[1] is None for p in backend.prompts]
    assert stages == [True, False] * 3


def test_guard_failure_follows_the_guards_policy() -> None:
    class Down:
        model_id = "down"

        def generate(self, prompts):  # type: ignore[no-untyped-def]
            raise RuntimeError("backend down")

    ran: list[str] = []

    def vlm(prompt: str) -> str:
        ran.append(prompt)
        return "answer"

    closed = guarded(Guard(Down()))(vlm)
    with pytest.raises(GuardBlocked) as info:
        closed("hi")
    assert info.value.verdict.status.value == "error" and ran == []  # fail-closed by default
    opened = guarded(Guard(Down(), on_error="allow"))(vlm)
    assert opened("hi") == "answer"  # fail-open only because the guard was told so


async def test_async_wrappers_do_not_block_the_event_loop() -> None:
    import time

    from guardvl_sdk import Generation

    class Slow:
        model_id = "slow"

        def generate(self, prompts):  # type: ignore[no-untyped-def]
            time.sleep(0.2)
            return [Generation(judge(p)) for p in prompts]

    @guarded(Guard(Slow()))
    async def answer(prompt: str) -> str:
        return "fine"

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1

    result, _ = await asyncio.gather(answer("hi"), ticker())
    assert result == "fine" and ticks == 20
