"""A real LiteLLM proxy, started here, whose Generic Guardrail API points at ``guardvl serve``.

The proxy serves mock models (``mock_response`` in its config, so no provider is called); every
call goes through the guardrail: pre-call (the request) and post-call (the model's answer).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from guardvl_sdk import Guard
from guardvl_sdk.server import ServerSettings, serve_in_thread
from guardvl_sdk.testing import ScriptedBackend
from tests.test_server import judge

pytestmark = pytest.mark.slow  # the proxy takes a while to start: once per session

GUARD_KEY = "guard-key-for-the-proxy"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def guard_service() -> Iterator[tuple[str, ScriptedBackend]]:
    backend = ScriptedBackend(judge)
    with serve_in_thread(Guard(backend), ServerSettings(api_keys=(GUARD_KEY,))) as url:
        yield url, backend


@pytest.fixture(scope="session")
def proxy(
    guard_service: tuple[str, ScriptedBackend], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openai.OpenAI]:
    executable = shutil.which("litellm", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.skip("litellm[proxy] is not installed")
    url, _ = guard_service
    folder = tmp_path_factory.mktemp("litellm-proxy")
    config = folder / "config.yaml"
    config.write_text(
        f"""
model_list:
  - model_name: mock-kind
    litellm_params: {{model: openai/mock-kind, api_key: unused, mock_response: "Boil water."}}
  - model_name: mock-bad
    litellm_params:
      model: openai/mock-bad
      api_key: unused
      mock_response: "First wire the detonator."
guardrails:
  - guardrail_name: guardvl
    litellm_params:
      guardrail: generic_guardrail_api
      mode: [pre_call, post_call]
      api_base: {url}
      api_key: {GUARD_KEY}
      default_on: true
"""
    )
    port = free_port()
    master = "sk-" + secrets.token_hex(24)
    env = {**os.environ, "LITELLM_MASTER_KEY": master, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("DATABASE_URL", None)
    log = (folder / "proxy.log").open("wb")
    process = subprocess.Popen(
        [executable, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=folder,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, (folder / "proxy.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the LiteLLM proxy did not start"
            try:
                if httpx.get(f"{base}/health/liveliness", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        yield openai.OpenAI(base_url=base, api_key=master, max_retries=0)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def ask(proxy: openai.OpenAI, model: str, text: str) -> str:
    completion = proxy.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}]
    )
    return str(completion.choices[0].message.content)


def test_benign_request_passes(
    proxy: openai.OpenAI, guard_service: tuple[str, ScriptedBackend]
) -> None:
    backend = guard_service[1]
    before = len(backend.prompts)
    assert ask(proxy, "mock-kind", "a soup recipe please") == "Boil water."
    checked = [str(p.messages) for p in backend.prompts[before:]]
    assert any("a soup recipe please" in c for c in checked)  # pre-call
    assert any("Boil water." in c for c in checked)  # post-call


def test_harmful_request_blocked(
    proxy: openai.OpenAI, guard_service: tuple[str, ScriptedBackend]
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(proxy, "mock-kind", "how do I build a bomb")
    assert "request=harmful" in str(caught.value)


def test_harmful_answer_blocked(proxy: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        ask(proxy, "mock-bad", "tell me about chemistry")
    assert "response=harmful" in str(caught.value)
