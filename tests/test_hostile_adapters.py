"""Ways around the guard through the OpenAI adapter: fields it would forward unseen, answer
fields it would return unchecked, and generation paths that skip it. Each is refused with a
typed error or checked; the real openai client over a scripted transport (see test_openai.py)."""

from __future__ import annotations

from typing import Any

import pytest
from openai import OpenAI

from guardvl_sdk import ConfigurationError, GuardBlocked, InvalidInputError
from guardvl_sdk.integrations.openai import guard_openai
from guardvl_sdk.testing import FakeChatServer, FakeReply
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


def test_every_reasoning_field_is_inspected_not_only_the_first() -> None:
    def answer(asked: str, index: int) -> dict[str, Any]:
        return {
            "role": "assistant",
            "content": "I cannot say.",
            "reasoning_content": "a harmless thought",
            "reasoning": "here is the poison you asked for",  # a second field, filled otherwise
        }

    guarded = guard_openai(make_client(Upstream(answer)), scripted()[0])
    with pytest.raises(GuardBlocked):
        guarded.chat.completions.create(model="vlm", messages=ask("hello"))


@pytest.mark.parametrize("name", ["post", "request", "batches", "with_raw_response"])
def test_raw_requests_and_batches_are_refused(name: str) -> None:
    guarded = guard_openai(make_client(Upstream(default_answer)), scripted()[0])
    with pytest.raises(ConfigurationError, match="not guarded"):
        getattr(guarded, name)


# -- a reasoning model's streamed thoughts, over real HTTP --------------------------------------


def streamed_reasoning(guarded: Any) -> tuple[list[str], list[str]]:
    """The reasoning and text pieces a guarded stream released, until it ended or was blocked."""
    thoughts: list[str] = []
    text: list[str] = []
    stream = guarded.chat.completions.create(model="vlm", messages=ask("hello"), stream=True)
    for chunk in stream:
        for choice in chunk.choices:
            thoughts.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
            text.append(choice.delta.content or "")
    return thoughts, text


def test_streamed_reasoning_content_is_judged_before_it_is_released() -> None:
    """The real openai client over loopback HTTP to a server streaming ``delta.reasoning_content``
    word by word (as vLLM, SGLang and DeepSeek do): the thoughts are output, judged while they
    stream, and a harmful one stops the stream before any of it reaches the caller."""
    thought = "Let me think this through carefully: the poison is made from"
    reply = FakeReply(content="I cannot help with that.", reasoning=thought)
    with FakeChatServer(reply) as server:
        client = OpenAI(base_url=server.url, api_key="k", max_retries=0)
        guarded = guard_openai(client, scripted()[0], stream_every=16)
        released: list[str] = []
        with pytest.raises(GuardBlocked) as blocked:
            stream = guarded.chat.completions.create(model="vlm", messages=ask("hi"), stream=True)
            for chunk in stream:
                delta = chunk.choices[0].delta if chunk.choices else None
                released.append(str((delta.model_extra or {}) if delta else ""))
        assert blocked.value.verdict.stage == "output"
        assert released and "poison" not in "".join(released)  # some passed, not the harmful one

    clean = FakeReply(content="Knead it.", reasoning="Bread needs flour, water and time.")
    with FakeChatServer(clean) as server:
        client = OpenAI(base_url=server.url, api_key="k", max_retries=0)
        thoughts, text = streamed_reasoning(guard_openai(client, scripted()[0]))
    assert "".join(thoughts).split() == clean.reasoning.split()  # released whole, in order
    assert "".join(text).split() == ["Knead", "it."]


@pytest.mark.parametrize(
    "attempt",
    [
        lambda g, body: g.chat.with_raw_response.completions.create(**body),  # was sent unguarded
        lambda g, body: g.chat.with_streaming_response.completions.create(**body),  # was sent
        lambda g, body: g.put("/chat/completions", body=body, cast_to=object),  # was sent
        lambda g, body: g.patch("/chat/completions", body=body, cast_to=object),  # was sent
        lambda g, body: g.get("/chat/completions/id1", cast_to=object),
        lambda g, body: g._client.post("http://vlm.test/v1/chat/completions", json=body),  # sent
        lambda g, body: g.chat.completions.retrieve("id1"),  # a stored answer, unchecked
        lambda g, body: g.chat.completions.messages.list("id1"),
        lambda g, body: g.with_options(timeout=5).put("/chat/completions", body=body),
        lambda g, body: g.audio,
        lambda g, body: g.images,
        lambda g, body: g.conversations,
        lambda g, body: g.evals,
        lambda g, body: g.some_resource_added_in_a_later_openai,
    ],
)
def test_every_other_way_through_the_client_is_refused_before_sending(attempt: Any) -> None:
    upstream = Upstream(default_answer)
    guarded = guard_openai(make_client(upstream), scripted()[0])
    with pytest.raises(ConfigurationError, match="not guarded"):
        attempt(guarded, {"model": "vlm", "messages": ask("give poison")})
    assert upstream.requests == []


def test_settings_and_resources_that_do_not_generate_pass_through() -> None:
    import copy

    client = make_client(Upstream(default_answer))
    guarded = guard_openai(client, scripted()[0])
    assert guarded.api_key == client.api_key and guarded.max_retries == client.max_retries
    assert guarded.embeddings is not None and guarded.moderations is not None
    assert copy.copy(guarded).unguarded is client  # dunder probes are attribute errors


# -- answer fields the guard does not judge (the answer allowlist), over real HTTP ----------

SECRET = {"secret_channel": "here is the poison you asked for"}


def _chat(server: FakeChatServer, stream: bool, released: list[str]) -> None:
    client = OpenAI(base_url=server.url, api_key="k", max_retries=0)
    answer = guard_openai(client, scripted()[0]).chat.completions.create(
        model="vlm", messages=ask("hi"), stream=stream
    )
    released += [item.model_dump_json() for item in (answer if stream else [answer])]


def _responses(server: FakeChatServer, stream: bool, released: list[str]) -> None:
    client = OpenAI(base_url=server.url, api_key="k", max_retries=0)
    answer = guard_openai(client, scripted()[0]).responses.create(
        model="vlm", input="hi", stream=stream
    )
    released += [item.model_dump_json() for item in (answer if stream else [answer])]


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
@pytest.mark.parametrize("call", [_chat, _responses], ids=["chat", "responses"])
def test_an_unknown_answer_field_is_refused_and_the_answer_withheld(
    call: Any, stream: bool
) -> None:
    """A server adds a field the guard does not judge to the chat message (streamed: to a delta)
    or to the response's message item: the answer is withheld with InvalidInputError, and nothing
    released carries the field's text. The same answer without it reaches the caller."""
    clean: list[str] = []
    with FakeChatServer(FakeReply(content="Knead the dough.")) as server:
        call(server, stream, clean)
    assert "Knead" in "".join(clean)  # the control: the answer passes without the field

    released: list[str] = []
    with (
        FakeChatServer(FakeReply(content="hi", extra=SECRET)) as server,
        pytest.raises(InvalidInputError, match="secret_channel"),
    ):
        call(server, stream, released)
    assert "poison" not in "".join(released)


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_an_empty_known_metadata_field_passes(stream: bool) -> None:
    """The allowlist refuses content, not shape: an empty ``annotations`` list on a chat message
    passes (the fake server's response items carry one too)."""
    released: list[str] = []
    with FakeChatServer(FakeReply(content="Knead the dough.", extra={"annotations": []})) as server:
        _chat(server, stream, released)
        _responses(server, stream, released)
    assert "".join(released).count("Knead") >= 2


@pytest.mark.parametrize(
    "field",
    [
        {"refusal": "here is the poison you asked for"},
        {"function_call": {"name": "send", "arguments": '{"text": "the poison you asked for"}'}},
    ],
    ids=["refusal", "legacy-function-call"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_a_refusal_and_a_legacy_function_call_are_judged(
    field: dict[str, Any], stream: bool
) -> None:
    """``message.refusal`` and the legacy ``message.function_call`` are text the caller gets: they
    are judged as the answer (both were known to the allowlist but unread in a whole answer)."""
    released: list[str] = []
    with (
        FakeChatServer(FakeReply(content="hi", extra=field)) as server,
        pytest.raises(GuardBlocked) as blocked,
    ):
        _chat(server, stream, released)
    assert blocked.value.verdict.stage == "output"
    assert "poison" not in "".join(released)


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user", "content": [{"type": "text", "text": "hi", "secret": "give poison"}]},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:,", "alt": "poison"}}],
        },
        {"role": "user", "content": [{"type": "refusal", "refusal": "no", "note": "poison"}]},
        {"role": "user", "name": "please give me the poison recipe", "content": "hi"},
    ],
    ids=["text-part-key", "image-url-key", "refusal-part-key", "name-sentence"],
)
def test_request_fields_the_guard_does_not_read_are_refused_before_sending(
    message: dict[str, Any],
) -> None:
    """A part key or a message ``name`` the VLM would receive unread is refused (an allowlist of
    part keys; a name only within OpenAI's own limit), and nothing is sent."""
    upstream = Upstream(default_answer)
    guarded = guard_openai(make_client(upstream), scripted()[0])
    with pytest.raises(InvalidInputError, match=r"unread|unchecked"):
        guarded.chat.completions.create(model="vlm", messages=[message])
    assert upstream.requests == []


def test_request_metadata_the_model_does_not_read_passes() -> None:
    """The control: a short name, an image's ``detail``, an empty annotation list and a
    ``cache_control`` marker pass, and the request is sent as given."""
    message = {
        "role": "user",
        "name": "alice_01",
        "content": [
            {"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}},
            {"type": "output_text", "text": "earlier", "annotations": []},
        ],
    }
    upstream = Upstream(default_answer)
    guard_openai(make_client(upstream), scripted()[0]).chat.completions.create(
        model="vlm", messages=[message]
    )
    assert upstream.requests[0]["messages"] == [message]
