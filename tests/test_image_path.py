"""The image path's cost: decode at reduced size when far over budget, no needless copies, and
cache hits that decode nothing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from guardvl_sdk import Guard, inputs
from guardvl_sdk.audit import AuditRecord, image_hash
from guardvl_sdk.cache import VerdictCache
from guardvl_sdk.inputs import load_image
from guardvl_sdk.testing import ScriptedBackend

SAFE = "<think>\nfine\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"


def _jpeg(width: int, height: int) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x % 256, y % 256, (x // 3 + y // 5) % 256], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_a_jpeg_far_over_budget_is_decoded_reduced_to_the_same_size(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    data = _jpeg(4000, 3000)
    decoded_sizes = []
    real_fit = inputs._fit

    def spy(image: Image.Image, max_pixels: int) -> Image.Image:
        decoded_sizes.append(image.size)
        return real_fit(image, max_pixels)

    monkeypatch.setattr(inputs, "_fit", spy)
    fast = load_image(data)
    assert decoded_sizes[-1][0] * decoded_sizes[-1][1] < 4000 * 3000 // 4  # drafted at 1/2 or less
    assert fast.mode == "RGB" and fast.width * fast.height <= inputs.DEFAULT_MAX_PIXELS
    full = real_fit(Image.open(io.BytesIO(data)).convert("RGB"), inputs.DEFAULT_MAX_PIXELS)
    assert fast.size == full.size
    difference = np.abs(np.asarray(fast, dtype=np.int16) - np.asarray(full, dtype=np.int16))
    assert difference.mean() < 4  # the same picture, to within resampling


def test_an_image_needing_no_change_is_not_copied() -> None:
    image = Image.new("RGB", (64, 48), (10, 20, 30))
    assert load_image(image) is image


def test_exif_orientation_is_still_applied() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.new("RGB", (40, 20), (200, 0, 0)).save(buffer, format="JPEG", exif=exif)
    assert load_image(buffer.getvalue()).size == (20, 40)


class _Records:
    include_content = False

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def write(self, record: AuditRecord) -> None:
        self.records.append(record)


def test_a_cache_hit_decodes_nothing_and_keeps_the_pixel_hash(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    audit = _Records()
    guard = Guard(ScriptedBackend(SAFE), cache=VerdictCache(), audit=audit)
    data = _jpeg(1024, 768)
    decodes = 0
    real_open = inputs._open_bytes

    def counting(*args, **kwargs) -> Image.Image:  # type: ignore[no-untyped-def]
        nonlocal decodes
        decodes += 1
        return real_open(*args, **kwargs)

    monkeypatch.setattr(inputs, "_open_bytes", counting)
    miss = guard.check("what is this?", image=data)
    hit = guard.check("what is this?", image=data)
    assert not miss.cached and hit.cached and decodes == 1
    first, second = audit.records
    assert first.image_sha256 == second.image_sha256 == [image_hash(load_image(data))]


@pytest.mark.parametrize("change", ["bytes", "budget", "text"])
def test_the_cache_key_follows_the_bytes_and_the_pixel_budget(change: str) -> None:
    cache = VerdictCache()
    data = _jpeg(320, 240)
    Guard(ScriptedBackend(SAFE), cache=cache).check("x", image=data)
    guard = Guard(
        ScriptedBackend(SAFE),
        cache=cache,
        max_pixels=100 * 100 if change == "budget" else inputs.DEFAULT_MAX_PIXELS,
    )
    other = _jpeg(320, 241) if change == "bytes" else data
    verdict = guard.check("y" if change == "text" else "x", image=other)
    assert not verdict.cached
    assert Guard(ScriptedBackend(SAFE), cache=cache).check("x", image=data).cached
