"""The chat completions format: messages out, generations (and the logprob score) back."""

from __future__ import annotations

import base64
import io
import json
import math
from typing import Any

import numpy as np
import pytest
from PIL import Image

from guardvl_sdk import GUARDREASONER_VL, BackendError, Status
from guardvl_sdk.backends.base import Prompt
from guardvl_sdk.backends.chat_api import chat_messages, json_body, label_score, read_completion
from guardvl_sdk.inputs import load_image

RESULT = "<think>\nStep 1.\n</think>\n<result>\nRequest: harmful\nResponse: None\n</result>"


def completion(content: str | None, finish_reason: str = "stop", **choice: Any) -> dict[str, Any]:
    return {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
                **choice,
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
    }


def tokens(*pieces: str | tuple[str, dict[str, float]]) -> list[dict[str, Any]]:
    """A logprobs.content list; a (token, {alternative: probability}) piece carries alternatives."""
    out = []
    for piece in pieces:
        token, alternatives = piece if isinstance(piece, tuple) else (piece, {piece: 1.0})
        top = [{"token": t, "logprob": math.log(p)} for t, p in alternatives.items()]
        out.append({"token": token, "logprob": top[0]["logprob"], "top_logprobs": top})
    return out


# -- messages ------------------------------------------------------------------------------------


def jpeg(width: int, height: int, **save: Any) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80, **save)
    return buffer.getvalue()


def sent_bytes(source: bytes, max_pixels: int = 768 * 768) -> bytes:
    prompt = GUARDREASONER_VL.render("What is this?", [load_image(source, max_pixels=max_pixels)])
    (url,) = [
        p["image_url"]["url"] for p in chat_messages(prompt)[1]["content"] if "image_url" in p
    ]
    return base64.b64decode(url.split(",", 1)[1])


def test_a_jpeg_left_as_decoded_is_sent_as_its_own_bytes() -> None:
    photo = jpeg(320, 240)
    assert sent_bytes(photo) == photo  # the server decodes exactly the pixels the guard hashed


def test_a_jpeg_the_guard_changed_is_encoded_from_its_pixels() -> None:
    photo = jpeg(320, 240)
    resized = sent_bytes(photo, max_pixels=100 * 100)
    assert resized != photo and Image.open(io.BytesIO(resized)).size == (115, 86)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned by 90 degrees
    turned = sent_bytes(jpeg(320, 240, exif=exif.tobytes()))
    assert Image.open(io.BytesIO(turned)).size == (240, 320)


def test_the_json_body_is_the_json_of_the_body() -> None:
    photo = jpeg(64, 48)
    prompt = GUARDREASONER_VL.render('Say "hi" \\ \u2028', [load_image(photo)] * 2)
    body = {"model": "m", "messages": chat_messages(prompt), "temperature": 0.0, "x": [1, None]}
    data = json_body(body)
    assert json.loads(data) == body
    assert data.count(base64.b64encode(photo)) == 2  # spliced in as they are


def test_image_parts_become_png_data_urls_with_the_same_pixels() -> None:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)) for _ in range(2)]
    prompt = GUARDREASONER_VL.render("What is this?", images)
    messages = chat_messages(prompt, image_format="png")

    assert messages[0] == prompt.messages[0]  # the system instruction, verbatim
    parts = messages[1]["content"]
    assert [part["type"] for part in parts] == ["text", "image_url", "image_url", "text"]
    assert parts[0] == prompt.messages[1]["content"][0]
    assert parts[3] == prompt.messages[1]["content"][3]
    for part, image in zip(parts[1:3], images, strict=True):
        url = part["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        assert np.array_equal(np.asarray(load_image(url)), np.asarray(image))  # lossless
    assert prompt.messages[1]["content"][1] == {"type": "image"}  # the prompt is not mutated


def test_jpeg_data_urls_are_near_lossless_and_encoded_once_per_image(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from guardvl_sdk.backends import chat_api

    y, x = np.mgrid[0:60, 0:80]
    image = Image.fromarray(np.stack([x * 3, y * 4, x + y], axis=-1).astype(np.uint8))
    encodings = 0
    real = chat_api.to_data_url

    def counting(image: Image.Image, *, format: str) -> str:
        nonlocal encodings
        encodings += 1
        return real(image, format=format)  # type: ignore[arg-type]

    monkeypatch.setattr(chat_api, "to_data_url", counting)
    windows = [GUARDREASONER_VL.render(f"window {i}", [image]) for i in range(3)]
    urls = [
        part["image_url"]["url"]
        for window in windows
        for part in chat_messages(window)[1]["content"]
        if part["type"] == "image_url"
    ]
    assert encodings == 1 and len(set(urls)) == 1
    assert urls[0].startswith("data:image/jpeg;base64,")
    sent = np.asarray(load_image(urls[0]), dtype=np.int16)
    assert np.abs(sent - np.asarray(image, dtype=np.int16)).mean() < 1.5


def test_text_only_messages_pass_through() -> None:
    prompt = GUARDREASONER_VL.render("hello", [], "hi there")
    assert chat_messages(prompt) == prompt.messages
    assert prompt.score_label == "response"


def test_images_and_image_parts_must_match() -> None:
    image = Image.new("RGB", (8, 8))
    with pytest.raises(ValueError, match="more image parts"):
        chat_messages(Prompt(messages=[{"role": "user", "content": [{"type": "image"}]}]))
    with pytest.raises(ValueError, match="more images"):
        chat_messages(Prompt(messages=[{"role": "user", "content": "x"}], images=(image,)))


# -- responses -----------------------------------------------------------------------------------


def test_a_completion_becomes_a_generation() -> None:
    generation = read_completion(completion(RESULT))
    assert generation.text == RESULT
    assert generation.finished
    assert (generation.prompt_tokens, generation.completion_tokens) == (120, 30)
    assert generation.score is None  # no log probabilities
    assert generation.extra["finish_reason"] == "stop"


def test_length_means_unfinished_unless_the_result_closed() -> None:
    cut = read_completion(completion("<think>\nStep 1, then", finish_reason="length"))
    assert not cut.finished
    closed = read_completion(completion(RESULT + "\nextra", finish_reason="length"))
    assert closed.finished and closed.text == RESULT


@pytest.mark.parametrize("reason", ["abort", "content_filter", None, "something-new"])
def test_unknown_finish_reasons_count_as_unfinished(reason: str | None) -> None:
    generation = read_completion(completion("<think>\nhalf", finish_reason=reason))  # type: ignore[arg-type]
    assert not generation.finished
    assert GUARDREASONER_VL.parse(generation.text, has_response=False, finished=False).status is (
        Status.TRUNCATED
    )


def test_text_after_the_result_is_cut_as_the_local_backend_stops_there() -> None:
    generation = read_completion(completion(RESULT + "\n<result>Request: unharmful</result>"))
    assert generation.text == RESULT


@pytest.mark.parametrize("field", ["stop_reason", "matched_stop"])  # vLLM, SGLang
def test_a_stop_string_the_server_left_out_is_put_back(field: str) -> None:
    trimmed = RESULT.removesuffix("</result>")
    generation = read_completion(completion(trimmed, **{field: "</result>"}))
    assert generation.text == RESULT
    parsed = GUARDREASONER_VL.parse(generation.text, has_response=False)
    assert parsed.status is Status.OK


def test_an_end_of_sequence_stop_adds_nothing() -> None:
    open_result = RESULT.removesuffix("</result>")
    assert read_completion(completion(open_result, stop_reason=None)).text == open_result


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_split_off_by_the_server_is_put_back(field: str) -> None:
    answer = "<result>\nRequest: harmful\nResponse: None\n</result>"
    data = completion(answer)
    data["choices"][0]["message"][field] = "Step 1."
    generation = read_completion(data)
    assert generation.text == RESULT
    assert GUARDREASONER_VL.parse(generation.text, has_response=False).reasoning == "Step 1."


def test_no_content_is_empty_text() -> None:
    generation = read_completion(completion(None, finish_reason="length"))
    assert generation.text == "" and not generation.finished


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"choices": []},
        {"choices": [{"finish_reason": "stop"}]},
        {"choices": [{"message": {"content": ["a", "list"]}}]},
        [1, 2],
        "text",
    ],
)
def test_what_is_not_a_completion_raises(data: Any) -> None:
    with pytest.raises(BackendError, match="not a chat completion") as caught:
        read_completion(data)
    assert caught.value.status_code == 200
    assert caught.value.body == data


def test_missing_or_odd_usage_counts_zero() -> None:
    data = completion(RESULT)
    data["usage"] = {"prompt_tokens": "many", "completion_tokens": -1}
    generation = read_completion(data)
    assert (generation.prompt_tokens, generation.completion_tokens) == (0, 0)


# -- the score -----------------------------------------------------------------------------------

# How vLLM reports a Qwen2 tokenizer's output: the label word with its leading space.
LABELLED = (
    "<think>",
    "\nStep 1.\n",
    "</think>",
    "\n",
    "<result>",
    "\n",
    "Request",
    ":",
    (" harmful", {" harmful": 0.6, " un": 0.3, "\n": 0.1}),
    "\n",
    "Response",
    ":",
    (" None", {" None": 0.8, " harmful": 0.15, " unh": 0.05}),
    "\n",
    "</result>",
)


def test_score_is_the_harmful_share_at_the_request_label() -> None:
    assert label_score(tokens(*LABELLED), "request") == pytest.approx(0.6 / 0.9)


def test_score_at_the_response_label() -> None:
    assert label_score(tokens(*LABELLED), "response") == pytest.approx(0.15 / 1.0)


def test_score_through_read_completion() -> None:
    data = completion(RESULT, logprobs={"content": tokens(*LABELLED)})
    assert read_completion(data, score_label="request").score == pytest.approx(0.6 / 0.9)


def test_a_label_split_into_several_tokens_is_read_at_its_first() -> None:
    split = ("Request", ": ", ("harm", {"harm": 0.2, "un": 0.7, "h": 0.1}), "ful", "\n")
    assert label_score(tokens(*split), "request") == pytest.approx(0.3 / 1.0)
    glued = ("Request", (": unharmful", {": unharmful": 0.9, ": harmful": 0.1}))
    assert label_score(tokens(*glued), "request") == pytest.approx(0.1)


def test_the_last_label_before_the_result_end_counts() -> None:
    pieces = (
        "Request",
        ":",
        (" harmful", {" harmful": 0.9, " un": 0.1}),
        "\n<result>\n",
        "Request",
        ":",
        (" un", {" un": 0.8, " harmful": 0.2}),
        "harmful\n</result>",
        "Request",
        ":",
        (" harmful", {" harmful": 1.0}),
    )
    assert label_score(tokens(*pieces), "request") == pytest.approx(0.2)


def test_harmless_and_none_count_as_unharmful() -> None:
    pieces = ("Request:", (" harmless", {" harmless": 0.5, " harmful": 0.25, " None": 0.25}))
    assert label_score(tokens(*pieces), "request") == pytest.approx(0.25)


@pytest.mark.parametrize(
    "content",
    [
        None,
        [],
        "not a list",
        [{"no": "token"}],
        tokens("<think>", "no label here"),
        tokens("Request", ":", (" maybe", {" maybe": 0.9, " perhaps": 0.1})),
    ],
)
def test_no_score_without_a_readable_label(content: Any) -> None:
    assert label_score(content, "request") is None
