"""Photos that tests make themselves: solid colours the tiny model recognises, and broken files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

from tests.modelkit import label_colours, listing_labels

COLOURS = label_colours(listing_labels())


def colour_jpeg(label: str, size: tuple[int, int] = (320, 240)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, COLOURS[label]).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header claiming width×height pixels, with only a token of pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1))  # one row; the rest is never read
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bad_photos(folder: Path, max_bytes: int) -> dict[str, Path]:
    """One file per way a photo can be broken, keyed by the expected reason fragment."""
    folder.mkdir(parents=True, exist_ok=True)
    good = colour_jpeg("fashion.shoes")
    files = {
        "corrupt or truncated": good[: len(good) // 3],
        "not an image": b"%PDF-1.4 definitely not a photo" * 10,
        "empty file": b"",
        "exceeds the cap": bomb_png(),
        "over the cap of": b"\xff\xd8" + b"\x00" * (max_bytes + 10),
    }
    paths = {}
    for i, (reason, data) in enumerate(files.items()):
        path = folder / f"bad-{i}.jpg"
        path.write_bytes(data)
        paths[reason] = path
    return paths
