"""PNG files in and out (Pillow), image grids, and the distances between image batches."""

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


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel IoU of binary image batches (1 where both are empty)."""
    a, b = a.reshape(len(a), -1) > 0.5, b.reshape(len(b), -1) > 0.5
    inter, union = (a & b).sum(1), (a | b).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def mae_255(a: np.ndarray, b: np.ndarray, levels: int) -> np.ndarray:
    """Mean absolute pixel distance of image batches on a 0..255 scale."""
    scale = 255.0 if levels == 2 else 1.0
    return np.abs(a.reshape(len(a), -1).astype(np.float64) - b.reshape(len(b), -1)).mean(1) * scale
