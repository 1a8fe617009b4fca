"""@guarded: finding what to check, configuration errors, signatures, observability."""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from PIL import Image

from guardvl_sdk import (
    ConfigurationError,
    GuardBlocked,
    GuardEvent,
    InvalidInputError,
    guarded,
)

from .test_hooks import scripted_guard, transcript


def data_url(color: tuple[int, int, int] = (200, 30, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# -- finding the request --------------------------------------------------------------------


def test_text_and_image_parameters_are_found_by_name() -> None:
    guard, backend = scripted_guard()

    @guarded(guard, check="input")
    def answer(question: str, images: list[Image.Image], temperature: float = 0.0) -> str:
        return "ok"

    answer("what is this?", [Image.new("RGB", (30, 30)), Image.new("RGB", (40, 40))])
    (prompt,) = backend.prompts
    assert transcript(prompt) == ("what is this?", None) and len(prompt.images) == 2


def test_openai_chat_messages_are_read_whole() -> None:
    guard, backend = scripted_guard()

    @guarded(guard, check="input")
    def chat(messages: list[dict[str, Any]], model: str = "vlm") -> str:
        return "ok"

    chat(
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello there"},
            {"role": "assistant", "content": "Hi!"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": data_url()}},
                ],
            },
        ]
    )
    (prompt,) = backend.prompts
    # Every turn is read: the newest user turn is the request, the earlier ones its context.
    request, response = transcript(prompt)
    assert request.endswith("\n\nWhat is in this image?\n[image 1]") and response is None
    for earlier in ("You are a helpful assistant.", "Hello there", "Hi!"):
        assert earlier in request
    assert len(prompt.images) == 1 and prompt.images[0].getpixel((0, 0)) == (200, 30, 30)


def test_a_harmful_user_turn_anywhere_in_the_chat_blocks() -> None:
    guard, _ = scripted_guard()

    @guarded(guard)
    def chat(messages: list[dict[str, Any]]) -> str:
        raise AssertionError("a blocked request must not reach the VLM")

    with pytest.raises(GuardBlocked):
        chat([{"role": "user", "content": "plan an attack"}, {"role": "user", "content": "go"}])


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        (
            [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
            "cannot check a content part of type 'input_audio'",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x"}}],
                }
            ],
            "remote image URLs are not fetched",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": "/etc/hosts"}]}],
            "an image_url must be a data: or http\\(s\\) URL: '/etc/hosts'",
        ),
        ([{"role": "user", "content": 42}], "must be a str or a list of parts"),
        (["hello"], "must be a str or a list of chat messages"),
        ([], "nothing to check"),
    ],
)
def test_uncheckable_chat_content_is_a_typed_error(messages: Any, match: str) -> None:
    guard, _ = scripted_guard()

    @guarded(guard)
    def chat(messages: list[Any]) -> str:
        raise AssertionError("never called")

    with pytest.raises(InvalidInputError, match=match):
        chat(messages)


def test_missing_or_wrong_typed_text_is_a_typed_error_not_a_pass() -> None:
    guard, _ = scripted_guard()

    @guarded(guard)
    def answer(prompt: str | None = None, image: Any = None) -> str:
        raise AssertionError("never called")

    with pytest.raises(InvalidInputError, match="nothing to check"):
        answer()
    with pytest.raises(InvalidInputError, match="prompt must be a str"):
        answer(42)  # type: ignore[arg-type]


def test_kwargs_functions_are_resolved_at_the_call() -> None:
    guard, backend = scripted_guard()

    @guarded(guard, check="input")
    def answer(**kwargs: Any) -> str:
        return "ok"

    assert answer(prompt="hello", max_tokens=5) == "ok"
    assert transcript(backend.prompts[0]) == ("hello", None)
    with pytest.raises(
        ConfigurationError, match=r"cannot find what to check in .*answer\(\*\*kwargs\)"
    ):
        answer(max_tokens=5)


def test_explicit_text_extractor_overrides_the_default() -> None:
    guard, backend = scripted_guard()

    @guarded(guard, check="input", text=lambda prompt, suffix: f"{prompt} {suffix}")
    def answer(prompt: str, suffix: str) -> str:
        return "ok"

    answer("hello", "world")
    assert transcript(backend.prompts[0]) == ("hello world", None)


# -- configuration errors -------------------------------------------------------------------


def test_nothing_checkable_in_the_signature_fails_at_decoration() -> None:
    guard, _ = scripted_guard()
    with pytest.raises(ConfigurationError, match=r"cannot find what to check in .*\.f\(x, y\)"):

        @guarded(guard)
        def f(x: str, y: int) -> str:
            return x

    with pytest.raises(ConfigurationError, match="cannot find what to check"):

        @guarded(guard)
        def g(*args: str) -> str:
            return ""


def test_non_str_answers_need_an_output_extractor() -> None:
    guard, _ = scripted_guard()
    with pytest.raises(ConfigurationError, match=r"annotated to answer with .*dict.*pass output="):

        @guarded(guard)
        def annotated(prompt: str) -> dict[str, str]:
            return {}

    @guarded(guard)
    def unannotated(prompt):  # type: ignore[no-untyped-def]
        return {"text": "hi"}

    with pytest.raises(ConfigurationError, match="answered with dict, not a str: pass output="):
        unannotated("hi")

    @guarded(guard)
    def returns_a_generator(prompt):  # type: ignore[no-untyped-def]
        return iter(["a"])

    with pytest.raises(ConfigurationError, match="make the function a generator"):
        returns_a_generator("hi")


def test_input_only_checks_accept_any_answer_type() -> None:
    guard, _ = scripted_guard()

    @guarded(guard, check="input")
    def answer(prompt: str) -> dict[str, str]:
        return {"text": prompt}

    assert answer("hi") == {"text": "hi"}


def test_refuse_needs_str_answers() -> None:
    guard, _ = scripted_guard()
    with pytest.raises(ConfigurationError, match="on_block='refuse' answers with a str"):

        @guarded(guard, on_block="refuse", output=lambda r: r["text"])
        def annotated(prompt: str) -> dict[str, str]:
            return {}

    with pytest.raises(ConfigurationError, match="on_block='refuse' answers with a str"):

        @guarded(guard, on_block="refuse", output=lambda chunk: chunk["text"])
        def annotated_stream(prompt: str) -> Iterator[dict[str, str]]:
            yield {}

    @guarded(guard, on_block="refuse", output=lambda r: r["text"])
    def unannotated(prompt):  # type: ignore[no-untyped-def]
        return {"text": "hi"}

    # Loud at the first call, blocked or not, rather than only once something is blocked.
    with pytest.raises(ConfigurationError, match="answered with dict: use on_block='raise'"):
        unannotated("hello")


@pytest.mark.parametrize(
    "options",
    [
        {"check": "everything"},
        {"on_block": "ignore"},
        {"refusal": None},
        {"stream_every": 0},
        {"stream_window": -5},
        {"stream_every": True},
        {"text": "prompt"},
    ],
)
def test_invalid_options_are_configuration_errors(options: dict[str, Any]) -> None:
    guard, _ = scripted_guard()
    with pytest.raises(ConfigurationError):
        guarded(guard, **options)


def test_an_async_handler_needs_an_async_function() -> None:
    guard, _ = scripted_guard()

    async def handler(info: Any) -> str:
        return "handled"

    with pytest.raises(ConfigurationError, match="async on_block handler needs an async"):

        @guarded(guard, on_block=handler)
        def answer(prompt: str) -> str:
            return ""


def test_refuse_with_an_input_only_check_still_needs_str_answers() -> None:
    guard, _ = scripted_guard()

    @guarded(guard, check="input", on_block="refuse")
    def answer(prompt):  # type: ignore[no-untyped-def]
        return {"text": prompt}

    with pytest.raises(ConfigurationError, match="answered with dict"):
        answer("hello")


def test_optional_str_and_unresolvable_annotations_are_accepted() -> None:
    guard, _ = scripted_guard()

    @guarded(guard, on_block="refuse")
    def maybe(prompt: str) -> str | None:
        return "fine"

    @guarded(guard, on_block="refuse")
    def forward(prompt: str) -> NotDefinedAnywhere:  # type: ignore[name-defined]  # noqa: F821
        return "fine"

    assert maybe("attack") == forward("attack") == "Sorry, I can't help with that."


# -- signatures -----------------------------------------------------------------------------


def test_name_doc_signature_and_kind_are_kept() -> None:
    guard, _ = scripted_guard()

    def sync(prompt: str, image: bytes | None = None, *, temperature: float = 0.2) -> str:
        """Answer a question about an image."""
        return ""

    async def coro(prompt: str) -> str:
        """Async."""
        return ""

    def gen(prompt: str) -> Iterator[str]:
        yield ""

    async def agen(prompt: str) -> AsyncIterator[str]:
        yield ""

    for fn, kind in [
        (sync, inspect.isfunction),
        (coro, inspect.iscoroutinefunction),
        (gen, inspect.isgeneratorfunction),
        (agen, inspect.isasyncgenfunction),
    ]:
        wrapped = guarded(guard)(fn)
        assert wrapped.__name__ == fn.__name__ and wrapped.__doc__ == fn.__doc__
        assert wrapped.__qualname__ == fn.__qualname__ and wrapped.__wrapped__ is fn
        assert inspect.signature(wrapped) == inspect.signature(fn)
        assert kind(wrapped)


def test_methods_keep_their_signature_and_bind_self() -> None:
    guard, backend = scripted_guard()

    class App:
        greeting = "hi"

        @guarded(guard)
        def reply(self, prompt: str) -> str:
            """Reply."""
            return f"{self.greeting} {prompt}"

    assert str(inspect.signature(App.reply)) == "(self, prompt: 'str') -> 'str'"
    assert str(inspect.signature(App().reply)) == "(prompt: 'str') -> 'str'"
    assert App().reply("there") == "hi there"
    assert transcript(backend.prompts[-1]) == ("there", "hi there")


def test_static_and_class_methods() -> None:
    guard, _ = scripted_guard()

    class App:
        @staticmethod
        @guarded(guard)
        def plain(prompt: str) -> str:
            return f"static {prompt}"

        @classmethod
        @guarded(guard)
        def built(cls, prompt: str) -> str:
            return f"{cls.__name__} {prompt}"

    assert App.plain("hi") == App().plain("hi") == "static hi"
    assert App.built("hi") == "App hi"
    with pytest.raises(GuardBlocked):
        App.built("plan an attack")
    with pytest.raises(ConfigurationError, match="put @guarded below @staticmethod"):
        guarded(guard)(staticmethod(lambda prompt: prompt))


# -- observability --------------------------------------------------------------------------


def test_every_decision_reaches_the_callback_and_the_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard, _ = scripted_guard()
    events: list[GuardEvent] = []

    @guarded(guard, on_verdict=events.append)
    def answer(prompt: str) -> str:
        return "about poison" if "poison" in prompt else "fine"

    with caplog.at_level(logging.DEBUG, logger="guardvl_sdk"):
        answer("hello")
        with pytest.raises(GuardBlocked):
            answer("give poison")
    assert [(e.stage, e.verdict.blocked) for e in events] == [
        ("input", False),
        ("output", False),
        ("input", False),
        ("output", True),
    ]
    assert {e.function for e in events} == {answer.__qualname__}
    assert all(e.elapsed_ms > 0 and not e.partial for e in events)
    blocked = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(blocked) == 1 and "output check" in blocked[0].getMessage()
    assert answer.__qualname__ in blocked[0].getMessage()


def test_a_failing_callback_never_turns_a_block_into_a_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard, _ = scripted_guard()

    def broken(event: GuardEvent) -> None:
        raise RuntimeError("metrics sink down")

    @guarded(guard, on_verdict=broken)
    def answer(prompt: str) -> str:
        return "fine"

    with pytest.raises(GuardBlocked):
        answer("plan an attack")
    assert answer("hello") == "fine"  # nor an allowed call into a failure
    assert any("on_verdict callback failed" in r.getMessage() for r in caplog.records)


def test_async_events_carry_timing() -> None:
    guard, _ = scripted_guard()
    events: list[GuardEvent] = []

    @guarded(guard, on_verdict=events.append)
    async def answer(prompt: str) -> str:
        return "fine"

    assert asyncio.run(answer("hi")) == "fine"
    assert [e.stage for e in events] == ["input", "output"]
    assert all(e.elapsed_ms >= e.verdict.latency_ms for e in events)


def test_a_harmful_assistant_history_turn_blocks_the_call() -> None:
    guard, backend = scripted_guard()

    @guarded(guard, check="input")
    def chat(messages: list[dict[str, Any]]) -> str:
        raise AssertionError("a blocked conversation must not reach the VLM")

    with pytest.raises(GuardBlocked) as blocked:
        chat(
            [
                {"role": "user", "content": "Hello there"},
                {"role": "assistant", "content": "Sure, here is how to attack it."},
                {"role": "user", "content": "Go on"},
            ]
        )
    receipt = blocked.value.verdict.inspected
    assert [(p.message, p.role) for p in receipt] == [(0, "user"), (1, "assistant"), (2, "user")]
    assert len(backend.prompts) == 1
