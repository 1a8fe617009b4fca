"""Long text in windows, the verdict cache and out-of-memory retries, through the Guard."""

import time

import pytest
from PIL import Image

from guardvl_sdk import Generation, Guard, InvalidInputError, JsonlAuditLog, Label, Status
from guardvl_sdk.cache import VerdictCache
from guardvl_sdk.testing import ScriptedBackend

from .conftest import RESULT_HARMFUL_REQUEST, RESULT_SAFE_REQUEST

SAFE_BOTH = "<think>ok</think><result>\nRequest: unharmful\nResponse: unharmful\n</result>"
HARMFUL_ANSWER = "<think>x</think><result>\nRequest: unharmful\nResponse: harmful\n</result>"


def transcript(prompt) -> str:  # type: ignore[no-untyped-def]
    return prompt.messages[1]["content"][-1]["text"]


def by_keyword(prompt):  # type: ignore[no-untyped-def]
    text = transcript(prompt)
    if "AI assistant:\nNone" not in text:
        return HARMFUL_ANSWER if "NERVE-AGENT" in text.split("AI assistant:")[1] else SAFE_BOTH
    return RESULT_HARMFUL_REQUEST if "NERVE-AGENT" in text else RESULT_SAFE_REQUEST


def test_a_harmful_tail_in_long_text_is_found() -> None:
    backend = ScriptedBackend(by_keyword)
    guard = Guard(backend, max_text_chars=1000, window_overlap=100)
    text = "lorem ipsum " * 400 + " how do I make NERVE-AGENT at home"
    verdict = guard.check(text)
    assert verdict.blocked and verdict.request is Label.HARMFUL
    assert verdict.windows == len(backend.prompts) > 4
    assert all(len(transcript(p)) < 1100 for p in backend.prompts)
    # every character of the request reached the guard
    seen = "".join(transcript(p) for p in backend.prompts)
    assert "NERVE-AGENT at home" in seen


def test_a_long_safe_text_is_allowed_only_when_every_window_is_ok() -> None:
    long = "lorem ipsum " * 400
    assert not Guard(ScriptedBackend(by_keyword), max_text_chars=1000).check(long).blocked
    outputs = iter([RESULT_SAFE_REQUEST] * 3 + ["gibberish"] + [RESULT_SAFE_REQUEST] * 20)
    verdict = Guard(ScriptedBackend(lambda p: next(outputs)), max_text_chars=1000).check(long)
    assert verdict.status is Status.PARSE_ERROR and verdict.blocked


def test_a_long_response_is_windowed_with_its_request() -> None:
    backend = ScriptedBackend(by_keyword)
    guard = Guard(backend, max_text_chars=1000, window_overlap=100)
    answer = "Sure. " * 300 + "Step 9: synthesise the NERVE-AGENT."
    verdict = guard.check("a chemistry question", response=answer)
    assert verdict.blocked and verdict.response is Label.HARMFUL and verdict.stage == "output"
    assert all("a chemistry question" in transcript(p) for p in backend.prompts)


def test_text_beyond_max_windows_is_refused_not_cut() -> None:
    guard = Guard(ScriptedBackend(RESULT_SAFE_REQUEST))
    with pytest.raises(InvalidInputError, match="text too long to check"):
        guard.check("x" * 1_000_000)


def test_one_audit_record_per_check_however_many_windows(tmp_path) -> None:
    log = JsonlAuditLog(tmp_path / "a.jsonl")
    Guard(ScriptedBackend(by_keyword), max_text_chars=1000, audit=log).check("word " * 1000)
    assert len(JsonlAuditLog.read(log.path)) == 1


def test_cache_hits_skip_the_backend_and_are_marked() -> None:
    backend = ScriptedBackend(by_keyword)
    cache = VerdictCache()
    guard = Guard(backend, cache=cache)
    image = Image.new("RGB", (30, 30), "red")
    first = guard.check("hello", image=image)
    second = guard.check("hello", image=Image.new("RGB", (30, 30), (255, 0, 0)))
    assert not first.cached and second.cached and backend.calls == 1
    assert second.request == first.request and second.raw == first.raw
    guard.check("hello", image=Image.new("RGB", (30, 30), "blue"))  # other pixels: a miss
    guard.check("hello", image=image, response="hi")  # other response: a miss
    assert backend.calls == 3
    assert (cache.stats.hits, cache.stats.misses) == (1, 3)


def test_failures_are_not_cached() -> None:
    backend = ScriptedBackend(["gibberish", RESULT_SAFE_REQUEST])
    guard = Guard(backend, cache=VerdictCache())
    assert guard.check("x").status is Status.PARSE_ERROR
    assert guard.check("x").status is Status.OK and backend.calls == 2


def test_cache_hit_is_much_faster_than_a_miss() -> None:
    class Slow:
        model_id = "slow"

        def generate(self, prompts):  # type: ignore[no-untyped-def]
            time.sleep(0.05)
            return [Generation(RESULT_SAFE_REQUEST) for _ in prompts]

    guard = Guard(Slow(), cache=VerdictCache())
    miss = guard.check("same text")
    hit = guard.check("same text")
    assert hit.cached and hit.latency_ms * 20 < miss.latency_ms


class OutOfMemoryError(RuntimeError):
    pass


class MemoryBound:
    """A backend that runs out of memory above two prompts per call."""

    model_id = "bounded"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes: list[int] = []

    def generate(self, prompts):  # type: ignore[no-untyped-def]
        self.sizes.append(len(prompts))
        if len(prompts) > self.limit:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [Generation(RESULT_SAFE_REQUEST) for _ in prompts]


def test_out_of_memory_retries_with_smaller_batches() -> None:
    backend = MemoryBound(limit=2)
    verdicts = Guard(backend, batch_size=8).check_batch([f"item {i}" for i in range(8)])
    assert all(v.status is Status.OK and not v.blocked for v in verdicts)
    assert backend.sizes == [8, 4, 2, 2, 4, 2, 2]


def test_out_of_memory_on_one_prompt_fails_closed() -> None:
    verdict = Guard(MemoryBound(limit=0)).check("x")
    assert verdict.status is Status.ERROR and verdict.blocked
    assert "out of memory" in (verdict.error or "")


async def test_async_backends_get_the_same_retries() -> None:
    class AsyncBound(MemoryBound):
        async def agenerate(self, prompts):  # type: ignore[no-untyped-def]
            return self.generate(prompts)

    backend = AsyncBound(limit=1)
    verdicts = await Guard(backend, batch_size=4).acheck_batch(["a", "b", "c", "d"])
    assert all(v.status is Status.OK for v in verdicts)
    assert backend.sizes == [4, 2, 1, 1, 2, 1, 1]


def jpeg_bytes(width: int, height: int, seed: int = 0) -> bytes:
    import io

    import numpy as np

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_an_encoded_image_hit_decodes_nothing_and_keeps_the_pixel_hash(
    tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import guardvl_sdk.steps as steps_module  # where a check reads its images
    from guardvl_sdk.audit import image_hash
    from guardvl_sdk.inputs import load_image

    decoded: list[Image.Image] = []

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        decoded.append(load_image(*args, **kwargs))
        return decoded[-1]

    monkeypatch.setattr(steps_module, "load_image", counting)
    log = JsonlAuditLog(tmp_path / "a.jsonl")
    backend = ScriptedBackend(by_keyword)
    guard = Guard(backend, cache=VerdictCache(), audit=log, max_pixels=256 * 256)
    photo = jpeg_bytes(1024, 768)
    miss = guard.check("what is this?", image=photo)
    assert len(decoded) == 1 and backend.calls == 1
    hit = guard.check("what is this?", image=photo)
    assert hit.cached and len(decoded) == 1 and backend.calls == 1  # not decoded again
    pixels = image_hash(decoded[0])
    assert [p.sha256 for p in miss.inspected if p.kind == "image"] == [pixels]
    assert hit.inspected == miss.inspected  # the hit's receipt names the pixels of the miss
    records = JsonlAuditLog.read(log.path)
    assert [r.image_sha256 for r in records] == [[pixels], [pixels]]
    assert records[1].inspected[1].width == decoded[0].width < 1024


def test_the_pixel_budget_is_part_of_an_encoded_images_key() -> None:
    backend, cache = ScriptedBackend(by_keyword), VerdictCache()
    photo = jpeg_bytes(320, 240)
    Guard(backend, cache=cache, max_pixels=256 * 256).check("q", image=photo)
    other = Guard(backend, cache=cache, max_pixels=64 * 64).check("q", image=photo)
    assert not other.cached and backend.calls == 2  # other pixels reach the model
    assert other.inspected[1].width is not None and other.inspected[1].width < 80
    again = Guard(backend, cache=cache, max_pixels=64 * 64).check("q", image=photo)
    assert again.cached and again.inspected == other.inspected
    assert not Guard(backend, cache=cache).check("q", image=jpeg_bytes(320, 240, 1)).cached
