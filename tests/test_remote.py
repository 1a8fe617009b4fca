"""The remote backend over real loopback HTTP, against FakeChatServer: requests, faults, failover.

FakeChatServer stands in for an inference server where the test needs answers it controls
(errors, delays, dropped connections, log probabilities); the client side is the real one.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from guardvl_sdk import (
    BackendConnectionError,
    BackendError,
    BackendStatusError,
    BackendTimeoutError,
    ConfigurationError,
    Guard,
    JsonlAuditLog,
    Label,
    Status,
)
from guardvl_sdk.backends.chat_api import json_body
from guardvl_sdk.backends.remote import RemoteBackend, parse_retry_after
from guardvl_sdk.backends.stop_strings import with_stop_strings, without_stop_strings
from guardvl_sdk.inputs import load_image
from guardvl_sdk.testing import FakeChatServer, FakeReply
from tests.conftest import RESULT_HARMFUL_REQUEST, RESULT_SAFE_REQUEST


def fast_guard(urls: str | list[str], **options: Any) -> Guard:
    """A guard whose retries wait milliseconds, not seconds."""
    options.setdefault("timeout", 5)
    guard = Guard.from_server(urls, model="guard", **options)
    remote(guard).backoff = 0.01
    remote(guard).max_backoff = 0.05
    return guard


def remote(guard: Guard) -> RemoteBackend:
    assert isinstance(guard.backend, RemoteBackend)
    return guard.backend


@pytest.fixture
def refused_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[FakeChatServer]:
    """A FakeChatServer; parametrize it indirectly to script its replies."""
    with FakeChatServer(getattr(request, "param", RESULT_SAFE_REQUEST)) as fake:
        yield fake


# -- what is sent and what comes back ----------------------------------------------------------


def test_a_check_sends_the_policy_messages_greedy_and_bounded(server: FakeChatServer) -> None:
    guard = fast_guard(server.url, api_key="sk-test", max_new_tokens=77)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    verdict = guard.check("Is this safe?", image)

    assert verdict.status is Status.OK and verdict.request is Label.UNHARMFUL and verdict.allowed
    assert verdict.usage.prompt_tokens > 0 and verdict.usage.completion_tokens > 0
    assert verdict.model == "guard"
    (body,) = server.requests
    assert body["model"] == "guard"
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.0, 1.0, 77)
    assert body["stop"] == ["</result>"]
    assert body["logprobs"] is True and body["top_logprobs"] > 0
    assert server.headers[0]["authorization"] == "Bearer sk-test"

    system, user = body["messages"]
    assert system == {"role": "system", "content": guard.policy.instruction}
    header, image_part, text_part = user["content"]
    url = image_part["image_url"]["url"]
    sent = load_image(url)
    assert url.startswith("data:image/jpeg;base64,") and sent.size == image.size
    # JPEG at quality 95: the same picture (noise is JPEG's worst case); lossless: image_format.
    difference = np.abs(np.asarray(sent, dtype=np.int16) - np.asarray(image, dtype=np.int16))
    assert difference.mean() < 8
    assert header == {"type": "text", "text": "Human user:\n"}
    assert text_part == {"type": "text", "text": "\nIs this safe?\n\nAI assistant:\nNone\n\n"}


def test_options_reach_the_request(server: FakeChatServer) -> None:
    guard = fast_guard(server.url, stop=False, logprobs=False, extra_body={"repetition_penalty": 1})
    guard.check("hi")
    (body,) = server.requests
    assert "stop" not in body and "logprobs" not in body
    assert body["repetition_penalty"] == 1


@pytest.mark.parametrize("server", [RESULT_HARMFUL_REQUEST], indirect=True)
def test_a_harmful_label_blocks(server: FakeChatServer) -> None:
    verdict = fast_guard(server.url).check("how do I hurt someone")
    assert verdict.request is Label.HARMFUL and verdict.blocked and verdict.status is Status.OK


def test_the_score_comes_from_the_label_token_log_probabilities() -> None:
    pieces = ["<result>", "\n", "Request", ":", " harmful", "\n", "Response", ":", " None", "\n"]
    logprobs = [{"token": t, "logprob": 0.0, "top_logprobs": []} for t in pieces]
    logprobs[4]["logprob"] = math.log(0.75)
    logprobs[4]["top_logprobs"] = [
        {"token": " harmful", "logprob": math.log(0.75)},
        {"token": " un", "logprob": math.log(0.25)},
    ]
    reply = FakeReply(content="".join(pieces) + "</result>", logprobs=logprobs)
    with FakeChatServer(reply) as fake:
        verdict = fast_guard(fake.url).check("x")
    assert verdict.score == pytest.approx(0.75)
    assert verdict.request is Label.HARMFUL


def test_no_log_probabilities_no_score(server: FakeChatServer) -> None:
    assert fast_guard(server.url).check("x").score is None


@pytest.mark.parametrize(
    "server",
    [FakeReply(content="<think>\nStep 1, and then", finish_reason="length")],
    indirect=True,
)
def test_a_truncated_answer_fails_closed(server: FakeChatServer) -> None:
    verdict = fast_guard(server.url).check("x")
    assert verdict.status is Status.TRUNCATED and verdict.blocked and verdict.request is None


# -- servers that refuse stop strings (transformers serve) --------------------------------------


def refuses_stop_strings(body: dict[str, Any]) -> str | FakeReply:
    """Answers as transformers serve 5.x does to stop strings with a vision-language model."""
    if "stop" in body:  # then uvicorn closes the connection (the application raised)
        return FakeReply(status=500, body='{"error": "no attribute \'get_vocab\'"}', close=True)
    return RESULT_SAFE_REQUEST + "\nand then the server kept generating"


def test_a_server_that_refuses_stop_strings_is_found_once_and_sent_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeChatServer(refuses_stop_strings) as fake, caplog.at_level("INFO", "guardvl_sdk"):
        guard = fast_guard(fake.url)  # stop strings on, the default
        verdicts = [guard.check("hi"), *guard.check_batch(["a", "b"]), guard.check("c")]
        assert [v.status for v in verdicts] == [Status.OK] * 4
        assert verdicts[0].raw.endswith("</result>")  # still cut there
        # One refused request and its probe without stop strings; then one request per check.
        assert ["stop" in body for body in fake.requests] == [True, False, False, False, False]
    notes = [r.message for r in caplog.records if "refuses stop strings" in r.message]
    assert len(notes) == 1 and fake.url in notes[0] and "HTTP 500" in notes[0]
    assert all(r.levelname == "INFO" for r in caplog.records if "refuses stop" in r.message)


async def test_the_async_path_finds_a_server_that_refuses_stop_strings() -> None:
    with FakeChatServer(refuses_stop_strings) as fake:
        guard = fast_guard(fake.url)
        verdicts = [await guard.acheck("hi"), await guard.acheck("again")]
        assert [v.status for v in verdicts] == [Status.OK] * 2
        assert ["stop" in body for body in fake.requests] == [True, False, False]


def test_concurrent_first_checks_all_get_verdicts_then_send_no_stop_strings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Checks in flight while the server is unknown each probe once; none fails; one log."""
    with (
        FakeChatServer(refuses_stop_strings, latency=0.05) as fake,
        caplog.at_level("INFO", "guardvl_sdk"),
    ):
        # A refused check is not saved by a retry. The timeout is no part of what this proves:
        # generous, so a loaded machine cannot turn a slow answer into an error.
        guard = fast_guard(fake.url, max_retries=0, timeout=60)
        first = guard.check_batch([f"item {i}" for i in range(8)])
        assert [v.status for v in first] == [Status.OK] * 8
        sent_before = len(fake.requests)
        assert 9 <= sent_before <= 16  # each of the 8 at most twice
        assert [v.status for v in guard.check_batch(["x", "y", "z"])] == [Status.OK] * 3
        assert ["stop" in body for body in fake.requests[sent_before:]] == [False] * 3
    assert len([r for r in caplog.records if "refuses stop strings" in r.message]) == 1


def test_stop_strings_are_learned_per_server() -> None:
    with (
        FakeChatServer(refuses_stop_strings) as refusing,
        FakeChatServer(RESULT_SAFE_REQUEST) as ok,
    ):
        guard = fast_guard([refusing.url, ok.url], max_retries=0)
        first = guard.check_batch([f"item {i}" for i in range(6)])  # round-robin over both
        assert [v.status for v in first] == [Status.OK] * 6
        known = len(refusing.requests)
        second = guard.check_batch([f"again {i}" for i in range(6)])
        assert [v.status for v in second] == [Status.OK] * 6
        assert all("stop" in body for body in ok.requests)  # it takes them: they stay on
        later = refusing.requests[known:]
        assert later and not any("stop" in body for body in later)


def test_a_real_server_error_is_not_mistaken_for_refused_stop_strings() -> None:
    script = [FakeReply(status=500, body='{"error": "boom"}')] * 3 + [RESULT_SAFE_REQUEST]
    with FakeChatServer(script) as fake:
        guard = fast_guard(fake.url, max_retries=2)
        assert guard.check("hi").status is Status.OK
        # The probe without stop strings failed too: stop strings stay on, no further probes.
        assert ["stop" in body for body in fake.requests] == [True, False, True, True]


def test_the_stop_strings_ride_last_and_come_off_exactly() -> None:
    body = json_body({"model": "guard", "messages": [{"role": "user", "content": "hi"}]})
    with_stop = with_stop_strings(body)
    assert json.loads(with_stop) == {**json.loads(body), "stop": ["</result>"]}
    assert without_stop_strings(with_stop) == body
    assert without_stop_strings(body) == body  # nothing to take off


def test_stop_in_extra_body_is_the_callers_and_never_dropped() -> None:
    with FakeChatServer(refuses_stop_strings) as fake:
        guard = fast_guard(fake.url, max_retries=0, extra_body={"stop": ["</result>", "\n\n"]})
        assert guard.check("x").status is Status.ERROR  # refused, and not second-guessed
        assert [body["stop"] for body in fake.requests] == [["</result>", "\n\n"]]


def test_stop_false_sends_none_and_never_probes() -> None:
    with FakeChatServer(FakeReply(status=500, body="{}")) as fake:
        assert fast_guard(fake.url, stop=False, max_retries=1).check("x").status is Status.ERROR
        assert ["stop" in body for body in fake.requests] == [False, False]


# -- faults: each ends as RemoteBackend documents, in bounded time -----------------------------


def test_429_with_retry_after_seconds_waits_then_succeeds() -> None:
    script = [FakeReply(status=429, headers={"Retry-After": "0.3"}), RESULT_SAFE_REQUEST]
    with FakeChatServer(script) as fake:
        guard = fast_guard(fake.url)
        remote(guard).max_backoff = 5
        began = time.monotonic()
        verdict = guard.check("x")
        elapsed = time.monotonic() - began
    assert verdict.status is Status.OK and len(fake.requests) == 2
    assert 0.28 <= elapsed < 15  # waited the Retry-After; the bound only catches a hang


def test_429_with_retry_after_http_date_is_honoured() -> None:
    # HTTP dates have one-second resolution: two seconds ahead waits one to two seconds.
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    script = [FakeReply(status=429, headers={"Retry-After": when}), RESULT_SAFE_REQUEST]
    with FakeChatServer(script) as fake:
        guard = fast_guard(fake.url)
        remote(guard).max_backoff = 5
        began = time.monotonic()
        verdict = guard.check("x")
        elapsed = time.monotonic() - began
    assert verdict.status is Status.OK and len(fake.requests) == 2
    assert 0.9 <= elapsed < 15


def test_retry_after_is_capped() -> None:
    script = [FakeReply(status=503, headers={"Retry-After": "3600"}), RESULT_SAFE_REQUEST]
    with FakeChatServer(script) as fake:
        guard = fast_guard(fake.url)  # max_backoff 0.05 s
        began = time.monotonic()
        verdict = guard.check("x")
    assert verdict.status is Status.OK and time.monotonic() - began < 60  # not 3600 s


def test_429_on_one_server_moves_the_retry_to_another_at_once() -> None:
    busy_reply = FakeReply(status=429, headers={"Retry-After": "30"})
    with FakeChatServer(busy_reply) as busy, FakeChatServer(RESULT_SAFE_REQUEST) as free:
        guard = fast_guard([busy.url, free.url])
        remote(guard).max_backoff = 30
        began = time.monotonic()
        verdicts = [guard.check(text) for text in "abcd"]
        assert time.monotonic() - began < 25  # not one 30 s pause
        assert remote(guard).pool.is_down(busy.url)
    assert all(v.status is Status.OK for v in verdicts)
    assert len(busy.requests) == 1  # skipped once it asked for a pause


@pytest.mark.parametrize(
    "server",
    [[FakeReply(status=500, body='{"error": "boom"}'), RESULT_SAFE_REQUEST]],
    indirect=True,
)
def test_500_then_success(server: FakeChatServer) -> None:
    verdict = fast_guard(server.url).check("x")
    assert verdict.status is Status.OK and len(server.requests) == 2
    # A 500 to a request with stop strings is first asked again without them (see below).
    assert ["stop" in body for body in server.requests] == [True, False]


@pytest.mark.parametrize(
    "server", [FakeReply(status=502, body='{"error": "bad gateway"}')], indirect=True
)
def test_persistent_5xx_ends_in_a_fail_closed_error_after_the_retries(
    server: FakeChatServer,
) -> None:
    verdict = fast_guard(server.url, max_retries=2).check("x")
    assert verdict.status is Status.ERROR and verdict.blocked and verdict.harmful is None
    assert "BackendStatusError" in (verdict.error or "") and "502" in (verdict.error or "")
    assert len(server.requests) == 3

    with pytest.raises(BackendStatusError) as caught:
        fast_guard(server.url, max_retries=0, on_error="raise").check("x")
    assert caught.value.status_code == 502
    assert caught.value.body == {"error": "bad gateway"}


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422])
def test_other_4xx_are_not_retried(status: int) -> None:
    with FakeChatServer(FakeReply(status=status, body='{"detail": "no"}')) as fake:
        with pytest.raises(BackendStatusError) as caught:
            fast_guard(fake.url, on_error="raise").check("x")
        # 400 and 422 may be a refusal of stop strings: asked once without them, then given up.
        probed = [False] if status in (400, 422) else []
        assert ["stop" in body for body in fake.requests] == [True, *probed]
    assert caught.value.status_code == status and caught.value.body == {"detail": "no"}


@pytest.mark.parametrize("status", [408, 409])
def test_408_and_409_are_retried(status: int) -> None:
    with FakeChatServer([FakeReply(status=status), RESULT_SAFE_REQUEST]) as fake:
        assert fast_guard(fake.url).check("x").status is Status.OK
        assert len(fake.requests) == 2


@pytest.mark.parametrize(
    "server", [FakeReply(content=RESULT_SAFE_REQUEST, delay=30)], indirect=True
)
def test_a_hang_past_the_timeout_is_retried_then_fails_closed(server: FakeChatServer) -> None:
    guard = fast_guard(server.url, timeout=0.3, max_retries=1)
    began = time.monotonic()
    verdict = guard.check("x")
    elapsed = time.monotonic() - began
    assert verdict.status is Status.ERROR and verdict.blocked
    assert "BackendTimeoutError" in (verdict.error or "")
    assert len(server.requests) == 2
    assert 0.6 <= elapsed < 25  # two timeouts, not the 30 s hang
    with pytest.raises(BackendTimeoutError):
        fast_guard(server.url, timeout=0.2, max_retries=0, on_error="raise").check("x")


@pytest.mark.parametrize("server", [FakeReply(body="{not json")], indirect=True)
def test_malformed_json_is_an_error_and_not_retried(server: FakeChatServer) -> None:
    with pytest.raises(BackendError, match="malformed JSON") as caught:
        fast_guard(server.url, on_error="raise").check("x")
    assert type(caught.value) is BackendError
    assert caught.value.status_code == 200 and caught.value.body == "{not json"
    assert len(server.requests) == 1
    assert fast_guard(server.url).check("x").status is Status.ERROR


@pytest.mark.parametrize(
    "server", [FakeReply(body=json.dumps({"object": "error", "message": "?"}))], indirect=True
)
def test_json_that_is_not_a_completion_is_an_error(server: FakeChatServer) -> None:
    verdict = fast_guard(server.url).check("x")
    assert verdict.status is Status.ERROR and "not a chat completion" in (verdict.error or "")


@pytest.mark.parametrize("server", [[FakeReply(drop=True), RESULT_SAFE_REQUEST]], indirect=True)
def test_a_dropped_connection_is_retried(server: FakeChatServer) -> None:
    assert fast_guard(server.url).check("x").status is Status.OK
    assert len(server.requests) == 2


def test_connection_refused_fails_closed_fast(refused_url: str) -> None:
    guard = fast_guard(refused_url, max_retries=2)
    began = time.monotonic()
    verdict = guard.check("x")
    assert time.monotonic() - began < 10  # backoffs of milliseconds, no waiting
    assert verdict.status is Status.ERROR and verdict.blocked and verdict.harmful is None
    assert "BackendConnectionError" in (verdict.error or "")

    allowing = fast_guard(refused_url, on_error="allow").check("x")
    assert allowing.status is Status.ERROR and allowing.allowed  # fail-open only when asked
    with pytest.raises(BackendConnectionError):
        fast_guard(refused_url, on_error="raise").check("x")


# -- several servers -----------------------------------------------------------------------------


def test_load_is_spread_round_robin() -> None:
    with FakeChatServer(RESULT_SAFE_REQUEST) as one, FakeChatServer(RESULT_SAFE_REQUEST) as two:
        guard = fast_guard([one.url, two.url])
        for i in range(6):
            guard.check(f"check {i}")
    assert len(one.requests) == len(two.requests) == 3


def test_a_refusing_server_is_skipped_for_its_cooldown(refused_url: str) -> None:
    with FakeChatServer(RESULT_SAFE_REQUEST) as fake:
        guard = fast_guard([refused_url, fake.url])
        verdicts = [guard.check(f"check {i}") for i in range(6)]
        assert remote(guard).pool.is_down(refused_url)
    assert all(v.status is Status.OK for v in verdicts)
    assert len(fake.requests) == 6


def test_a_server_going_down_mid_batch_fails_over() -> None:
    with FakeChatServer(FakeReply(content=RESULT_SAFE_REQUEST, delay=0.05)) as survivor:
        doomed = FakeChatServer(FakeReply(content=RESULT_SAFE_REQUEST, delay=5))
        guard = fast_guard([doomed.url, survivor.url], max_concurrency=8)

        async def run() -> list[Any]:
            batch = asyncio.ensure_future(guard.acheck_batch([f"c {i}" for i in range(16)]))
            while len(doomed.requests) < 2:  # requests are in flight on both servers
                await asyncio.sleep(0.01)
            await asyncio.to_thread(doomed.close)  # cuts their connections
            return await batch

        verdicts = asyncio.run(run())
    assert all(v.status is Status.OK for v in verdicts)
    # Every request the doomed server took was cut and answered again by the survivor.
    assert len(survivor.requests) == 16


def test_all_servers_down_fail_closed(refused_url: str) -> None:
    with FakeChatServer(RESULT_SAFE_REQUEST) as fake:
        url = fake.url
    guard = fast_guard([refused_url, url])
    began = time.monotonic()
    verdicts = guard.check_batch(["a", "b", "c"])
    assert time.monotonic() - began < 10
    assert all(v.status is Status.ERROR and v.blocked for v in verdicts)


# -- concurrency ---------------------------------------------------------------------------------


def test_check_batch_keeps_max_concurrency_requests_in_flight() -> None:
    with FakeChatServer(RESULT_SAFE_REQUEST, latency=0.3) as fake:
        guard = fast_guard(fake.url, max_concurrency=4)
        guard.check("warm up")
        began = time.monotonic()
        verdicts = guard.check_batch([f"c {i}" for i in range(8)])
        elapsed = time.monotonic() - began
    assert [v.status for v in verdicts] == [Status.OK] * 8
    assert fake.max_in_flight == 4
    # max_in_flight proves the limit and the overlap (4 at once); the lower bound, that no more
    # than 4 ran at once (two rounds of 0.3 s). No tight upper bound: a loaded machine is slow.
    assert 0.58 <= elapsed < 20


def test_concurrent_acheck_calls_share_the_limit() -> None:
    with FakeChatServer(RESULT_SAFE_REQUEST, latency=0.3) as fake:
        guard = fast_guard(fake.url, max_concurrency=3)

        async def run() -> list[Any]:
            return await asyncio.gather(*(guard.acheck(f"c {i}") for i in range(9)))

        began = time.monotonic()
        verdicts = asyncio.run(run())
        elapsed = time.monotonic() - began
        assert all(v.status is Status.OK for v in verdicts)
        assert fake.max_in_flight == 3
        assert 0.88 <= elapsed < 20  # three rounds of 0.3 s at least; see above
        # Another event loop gets its own client.
        assert asyncio.run(guard.acheck("again")).status is Status.OK


def test_acheck_does_not_block_the_event_loop() -> None:
    with FakeChatServer(RESULT_SAFE_REQUEST, latency=0.3) as fake:
        guard = fast_guard(fake.url)

        async def run() -> int:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.ensure_future(tick())
            await guard.acheck("x")
            ticker.cancel()
            return ticks

        assert asyncio.run(run()) >= 10


def test_one_failing_item_does_not_fail_the_batch() -> None:
    def script(body: dict[str, Any]) -> str | FakeReply:
        if "poison" in json.dumps(body):
            return FakeReply(status=400, body='{"error": "prompt too long"}')
        return RESULT_SAFE_REQUEST

    with FakeChatServer(script) as fake:
        guard = fast_guard(fake.url)
        verdicts = guard.check_batch(["fine", "poison", "also fine"])
        assert [v.status for v in verdicts] == [Status.OK, Status.ERROR, Status.OK]
        assert verdicts[1].blocked and "400" in (verdicts[1].error or "")
        with pytest.raises(BackendStatusError):
            fast_guard(fake.url, on_error="raise").check_batch(["fine", "poison"])


def test_a_prompt_that_fails_alone_is_audited_like_any_failure(tmp_path: Path) -> None:
    def script(body: dict[str, Any]) -> str | FakeReply:
        return FakeReply(status=400) if "poison" in json.dumps(body) else RESULT_SAFE_REQUEST

    with FakeChatServer(script) as fake:
        audit = JsonlAuditLog(tmp_path / "audit.jsonl")
        guard = Guard(RemoteBackend(fake.url, model="guard"), audit=audit)
        guard.check_batch(["fine", "poison"])
    records = JsonlAuditLog.read(tmp_path / "audit.jsonl")
    assert [r.status for r in records] == [Status.OK, Status.ERROR]


# -- configuration and import weight ------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"base_url": "gpu-1:8000/v1"},
        {"base_url": []},
        {"model": ""},
        {"timeout": 0},
        {"max_concurrency": 0},
        {"max_retries": -1},
        {"max_new_tokens": 0},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    arguments = {"base_url": "http://gpu-1:8000/v1", "model": "guard", **options}
    with pytest.raises(ConfigurationError):
        Guard.from_server(arguments.pop("base_url"), **arguments)


def test_batch_size_defaults_to_max_concurrency() -> None:
    assert Guard.from_server("http://h/v1", model="m", max_concurrency=24).batch_size == 24
    assert Guard.from_server("http://h/v1", model="m", batch_size=5).batch_size == 5


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), ("", None), ("inf", None)],
)
def test_parse_retry_after(header: str, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_parse_retry_after_http_dates() -> None:
    ahead = parse_retry_after(email.utils.formatdate(time.time() + 30, usegmt=True))
    assert ahead is not None and 28 <= ahead <= 31
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_a_remote_check_never_imports_torch(server: FakeChatServer) -> None:
    """Remote-only users do not pay for torch or transformers; text checks not even for PIL."""
    code = (
        "import io, sys; from guardvl_sdk import Guard;"
        f"guard = Guard.from_server({server.url!r}, model='m');"
        "assert guard.check('hi').status.value == 'ok';"
        "print(sorted(m for m in ('torch', 'transformers', 'PIL') if m in sys.modules));"
        "from PIL import Image; png = io.BytesIO(); Image.new('RGB', (8, 8)).save(png, 'PNG');"
        "assert guard.check('hi', png.getvalue()).status.value == 'ok';"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split("\n")[:2] == ["[]", "[]"]
