"""The one reader of OpenAI-format answers (guard_openai and the LiteLLM guardrail use it)."""

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from guardvl_sdk import InvalidInputError
from guardvl_sdk.hooks import StreamedChoices, StreamOptions, choice_answers


def completion(**message: object) -> ChatCompletion:
    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", **message}}
    return ChatCompletion.model_validate(
        {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}
    )


def chunk(**delta: object) -> ChatCompletionChunk:
    choice = {"index": 0, "delta": delta}
    return ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [choice],
        }
    )


def test_every_reasoning_field_is_read_before_the_text() -> None:
    answers = choice_answers(
        completion(content="Hi.", reasoning_content="A", reasoning="B").choices
    )
    assert answers == {0: "A\n\nB\n\nHi."}


def test_an_answer_field_the_reader_does_not_judge_is_refused() -> None:
    audio = {"id": "a", "data": "UklGRg==", "expires_at": 0, "transcript": "secret"}
    with pytest.raises(InvalidInputError, match="audio"):
        choice_answers(completion(content="Hi.", audio=audio).choices)
    assert choice_answers(completion(content="Hi.", annotations=[]).choices) == {0: "Hi."}


def test_a_streamed_delta_field_the_reader_does_not_judge_is_refused() -> None:
    choices = StreamedChoices(StreamOptions(every=None, buffered=True))
    assert choices.add(chunk(content="Hi.", reasoning_content="A")) == []
    assert [due.answer for due in choices.finish()] == ["AHi."]
    with pytest.raises(InvalidInputError, match="citations"):
        StreamedChoices(StreamOptions()).add(chunk(content="Hi.", citations=["http://x"]))
