"""PNG grids of reconstructions, written with NumPy and zlib only (no imaging library).

>>> import numpy as np, tempfile, pathlib
>>> grid = tile([np.zeros((8, 8)), np.ones((8, 8))], shape=(8, 8), columns=2, scale=2)
>>> grid.shape
(20, 38)
>>> path = pathlib.Path(tempfile.mkdtemp()) / "g.png"
>>> write_png(path, grid)
>>> read_png(path).shape
(20, 38)
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def parse_image_shape(text: str) -> tuple[int, int]:
    """``"8x8"`` -> ``(8, 8)`` (height x width); ValueError otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"{text!r} is not HEIGHTxWIDTH, e.g. 8x8")
    height, width = (int(p) for p in parts)
    if height < 1 or width < 1:
        raise ValueError(f"{text!r}: both sides must be >= 1")
    return height, width


def to_gray(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Scale values in ``[low, high]`` to 0..255 (uint8), clipping outside values."""
    span = high - low if high > low else 1.0
    scaled = (np.asarray(image, dtype=np.float64) - low) / span
    return np.asarray(np.round(np.clip(scaled, 0.0, 1.0) * 255), dtype=np.uint8)


def tile(
    images: Sequence[np.ndarray],
    *,
    shape: tuple[int, int],
    columns: int,
    scale: int = 8,
    pad: int = 2,
    low: float | None = None,
    high: float | None = None,
    stretch: bool = False,
    background: int = 128,
) -> np.ndarray:
    """A uint8 grid: each image reshaped to ``shape``, enlarged ``scale`` times.

    Values map to gray over ``[low, high]`` (default: the images' own range),
    or with ``stretch`` over each image's own min..max (contrast stretched).
    An image holding NaN is left as background. Tiles are separated by
    ``pad`` pixels of ``background`` gray.
    """
    if columns < 1 or scale < 1 or pad < 0:
        raise ValueError("columns and scale must be >= 1, pad >= 0")
    stack = [np.asarray(im, dtype=np.float64).reshape(shape) for im in images]
    finite = [im[np.isfinite(im)] for im in stack]
    values = np.concatenate(finite) if finite else np.zeros(1)
    lo = float(values.min()) if low is None and values.size else float(low or 0.0)
    hi = float(values.max()) if high is None and values.size else float(high or 1.0)
    rows = max(1, -(-len(stack) // columns))
    th, tw = shape[0] * scale, shape[1] * scale
    out = np.full(
        (rows * th + (rows + 1) * pad, columns * tw + (columns + 1) * pad),
        background,
        dtype=np.uint8,
    )
    for i, im in enumerate(stack):
        if not np.isfinite(im).all():
            continue
        r, c = divmod(i, columns)
        top, left = pad + r * (th + pad), pad + c * (tw + pad)
        gray = to_gray(im, float(im.min()), float(im.max())) if stretch else to_gray(im, lo, hi)
        big = np.kron(gray, np.ones((scale, scale), dtype=np.uint8))
        out[top : top + th, left : left + tw] = big
    return out


def stack_rows(grids: Sequence[np.ndarray], *, gap: int = 6, background: int = 255) -> np.ndarray:
    """Grids of equal width one above the other, ``gap`` pixels apart."""
    width = max(g.shape[1] for g in grids)
    parts: list[np.ndarray] = []
    for i, g in enumerate(grids):
        if i:
            parts.append(np.full((gap, width), background, dtype=np.uint8))
        padded = np.full((g.shape[0], width), background, dtype=np.uint8)
        padded[:, : g.shape[1]] = g
        parts.append(padded)
    return np.vstack(parts)


def side_by_side(
    grids: Sequence[np.ndarray], *, gap: int = 12, background: int = 255
) -> np.ndarray:
    """Grids of any height left to right, ``gap`` pixels apart, top-aligned."""
    height = max(g.shape[0] for g in grids)
    parts: list[np.ndarray] = []
    for i, g in enumerate(grids):
        if i:
            parts.append(np.full((height, gap), background, dtype=np.uint8))
        padded = np.full((height, g.shape[1]), background, dtype=np.uint8)
        padded[: g.shape[0]] = g
        parts.append(padded)
    return np.hstack(parts)


def png_bytes(gray: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of a 2-D uint8 array."""
    pixels = np.asarray(gray)
    if pixels.ndim != 2 or pixels.dtype != np.uint8 or 0 in pixels.shape:
        raise ValueError("need a non-empty 2-D uint8 array")
    height, width = pixels.shape
    raw = b"".join(b"\x00" + pixels[r].tobytes() for r in range(height))  # filter 0 per line
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def write_png(path: str | Path, gray: np.ndarray) -> None:
    """Write ``gray`` (2-D uint8) to ``path`` as a PNG."""
    Path(path).write_bytes(png_bytes(gray))


def read_png(path: str | Path) -> np.ndarray:
    """Read back an 8-bit grayscale, non-interlaced PNG written by :func:`write_png`."""
    data = Path(path).read_bytes()
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    pos, idat, size = len(_SIGNATURE), b"", (0, 0)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"bad CRC in chunk {kind!r}")
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if (depth, color, interlace) != (8, 0, 0):
                raise ValueError("only 8-bit grayscale, non-interlaced PNGs are read")
            size = (height, width)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    height, width = size
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, width + 1)
    if (raw[:, 0] != 0).any():
        raise ValueError("only PNG filter type 0 is read")
    pixels: np.ndarray = raw[:, 1:].copy()
    return pixels


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
