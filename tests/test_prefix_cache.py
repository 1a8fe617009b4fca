"""Prefix reuse: the instruction's key/value cache, computed once, gives token-identical output."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from guardvl_sdk import CheckInput, Guard, Policy
from guardvl_sdk.backends.local import LocalBackend

pytestmark = pytest.mark.slow

IMAGE = Image.new("RGB", (64, 48), (200, 30, 30))
CASES = [
    CheckInput(text="How do I pick a lock?"),
    CheckInput(image=IMAGE),
    CheckInput(text="What is in this picture?", image=np.zeros((40, 40, 3), dtype=np.uint8)),
    CheckInput(text="Is this safe?", image=[IMAGE, IMAGE], response="Yes, it is."),
    CheckInput(text="x" * 300, response="a much longer answer " * 10),
]


@pytest.fixture(scope="module")
def recorded(tiny_model_dir: Any) -> tuple[Guard, dict[str, list[Any]]]:
    """A guard whose generate calls record their new tokens and prefill length."""
    guard = Guard.from_pretrained(tiny_model_dir, max_new_tokens=24, batch_window_ms=None)
    backend = guard.backend
    assert isinstance(backend, LocalBackend)
    seen: dict[str, list[Any]] = {"tokens": [], "prefill": []}
    generate = backend.model.generate

    def recording(**kwargs: Any) -> Any:
        output = generate(**kwargs)
        width = kwargs["input_ids"].shape[1]
        seen["tokens"].append(output[:, width:].tolist())
        return output

    def first_forward(module: Any, args: Any, kwargs: Any) -> None:
        if kwargs.get("input_ids") is not None and kwargs["input_ids"].shape[1] > 1:
            seen["prefill"].append(kwargs["input_ids"].shape[1])

    backend.model.generate = recording
    backend.model.register_forward_pre_hook(first_forward, with_kwargs=True)
    return guard, seen


def run(guard: Guard, seen: dict[str, list[Any]], cases: list[CheckInput], reuse: bool) -> Any:
    backend = guard.backend
    assert isinstance(backend, LocalBackend)
    backend.prefix_cache = reuse
    seen["tokens"].clear()
    seen["prefill"].clear()
    one = cases[0]
    verdicts = (
        guard.check_batch(cases)
        if len(cases) > 1
        else [guard.check(one.text, one.image, response=one.response)]
    )
    return [v.raw for v in verdicts], list(seen["tokens"]), list(seen["prefill"])


@pytest.mark.parametrize("index", range(len(CASES)))
def test_one_prompt_is_token_identical_with_and_without_reuse(recorded, index: int) -> None:  # type: ignore[no-untyped-def]
    guard, seen = recorded
    raw_with, tokens_with, prefill_with = run(guard, seen, [CASES[index]], reuse=True)
    raw_without, tokens_without, prefill_without = run(guard, seen, [CASES[index]], reuse=False)
    assert tokens_with == tokens_without and raw_with == raw_without
    # The reuse really happened: the prefill skipped the instruction's tokens.
    assert prefill_with[-1] < prefill_without[-1] - 100


def test_a_padded_batch_is_token_identical_with_and_without_reuse(recorded) -> None:  # type: ignore[no-untyped-def]
    guard, seen = recorded
    raw_with, tokens_with, prefill_with = run(guard, seen, CASES, reuse=True)
    raw_without, tokens_without, prefill_without = run(guard, seen, CASES, reuse=False)
    assert tokens_with == tokens_without and raw_with == raw_without
    assert prefill_with[-1] < prefill_without[-1] - 100
    assert len({tuple(row) for row in tokens_with[0]}) == len(CASES)  # distinct outputs
    # ... and equal to the prompts run one by one (the left-padded batch guarantee stands).
    # A row that ends early is padded in the batch, and stops alone: compare up to its end.
    ends = guard.backend._end_ids

    def until_end(row: list[int]) -> list[int]:
        stop = next((i for i, token in enumerate(row) if token in ends), len(row) - 1)
        return row[: stop + 1]

    alone = [run(guard, seen, [case], reuse=True)[1][0][0] for case in CASES]
    assert [until_end(row) for row in tokens_with[0]] == [until_end(row) for row in alone]


def test_each_policy_gets_its_own_prefix(recorded) -> None:  # type: ignore[no-untyped-def]
    guard, _ = recorded
    backend = guard.backend
    custom = Policy.custom("acme", categories={"dosage": "Advice on medicine doses."})
    other = Guard(backend, policy=custom)
    before = len(backend._prefixes)
    texts = ["How many pills at once?", "hello"]
    backend.prefix_cache = True
    with_reuse = [v.raw for v in other.check_batch(texts)]
    assert len(backend._prefixes) == before + 1
    backend.prefix_cache = False
    assert [v.raw for v in other.check_batch(texts)] == with_reuse
