"""The image path's cost: decode at reduced size when far over budget, no needless copies."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from guardvl_sdk import inputs
from guardvl_sdk.inputs import load_image

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
