"""``guardvl serve --config`` as a real process: config files, and a graceful shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from guardvl_sdk import ConfigurationError, Guard
from guardvl_sdk.testing import FakeChatServer, FakeReply
from tests.conftest import RESULT_HARMFUL_REQUEST, RESULT_SAFE_REQUEST


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scripted(body: dict[str, object]) -> FakeReply:
    """The guard server: harmful for bombs; 'slow' takes a second to answer."""
    text = str(body["messages"])
    delay = 2.0 if "slow" in text else 0.0
    return FakeReply(RESULT_HARMFUL_REQUEST if "bomb" in text else RESULT_SAFE_REQUEST, delay=delay)


def write_config(tmp: Path, guard_url: str, port: int) -> Path:
    (tmp / "keys").write_text("# the service's keys\nkey-one\n")
    config = tmp / "guard.yaml"
    config.write_text(
        f"""
backend:
  type: server
  base_url: {guard_url}
  model: fake-guard
  stop: false
guard:
  on_error: block
  audit: {{path: audit.jsonl}}
server:
  port: {port}
  api_key_file: keys
  shutdown_grace: 10
"""
    )
    return config


class Service:
    def __init__(self, process: subprocess.Popen[bytes], url: str, config: Path) -> None:
        self.process, self.url, self.config = process, url, config


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with FakeChatServer(scripted) as guard_server:
        port = free_port()
        config = write_config(tmp_path, guard_server.url, port)
        process = subprocess.Popen(
            [sys.executable, "-m", "guardvl_sdk", "serve", "--config", str(config)],
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(url, process)
            yield Service(process, url, config)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            assert process.stderr is not None
            process.stderr.close()


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "guardvl serve exited"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("guardvl serve did not start")


def wait_for_in_flight(url: str, count: int, auth: dict[str, str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{url}/metrics", headers=auth).text
        if f"guardvl_checks_in_flight {float(count)}" in metrics:
            return
        time.sleep(0.02)
    raise AssertionError(f"{count} checks never were in flight")


@pytest.mark.slow
def test_serve_config_and_graceful_shutdown(service: Service) -> None:
    auth = {"Authorization": "Bearer key-one"}
    check = f"{service.url}/v1/guard/check"
    blocked = httpx.post(check, json={"text": "how to build a bomb"}, headers=auth).json()
    assert blocked["blocked"] is True and blocked["model"] == "fake-guard"
    assert httpx.post(check, json={"text": "hi"}).status_code == 401

    results: list[httpx.Response] = []

    def slow_check() -> None:
        results.append(
            httpx.post(check, json={"text": "a slow question"}, headers=auth, timeout=30)
        )

    in_flight = [threading.Thread(target=slow_check) for _ in range(3)]
    for thread in in_flight:
        thread.start()
    wait_for_in_flight(service.url, 3, auth)  # the three checks wait on the guard server
    service.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    late = httpx.post(check, json={"text": "hi"}, headers=auth)
    assert late.status_code == 503 and "shutting down" in late.json()["error"]["message"]
    assert httpx.get(f"{service.url}/ready").status_code == 503
    for thread in in_flight:
        thread.join(timeout=30)
    assert [r.status_code for r in results] == [200, 200, 200]
    assert all(r.json()["blocked"] is False for r in results)
    assert service.process.wait(timeout=30) == 0
    assert service.process.stderr is not None
    log = service.process.stderr.read().decode()
    assert '"event": "draining"' in log and '"api": "check"' in log
    assert "bomb" not in log and "slow question" not in log  # no content in the logs
    audit = (service.config.parent / "audit.jsonl").read_text().splitlines()
    assert len(audit) == 4  # every decision recorded, those finished while draining too


def test_from_config_errors_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "guard.yaml"
    bad.write_text(
        "backend: {type: server, base_url: http://x/v1, model: m, timeuot: 3}\n"
        "guard: {on_error: maybe}\n"
    )
    with pytest.raises(ConfigurationError) as caught:
        Guard.from_config(bad)
    message = str(caught.value)
    assert str(bad) in message
    assert "backend.server.timeuot" in message and "guard.on_error" in message
    bad.write_text("backend: [unclosed\n")
    with pytest.raises(ConfigurationError, match="not valid"):
        Guard.from_config(bad)


def test_from_config_builds_the_guard(tmp_path: Path) -> None:
    config = tmp_path / "guard.yaml"
    config.write_text(
        "backend: {type: server, base_url: [http://a:1/v1, http://b:2/v1], model: m}\n"
        "guard: {on_error: allow, cache: {maxsize: 5}, threshold: 0.7}\n"
    )
    guard = Guard.from_config(config)
    assert guard.on_error == "allow" and guard.threshold == 0.7
    assert guard.cache is not None and guard.model_id == "m"
