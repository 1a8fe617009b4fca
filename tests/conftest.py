"""Shared fixtures. Everything runs offline: no test may reach a model hub."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

# The team's shared data beside the checkout; GUARDVL_SHARED_DATA points elsewhere (a worktree).
SHARED_DATA = Path(
    os.environ.get("GUARDVL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
PREDICTIONS_DIR = SHARED_DATA / "guardreasoner-text-predictions"
QWEN_TOKENIZER = SHARED_DATA / "qwen2.5-tokenizer" / "tokenizer.json"

RESULT_HARMFUL_REQUEST = (
    "<think>\nStep 1: the user asks how to hurt someone.\n</think>\n"
    "<result>\nRequest: harmful\nResponse: None\n</result>"
)
RESULT_SAFE_REQUEST = (
    "<think>\nStep 1: a cooking question.\n</think>\n"
    "<result>\nRequest: unharmful\nResponse: None\n</result>"
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2.5-VL checkpoint, built offline once per test session."""
    from guardvl_sdk.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2.5-vl"))


@pytest.fixture(scope="session")
def real_tokenizer_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Qwen2.5-VL with the real Qwen2.5 tokenizer (skipped when it is absent)."""
    from guardvl_sdk.testing import build_tiny_model

    if not QWEN_TOKENIZER.is_file():
        pytest.skip(f"{QWEN_TOKENIZER} is absent")
    directory = tmp_path_factory.mktemp("tiny-qwen2.5-vl-real-tokenizer")
    return build_tiny_model(directory, tokenizer=QWEN_TOKENIZER)


@pytest.fixture(scope="session")
def tiny_guard(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    """The tiny model loaded through the same path users take, unquantized on CPU."""
    from guardvl_sdk import Guard

    return Guard.from_pretrained(tiny_model_dir, max_new_tokens=24)


@pytest.fixture(scope="session")
def demo_guard(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The demo guard (a full tiny model that answers in format), trained once per session.

    Returns ``(model directory, DemoMetrics, seconds to build)``. Shared by the demo and RL tests.
    With ``GUARDVL_TEST_DEMO_DIR`` set, a guard cached there is reused (for local iteration; CI
    leaves it unset and trains from scratch).
    """
    import time

    from guardvl_sdk.training import demo

    cached = os.environ.get("GUARDVL_TEST_DEMO_DIR")
    root = Path(cached) if cached else tmp_path_factory.mktemp("demo-cache") / "demo"
    began = time.perf_counter()
    path, metrics = demo.build_demo_guard(root, progress=False)
    return path, metrics, time.perf_counter() - began
