"""Turning user input (text, paths, bytes, PIL images, arrays, data: URLs) into checked content.

Every image comes out as an RGB ``PIL.Image`` within the pixel budget, or the call raises
:class:`~guardvl_sdk.errors.InvalidInputError` naming the problem. Multi-frame images (animated
GIF, multi-page TIFF) are checked on their first frame.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, cast

from guardvl_sdk.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_IMAGE_BYTES",
    "MAX_SOURCE_PIXELS",
    "ImageInput",
    "clean_text",
    "load_image",
    "load_images",
    "to_data_url",
]

ImageInput = Union[str, os.PathLike[str], bytes, bytearray, memoryview, "Image.Image", "np.ndarray"]

DEFAULT_MAX_PIXELS = 768 * 768
"""Images larger than this are downscaled (aspect kept) before the processor sees them.

768 x 768 is the image budget of LLaMA-Factory, the framework GuardReasoner-VL was trained with
(inferred from its code, not stated in the paper)."""

MAX_SOURCE_PIXELS = 64_000_000
"""Declared dimensions above this are refused before decoding (decompression bombs)."""

MAX_IMAGE_BYTES = 64 * 1024 * 1024
"""Encoded images (files, bytes, data: URLs) larger than this are refused unread."""

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

MAX_ASPECT_RATIO = 200
"""Qwen2.5-VL's image processor refuses images more elongated than this."""


def clean_text(value: object, *, what: str) -> str:
    """Return ``value`` as a str the tokenizer can encode, or raise ``InvalidInputError``.

    Lone surrogates (which cannot be encoded as UTF-8) become U+FFFD; nothing else is changed.
    """
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a str, got {type(value).__name__}")
    return _LONE_SURROGATE.sub("\ufffd", value)


def load_images(
    images: ImageInput | Sequence[ImageInput] | None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    fetch: Callable[[str], bytes] | None = None,
) -> list[Image.Image]:
    """Load one image, several (a list or tuple), or none, as RGB images within ``max_pixels``."""
    if images is None:
        return []
    if isinstance(images, list | tuple):
        return [load_image(item, max_pixels=max_pixels, fetch=fetch) for item in images]
    return [load_image(cast("ImageInput", images), max_pixels=max_pixels, fetch=fetch)]


def load_image(
    source: ImageInput,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    fetch: Callable[[str], bytes] | None = None,
) -> Image.Image:
    """Load one image as RGB, downscaled to at most ``max_pixels`` pixels.

    Args:
        source: A file path, encoded bytes, a ``data:`` URL, an http(s) URL (only with
            ``fetch``), a PIL image, or a numpy array (``HxW`` or ``HxWxC`` with 1, 3 or 4
            channels; uint8, uint16, bool or float in [0, 1]).
        max_pixels: The pixel budget.
        fetch: Turns an http(s) URL into bytes, e.g. :class:`guardvl_sdk.fetch.ImageFetcher`.
            Without it, URLs are refused.

    Raises:
        InvalidInputError: The source is of an unsupported type, missing, unreadable, too large,
            or too elongated to be checked.
    """
    from PIL import Image

    if isinstance(source, Image.Image):
        image = _checked_open(source)
    elif isinstance(source, bytes | bytearray | memoryview):
        image = _open_bytes(bytes(source))
    elif isinstance(source, str) and source[:5].lower() == "data:":
        image = _open_bytes(_decode_data_url(source))
    elif isinstance(source, str) and source.split("://", 1)[0].lower() in ("http", "https"):
        if fetch is None:
            raise InvalidInputError(
                "remote image URLs are not fetched unless you turn it on (Guard(fetch_images=True)"
                "): or download the image and pass its bytes or a path"
            )
        image = _open_bytes(fetch(source))
    elif isinstance(source, str | os.PathLike):
        data = _read_file(Path(source))
        try:
            image = _open_bytes(data)
        except InvalidInputError as exc:
            raise InvalidInputError(f"image file {source}: {exc}") from exc
    elif type(source).__module__ == "numpy":
        image = _from_array(source)
    else:
        raise InvalidInputError(
            f"unsupported image type {type(source).__name__}: pass a path, bytes, a PIL image, "
            "a numpy array or a data: URL"
        )
    return _fit(_to_rgb(image), max_pixels)


def to_data_url(image: Image.Image) -> str:
    """Encode an image as a base64 PNG ``data:`` URL, the way a remote guard server receives it.

    PNG is lossless, so the server decodes exactly the pixels the local backend would see.
    """
    buffer = io.BytesIO()
    # Level 1: a fraction of the default's encoding time for slightly larger payloads.
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _read_file(path: Path) -> bytes:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidInputError(f"image file not found or unreadable: {path}") from exc
    if not path.is_file():
        raise InvalidInputError(f"image path is not a file: {path}")
    if size > MAX_IMAGE_BYTES:
        raise InvalidInputError(f"image file is {size} bytes, over the {MAX_IMAGE_BYTES} limit")
    return path.read_bytes()


def _decode_data_url(url: str) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or not header.lower().endswith(";base64"):
        raise InvalidInputError("only base64 data: URLs are supported (data:image/...;base64,...)")
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise InvalidInputError(f"data: URL is over the {MAX_IMAGE_BYTES} byte limit")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"data: URL is not valid base64: {exc}") from exc


def _open_bytes(data: bytes) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InvalidInputError("image is empty (0 bytes)")
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInputError(f"image is {len(data)} bytes, over the {MAX_IMAGE_BYTES} limit")
    try:
        image = Image.open(io.BytesIO(data))  # lazy: reads the header only
    except UnidentifiedImageError as exc:  # its message names a BytesIO object, not the input
        raise InvalidInputError("not a readable image: unknown or damaged image format") from exc
    except (Image.DecompressionBombError, OSError, ValueError) as exc:
        raise InvalidInputError(f"not a readable image: {exc}") from exc
    return _checked_open(image)


def _checked_open(image: Image.Image) -> Image.Image:
    """Check the declared size, then decode the first frame."""
    from PIL import Image

    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidInputError(f"image has no pixels ({width}x{height})")
    if width * height > MAX_SOURCE_PIXELS:
        raise InvalidInputError(
            f"image declares {width}x{height} pixels, over the {MAX_SOURCE_PIXELS} pixel limit"
        )
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInputError(f"image data is corrupt or truncated: {exc}") from exc
    return image


def _from_array(array: Any) -> Image.Image:
    import numpy as np
    from PIL import Image

    if not isinstance(array, np.ndarray):
        raise InvalidInputError(f"unsupported image type {type(array).__name__}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InvalidInputError(
            f"image array must be HxW or HxWxC with C in (1, 3, 4), got shape {array.shape}"
        )
    if array.size == 0:
        raise InvalidInputError(f"image array is empty, shape {array.shape}")
    if array.shape[0] * array.shape[1] > MAX_SOURCE_PIXELS:
        raise InvalidInputError(f"image array has over {MAX_SOURCE_PIXELS} pixels")
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype == np.bool_:
        pixels = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        pixels = np.round(array / 257.0).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InvalidInputError("image array contains NaN or infinite values")
        pixels = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    else:
        raise InvalidInputError(
            f"unsupported image array dtype {array.dtype}: "
            "use uint8, uint16, bool or float in [0, 1]"
        )
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[pixels.ndim if pixels.ndim == 2 else pixels.shape[2]]
    return Image.fromarray(np.ascontiguousarray(pixels), mode=mode)


def _to_rgb(image: Image.Image) -> Image.Image:
    import numpy as np
    from PIL import Image, ImageOps

    # A malformed EXIF block must not make the image uncheckable: then it stays as decoded.
    with contextlib.suppress(Exception):
        image = ImageOps.exif_transpose(image) or image
    if image.mode.startswith("I") or image.mode == "F":
        # 16/32-bit and float grayscale: PIL's convert() would clip, not scale, to 8 bits.
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0
        elif image.mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0
        image = Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8), mode="L")
    if image.mode == "P" or image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        # Flatten transparency onto white, as a viewer would show it, not onto black.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise InvalidInputError(f"cannot convert image mode {image.mode} to RGB: {exc}") from exc


def _fit(image: Image.Image, max_pixels: int) -> Image.Image:
    from PIL import Image

    width, height = image.size
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise InvalidInputError(
            f"image is {width}x{height}: more elongated than {MAX_ASPECT_RATIO}:1, "
            "which the guard's image processor cannot take"
        )
    if width * height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (width * height))
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    # reducing_gap: a box reduction first, then bicubic; half the time on a 12-megapixel photo.
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
