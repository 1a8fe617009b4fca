"""``guardvl serve``'s app over real HTTP on loopback: the openai client, httpx, the gates."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import openai
import pytest
from PIL import Image

from guardvl_sdk import Guard, Prompt
from guardvl_sdk.server import ServerSettings, serve_in_thread
from guardvl_sdk.server.answers import OPENAI_CATEGORIES
from guardvl_sdk.testing import ScriptedBackend
from tests.conftest import RESULT_HARMFUL_REQUEST, RESULT_SAFE_REQUEST

KEY = "test-key-123"
SAFE_RESPONSE = (
    "<think>\nA kind answer.\n</think>\n"
    "<result>\nRequest: unharmful\nResponse: unharmful\n</result>"
)
HARMFUL_RESPONSE = (
    "<think>\nIt explains a weapon.\n</think>\n"
    "<result>\nRequest: unharmful\nResponse: harmful\n</result>"
)


def transcript(prompt: Prompt) -> str:
    return "".join(p.get("text", "") for p in prompt.messages[1]["content"])


def judge(prompt: Prompt) -> str:
    """The scripted guard: a request about bombs is harmful; so is a response that explains one."""
    text = transcript(prompt)
    request, _, response = text.partition("AI assistant:")
    if prompt.score_label == "response":
        return HARMFUL_RESPONSE if "detonator" in response else SAFE_RESPONSE
    return RESULT_HARMFUL_REQUEST if "bomb" in request else RESULT_SAFE_REQUEST


@pytest.fixture(scope="module")
def backend() -> ScriptedBackend:
    return ScriptedBackend(judge)


@pytest.fixture(scope="module")
def url(backend: ScriptedBackend) -> Iterator[str]:
    settings = ServerSettings(api_keys=(KEY,), max_body_bytes=200_000, max_images=2)
    with serve_in_thread(Guard(backend), settings) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)


def png_data_url(color: str = "red") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_openai_moderations_text(client: openai.OpenAI) -> None:
    result = client.moderations.create(input=["how do I build a bomb", "a soup recipe"])
    harmful, benign = result.results
    assert harmful.flagged and not benign.flagged
    categories = harmful.categories.model_dump(by_alias=True)
    assert categories.pop("harmful") is True and benign.categories.model_extra["harmful"] is False
    assert set(categories) == set(OPENAI_CATEGORIES) and not any(categories.values())
    assert harmful.category_scores.model_extra["harmful"] == 1.0
    applied = harmful.category_applied_input_types.model_dump(by_alias=True)
    assert applied.pop("harmful") == ["text"] and not any(applied.values())
    verdict = harmful.model_extra["guardvl"]
    assert verdict["request"] == "harmful" and verdict["status"] == "ok"
    assert verdict["reasoning"] == "Step 1: the user asks how to hurt someone."


def test_openai_moderations_with_an_image(client: openai.OpenAI, backend: ScriptedBackend) -> None:
    before = len(backend.prompts)
    result = client.moderations.create(
        input=[
            {"type": "text", "text": "what is in this picture"},
            {"type": "image_url", "image_url": {"url": png_data_url()}},
        ]
    )
    (only,) = result.results
    assert not only.flagged
    assert only.category_applied_input_types.model_extra["harmful"] == ["text", "image"]
    (prompt,) = backend.prompts[before:]
    assert len(prompt.images) == 1 and prompt.images[0].size == (32, 32)
    assert "what is in this picture" in transcript(prompt)


def test_native_check_with_a_response(url: str) -> None:
    body = {"text": "tell me about chemistry", "response": "wire the detonator to ..."}
    answer = httpx.post(
        f"{url}/v1/guard/check", json=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert answer.status_code == 200
    verdict = answer.json()
    assert verdict["stage"] == "output" and verdict["response"] == "harmful"
    assert verdict["blocked"] is True and verdict["harmful"] is True
    assert set(verdict) >= {"reasoning", "raw", "score", "usage", "latency_ms", "model", "policy"}


def test_native_check_messages(url: str, backend: ScriptedBackend) -> None:
    image = {"type": "image_url", "image_url": {"url": png_data_url()}}
    body = {
        "messages": [
            {"role": "system", "content": "You describe pictures."},
            {"role": "user", "content": [{"type": "text", "text": "what is this"}, image]},
        ],
        "response": "a red square",
    }
    before = len(backend.prompts)
    answer = httpx.post(f"{url}/v1/guard/check", json=body, headers={"x-api-key": KEY})
    verdict = answer.json()
    assert verdict["stage"] == "output" and verdict["blocked"] is False
    kinds = sorted(part["kind"] for part in verdict["inspected"])
    assert kinds == ["image", "text", "text", "text"]  # system, user, answer: every part
    (prompt,) = backend.prompts[before:]
    assert "You describe pictures." in transcript(prompt) and len(prompt.images) == 1


def test_native_messages_never_name_a_server_file(url: str) -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "image", "image": "/etc/hosts"}]}]}
    answer = httpx.post(f"{url}/v1/guard/check", json=body, headers={"x-api-key": KEY})
    assert answer.status_code == 400 and "image_url" in answer.json()["error"]["message"]


def test_without_a_key_401(url: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"x-api-key": "test-key-12"}):
        answer = httpx.post(f"{url}/v1/moderations", json={"input": "hi"}, headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0).moderations.create(
            input="hi"
        )


def test_too_large_413(url: str, client: openai.OpenAI) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    big = httpx.post(f"{url}/v1/moderations", json={"input": "x" * 300_000}, headers=auth)
    assert big.status_code == 413 and "bytes" in big.json()["error"]["message"]
    parts = [{"type": "image_url", "image_url": {"url": png_data_url()}}] * 3
    many = httpx.post(f"{url}/v1/moderations", json={"input": parts}, headers=auth)
    assert many.status_code == 413 and "3 images" in many.json()["error"]["message"]


def test_malformed_json_400(url: str) -> None:
    answer = httpx.post(
        f"{url}/v1/guard/check",
        content=b'{"text": "unterminated',
        headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "input": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}
                ]
            },
            "image",
        ),
        (
            {"input": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]},
            "data: or http(s) URL",
        ),
        (
            {"input": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
            "not fetched",
        ),
        ({"input": [{"type": "input_audio", "input_audio": {}}]}, "input_audio"),
        ({"input": "hi", "extra": 1}, "unknown field"),
        ({"input": 3}, "input must be"),
    ],
)
def test_unreadable_input_400(url: str, body: dict[str, object], message: str) -> None:
    answer = httpx.post(f"{url}/v1/moderations", json=body, headers={"x-api-key": KEY})
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]["message"]


def test_health_ready_metrics(url: str, client: openai.OpenAI) -> None:
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{url}/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    client.moderations.create(input="how do I build a bomb")
    # A check refused for its key, made here so the test stands alone (it read one an earlier
    # test had made, and failed when run by itself).
    assert httpx.post(f"{url}/v1/moderations", json={"input": "x"}).status_code == 401
    assert httpx.get(f"{url}/metrics").status_code == 401
    text = httpx.get(f"{url}/metrics", headers={"x-api-key": KEY}).text
    assert (
        'guardvl_checks_total{api="moderations",decision="blocked",stage="input",status="ok"}'
        in text
    )
    assert "guardvl_check_seconds_bucket" in text
    assert "guardvl_checks_in_flight 0.0" in text
    assert 'guardvl_requests_refused_total{code="401"}' in text


class DownBackend:
    """A backend whose server is down: every generation fails."""

    model_id = "down"

    def generate(self, prompts: list[Prompt]) -> list[object]:
        raise ConnectionError("connection refused")


def test_backend_down_fails_closed() -> None:
    with serve_in_thread(Guard(DownBackend())) as url:  # type: ignore[arg-type]
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        (result,) = client.moderations.create(input="a soup recipe").results
        assert result.flagged is True
        verdict = result.model_extra["guardvl"]
        assert verdict["status"] == "error" and "connection refused" in verdict["error"]
        assert httpx.get(f"{url}/ready").status_code == 503
        litellm = httpx.post(
            f"{url}/beta/litellm_basic_guardrail_api",
            json={"input_type": "request", "texts": ["hi"]},
        )
        assert litellm.json()["action"] == "BLOCKED"


class SlowBackend:
    model_id = "slow"

    def generate(self, prompts: list[Prompt]) -> list[object]:
        import time

        time.sleep(1.0)
        raise AssertionError("the timeout answers first")


def test_timeout_fails_closed() -> None:
    with serve_in_thread(Guard(SlowBackend()), ServerSettings(timeout=0.2)) as url:  # type: ignore[arg-type]
        verdict = httpx.post(f"{url}/v1/guard/check", json={"text": "hi"}).json()
        assert verdict["blocked"] is True and verdict["status"] == "error"
        assert "timeout" in verdict["error"]


def test_litellm_generic_guardrail_api(url: str) -> None:
    path = f"{url}/beta/litellm_basic_guardrail_api"
    auth = {"x-api-key": KEY}
    harmful = {
        "input_type": "request",
        "texts": ["You are helpful.", "how do I build a bomb"],
        "litellm_call_id": "1",
        "request_data": {},
    }
    answer = httpx.post(path, json=harmful, headers=auth).json()
    assert answer["action"] == "BLOCKED" and "request=harmful" in answer["blocked_reason"]
    benign = {"input_type": "request", "texts": ["a soup recipe"], "images": [png_data_url()]}
    assert httpx.post(path, json=benign, headers=auth).json() == {"action": "NONE"}
    response = {"input_type": "response", "texts": ["wire the detonator"]}
    assert httpx.post(path, json=response, headers=auth).json()["action"] == "BLOCKED"
    tools = {"input_type": "request", "texts": ["hi"], "tools": [{"type": "function"}]}
    assert httpx.post(path, json=tools, headers=auth).json()["action"] == "BLOCKED"
    assert httpx.post(path, json=benign).status_code == 401
