"""Hostile input chosen by the people the guard is meant to stop: each case ends in a typed error
or a verdict, fast, and never in a silent pass or a crash inside the model."""

from __future__ import annotations

import io
import time
import tracemalloc
from typing import Any

import numpy as np
import pytest
from PIL import Image

from guardvl_sdk import Guard, InvalidInputError, Label, Status
from guardvl_sdk.inputs import MAX_SOURCE_PIXELS, load_image
from guardvl_sdk.testing import ScriptedBackend

from .conftest import RESULT_HARMFUL_REQUEST, RESULT_SAFE_REQUEST


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


# -- images -----------------------------------------------------------------------------------


def test_multi_page_tiff_is_checked_on_its_first_page() -> None:
    pages = [Image.new("RGB", (16, 16), "red"), Image.new("RGB", (16, 16), "blue")]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    r, _, b = load_image(data).getpixel((0, 0))
    assert r > 200 and b < 50


@pytest.mark.parametrize("size", [(1, 1), (1, 150), (150, 1)])
def test_tiny_and_thin_images_load_within_the_elongation_limit(size: tuple[int, int]) -> None:
    image = load_image(encode(Image.new("RGB", size, "green")))
    assert image.mode == "RGB" and image.size == size


def test_a_file_with_the_wrong_extension_is_read_by_its_content(tmp_path) -> None:
    path = tmp_path / "photo.jpg"  # PNG bytes behind a .jpg name
    path.write_bytes(encode(Image.new("RGB", (20, 10), (0, 0, 255))))
    assert load_image(str(path)).getpixel((0, 0)) == (0, 0, 255)
    text_file = tmp_path / "notes.png"  # a text file behind a .png name
    text_file.write_text("not an image at all")
    with pytest.raises(InvalidInputError, match="not a readable image"):
        load_image(text_file)


def test_a_bomb_is_refused_fast_and_in_bounded_memory() -> None:
    side = int(MAX_SOURCE_PIXELS**0.5) * 4  # 16x the limit, a few KB encoded
    bomb = encode(Image.new("1", (side, side)))
    tracemalloc.start()
    began = time.process_time()
    # Refused from the header: our limit, or Pillow's own decompression-bomb check before it.
    with pytest.raises(InvalidInputError, match=r"pixel limit|decompression bomb"):
        load_image(bomb)
    elapsed = time.process_time() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20_000_000, f"peak {peak} bytes: the bomb was decoded"
    assert elapsed < 1.0


def test_a_hostile_image_in_a_batch_names_its_item() -> None:
    guard = Guard(ScriptedBackend(RESULT_SAFE_REQUEST))
    with pytest.raises(InvalidInputError, match=r"batch item 1: .*0 bytes"):
        guard.check_batch(["fine", {"text": "look", "image": b""}])


# -- text -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n\t  ", "\u3000\u2003"])
def test_empty_or_blank_text_without_an_image_is_refused(text: str) -> None:
    guard = Guard(ScriptedBackend(RESULT_SAFE_REQUEST))
    with pytest.raises(InvalidInputError, match="nothing to check"):
        guard.check(text)


HOSTILE_TEXT = [
    "NUL \x00 in the middle",
    "bell \x07 escape \x1b[31m red \x7f delete",
    "right-to-left \u202e gnp.exe \u202c override",
    "zero width \u200b\u200c\u200d joiners and \ufeff BOM",
    "lone surrogate \ud83d here",
]


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_hostile_characters_reach_the_guard_and_cannot_dodge_it(text: str) -> None:
    seen: list[str] = []

    def judge(prompt):  # type: ignore[no-untyped-def]
        seen.append(prompt.messages[1]["content"][-1]["text"])
        return RESULT_HARMFUL_REQUEST

    verdict = Guard(ScriptedBackend(judge)).check(text)
    assert verdict.request is Label.HARMFUL and verdict.blocked
    # Nothing is stripped (that would hide evidence); only unencodable surrogates are replaced.
    assert text.replace("\ud83d", "\ufffd") in seen[0]


@pytest.mark.slow
@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_hostile_characters_through_the_real_model_give_a_verdict(tiny_guard, text) -> None:  # type: ignore[no-untyped-def]
    verdict = tiny_guard.check(text)
    # The tiny model emits noise: the guard cannot decide, so it blocks. It must not crash.
    assert verdict.status in (Status.PARSE_ERROR, Status.TRUNCATED, Status.OK)
    assert verdict.blocked or verdict.status is Status.OK


def test_a_megabyte_of_text_is_refused_quickly_not_cut_into_a_pass() -> None:
    calls: list[int] = []

    def judge(prompt):  # type: ignore[no-untyped-def]
        calls.append(1)
        return RESULT_SAFE_REQUEST

    guard = Guard(ScriptedBackend(judge))
    megabyte = "harmless words " * 70_000
    began = time.process_time()
    with pytest.raises(InvalidInputError, match="text too long"):
        guard.check(megabyte)
    assert time.process_time() - began < 2.0 and not calls


def test_a_megabyte_of_text_is_windowed_when_the_budget_allows() -> None:
    text = "x" * 1_000_000 + " the harmful tail"

    def judge(prompt):  # type: ignore[no-untyped-def]
        window = prompt.messages[1]["content"][-1]["text"]
        return RESULT_HARMFUL_REQUEST if "harmful tail" in window else RESULT_SAFE_REQUEST

    guard = Guard(ScriptedBackend(judge), max_text_chars=50_000, window_overlap=100, max_windows=64)
    verdict = guard.check(text)
    assert verdict.request is Label.HARMFUL and verdict.blocked


def test_numpy_noise_of_every_shape_is_typed() -> None:
    for array in (np.zeros((0, 5, 3), np.uint8), np.zeros((5,), np.uint8), np.zeros((2, 2, 2))):
        with pytest.raises(InvalidInputError):
            load_image(array)


def test_a_window_of_emoji_is_bounded_in_bytes_not_only_characters() -> None:
    """6,000 emoji are 6,000 characters but 24,000 bytes (and, byte-level, up to 24,000 tokens)."""
    windows: list[str] = []

    def judge(prompt):  # type: ignore[no-untyped-def]
        windows.append(prompt.messages[1]["content"][-1]["text"])
        return RESULT_HARMFUL_REQUEST if "tail" in windows[-1] else RESULT_SAFE_REQUEST

    text = "\U0001f600" * 6000 + " the tail"
    verdict = Guard(ScriptedBackend(judge)).check(text)
    assert verdict.blocked and verdict.windows == len(windows) >= 4
    for window in windows:  # a byte-level BPE never makes more tokens than bytes
        assert len(window.encode()) <= 6000 + 200  # the request window plus the transcript


def test_a_stuck_generation_gives_a_timeout_and_the_batcher_serves_on() -> None:
    import threading

    from guardvl_sdk import BackendTimeoutError
    from guardvl_sdk.backends.batching import Batcher

    release = threading.Event()

    def run(items: list[str]) -> list[str]:
        if "stuck" in items:
            release.wait(10)
        return [item.upper() for item in items]

    batcher: Batcher[str, str] = Batcher(run, window=0.0, max_batch_size=4, timeout=0.5)
    began = time.perf_counter()
    with pytest.raises(BackendTimeoutError):
        batcher(["stuck"])
    assert time.perf_counter() - began < 8.0  # the 0.5 s timeout, not the 10 s hang
    release.set()  # the stuck call returns; the next caller is served
    assert batcher(["next"]) == ["NEXT"]


@pytest.mark.parametrize("batch_window_ms", [5.0, None], ids=["batched", "one-at-a-time"])
def test_a_hung_model_call_fails_others_closed_at_the_deadline(
    tiny_model_dir: Any, batch_window_ms: float | None
) -> None:
    """A kernel that never returns (``generate`` blocked: a stand-in for a hung CUDA call, which
    cannot be made on CPU) holds the model lock. Other callers get a fail-closed verdict at the
    check deadline ``timeout`` (the batcher's wait, or the model lock's acquire timeout) while the
    call is still stuck; batched, the hung call's own caller too. Once it returns, callers are
    served again."""
    import threading

    deadline = 2.0
    guard = Guard.from_pretrained(
        tiny_model_dir, timeout=deadline, max_new_tokens=4, batch_window_ms=batch_window_ms
    )
    model = guard.backend.model  # type: ignore[attr-defined]
    real_generate = model.generate
    entered, release, returned = threading.Event(), threading.Event(), threading.Event()

    def hung(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(60)
        try:
            return real_generate(*args, **kwargs)
        finally:
            returned.set()

    first: list[Any] = []
    model.generate = hung
    caller = threading.Thread(target=lambda: first.append(guard.check("first")), daemon=True)
    caller.start()
    try:
        assert entered.wait(30)  # the first call is inside generate, holding the model
        model.generate = real_generate  # only that call hangs
        began = time.monotonic()
        verdict = guard.check("a second question")
        waited = time.monotonic() - began
        assert not returned.is_set()  # decided while the model was still held
        assert verdict.blocked and verdict.status is Status.ERROR
        assert "busy" in (verdict.error or "")  # "stayed busy" / "the model is busy or stuck"
        assert deadline - 0.05 <= waited < deadline + 30  # at the deadline, not after the hung call
        if batch_window_ms is not None:  # the hung call's caller waits in the batcher: bounded
            caller.join(30)
            assert first and first[0].blocked and not returned.is_set()
    finally:
        release.set()
        caller.join(60)
    assert returned.wait(60) and not caller.is_alive()
    assert guard.check("a third question").status is not Status.ERROR  # served again
