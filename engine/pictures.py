"""A user's own picture (``png("face.png")`` in a query), read safely into the model's pixels.

    read_image("heart.png", (64, 64), "binary", where="q.cq:4:7")   # (64, 64) uint8, 0/1
    read_image("heart.png", (64, 64), "gray", where="q.cq:4:7")     # (64, 64) uint8, 0..255

Nothing about the file is trusted before it is checked, and no pixel is decoded before its
header is:

- the path: no NUL byte, at most ``MAX_PATH`` characters, a regular file (a FIFO or a device
  would block or never end; it is refused from ``os.stat``, and again from the opened file),
  at most ``MAX_BYTES`` bytes;
- the header: a PNG of one frame (an animated PNG is refused), exactly the model's width and
  height, and at most ``MAX_PIXELS`` pixels (Pillow's decompression-bomb guard is set to the
  same number while the file is read); PNG text chunks at most ``MAX_TEXT`` bytes in all;
- the pixels, turned into one 8-bit gray level each by what they mean: 1-bit and 8-bit gray
  as they are; 16-bit gray scaled by its bit depth (65535 is 255), never clipped; colour by
  luminance (0.299 R + 0.587 G + 0.114 B); transparency composited onto black, the
  background, so that a transparent pixel is off. Binary images threshold the level at 128.

Every refusal is a DataError that starts with ``where`` and the path, and says what is valid;
its ``detail`` attribute is the same message without ``where``, for callers that show the
place themselves (``program.error(unit, e.detail)``).
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from engine.errors import DataError

#: the longest path read (Linux's PATH_MAX)
MAX_PATH = 4096
#: the largest file read: a 1024 x 1024 RGBA PNG at 16 bits is 8 MiB before compression
MAX_BYTES = 64 * 2**20
#: the most pixels an image may declare; Image.MAX_IMAGE_PIXELS while a file is read
MAX_PIXELS = 4096 * 4096
#: the most bytes of PNG text (tEXt, zTXt, iTXt) read, per chunk and in all
MAX_TEXT = 64 * 2**10
#: binary images: a gray level at or above this is on
THRESHOLD = 128
PIXELS = ("binary", "gray")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_image(path: str | Path, shape: tuple[int, int], pixels: str = "binary", *, where: str = "",
               beside: str | Path | None = None) -> np.ndarray:
    """The PNG at ``path`` as an (H, W) uint8 array: 0/1 for ``binary`` pixels, 0..255 for ``gray``.

    A relative ``path`` that is not found from the current folder is looked for in ``beside``
    (the folder of the .cq file that names it), when given.
    """
    if pixels not in PIXELS:
        raise ValueError(f"pixels must be one of {PIXELS}, got {pixels!r}")
    height, width = shape
    fd = _open_regular(path, where, beside)
    with os.fdopen(fd, "rb") as f, _pillow_limits():
        try:
            with Image.open(f, formats=["PNG"]) as picture:
                frames = getattr(picture, "n_frames", 1)
                if frames > 1:
                    raise _error(where, path, f"is an animated PNG of {frames} frames; give a single-frame PNG")
                if picture.width * picture.height > MAX_PIXELS:
                    raise _error(where, path, f"declares {picture.width}x{picture.height} pixels, more than {MAX_PIXELS:,}")
                if picture.size != (width, height):
                    raise _error(where, path, f"the image is {picture.width}x{picture.height} pixels; the model takes "
                                              f"{pixels} images {width} wide and {height} high")
                gray = _gray(picture)
        except UnidentifiedImageError:
            raise _error(where, path, "not a PNG image; save the picture as a PNG") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _error(where, path, f"declares more than {MAX_PIXELS:,} pixels (a decompression bomb?)") from None
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error) as e:
            raise _error(where, path, f"not a readable PNG ({' '.join(str(e).split()) or type(e).__name__})") from None
    return (gray >= THRESHOLD).astype(np.uint8) if pixels == "binary" else gray


def has_sprite(image: np.ndarray, pixels: str = "binary") -> bool:
    """Whether some pixels of ``image`` (from ``read_image``) are on and some off."""
    on = _on(image, pixels)
    return bool(on.any() and not on.all())


def check_sprite(image: np.ndarray, pixels: str = "binary", *, where: str, path: str | Path) -> None:
    """Raise DataError unless ``image`` has a sprite to read labels from (``has_sprite``)."""
    if has_sprite(image, pixels):
        return
    what = "everything on" if _on(image, pixels).any() else "nothing on"
    raise _error(where, path, f"has no sprite ({what}) — labels cannot be inferred from its pixels; "
                              "give them in the query, e.g. png(\"...\", shape=heart, scale=1.0, orientation=0.0, x=0.5, y=0.5)")


def _on(image: np.ndarray, pixels: str) -> np.ndarray:
    return np.asarray(image) >= (1 if pixels == "binary" else THRESHOLD)


def _open_regular(path: str | Path, where: str, beside: str | Path | None = None) -> int:
    """A read-only descriptor of ``path`` (or of it in ``beside``), which must be a regular file no larger than MAX_BYTES."""
    text = os.fsdecode(path)
    if "\0" in text:
        raise _error(where, repr(text), "the path holds a NUL byte; give the name of a PNG file")
    if len(text) > MAX_PATH:
        raise _error(where, text[:60] + "...", f"the path is {len(text):,} characters long; paths may have at most {MAX_PATH:,}")
    if beside is not None and not os.path.isabs(text) and not os.path.lexists(text):
        text = os.path.join(os.fsdecode(beside), text)
    try:
        before = os.stat(text)
    except FileNotFoundError:
        raise _error(where, path, "no such image file (a relative path starts at the folder of the .cq file or the current one)") from None
    except OSError as e:
        raise _error(where, path, f"cannot read it ({e.strerror})") from None
    _check_regular(before, where, path)
    try:
        fd = os.open(text, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # a FIFO swapped in does not block
    except OSError as e:
        raise _error(where, path, f"cannot read it ({e.strerror})") from None
    try:
        _check_regular(os.fstat(fd), where, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_regular(info: os.stat_result, where: str, path) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode) else "not a regular file"
        raise _error(where, path, f"is {kind}; give a PNG file")
    if info.st_size > MAX_BYTES:
        raise _error(where, path, f"is {info.st_size:,} bytes, more than the {MAX_BYTES:,} read; give a PNG of the model's size")


@contextmanager
def _pillow_limits():
    """Pillow's bomb and text-chunk guards at this module's limits, a bomb warning raised as an error."""
    saved = Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY
    Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY = MAX_PIXELS, MAX_TEXT, MAX_TEXT
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY = saved


def _gray(picture: Image.Image) -> np.ndarray:
    """One 8-bit gray level per pixel: luminance, times opacity (transparent is black)."""
    transparency = picture.info.get("transparency")
    if picture.mode in _SIXTEEN_BIT:
        levels = np.asarray(picture).astype(np.int64).clip(0, 65535)
        gray = (levels * 255 + 32767) // 65535  # by bit depth: 65535 -> 255, rounded
        if isinstance(transparency, int):
            gray[levels == transparency] = 0
        return gray.astype(np.uint8)
    if picture.mode == "1":
        return np.asarray(picture, dtype=bool).astype(np.uint8) * 255
    if picture.mode == "L" and transparency is None:
        return np.asarray(picture, dtype=np.uint8)
    rgba = np.asarray(picture.convert("RGBA"), dtype=np.int64)  # palette, gray+alpha, colour, tRNS: all to RGBA
    luma = (299 * rgba[..., 0] + 587 * rgba[..., 1] + 114 * rgba[..., 2] + 500) // 1000
    return ((luma * rgba[..., 3] + 127) // 255).astype(np.uint8)


def _error(where: str, path, message: str) -> DataError:
    detail = f"{path}: {message}"
    error = DataError(f"{where}: {detail}" if where else detail)
    error.detail = detail
    return error
