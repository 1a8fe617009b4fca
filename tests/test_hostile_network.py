"""Hostile networks: image URLs aimed at internal addresses (SSRF), servers that drip, stream
forever or echo credentials, and guard servers whose replies are malformed or not numbers.

SSRF cases never connect: a ``connect`` hook records every connection attempt and refuses it, so
the tests prove that no attempt reaches a forbidden address. The servers are real, on loopback.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import ipaddress
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from guardvl_sdk import Guard, GuardVLError, InvalidInputError, Status
from guardvl_sdk import fetch as fetch_module
from guardvl_sdk.backends.remote import RemoteBackend
from guardvl_sdk.fetch import ImageFetcher, refusal

FORBIDDEN = [
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "169.254.169.254",  # cloud metadata
    "172.16.0.1",
    "192.0.0.1",
    "192.168.1.1",
    "198.18.0.1",
    "224.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1",
    "fec0::1",  # site-local (deprecated, still routed internally by some networks)
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "100::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:0:127.0.0.1",  # IPv4-translated
    "64:ff9b::127.0.0.1",  # NAT64 well-known prefix
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::a00:1",  # NAT64 local-use prefix
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2606:4700::5efe:7f00:1",  # ISATAP interface id embedding 127.0.0.1
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_the_rule_refuses_every_internal_form(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_the_rule_passes_global_addresses(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


class Attempts:
    """A connect hook: records every attempt and never connects."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def __call__(self, address: str, port: int) -> None:
        self.seen.append((address, port))
        raise InvalidInputError("test: connection attempt recorded, not made")


@pytest.mark.parametrize("address", FORBIDDEN)
def test_no_connection_is_attempted_to_a_forbidden_address(address: str) -> None:
    attempts = Attempts()
    fetcher = ImageFetcher(resolver=lambda host, port: [address], connect=attempts)
    with pytest.raises(InvalidInputError, match="non-public address"):
        fetcher("http://images.example/cat.png")
    assert attempts.seen == []


def test_a_public_address_is_attempted_and_only_it() -> None:
    attempts = Attempts()
    fetcher = ImageFetcher(resolver=lambda host, port: ["93.184.216.34"], connect=attempts)
    with pytest.raises(InvalidInputError, match="recorded, not made"):
        fetcher("http://images.example/cat.png")
    assert attempts.seen == [("93.184.216.34", 80)]


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/x.png",  # 127.0.0.1 as one number
        "http://0x7f.1/x.png",
        "http://017700000001/x.png",
        "http://[::ffff:7f00:1]/x.png",
        "http://[64:ff9b::7f00:1]/x.png",
        "http://localhost/x.png",
    ],
)
def test_numeric_and_local_host_spellings_resolve_to_refused_addresses(url: str) -> None:
    attempts = Attempts()
    with pytest.raises(InvalidInputError, match=r"non-public|cannot resolve"):
        ImageFetcher(connect=attempts)(url)  # the system resolver; these need no DNS
    assert attempts.seen == []


# -- servers that misbehave -------------------------------------------------------------------


class Hostile(BaseHTTPRequestHandler):
    """Routes: /drip-headers, /drip-body, /endless, /bad-port, /echo-key."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with contextlib.suppress(OSError):
            self.route()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        with contextlib.suppress(OSError):
            self.route()

    def route(self) -> None:
        path = self.path.split("/v1/chat/completions")[0] or self.path
        if path.startswith("/drip-headers"):
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(200):  # a header byte every 0.2 s, forever as far as a client knows
                self.wfile.write(b"X")
                self.wfile.flush()
                time.sleep(0.2)
        elif path.startswith("/drip-body"):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            for _ in range(200):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.2)
        elif path.startswith("/endless"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b" " * 65536
            for _ in range(100_000):  # 6.5 GB if nobody stops reading
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        elif path.startswith("/bad-port"):
            self.send_response(302)
            self.send_header("Location", "http://images.test:99999/cat.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith("/redirect-to/"):
            self.send_response(302)
            self.send_header("Location", urllib.parse.unquote(path[len("/redirect-to/") :]))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith("/gzip-bomb"):
            body = _GZIP_BOMB
            self.send_response(200)
            self.send_header("Content-Type", "image/png" if "image" in path else "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path.startswith("/echo-key"):
            body = json.dumps({"error": f"bad key, you sent {self.headers.get('Authorization')}"})
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())


_GZIP_BOMB = gzip.compress(b" " * 100_000_000, 9)  # 97 KB on the wire, 100 MB decoded


@pytest.fixture(scope="module")
def hostile() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_port
    httpd.shutdown()


def loopback_fetcher(**options: object) -> ImageFetcher:
    return ImageFetcher(
        allow_networks=["127.0.0.1/32"],
        resolver=lambda host, port: ["127.0.0.1"],
        **options,  # type: ignore[arg-type]
    )


def within(seconds: float, call: Callable[[], object]) -> BaseException:
    """Run ``call``; it must raise a typed error within ``seconds``. Returns the error."""
    began = time.monotonic()
    with pytest.raises(GuardVLError) as caught:
        call()
    assert time.monotonic() - began < seconds
    return caught.value


@pytest.mark.parametrize("path", ["/drip-headers", "/drip-body"])
def test_a_dripping_image_server_is_cut_off_at_the_fetch_timeout(hostile: int, path: str) -> None:
    fetcher = loopback_fetcher(timeout=1.5)
    error = within(10.0, lambda: fetcher(f"http://images.test:{hostile}{path}"))
    assert "timed out" in str(error)


def test_a_redirect_to_an_invalid_port_is_a_typed_error(hostile: int) -> None:
    error = within(10.0, lambda: loopback_fetcher()(f"http://images.test:{hostile}/bad-port"))
    assert "invalid port" in str(error)


def remote(port: int, route: str, **options: object) -> Guard:
    backend = RemoteBackend(
        f"http://127.0.0.1:{port}{route}/v1",
        model="guard",
        max_retries=0,
        **options,  # type: ignore[arg-type]
    )
    return Guard(backend)


@pytest.mark.parametrize("route", ["/drip-headers", "/drip-body"])
def test_a_dripping_guard_server_is_cut_off_at_the_timeout(hostile: int, route: str) -> None:
    guard = remote(hostile, route, timeout=1.5)
    began = time.monotonic()
    verdict = guard.check("hello")
    assert time.monotonic() - began < 10.0  # the 1.5 s deadline, not the 40 s drip
    assert verdict.status is Status.ERROR and verdict.blocked
    assert "did not answer in time" in (verdict.error or "")


def test_an_endless_guard_answer_is_cut_off_at_the_size_bound(hostile: int) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    guard = remote(hostile, "/endless", timeout=30, max_response_bytes=4_000_000)
    verdict = guard.check("hello")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert verdict.status is Status.ERROR and verdict.blocked
    assert "answered too much" in (verdict.error or "")
    assert grown_mb < 100


def test_a_server_echoing_the_api_key_does_not_leak_it(hostile: int, caplog) -> None:  # type: ignore[no-untyped-def]
    key = "sk-live-0123456789abcdef"
    backend = RemoteBackend(
        f"http://127.0.0.1:{hostile}/echo-key/v1", model="guard", api_key=key, max_retries=0
    )
    from guardvl_sdk.audit import AuditRecord

    records: list[AuditRecord] = []

    class Sink:
        include_content = False

        def write(self, record: AuditRecord) -> None:
            records.append(record)

    with caplog.at_level("INFO", logger="guardvl_sdk"):
        verdict = Guard(backend, audit=Sink()).check("hello")
    assert verdict.blocked and verdict.status is Status.ERROR
    kept = [verdict.error or "", verdict.model_dump_json(), caplog.text]
    kept += [record.model_dump_json() for record in records]
    assert all(key not in text and "0123456789abcdef" not in text for text in kept)
    assert "REDACTED" in (verdict.error or "")


def test_nothing_listens_where_the_fetcher_refused(hostile: int) -> None:
    # Sanity for the recorder tests: a refused fetch to a port with a live server sends nothing.
    seen: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    with pytest.raises(InvalidInputError, match="non-public"):
        ImageFetcher(resolver=lambda host, p: ["127.0.0.1"])(f"http://x.test:{port}/a.png")
    with contextlib.suppress(TimeoutError, socket.timeout):
        connection, _ = listener.accept()
        seen.append(connection.recv(10))
    listener.close()
    assert seen == []


# -- guard servers whose replies are malformed, not numbers, or not UTF-8-encodable -----------

HARMFUL_TEXT = "<think>\nbad\n</think>\n<result>\nRequest: harmful\nResponse: None\n</result>"
SAFE_TEXT = "<think>\nfine\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"


def _completion(content: str, **extra: object) -> str:
    choice = {"index": 0, "message": {"role": "assistant", "content": content}}
    return json.dumps({"choices": [{**choice, "finish_reason": "stop"}], **extra})


def _label_logprobs(text: str, logprob: float) -> list[dict[str, object]]:
    head, _, tail = text.partition("Request: ")
    label = tail.split("\n")[0]
    tokens = [head + "Request: ", label, tail[len(label) :]]
    entries: list[dict[str, object]] = [{"token": t, "logprob": 0.0} for t in tokens]
    entries[1] = {
        "token": label,
        "logprob": logprob,
        "top_logprobs": [{"token": label, "logprob": logprob}],
    }
    return entries


def test_one_malformed_reply_in_a_batch_fails_only_its_item() -> None:
    from guardvl_sdk.testing import FakeChatServer, FakeReply

    def script(body: dict[str, object]) -> FakeReply:
        text = json.dumps(body["messages"])
        if "item 2" in text:  # a body whose usage is not an object
            return FakeReply(body=_completion(SAFE_TEXT, usage="nope"))
        if "item 3" in text:
            return FakeReply(body='{"choices": [{"message": 7}]}')
        return FakeReply(content=SAFE_TEXT)

    with FakeChatServer(script) as server:
        guard = Guard.from_server(server.url, model="guard", max_retries=0, stop=False)
        verdicts = guard.check_batch([f"item {i}" for i in range(5)])
    statuses = [v.status for v in verdicts]
    assert statuses == [Status.OK, Status.OK, Status.ERROR, Status.ERROR, Status.OK]
    assert [v.blocked for v in verdicts] == [False, False, True, True, False]


@pytest.mark.parametrize("logprob", [float("inf"), float("-inf"), float("nan"), 5.0])
def test_a_score_that_is_not_a_number_never_allows_a_harmful_label(logprob: float) -> None:
    from guardvl_sdk.testing import FakeChatServer, FakeReply

    reply = FakeReply(content=HARMFUL_TEXT, logprobs=_label_logprobs(HARMFUL_TEXT, logprob))
    with FakeChatServer(reply) as server:
        guard = Guard.from_server(server.url, model="guard", max_retries=0, threshold=0.5)
        verdict = guard.check("hello")
    assert verdict.blocked and verdict.score is None
    json.loads(verdict.model_dump_json())


def test_a_lone_surrogate_in_a_reply_still_serialises() -> None:
    from guardvl_sdk.testing import FakeChatServer, FakeReply

    body = _completion(SAFE_TEXT).replace("fine", "fine \\ud800 odd \\udfff")
    with FakeChatServer(FakeReply(body=body)) as server:
        guard = Guard.from_server(server.url, model="guard", max_retries=0)
        verdict = guard.check("hello")
    assert "\ufffd" in verdict.raw
    assert json.loads(verdict.model_dump_json())["raw"] == verdict.raw


# -- image sources a chat names, and hosts that cannot even be encoded -------------------------


@pytest.mark.parametrize("url", ["http:cat.png", "https:cat.png", "HTTP:cat.png", "http:/cat.png"])
def test_a_url_without_a_host_never_reads_a_local_file(
    url: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    from pathlib import Path

    from PIL import Image

    from guardvl_sdk.testing import ScriptedBackend

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    monkeypatch.chdir(str(tmp_path))
    for name in ("http:cat.png", "https:cat.png", "HTTP:cat.png"):
        Path(name).write_bytes(png.getvalue())  # a file whose name is the URL: never opened
    Path("http:").mkdir()
    Path("http:/cat.png").write_bytes(png.getvalue())
    guard = Guard(ScriptedBackend(SAFE_TEXT), fetch_images=True)
    part = {"type": "image_url", "image_url": {"url": url}}
    with pytest.raises(InvalidInputError, match="http"):
        guard.check(messages=[{"role": "user", "content": [part]}])
    with pytest.raises(InvalidInputError):  # without fetching: refused as a URL, not read
        Guard(ScriptedBackend(SAFE_TEXT)).check("look", image=url)


def test_a_host_name_that_cannot_be_encoded_is_a_typed_error() -> None:
    attempts = Attempts()
    for host in ("a" + "b" * 300 + ".example", "x" * 64 + ".example", "\udcff.example"):
        with pytest.raises(InvalidInputError, match="cannot resolve"):
            ImageFetcher(connect=attempts)(f"http://{host}/x.png")
    assert attempts.seen == []


@pytest.mark.parametrize(
    "echo",
    [
        lambda key: key,
        lambda key: base64.b64encode(f"Bearer {key}".encode()).decode(),
        lambda key: base64.urlsafe_b64encode(f"Basic u:{key}".encode()).decode(),
        lambda key: base64.b64encode(key.encode()).decode(),
        lambda key: urllib.parse.quote(f"Bearer {key}"),
        lambda key: key.encode().hex(),
    ],
)
def test_an_echoed_key_is_redacted_in_every_encoding(echo: Callable[[str], str]) -> None:
    from guardvl_sdk.redaction import redact

    for key in ("sk-live-0123456789abcdef", "k3y-without-a-known-shape-42"):
        text = f'{{"error": "you sent {echo(key)}"}}'
        kept = redact(text, [key])
        assert echo(key) not in kept and "REDACTED" in kept
        assert key not in kept and key[4:-4] not in kept


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/x.png",
        "http://[::1]/x.png",
        "http://0xa9.0xfe.0xa9.0xfe/x.png",  # 169.254.169.254 in hex
        "http://2852039166/x.png",  # and as one number
        "//[::1]:8080/x.png",  # scheme-relative (127.0.0.1 is the test server's, allowed)
        "http://[::ffff:a9fe:a9fe]/x.png",
        "http://user:pw@192.168.0.1:8080/x.png",
    ],
)
def test_a_redirect_to_a_forbidden_host_is_never_connected_to(hostile: int, location: str) -> None:
    attempts: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:  # the first hop is the loopback server
        return ["127.0.0.1"] if host == "images.test" else fetch_module._system_resolver(host, port)

    fetcher = ImageFetcher(
        allow_networks=["127.0.0.1/32"],
        resolver=resolve,
        connect=lambda address, port: attempts.append((address, port)),
        timeout=3,
    )
    target = urllib.parse.quote(location, safe="")
    error = within(10.0, lambda: fetcher(f"http://images.test:{hostile}/redirect-to/{target}"))
    assert "non-public" in str(error) or "cannot resolve" in str(error)
    assert attempts == [("127.0.0.1", hostile)]  # the first hop only


def test_a_redirect_to_a_name_that_is_not_ascii_is_a_typed_error(hostile: int) -> None:
    target = urllib.parse.quote("http://\u00ff\u00fe.invalid/x.png", safe="")
    within(10.0, lambda: loopback_fetcher()(f"http://images.test:{hostile}/redirect-to/{target}"))


def test_an_internationalised_host_is_resolved_and_sent_as_ascii() -> None:
    resolved: list[str] = []
    attempts = Attempts()

    def resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["93.184.216.34"]

    with pytest.raises(InvalidInputError, match="recorded, not made"):
        ImageFetcher(resolver=resolve, connect=attempts)("http://b\u00fccher.example/x.png")
    assert resolved == ["xn--bcher-kva.example"]
    assert attempts.seen == [("93.184.216.34", 80)]


@pytest.mark.parametrize("route", ["/gzip-bomb-image", "/gzip-bomb"])
def test_a_compressed_body_is_bounded_as_it_is_decoded(hostile: int, route: str) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if "image" in route:
        error = within(10.0, lambda: loopback_fetcher()(f"http://images.test:{hostile}{route}"))
        assert "byte limit" in str(error)
    else:
        guard = remote(hostile, route, timeout=10, max_response_bytes=4_000_000)
        verdict = guard.check("hello")
        assert verdict.blocked and "answered too much" in (verdict.error or "")
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 60


def test_a_reply_with_several_choices_fails_closed() -> None:
    from guardvl_sdk.testing import FakeChatServer, FakeReply

    choices = [
        {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        for i, text in enumerate([SAFE_TEXT, HARMFUL_TEXT])
    ]
    with FakeChatServer(FakeReply(body=json.dumps({"choices": choices}))) as server:
        verdict = Guard.from_server(server.url, model="guard", max_retries=0).check("hello")
    assert verdict.blocked and verdict.status is Status.ERROR
