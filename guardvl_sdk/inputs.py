"""Turning user input (text, paths, bytes, PIL images, arrays, data: URLs) into checked content.

One module over 400 lines on purpose: one job, bounded decoding of every input form, whose many
cases share its limits.

Every image comes out as an RGB ``PIL.Image`` within the pixel budget, or the call raises
:class:`~guardvl_sdk.errors.InvalidInputError` naming the problem. Multi-frame images (animated
GIF, multi-page TIFF) are checked on their first frame.

Every image is decoded under bounds checked *before* decoding, all in :func:`decoder_limits`:
an allowlist of formats, the declared pixels, the memory the decoded pixels take, and for JPEG the
work its progressive scans cost. A check spends from one :class:`ImageBudget` (how many images,
how many source pixels in all). Nothing is decoded at a size the bounds did not allow, and the
conversions after decoding work on the downscaled image, so memory stays within about twice
:data:`MAX_DECODED_BYTES` per image.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import math
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Union, cast

from guardvl_sdk.errors import InvalidInputError
from guardvl_sdk.image_headers import header_limits
from guardvl_sdk.text import without_lone_surrogates

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "MAX_CHECK_IMAGES",
    "MAX_CHECK_PIXELS",
    "MAX_DECODED_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_JPEG_SCAN_WORK",
    "MAX_SOURCE_PIXELS",
    "SOURCE_JPEG",
    "ImageBudget",
    "ImageInput",
    "clean_text",
    "decoder_limits",
    "image_list",
    "load_image",
    "load_images",
    "read_image",
    "to_data_url",
    "without_lone_surrogates",
]

ImageInput = Union[str, os.PathLike[str], bytes, bytearray, memoryview, "Image.Image", "np.ndarray"]

DEFAULT_MAX_PIXELS = 768 * 768
"""Images larger than this are downscaled (aspect kept) before the processor sees them.

768 x 768 is the image budget of LLaMA-Factory, the framework GuardReasoner-VL was trained with
(inferred from its code, not stated in the paper)."""

MAX_SOURCE_PIXELS = 64_000_000
"""Declared dimensions above this are refused before decoding (decompression bombs)."""

MAX_DECODED_BYTES = 256 * 1024 * 1024
"""The memory one decoded image may take (declared pixels x bytes per pixel of its mode)."""

MAX_JPEG_SCAN_WORK = 500_000_000
"""Scans x pixels of one JPEG: each progressive scan is a pass over the whole image (about
2 s at this bound). A baseline JPEG has one scan, a progressive photo about ten."""

MAX_IMAGE_BYTES = 64 * 1024 * 1024
"""Encoded images (files, bytes, data: URLs) larger than this are refused unread."""

MAX_CHECK_IMAGES = 16
"""Most images one check may carry."""

MAX_CHECK_PIXELS = 2 * MAX_SOURCE_PIXELS
"""Most source pixels (declared, before downscaling) all images of one check may have."""

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
"""The image formats decoded; any other (icons, PSD, EPS, ...) is refused unread."""

# Bytes per pixel Pillow keeps for each mode while decoding and converting (RGB is stored in 4;
# palette and 1-bit images are converted to RGBA or L before downscaling).
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 4, "PA": 4, "I;16": 2, "I;16B": 2, "I;16L": 2}


MAX_ASPECT_RATIO = 200
"""Qwen2.5-VL's image processor refuses images more elongated than this."""

SOURCE_JPEG = "guardvl_sdk.source_jpeg"
"""The ``info`` key under which :func:`load_image` keeps the JPEG bytes an image was decoded from,
when its pixels are exactly those bytes' (an RGB JPEG within the pixel budget, upright): a remote
backend sends them as they are instead of encoding the pixels again."""


@dataclass
class ImageBudget:
    """What the images of one check may spend: a count and source pixels in all.

    Args:
        max_images: Most images.
        max_pixels: Most declared source pixels, summed over the images.
    """

    max_images: int = MAX_CHECK_IMAGES
    max_pixels: int = MAX_CHECK_PIXELS
    images: int = 0
    pixels: int = 0

    def spend(self, width: int, height: int) -> None:
        """Take one ``width`` x ``height`` image from the budget, or raise ``InvalidInputError``."""
        self.images += 1
        self.pixels += width * height
        if self.images > self.max_images:
            raise InvalidInputError(f"a check takes at most {self.max_images} images")
        if self.pixels > self.max_pixels:
            raise InvalidInputError(
                f"the images of one check declare over {self.max_pixels} pixels in all "
                "(the per-check image budget)"
            )


def clean_text(value: object, *, what: str) -> str:
    """Return ``value`` as a str the tokenizer can encode, or raise ``InvalidInputError``.

    Lone surrogates (which cannot be encoded as UTF-8) become U+FFFD; nothing else is changed.
    """
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a str, got {type(value).__name__}")
    return without_lone_surrogates(value)


def load_images(
    images: ImageInput | Sequence[ImageInput] | None,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    fetch: Callable[[str], bytes] | None = None,
    budget: ImageBudget | None = None,
) -> list[Image.Image]:
    """Load one image, several (a list or tuple), or none, as RGB images within ``max_pixels``.

    All of them spend from one ``budget`` (default: a fresh :class:`ImageBudget`).
    """
    budget = budget or ImageBudget()
    return [
        load_image(item, max_pixels=max_pixels, fetch=fetch, budget=budget)
        for item in image_list(images, budget)
    ]


def image_list(
    images: ImageInput | Sequence[ImageInput] | None, budget: ImageBudget
) -> list[ImageInput]:
    """One image, several (a list or tuple), or none, as a list within the budget's count."""
    if images is None:
        return []
    items = list(images) if isinstance(images, list | tuple) else [cast("ImageInput", images)]
    if len(items) > budget.max_images:
        raise InvalidInputError(f"{len(items)} images: a check takes at most {budget.max_images}")
    return items


def load_image(
    source: ImageInput,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    fetch: Callable[[str], bytes] | None = None,
    budget: ImageBudget | None = None,
) -> Image.Image:
    """Load one image as RGB, downscaled to at most ``max_pixels`` pixels.

    Args:
        source: A file path, encoded bytes, a ``data:`` URL, an http(s) URL (only with
            ``fetch``), a PIL image, or a numpy array (``HxW`` or ``HxWxC`` with 1, 3 or 4
            channels; uint8, uint16, bool or float in [0, 1]).
        max_pixels: The pixel budget; None hands the image on at its own size (the model's
            image processor then resizes it, as in the authors' evaluation).
        fetch: Turns an http(s) URL into bytes, e.g. :class:`guardvl_sdk.fetch.ImageFetcher`.
            Without it, URLs are refused.
        budget: The check's image budget this image spends from (default: its own).

    Raises:
        InvalidInputError: The source is of an unsupported type or format, missing, unreadable,
            over a bound (the message names it), or too elongated to be checked.
    """
    from PIL import Image

    budget = budget or ImageBudget()
    resolved = read_image(source, fetch=fetch)
    if isinstance(resolved, Image.Image):
        if getattr(resolved, "tile", None) and resolved.format not in (*FORMATS, "MPO"):
            # Opened but not yet decoded: decoding it here would run a decoder outside the
            # allowlist (EPS runs Ghostscript) on what may be an uploaded file.
            raise InvalidInputError(
                f"a {resolved.format} image not yet loaded: its format is outside the formats "
                f"read ({', '.join(FORMATS)}); load() it yourself or pass its bytes"
            )
        image = _decode(resolved, None, budget)
    elif isinstance(resolved, bytes):
        try:
            image = _open_bytes(resolved, budget, max_pixels)
        except InvalidInputError as exc:
            named = str(source) if isinstance(source, str | os.PathLike) else ""
            if not named or named[:5].lower() == "data:" or "://" in named[:8]:
                raise
            raise InvalidInputError(f"image file {named}: {exc}") from exc  # name the file
    else:
        image = _from_array(resolved, budget)
    rgb = _to_rgb(image, max_pixels)
    if rgb is not image:  # resized, turned or converted: the source no longer encodes these pixels
        rgb.info.pop(SOURCE_JPEG, None)
    return rgb


def read_image(
    source: ImageInput, *, fetch: Callable[[str], bytes] | None = None
) -> bytes | Image.Image | np.ndarray:
    """The image behind ``source``, not yet decoded: encoded bytes, or the PIL image or array.

    Paths are read, ``data:`` URLs decoded and http(s) URLs fetched (only with ``fetch``), all
    within :data:`MAX_IMAGE_BYTES`. :func:`load_image` accepts the result.

    Raises:
        InvalidInputError: The source is of an unsupported type, missing or too large.
    """
    from PIL import Image

    if isinstance(source, Image.Image):
        return source
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str) and source[:5].lower() == "data:":
        return _decode_data_url(source)
    # By its scheme alone: "http:cat.png" is a URL (refused by the fetcher), never a local file.
    if isinstance(source, str) and source.split(":", 1)[0].lower() in ("http", "https"):
        if fetch is None:
            raise InvalidInputError(
                "remote image URLs are not fetched unless you turn it on (Guard(fetch_images=True)"
                "): or download the image and pass its bytes or a path"
            )
        return fetch(source)
    if isinstance(source, str | os.PathLike):
        return _read_file(source)
    if type(source).__module__ == "numpy":
        return source
    raise InvalidInputError(
        f"unsupported image type {type(source).__name__}: pass a path, bytes, a PIL image, "
        "a numpy array or a data: URL"
    )


def to_data_url(image: Image.Image, *, format: Literal["png", "jpeg"] = "png") -> str:
    """Encode an image as a base64 ``data:`` URL, the way a remote guard server receives it.

    ``"png"`` is lossless: the server decodes exactly the pixels the local backend would see.
    ``"jpeg"`` (quality 95, no chroma subsampling) is visually lossless and 10-20x cheaper to
    encode, with a payload 3-4x smaller (figures in PERFORMANCE.md).
    """
    buffer = io.BytesIO()
    if format == "jpeg":
        image.save(buffer, format="JPEG", quality=95, subsampling=0)
    else:
        # Level 1: a fraction of the default's encoding time for slightly larger payloads.
        image.save(buffer, format="PNG", compress_level=1)
    return f"data:image/{format};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _read_file(source: str | os.PathLike[str]) -> bytes:
    """Read a regular file of at most ``MAX_IMAGE_BYTES``; anything else is a typed error."""
    try:
        path = os.fspath(source)
        # O_NONBLOCK: opening a FIFO must not hang; it is refused below as not a regular file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except (OSError, ValueError, TypeError) as exc:  # ValueError: a NUL byte in the path
        raise InvalidInputError(f"image file not found or unreadable: {source!r}: {exc}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInputError(f"image path is not a regular file: {source!r}")
        # Bounded even when the size lies (files under /proc report 0 bytes).
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise InvalidInputError(f"image file unreadable: {source!r}: {exc}") from exc
    finally:
        os.close(fd)
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInputError(f"image file is over the {MAX_IMAGE_BYTES} byte limit")
    return data


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


def _open_bytes(data: bytes, budget: ImageBudget, max_pixels: int | None = None) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InvalidInputError("image is empty (0 bytes)")
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInputError(f"image is {len(data)} bytes, over the {MAX_IMAGE_BYTES} limit")
    header_limits(data)  # Pillow walks a header in Python: bound that walk first
    try:
        # Lazy: reads the header only, and only of the allowed formats.
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError as exc:  # its message names a BytesIO object, not the input
        raise InvalidInputError(
            f"not a readable image: unknown or damaged image format (formats read: "
            f"{', '.join(FORMATS)})"
        ) from exc
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInputError(f"not a readable image: {exc}") from exc
    return _decode(image, data, budget, max_pixels)


def decoder_limits(image: Image.Image, data: bytes | None, budget: ImageBudget) -> None:
    """Every bound an image must meet before it is decoded, per format, in one place.

    Args:
        image: The opened, not yet decoded, image (its header read).
        data: Its encoded bytes, when it came encoded.
        budget: The check's image budget, spent here.

    Raises:
        InvalidInputError: A bound is exceeded; the message names it.
    """
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidInputError(f"image has no pixels ({width}x{height})")
    pixels = width * height
    if pixels > MAX_SOURCE_PIXELS:
        raise InvalidInputError(
            f"image declares {width}x{height} pixels, over the {MAX_SOURCE_PIXELS} pixel limit"
        )
    decoded = pixels * _BYTES_PER_PIXEL.get(image.mode, 4)
    if decoded > MAX_DECODED_BYTES:
        raise InvalidInputError(
            f"image {width}x{height} in mode {image.mode} would take {decoded} bytes decoded, "
            f"over the {MAX_DECODED_BYTES} byte decoding limit"
        )
    if data is not None and image.format in ("JPEG", "MPO"):
        # Entropy-coded data stuffs every 0xFF with 0x00, so FF DA occurs only as a scan marker.
        scans = data.count(b"\xff\xda")
        if scans * pixels > MAX_JPEG_SCAN_WORK:
            raise InvalidInputError(
                f"JPEG has {scans} scans of {width}x{height} pixels, over the "
                f"{MAX_JPEG_SCAN_WORK} scan-pixel decoding limit"
            )
    budget.spend(width, height)


def _decode(
    image: Image.Image, data: bytes | None, budget: ImageBudget, max_pixels: int | None = None
) -> Image.Image:
    """Check the bounds, then decode the first frame (the image is opened on it).

    A JPEG far over ``max_pixels`` is decoded at 1/2, 1/4 or 1/8 scale (JPEG's own DCT scaling,
    to no less than the size it is then fitted to), instead of decoding every pixel to throw
    most of them away.
    """
    from PIL import Image

    decoder_limits(image, data, budget)
    width, height = image.size
    drafted = max_pixels is not None and image.format == "JPEG" and width * height > 4 * max_pixels
    if drafted:
        image.draft("RGB", _fit_size(width, height, max_pixels or 0))
    try:
        # Never seek or count frames: a frame or directory chain is walked only to the first.
        image.load()
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInputError(f"image data is corrupt or truncated: {exc}") from exc
    if data is not None and image.format == "JPEG" and not drafted:
        image.info[SOURCE_JPEG] = data  # load_image keeps it only if the pixels stay as decoded
    return image


def _from_array(array: Any, budget: ImageBudget) -> Image.Image:
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
    height, width = array.shape[:2]
    if width * height > MAX_SOURCE_PIXELS or width * height * 4 > MAX_DECODED_BYTES:
        raise InvalidInputError(
            f"image array is {width}x{height}, over the {MAX_SOURCE_PIXELS} pixel or "
            f"{MAX_DECODED_BYTES} byte decoding limit"
        )
    if not (
        array.dtype in (np.uint8, np.bool_, np.uint16) or np.issubdtype(array.dtype, np.floating)
    ):
        raise InvalidInputError(
            f"unsupported image array dtype {array.dtype}: "
            "use uint8, uint16, bool or float in [0, 1]"
        )
    budget.spend(width, height)
    pixels = array if array.dtype == np.uint8 else _to_uint8(array)
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[pixels.ndim if pixels.ndim == 2 else pixels.shape[2]]
    return Image.fromarray(np.ascontiguousarray(pixels), mode=mode)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale bool, uint16 or float ([0, 1]) values to uint8, a block of rows at a time.

    Converting the whole array at once would hold float64 copies: up to 8x the caller's array.
    """
    import numpy as np

    out = np.empty(array.shape, dtype=np.uint8)
    row_bytes = max(1, array[:1].size * 8)
    step = max(1, (4 * 1024 * 1024) // row_bytes)
    for start in range(0, array.shape[0], step):
        block = array[start : start + step]
        if array.dtype == np.bool_:
            out[start : start + step] = block * np.uint8(255)
        elif array.dtype == np.uint16:
            out[start : start + step] = np.round(block / 257.0)
        else:
            if not np.isfinite(block).all():
                raise InvalidInputError("image array contains NaN or infinite values")
            out[start : start + step] = (np.clip(block, 0.0, 1.0) * 255).round()
    return out


# The EXIF orientation tag's values, as the transposition that shows the image upright.
_ORIENTATIONS = {2: 0, 3: 3, 4: 1, 5: 5, 6: 4, 7: 6, 8: 2}


def _to_rgb(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """Downscale to ``max_pixels`` first (in the decoded mode), then convert to upright RGB."""
    import numpy as np
    from PIL import Image

    width, height = image.size
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise InvalidInputError(
            f"image is {width}x{height}: more elongated than {MAX_ASPECT_RATIO}:1, "
            "which the guard's image processor cannot take"
        )
    orientation = 1
    # A malformed EXIF block must not make the image uncheckable: then it stays as decoded.
    with contextlib.suppress(Exception):
        orientation = int(image.getexif().get(0x0112, 1))
    try:
        if image.mode == "1":
            image = image.convert("L")
        elif image.mode in ("P", "PA"):
            image = image.convert("RGBA")  # palette transparency becomes alpha
        elif image.mode in ("La", "RGBa"):  # premultiplied alpha
            image = image.convert({"La": "LA", "RGBa": "RGBA"}[image.mode])
        image = _fit(image, max_pixels)
        if orientation in _ORIENTATIONS:
            image = image.transpose(Image.Transpose(_ORIENTATIONS[orientation]))
        if image.mode.startswith("I") or image.mode == "F":
            # 16/32-bit and float grayscale: PIL's convert() would clip, not scale, to 8 bits.
            values = np.asarray(image, dtype=np.float64)
            if image.mode.startswith("I;16") or values.max(initial=0) > 255:
                values = values / 257.0
            elif image.mode == "F" and values.max(initial=0) <= 1.0:
                values = values * 255.0
            image = Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8), mode="L")
        if image.mode in ("RGBA", "LA"):
            # Flatten transparency onto white, as a viewer would show it, not onto black.
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        return image if image.mode == "RGB" else image.convert("RGB")  # convert() copies
    except (ValueError, OSError, TypeError) as exc:
        raise InvalidInputError(f"cannot convert image mode {image.mode} to RGB: {exc}") from exc


def _fit(image: Image.Image, max_pixels: int | None) -> Image.Image:
    from PIL import Image

    width, height = image.size
    if max_pixels is None or width * height <= max_pixels:
        return image
    size = _fit_size(width, height, max_pixels)
    # reducing_gap: a box reduction first, then bicubic; half the time on a 12-megapixel photo.
    # Pillow cannot box-reduce 16-bit images: they take plain bicubic (it needs no big buffer).
    gap = None if image.mode.startswith("I;16") else 2.0
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=gap)


def _fit_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The size an image over ``max_pixels`` is scaled to, aspect kept."""
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))
