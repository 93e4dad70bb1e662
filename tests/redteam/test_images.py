"""The PNG writer, checked by decoding its output with zlib and struct (no imaging library)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from bento_invguard.redteam.images import (
    parse_image_shape,
    png_bytes,
    read_png,
    side_by_side,
    stack_rows,
    tile,
    write_png,
)


def decode(data: bytes) -> tuple[int, int, int, int, np.ndarray]:
    """(width, height, bit depth, color type, pixels) of a filter-0 grayscale PNG, by hand."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, color, _, _, _ = struct.unpack(">IIBBBBB", chunks[0][1])
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    lines = np.frombuffer(raw, dtype=np.uint8).reshape(height, width + 1)
    assert (lines[:, 0] == 0).all()  # filter type 0 on every line
    return width, height, depth, color, lines[:, 1:]


def test_png_round_trip(tmp_path: Path) -> None:
    """Dimensions, bit depth, gray color type and every pixel survive."""
    pixels = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5) * 17
    path = tmp_path / "p.png"
    write_png(path, pixels)
    width, height, depth, color, decoded = decode(path.read_bytes())
    assert (width, height, depth, color) == (5, 3, 8, 0)
    assert np.array_equal(decoded, pixels)
    assert np.array_equal(read_png(path), pixels)


def test_grid_dimensions_and_scaling() -> None:
    """10 images of 8x8, 5 per line, 3x, 2 px padding: 2 lines of 24 px tiles."""
    images = [np.full(64, float(i)) for i in range(10)]
    grid = tile(images, shape=(8, 8), columns=5, scale=3, pad=2, low=0.0, high=9.0)
    assert grid.shape == (2 * 24 + 3 * 2, 5 * 24 + 6 * 2)
    _, _, _, _, decoded = decode(png_bytes(grid))
    assert decoded.shape == grid.shape
    assert decoded[2, 2] == 0  # first tile: value 0 is black
    assert decoded[2 + 24 + 2, 2 + 4 * 26] == 255  # last tile: value 9 is white
    assert decoded[0, 0] == 128  # padding is the background gray


def test_stretch_and_missing_images() -> None:
    """stretch maps each image to its own min..max; a NaN image stays background."""
    ramp = np.linspace(5.0, 6.0, 64)
    grid = tile([ramp, np.full(64, np.nan)], shape=(8, 8), columns=2, scale=1, stretch=True)
    assert grid.shape == (12, 22)  # pad 2 around and between 8x8 tiles
    assert grid[2, 2] == 0 and grid[9, 9] == 255
    assert (grid[2:10, 12:20] == 128).all()


def test_layouts() -> None:
    a, b = np.zeros((4, 6), np.uint8), np.zeros((2, 3), np.uint8)
    assert stack_rows([a, b], gap=1).shape == (7, 6)
    assert side_by_side([a, b], gap=2).shape == (4, 11)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        png_bytes(np.zeros((2, 2), dtype=np.float64))
    with pytest.raises(ValueError):
        png_bytes(np.zeros((0, 2), dtype=np.uint8))
    assert parse_image_shape("8x8") == (8, 8)
    assert parse_image_shape("28X28") == (28, 28)
    for bad in ("8", "8x", "x8", "0x8", "axb", "8x8x8"):
        with pytest.raises(ValueError):
            parse_image_shape(bad)
