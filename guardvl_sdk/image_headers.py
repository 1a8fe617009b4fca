"""Bounding the work of reading an image's header, before Pillow reads it.

Pillow parses image headers in Python, one loop turn per structure: a PNG chunk, a JPEG marker
segment or junk byte, a GIF block, a TIFF tag value. Before the first pixel it meets, nothing
bounds that work but the file size: 22 MB of empty PNG chunks took 9 s to open, 30 MB of empty
JPEG comments 14 s, and a 16x16 TIFF declaring 4 million strip offsets over a minute and 1.3 GB.
:func:`header_limits` walks the same structures first, at most :data:`MAX_HEADER_UNITS` of them,
with bytes methods and no allocation, and refuses a header with more. It also bounds the numeric
arrays of a TIFF file's first directory, which Pillow unpacks into tuples of Python ints and then
into one decoding tile per strip.
"""

from __future__ import annotations

import struct

from guardvl_sdk.errors import InvalidInputError

__all__ = ["MAX_HEADER_UNITS", "MAX_TIFF_VALUES", "header_limits"]

MAX_HEADER_UNITS = 10_000
"""Most structures (chunks, segments, blocks, junk bytes) before an image's first pixels; a
photo has a few dozen."""

MAX_TIFF_VALUES = 65_536
"""Most values one numeric TIFF or EXIF tag may hold (a strip offset per row of a 65,536-row
image)."""

# TIFF field types whose values Pillow unpacks one by one (SHORT, LONG, RATIONAL, ..., IFD8).
_NUMERIC_TYPES = frozenset({3, 4, 5, 8, 9, 10, 11, 12, 13, 16, 17, 18})


def header_limits(data: bytes) -> None:
    """Refuse ``data`` if reading its header would take more than the bounds allow.

    Other formats pass unchanged (Pillow refuses them, or reads them in C, as WebP).

    Raises:
        InvalidInputError: The header holds more structures than :data:`MAX_HEADER_UNITS`, or
            a TIFF directory more values than :data:`MAX_TIFF_VALUES`; the message names the bound.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        _png(data)
    elif data.startswith(b"\xff\xd8"):
        _jpeg(data)
    elif data.startswith((b"GIF87a", b"GIF89a")):
        _gif(data)
    elif data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        _tiff(data)


def _too_many(what: str) -> InvalidInputError:
    return InvalidInputError(
        f"{what} header has over {MAX_HEADER_UNITS} structures before its pixels "
        "(the header-parsing bound)"
    )


def _png(data: bytes) -> None:
    pos = 8
    for _ in range(MAX_HEADER_UNITS):
        if pos + 8 > len(data):
            return
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind in (b"IDAT", b"fdAT", b"IEND"):
            return
        pos += 12 + length
    raise _too_many("PNG")


def _jpeg(data: bytes) -> None:
    """Walk the marker segments as Pillow does, up to the first scan (``FF DA``)."""
    pos, units, end = 2, 0, len(data)
    while pos + 1 < end:
        if data[pos] != 0xFF:  # junk: Pillow reads it a byte at a time
            found = data.find(b"\xff", pos)
            found = end if found < 0 else found
            units += found - pos
            pos = found
        else:
            marker = data[pos + 1]
            if marker == 0xDA:
                return
            if marker == 0xFF:  # fill byte
                pos += 1
            elif marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD9:  # no length
                pos += 2
            else:
                pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
            units += 1
        if units > MAX_HEADER_UNITS:
            raise _too_many("JPEG")


def _gif(data: bytes) -> None:
    """Walk the blocks (extensions and their sub-blocks) up to the first image descriptor."""
    flags = data[10] if len(data) > 10 else 0
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    units, end = 0, len(data)
    while pos < end and data[pos] not in (0x2C, 0x3B):  # image descriptor, trailer
        if data[pos] == 0x21:  # extension: label, then sub-blocks up to an empty one
            pos += 2
            while pos < end and data[pos]:
                pos += 1 + data[pos]
                units += 1
                if units > MAX_HEADER_UNITS:
                    raise _too_many("GIF")
        pos += 1
        units += 1
        if units > MAX_HEADER_UNITS:
            raise _too_many("GIF")


def _tiff(data: bytes) -> None:
    """Bound the first directory of a TIFF file.

    Raises:
        InvalidInputError: A numeric tag holds more than :data:`MAX_TIFF_VALUES` values.
    """
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")  # BigTIFF: 8-byte counts and offsets
    try:
        if big:
            (offset,) = struct.unpack_from(order + "Q", data, 8)
            (entries,) = struct.unpack_from(order + "Q", data, offset)
            layout, first, size = order + "HHQ", offset + 8, 20
        else:
            (offset,) = struct.unpack_from(order + "I", data, 4)
            (entries,) = struct.unpack_from(order + "H", data, offset)
            layout, first, size = order + "HHI", offset + 2, 12
        if entries > MAX_TIFF_VALUES:
            raise InvalidInputError(f"TIFF directory has {entries} entries, over the bound")
        for index in range(entries):
            _, kind, count = struct.unpack_from(layout, data, first + index * size)
            if kind in _NUMERIC_TYPES and count > MAX_TIFF_VALUES:
                raise InvalidInputError(
                    f"TIFF tag holds {count} values, over the {MAX_TIFF_VALUES} value bound "
                    "(the header-parsing bound)"
                )
    except struct.error:
        return  # truncated: Pillow refuses it, quickly
