"""PNG files in and out (Pillow), and image grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from engine.files import write_atomic


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Map a binary or [0, 1] image to 0..255."""
    image = np.asarray(image, dtype=np.float64)
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def grid(images: np.ndarray, columns: int = 8, pad: int = 2) -> np.ndarray:
    """Tile (N, H, W) images into one array, row-major, with a grey gap between tiles."""
    images = np.asarray(images, dtype=np.float64)
    n, h, w = images.shape
    rows = -(-n // columns)
    cols = min(columns, n)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 0.5)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = img
    return out


def save_png(image: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    """Write a [0, 1] or binary image as an 8-bit greyscale PNG (atomically), optionally enlarged."""
    picture = Image.fromarray(to_uint8(image), mode="L")
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    return write_atomic(path, lambda f: picture.save(f, format="PNG"))
