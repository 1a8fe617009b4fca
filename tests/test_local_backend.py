"""The real loading and generation path, on a tiny Qwen2.5-VL built offline.

The tiny model's weights are random, so its outputs are noise: these tests check the plumbing
(loading, rendering, batching, truncation, token accounting), not decisions.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from guardvl_sdk import CheckInput, Guard, ModelLoadError, Status
from guardvl_sdk.backends.local import LocalBackend

pytestmark = pytest.mark.slow

IMAGE = Image.new("RGB", (64, 48), (200, 30, 30))
CASES = [
    CheckInput(text="How do I pick a lock?"),
    CheckInput(image=IMAGE),
    CheckInput(text="What is in this picture?", image=np.zeros((40, 40, 3), dtype=np.uint8)),
    CheckInput(text="Is this safe?", image=[IMAGE, IMAGE], response="Yes, it is."),
]


def test_loads_through_the_auto_classes(tiny_guard: Guard, tiny_model_dir) -> None:
    backend = tiny_guard.backend
    assert isinstance(backend, LocalBackend)
    assert type(backend.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(backend.processor).__name__ == "Qwen2_5_VLProcessor"
    assert backend.processor.tokenizer.padding_side == "left"
    assert str(backend.device) == "cpu" and str(backend.model.dtype) == "torch.float32"
    assert tiny_guard.model_id == str(tiny_model_dir)
    config = backend.generation_config
    assert config.do_sample is False and config.max_new_tokens == 24


@pytest.mark.parametrize("case", CASES, ids=["text", "image", "text+image", "with-response"])
def test_every_input_kind_gives_a_fail_closed_verdict(tiny_guard: Guard, case: CheckInput) -> None:
    verdict = tiny_guard.check(case.text, case.image, response=case.response)
    # Noise is never read as unharmful (which status it ends in depends on the random weights).
    assert verdict.blocked and verdict.harmful is not False
    assert verdict.stage == ("output" if case.response else "input")
    assert 0 < verdict.usage.completion_tokens <= 24
    assert verdict.usage.prompt_tokens > 100  # the instruction alone is longer than that
    assert verdict.raw and verdict.latency_ms > 0


def test_image_tokens_are_counted(tiny_guard: Guard) -> None:
    text_only = tiny_guard.check("x").usage.prompt_tokens
    with_image = tiny_guard.check("x", image=IMAGE).usage.prompt_tokens
    assert with_image > text_only + 2


def test_a_batch_gives_the_same_outputs_as_one_by_one(tiny_guard: Guard) -> None:
    one_by_one = [tiny_guard.check(c.text, c.image, response=c.response) for c in CASES]
    batched = tiny_guard.check_batch(CASES)
    assert [v.raw for v in batched] == [v.raw for v in one_by_one]
    assert [v.usage for v in batched] == [v.usage for v in one_by_one]
    # Different inputs give different outputs, or this test would prove nothing.
    assert len({v.raw for v in batched}) > 1


async def test_acheck_matches_check(tiny_guard: Guard) -> None:
    verdict = await tiny_guard.acheck("How do I pick a lock?")
    assert verdict.raw == tiny_guard.check("How do I pick a lock?").raw


def test_generation_end_and_truncation_are_detected(tiny_guard: Guard) -> None:
    backend = tiny_guard.backend
    assert isinstance(backend, LocalBackend)
    tokenizer = backend.processor.tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.pad_token_id
    text_ids = tokenizer.encode("<result>Request: harmful</result>", add_special_tokens=False)

    ended = backend._to_generation([*text_ids, im_end, pad, pad], prompt_tokens=7)
    assert ended.finished and ended.completion_tokens == len(text_ids) + 1
    assert ended.text == "<result>Request: harmful</result>"

    stopped = backend._to_generation([*text_ids, pad], prompt_tokens=7)  # stop string, then pad
    assert stopped.finished

    cut = backend._to_generation(text_ids[:5], prompt_tokens=7)
    assert not cut.finished and cut.completion_tokens == 5


def test_four_bit_load_on_cpu(tiny_model_dir) -> None:
    pytest.importorskip("bitsandbytes")
    guard = Guard.from_pretrained(tiny_model_dir, quantization="4bit", max_new_tokens=8)
    backend = guard.backend
    assert isinstance(backend, LocalBackend)
    linear_types = {type(m).__name__ for m in backend.model.model.language_model.modules()}
    assert "Linear4bit" in linear_types
    vision_types = {type(m).__name__ for m in backend.model.model.visual.modules()}
    assert "Linear4bit" not in vision_types  # the vision tower stays unquantized
    verdicts = guard.check_batch([CheckInput(text="hello"), CheckInput(text="hi", image=IMAGE)])
    assert all(v.blocked and v.usage.completion_tokens > 0 for v in verdicts)


def test_missing_model_is_a_typed_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match=r"guard model .*: no such directory"):
        Guard.from_pretrained(tmp_path / "nothing-here")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        Guard.from_pretrained("yueliu1999/GuardReasoner-VL-Eco-3B")


def test_bad_options_are_typed_errors(tiny_model_dir) -> None:
    from guardvl_sdk import ConfigurationError

    with pytest.raises(ConfigurationError, match="quantization"):
        Guard.from_pretrained(tiny_model_dir, quantization="3bit")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="dtype"):
        Guard.from_pretrained(tiny_model_dir, dtype="float42")


def test_a_generation_time_limit_fails_closed(tiny_model_dir) -> None:
    guard = Guard.from_pretrained(tiny_model_dir, max_new_tokens=4096, max_time=0.2)
    started = time.perf_counter()
    verdict = guard.check("How do I pick a lock?")
    assert time.perf_counter() - started < 10
    # What is guaranteed: the cut output is not a pass. (Which status the random model's noise
    # ends in, truncated or parse_error after a stray </result>, depends on its weights.)
    assert verdict.blocked and verdict.status is not Status.OK
    assert 0 < verdict.usage.completion_tokens < 4096


def test_concurrent_callers_get_their_own_outputs(tiny_guard: Guard) -> None:
    """Threads sharing one local guard: no cross-talk, each output is its own input's."""
    texts = [f"question number {i} about {'locks' if i % 2 else 'bread'}" for i in range(12)]
    expected = {t: tiny_guard.check(t).raw for t in texts}
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda t: (t, tiny_guard.check(t).raw), texts * 2))
    assert all(raw == expected[t] for t, raw in got)
    assert len(set(expected.values())) > 1


def test_the_windows_of_one_check_run_the_vision_encoder_once_per_image(
    tiny_guard: Guard,
) -> None:
    """Prompts sharing an image object (the windows of one long check) encode it once, and
    generate what prompts with their own copies of the image generate."""
    backend = tiny_guard.backend
    assert isinstance(backend, LocalBackend)
    visual = next(m for name, m in backend.model.named_modules() if name.endswith("visual"))
    patches: list[int] = []
    hook = visual.register_forward_hook(lambda _m, args, _o: patches.append(args[0].shape[0]))
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (56, 84, 3), np.uint8))
    windows = ["first window of a long request", "second window, another part of it"]
    try:
        shared = backend.generate([tiny_guard.policy.render(w, [image]) for w in windows])
        per_image = patches.pop()
        copies = backend.generate([tiny_guard.policy.render(w, [image.copy()]) for w in windows])
        assert patches == [2 * per_image]  # without sharing: once per window
    finally:
        hook.remove()
    assert [g.text for g in shared] == [g.text for g in copies]
    assert [g.prompt_tokens for g in shared] == [g.prompt_tokens for g in copies]


def test_a_long_check_with_an_image_encodes_it_once(tiny_guard: Guard) -> None:
    guard = Guard(tiny_guard.backend, max_text_chars=200, window_overlap=20)
    assert isinstance(guard.backend, LocalBackend)
    visual = next(m for name, m in guard.backend.model.named_modules() if name.endswith("visual"))
    calls: list[int] = []
    hook = visual.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[0]))
    try:
        verdict = guard.check("word " * 100, image=IMAGE)  # 500 characters: 3 windows
    finally:
        hook.remove()
    assert len(calls) == 1 and verdict.usage.prompt_tokens > 0
