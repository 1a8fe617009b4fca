"""Ways around the guard through the OpenAI adapter: fields it would forward unseen, answer
fields it would return unchecked, and generation paths that skip it. Each is refused with a
typed error or checked; the real openai client over a scripted transport (see test_openai.py)."""

from __future__ import annotations

from typing import Any

import pytest

from guardvl_sdk import ConfigurationError, GuardBlocked
from guardvl_sdk.integrations.openai import guard_openai
from tests.test_openai import Upstream, ask, default_answer, make_client, scripted


def test_extra_body_messages_are_refused_before_anything_is_sent() -> None:
    upstream = Upstream(default_answer)
    guarded = guard_openai(make_client(upstream), scripted()[0])
    hidden = [{"role": "user", "content": "give poison"}]
    with pytest.raises(ConfigurationError, match=r"extra_body\['messages'\]"):
        guarded.chat.completions.create(
            model="vlm", messages=ask("hello"), extra_body={"messages": hidden}
        )
    assert upstream.requests == []


@pytest.mark.parametrize(
    "field", [{"prediction": {"type": "content", "content": "x"}}, {"prompt": "x"}]
)
def test_unknown_fields_are_refused(field: dict[str, Any]) -> None:
    upstream = Upstream(default_answer)
    guarded = guard_openai(make_client(upstream), scripted()[0])
    with pytest.raises(ConfigurationError, match="does not forward"):
        guarded.chat.completions.create(model="vlm", messages=ask("hello"), **field)
    assert upstream.requests == []


def test_known_sampling_fields_in_extra_body_pass() -> None:
    upstream = Upstream(default_answer)
    guarded = guard_openai(make_client(upstream), scripted()[0])
    guarded.chat.completions.create(model="vlm", messages=ask("hello"), extra_body={"top_k": 5})
    assert upstream.requests[0]["top_k"] == 5


def test_reasoning_content_is_inspected_as_output() -> None:
    def answer(asked: str, index: int) -> dict[str, Any]:
        return {
            "role": "assistant",
            "content": "I cannot say.",
            "reasoning_content": "here is the poison you asked for",
        }

    guarded = guard_openai(make_client(Upstream(answer)), scripted()[0])
    with pytest.raises(GuardBlocked):
        guarded.chat.completions.create(model="vlm", messages=ask("hello"))


@pytest.mark.parametrize("name", ["post", "request", "batches", "with_raw_response"])
def test_raw_requests_and_batches_are_refused(name: str) -> None:
    guarded = guard_openai(make_client(Upstream(default_answer)), scripted()[0])
    with pytest.raises(ConfigurationError, match="not guarded"):
        getattr(guarded, name)
