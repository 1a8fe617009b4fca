"""Hostile images and image sources: each is refused with a typed error, or loads, within a stated
time and memory bound; never a crash inside PIL. Time bounds on decoding are CPU time of this
process (``time.process_time``): the work done, which a loaded machine does not inflate. Peak
memory is measured in a fresh process (``ru_maxrss``), since PIL's buffers are invisible to
tracemalloc."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from guardvl_sdk import Guard, InvalidInputError
from guardvl_sdk.inputs import MAX_CHECK_IMAGES, load_image, load_images
from guardvl_sdk.testing import ScriptedBackend

from .conftest import RESULT_SAFE_REQUEST

PEAK_MB = 600
"""Stated bound: the memory one check's images may add to the process (see inputs.py)."""
SECONDS = 8.0
"""Stated bound: the time one hostile image may take, on this shared 2-core machine."""


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


_MEASURE = """
import json, resource, sys, time
from guardvl_sdk.errors import InvalidInputError
from guardvl_sdk.inputs import load_images
paths = sys.argv[1:]
sources = [open(p, "rb").read() for p in paths]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
began = time.perf_counter()
try:
    outcome = [image.size for image in load_images(sources)]
except InvalidInputError as exc:
    outcome = "InvalidInputError: " + str(exc)
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024
print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - began, "peak_mb": peak}))
"""


def measure(tmp_path: Path, sources: list[bytes]) -> dict[str, object]:
    """Load ``sources`` as one check's images in a fresh process; its outcome, time and memory."""
    paths = []
    for index, data in enumerate(sources):
        path = tmp_path / f"image-{index}"
        path.write_bytes(data)
        paths.append(str(path))
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *paths],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["seconds"] < SECONDS, result  # type: ignore[operator]
    assert result["peak_mb"] < PEAK_MB, result  # type: ignore[operator]
    return result


@pytest.mark.slow
def test_a_large_16_bit_grayscale_png_loads_in_bounded_memory(tmp_path: Path) -> None:
    data = encode(Image.new("I;16", (8000, 8000), 30000))  # 0.12 MB; 1.7 GB peak before
    assert len(data) < 200_000
    result = measure(tmp_path, [data])
    assert result["outcome"] == [[768, 768]]


@pytest.mark.slow
def test_many_large_palette_images_exceed_the_check_budget(tmp_path: Path) -> None:
    palette = encode(Image.new("P", (7000, 7000)))
    result = measure(tmp_path, [palette] * 3)  # 147 megapixels declared in all
    assert "per-check image budget" in str(result["outcome"])


def test_a_thousand_small_images_exceed_the_image_count(tmp_path: Path) -> None:
    small = encode(Image.new("RGB", (64, 64), "red"))
    began = time.process_time()
    with pytest.raises(InvalidInputError, match=f"at most {MAX_CHECK_IMAGES}"):
        load_images([small] * 1000)
    assert time.process_time() - began < 1.0
    guard = Guard(ScriptedBackend(RESULT_SAFE_REQUEST))
    with pytest.raises(InvalidInputError, match="at most"):
        guard.check("look", image=[small] * (MAX_CHECK_IMAGES + 1))


def _progressive_jpeg_with_extra_scans(side: int, extra: int) -> bytes:
    data = encode(Image.new("RGB", (side, side), (120, 130, 140)), "JPEG", progressive=True)
    last_scan = data.rindex(b"\xff\xda")
    return data[:-2] + data[last_scan:-2] * extra + b"\xff\xd9"  # repeat the last scan


def test_a_progressive_jpeg_with_many_scans_is_refused_before_decoding() -> None:
    bomb = _progressive_jpeg_with_extra_scans(4000, 200)  # ~0.2 MB, ~15 s to decode in PIL
    began = time.process_time()
    with pytest.raises(InvalidInputError, match="scan-pixel decoding limit"):
        load_image(bomb)
    assert time.process_time() - began < 1.0
    ordinary = encode(Image.new("RGB", (1500, 1000), "blue"), "JPEG", progressive=True)
    assert load_image(ordinary).mode == "RGB"  # a photo's ten scans are well within the bound


def test_an_icon_and_other_formats_outside_the_allowlist_are_refused() -> None:
    icon = encode(Image.new("RGB", (256, 256)), "ICO")
    for data in (
        icon,
        encode(Image.new("RGB", (8, 8)), "PPM"),
        encode(Image.new("L", (8, 8)), "TGA"),
    ):
        with pytest.raises(InvalidInputError, match="formats read"):
            load_image(data)


def test_long_frame_and_directory_chains_are_not_walked() -> None:
    frames = [Image.new("RGB", (8, 8), (i % 256, 0, 0)) for i in range(300)]
    for fmt in ("TIFF", "GIF"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
        began = time.process_time()
        assert load_image(data).getpixel((0, 0))[0] < 10  # the first frame
        assert time.process_time() - began < 0.5, fmt


def test_a_pil_image_in_any_mode_loads() -> None:
    for mode in ("La", "RGBa", "LAB", "HSV", "YCbCr", "I;16B", "F", "1", "PA"):
        image = load_image(Image.new(mode, (16, 16)))
        assert image.mode == "RGB" and image.size == (16, 16)


@pytest.mark.parametrize(
    "path",
    ["image\x00.png", "/proc/self/mem", "/dev/zero", "/proc", "/does/not/exist.png"],
)
def test_paths_that_are_not_image_files_are_typed(path: str) -> None:
    began, wall = time.process_time(), time.monotonic()
    with pytest.raises(InvalidInputError):
        load_image(path)
    assert time.process_time() - began < 1.0  # no work: nothing read from a device
    assert time.monotonic() - wall < 30  # and nothing blocked on one


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        load_image(fifo)


def test_a_proc_file_that_reports_zero_bytes_is_read_bounded() -> None:
    with pytest.raises(InvalidInputError, match="not a readable image"):
        load_image("/proc/self/status")


@pytest.mark.slow
def test_float_arrays_are_converted_without_amplification(tmp_path: Path) -> None:
    code = """
import json, resource, numpy as np
from guardvl_sdk.inputs import load_image
array = np.random.default_rng(0).random((4000, 4000, 3))  # 384 MB of float64
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
load_image(array)
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) < 150  # the uint8 copy (48 MB) and PIL's (64 MB); not 8x


def test_non_finite_float_arrays_are_typed() -> None:
    array = np.zeros((64, 64, 3))
    array[63, 63, 2] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        load_image(array)


# -- headers Pillow walks in Python, one structure at a time (bounded by image_headers) ---------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import struct
    import zlib

    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _tiff_with_strips(count: int) -> bytes:
    """A 16x16 grayscale TIFF whose strip offsets and byte counts hold ``count`` values each."""
    import struct

    arrays = 8 + 2 + 12 * 9 + 4
    pixels = arrays + 8 * count
    tags = [(256, 16), (257, 16), (258, 8), (259, 1), (262, 1), (277, 1), (278, 1)]
    entries = [struct.pack("<HHIHH", tag, 3, 1, value, 0) for tag, value in tags]
    entries.insert(5, struct.pack("<HHII", 273, 4, count, arrays))
    entries.append(struct.pack("<HHII", 279, 4, count, arrays + 4 * count))
    head = b"II*\x00" + struct.pack("<IH", 8, len(entries)) + b"".join(entries) + b"\0" * 4
    return head + struct.pack("<I", pixels) * count + struct.pack("<I", 16) * count + b"\x80" * 256


def _header_bombs() -> dict[str, bytes]:
    png = encode(Image.new("RGB", (8, 8), "red"))
    jpeg = encode(Image.new("RGB", (8, 8), "red"), "JPEG")
    app0 = 4 + int.from_bytes(jpeg[4:6], "big")  # junk after the first segment
    gif = encode(Image.new("P", (8, 8)), "GIF")
    screen = 13 + (3 * 2 ** ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0)
    return {
        # 2M such chunks took 9 s to open; 1M tEXt chunks 3.7 s; 8M empty comments 14 s.
        "png empty chunks": png[:33] + _png_chunk(b"prVt", b"") * 200_000 + png[33:],
        "png text chunks": png[:33] + _png_chunk(b"tEXt", b"k\0v") * 200_000 + png[33:],
        "jpeg empty comments": jpeg[:2] + b"\xff\xfe\x00\x02" * 400_000 + jpeg[2:],
        "jpeg empty app segments": jpeg[:2] + b"\xff\xe1\x00\x02" * 400_000 + jpeg[2:],
        "jpeg junk bytes": jpeg[:app0] + b"\x00" * 2_000_000 + jpeg[app0:],  # a turn a byte
        "jpeg fill bytes": jpeg[:2] + b"\xff" * 2_000_000 + jpeg[2:],
        "gif comment blocks": gif[:screen] + b"\x21\xfe\x01a\x00" * 400_000 + gif[screen:],
        "gif comment sub-blocks": gif[:screen]
        + b"\x21\xfe"
        + b"\x01a" * 400_000
        + b"\0"
        + gif[screen:],
        # 4M strip offsets on a 16x16 image: over a minute and 1.3 GB in Pillow.
        "tiff strip offsets": _tiff_with_strips(1_000_000),
    }


@pytest.mark.parametrize("name", list(_header_bombs()))
def test_headers_with_too_many_structures_are_refused_before_pillow_walks_them(name: str) -> None:
    data = _header_bombs()[name]
    began = time.process_time()
    with pytest.raises(InvalidInputError, match="header-parsing bound"):
        load_image(data)
    assert time.process_time() - began < 0.5, name  # Pillow would take seconds to minutes


def test_ordinary_headers_pass_the_header_bound() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = Image.new("RGB", (40, 20), "green")
    for data in (
        encode(photo, "JPEG", exif=exif.tobytes(), icc_profile=b"\0" * 200_000, progressive=True),
        encode(photo, "PNG", exif=exif.tobytes()),
        encode(photo, "WEBP", exif=exif.tobytes()),
        encode(photo, "TIFF", tiffinfo={278: 1}),  # a strip per row
        encode(photo.convert("P"), "GIF", comment=b"c" * 100_000),
    ):
        assert load_image(data).size in ((20, 40), (40, 20))


def test_multi_frame_formats_decode_their_first_frame_only() -> None:
    first, rest = Image.new("RGB", (32, 32), (0, 0, 0)), Image.new("RGB", (32, 32), (255, 0, 0))
    for fmt in ("PNG", "WEBP", "MPO", "GIF"):  # APNG, animated WebP, MPO (stereo JPEG), GIF
        data = encode(first, fmt, save_all=True, append_images=[rest] * 100)
        began = time.process_time()
        assert load_image(data).getpixel((0, 0))[0] < 20, fmt
        assert time.process_time() - began < 0.5, fmt


def test_a_lazily_opened_image_outside_the_formats_is_refused_undecoded() -> None:
    # The app opened an upload itself; decoding it here would run a decoder the allowlist keeps
    # out (EPS would run Ghostscript). A PPM is the stand-in that needs no Ghostscript.
    lazy = Image.open(io.BytesIO(encode(Image.new("RGB", (16, 16)), "PPM")))
    with pytest.raises(InvalidInputError, match="outside the formats read"):
        load_image(lazy)
    lazy.load()
    assert load_image(lazy).size == (16, 16)  # once the app decoded it, it is its pixels


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("CMYK", "TIFF"),
        ("CMYK", "JPEG"),
        ("I;16", "PNG"),
        ("I;16B", "TIFF"),
        ("I", "TIFF"),
        ("F", "TIFF"),
        ("1", "TIFF"),
        ("LA", "PNG"),
        ("PA", "TIFF"),
        ("YCbCr", "TIFF"),
        ("LAB", "TIFF"),
        ("RGBX", "TIFF"),
        ("P", "GIF"),
        ("L", "WEBP"),
    ],
)
def test_every_encoded_mode_loads_as_rgb(mode: str, fmt: str) -> None:
    assert load_image(encode(Image.new(mode, (16, 16)), fmt)).mode == "RGB"


def test_a_palette_with_per_entry_transparency_flattens_onto_white() -> None:
    image = Image.new("P", (16, 16))
    image.putpalette([255, 0, 0] * 256)
    data = encode(image, "PNG", transparency=bytes(256))  # every entry fully transparent
    assert load_image(data).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.slow
def test_large_images_in_wide_modes_load_in_bounded_time_and_memory(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    sources = [
        encode(Image.new("CMYK", (7999, 8000)), "TIFF", compression="tiff_deflate"),
        encode(
            Image.new("L", (7999, 8000)), "TIFF", exif=exif.tobytes(), compression="tiff_deflate"
        ),
        encode(Image.new("1", (7999, 8000)), "TIFF", compression="group4"),  # 2 KB
    ]
    for data in sources:  # one at a time: together they are over the per-check budget
        result = measure(tmp_path, [data])
        assert isinstance(result["outcome"], list), result
