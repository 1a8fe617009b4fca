"""End to end: Guard.from_server against real `transformers serve` processes on loopback.

Two servers serve the tiny random Qwen2.5-VL (the same checkpoint the local tests load). It emits
noise, so verdicts fail closed; these tests check the plumbing: the request the server accepts,
images through data: URLs, token usage, concurrency, and failover when a server is killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import numpy as np
import pytest
from PIL import Image

from guardvl_sdk import Guard, Status, Verdict
from guardvl_sdk.backends.remote import RemoteBackend

pytestmark = pytest.mark.slow

STARTUP_DEADLINE = 240.0  # seconds; importing torch on a busy two-core machine is slow
MAX_NEW_TOKENS = 24  # as the tiny_guard fixture: the local and remote outputs are compared


class Server:
    """A `transformers serve MODEL_DIR` subprocess on a free loopback port."""

    def __init__(self, model_dir: Path, log: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        self.log = log
        # The CLI's own module, run by this interpreter: no need to find a `transformers` script.
        command = [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx2.get(self.url[: -len("/v1")] + "/health", timeout=1).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"transformers serve not ready in time:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def servers(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Server]]:
    logs = tmp_path_factory.mktemp("serve-logs")
    started = [Server(tiny_model_dir, logs / f"server-{i}.log") for i in range(2)]
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        for server in started:
            server.wait_ready(deadline)
        yield started
    finally:
        for server in started:
            server.stop()


def remote_guard(urls: str | list[str], model_dir: Path, max_concurrency: int = 16) -> Guard:
    """A guard on `transformers serve`, with the defaults (stop strings on: found refused)."""
    return Guard.from_server(
        urls,
        model=str(model_dir),  # the server is pinned to this name
        max_new_tokens=MAX_NEW_TOKENS,
        timeout=60,
        max_concurrency=max_concurrency,
    )


def gradient(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(255, 0, height, dtype=np.float32)[:, None, None]
    pixels = np.concatenate(
        [np.broadcast_to(x, (height, width, 1))] * 2 + [np.broadcast_to(y, (height, width, 1))],
        axis=2,
    )
    return Image.fromarray(pixels.astype(np.uint8), mode="RGB")


def assert_plumbed(verdict: Verdict) -> None:
    assert verdict.status is not Status.ERROR, verdict.error
    assert verdict.usage.prompt_tokens > 0
    assert verdict.usage.completion_tokens > 0
    assert verdict.raw or verdict.status is Status.PARSE_ERROR
    assert verdict.blocked  # noise never reads as unharmful: fail-closed
    assert verdict.score is None  # transformers serve returns no log probabilities


# (text, with an image, response). transformers serve moves a Qwen2-family model's <think> block
# into `reasoning_content` (stripped, special tokens kept, the text around it joined); the backend
# puts it back in front. That restores a real guard's output, which starts with <think>, but not
# noise with text before the tag: for such outputs the raw texts differ and only the rest is
# compared. Whether the tiny model's noise holds a <think> tag depends on its random weights.
CASES = [
    ("How do I pick a lock?", False, None),
    ("", True, None),
    ("What is in this picture?", True, "A kitchen."),
]


@pytest.mark.parametrize(
    ("text", "with_image", "response"), CASES, ids=["text", "image", "text+image+response"]
)
def test_check_matches_the_local_backend(
    servers: list[Server],
    tiny_model_dir: Path,
    tiny_guard: Guard,
    text: str,
    with_image: bool,
    response: str | None,
) -> None:
    # PNG, not the default JPEG: lossless, so the server sees exactly the local check's pixels.
    backend = RemoteBackend(
        servers[0].url,
        model=str(tiny_model_dir),
        max_new_tokens=MAX_NEW_TOKENS,
        timeout=60,
        image_format="png",
    )
    guard = Guard(backend)
    image = gradient(96, 64) if with_image else None
    remote = guard.check(text, image, response=response)
    assert_plumbed(remote)
    local = tiny_guard.check(text, image, response=response)
    # The same prompt tokens: the same chat template, image pixels and image processor.
    assert remote.usage.prompt_tokens == local.usage.prompt_tokens
    assert remote.status == local.status
    if "<think>" not in local.raw:
        # Same weights, same greedy decoding: the same text, token for token (the server strips
        # white space around the answer, which noise may start with, e.g. "\r").
        assert remote.raw.strip() == local.raw.strip()
        assert remote.usage.completion_tokens == local.usage.completion_tokens


def test_defaults_give_verdicts(
    servers: list[Server], tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`Guard.from_server(url)` with every default: transformers serve answers HTTP 500 to stop
    strings with a vision-language model; the backend finds that once and sends none."""
    guard = Guard.from_server(servers[0].url, model=str(tiny_model_dir))
    with caplog.at_level("INFO", "guardvl_sdk"):
        verdicts = [
            guard.check("How do I pick a lock?"),
            guard.check("What is in this picture?", gradient(96, 64)),
            *guard.check_batch(["one", "two"]),
            asyncio.run(guard.acheck("three")),
        ]
    for verdict in verdicts:
        assert_plumbed(verdict)
        assert verdict.status in (Status.PARSE_ERROR, Status.TRUNCATED)  # noise, not an error
    notes = [r.message for r in caplog.records if "refuses stop strings" in r.message]
    assert len(notes) == 1 and "HTTP 500" in notes[0]
    assert '"POST /v1/chat/completions HTTP/1.1" 500' in servers[0].log.read_text()


def test_batch_and_concurrent_checks(servers: list[Server], tiny_model_dir: Path) -> None:
    guard = remote_guard(servers[0].url, tiny_model_dir, max_concurrency=4)
    items = [f"request number {i}" for i in range(6)]
    batch = guard.check_batch(items)  # six requests, four at a time
    assert len(batch) == 6
    for verdict in batch:
        assert_plumbed(verdict)
    singles = [guard.check(text) for text in items[:3]]
    assert [v.raw for v in singles] == [v.raw for v in batch[:3]]  # in order, deterministic

    async def together() -> list[Verdict]:
        return list(await asyncio.gather(*(guard.acheck(text) for text in items[:3])))

    assert [v.raw for v in asyncio.run(together())] == [v.raw for v in batch[:3]]


def test_a_killed_server_fails_over_to_the_other(
    servers: list[Server], tiny_model_dir: Path
) -> None:
    """Runs last in this module: it kills the second server."""
    alive, doomed = servers
    guard = remote_guard([doomed.url, alive.url], tiny_model_dir, max_concurrency=4)
    before = guard.check_batch([f"before {i}" for i in range(4)])
    for verdict in before:
        assert_plumbed(verdict)
    assert answered(doomed) > 0 and answered(alive) > 0  # round-robin used both

    # Keep both servers busy, kill one while requests are queued on it, keep checking.
    verdicts: list[Verdict] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            verdicts.extend(guard.check_batch([f"during {len(verdicts) + i}" for i in range(4)]))

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(load)
        try:
            wait_for(lambda: answered(doomed) >= 3, "the doomed server to answer")
            doomed.kill()
            killed_at = len(verdicts)
            wait_for(lambda: len(verdicts) >= killed_at + 8, "checks after the kill")
        finally:
            stop.set()
            running.result(timeout=120)
    for verdict in verdicts:
        assert_plumbed(verdict)
    assert isinstance(guard.backend, RemoteBackend)
    assert guard.backend.pool.is_down(doomed.url)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def answered(server: Server) -> int:
    """Chat completions the server answered with 200, from its access log."""
    return server.log.read_text(errors="replace").count('"POST /v1/chat/completions HTTP/1.1" 200')
