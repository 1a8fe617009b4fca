"""Fetching image URLs: off by default; SSRF-safe, size-, time- and type-capped when on.

A real HTTP server on loopback serves the images. Loopback is itself a refused address, so the
tests that need a fetch to succeed exempt exactly 127.0.0.1 with ``allow_networks``.
"""

import contextlib
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from PIL import Image

from guardvl_sdk import Guard, InvalidInputError
from guardvl_sdk.fetch import ImageFetcher
from guardvl_sdk.testing import ScriptedBackend

from .conftest import RESULT_SAFE_REQUEST

PNG = io.BytesIO()
Image.new("RGB", (40, 30), "purple").save(PNG, format="PNG")


class Handler(BaseHTTPRequestHandler):
    hosts: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).hosts.append(self.headers.get("Host", ""))
        route = {
            "/cat.png": lambda: self.reply(200, "image/png", PNG.getvalue()),
            "/page": lambda: self.reply(200, "text/html", b"<html></html>"),
            "/big": lambda: self.reply(200, "image/png", b"\0" * 3_000_000),
            "/big-chunked": self.chunked,
            "/slow": self.slow,
            "/to-cat": lambda: self.redirect("/cat.png"),
            "/to-evil": lambda: self.redirect(
                f"http://evil.test:{self.server.server_port}/cat.png"
            ),
            "/loop": lambda: self.redirect("/loop"),
        }.get(self.path, lambda: self.reply(404, "text/plain", b"no"))
        with contextlib.suppress(OSError):  # the client hung up (size cap, timeout), as intended
            route()

    def reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def chunked(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for _ in range(40):
            self.wfile.write(b"10000\r\n" + b"\0" * 0x10000 + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def slow(self) -> None:
        time.sleep(3)
        self.reply(200, "image/png", PNG.getvalue())


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_port
    httpd.shutdown()


def resolver(host: str, port: int) -> list[str]:
    return {"images.test": ["127.0.0.1"], "evil.test": ["127.0.0.2"],
            "intranet.test": ["10.1.2.3"], "metadata.test": ["169.254.169.254"],
            "v6.test": ["::1"], "mapped.test": ["::ffff:127.0.0.1"], "ula.test": ["fd00::1"],
            "mixed.test": ["93.184.216.34", "192.168.1.1"]}[host]  # fmt: skip


def trusting(**kwargs: object) -> ImageFetcher:
    return ImageFetcher(allow_networks=["127.0.0.1/32"], resolver=resolver, **kwargs)  # type: ignore[arg-type]


def test_urls_are_refused_by_default(server: int) -> None:
    guard = Guard(ScriptedBackend(RESULT_SAFE_REQUEST))
    with pytest.raises(InvalidInputError, match="not fetched unless you turn it on"):
        guard.check("x", image=f"http://127.0.0.1:{server}/cat.png")


def test_a_trusted_fetch_reaches_the_guard_pinned_to_the_checked_address(server: int) -> None:
    backend = ScriptedBackend(RESULT_SAFE_REQUEST)
    guard = Guard(backend, fetch_images=trusting())
    Handler.hosts.clear()
    verdict = guard.check("what is this?", image=f"http://images.test:{server}/to-cat")
    assert not verdict.blocked
    (image,) = backend.prompts[0].images
    assert image.size == (40, 30) and image.getpixel((0, 0)) == (128, 0, 128)
    assert Handler.hosts == [f"images.test:{server}"] * 2  # redirect hop, then the image


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "intranet.test",
        "metadata.test",
        "v6.test",
        "mapped.test",
        "ula.test",
        "mixed.test",
        "evil.test",
    ],
)
def test_non_public_addresses_are_refused_before_connecting(server: int, host: str) -> None:
    fetcher = ImageFetcher(
        resolver=lambda h, p: ["127.0.0.1"] if h == "127.0.0.1" else resolver(h, p)
    )
    Handler.hosts.clear()
    with pytest.raises(InvalidInputError, match="non-public address"):
        fetcher(f"http://{host}:{server}/cat.png")
    assert Handler.hosts == []


def test_a_redirect_to_a_private_address_is_refused(server: int) -> None:
    with pytest.raises(InvalidInputError, match=r"'evil.test' resolves to a non-public address"):
        trusting()(f"http://images.test:{server}/to-evil")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/page", "content type 'text/html' is not image/"),
        ("/big", "over the 1000000 byte limit"),
        ("/big-chunked", "over the 1000000 byte limit"),
        ("/loop", "more than 3 redirects"),
        ("/missing", "HTTP 404"),
    ],
)
def test_limits(server: int, path: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        trusting(max_bytes=1_000_000)(f"http://images.test:{server}{path}")


def test_a_slow_server_times_out(server: int) -> None:
    start = time.monotonic()
    with pytest.raises(InvalidInputError, match="timed out"):
        trusting(timeout=0.5)(f"http://images.test:{server}/slow")
    assert time.monotonic() - start < 10  # "timed out" is the proof: the server answers at 3 s


def test_bad_urls(server: int) -> None:
    fetcher = trusting()
    with pytest.raises(InvalidInputError, match="cannot resolve"):
        ImageFetcher(resolver=lambda h, p: [])("http://nowhere.test/x.png")
    with pytest.raises(InvalidInputError, match="must be http"):
        fetcher("ftp://images.test/x.png")
