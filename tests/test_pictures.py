"""A user's own pictures: every kind of PNG read by what its pixels mean, every bad file refused fast."""

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from engine import pictures
from engine.errors import DataError
from engine.pictures import check_sprite, has_sprite, read_image

WHERE = "q.cq:4:7"


def sprite(h=8, w=8) -> np.ndarray:
    """An (h, w) 0/255 image: a 2x3 block on at rows 2-3, columns 1-3."""
    image = np.zeros((h, w), np.uint8)
    image[2:4, 1:4] = 255
    return image


def read(path, shape=(8, 8), pixels="binary"):
    return read_image(path, shape, pixels, where=WHERE)


def test_gray_and_one_bit_pngs_read_as_they_are(tmp_path):
    Image.fromarray(sprite(), mode="L").save(tmp_path / "l.png")
    Image.fromarray(sprite() > 0).convert("1").save(tmp_path / "one.png")
    for name in ("l.png", "one.png"):
        assert np.array_equal(read(tmp_path / name), sprite() // 255)
        assert np.array_equal(read(tmp_path / name, pixels="gray"), sprite())
    assert read(tmp_path / "l.png").dtype == np.uint8


def test_transparency_is_off_whatever_colour_it_hides(tmp_path):
    # a white background made transparent, a white sprite opaque: only the sprite is on
    rgba = np.full((8, 8, 4), 255, np.uint8)
    rgba[..., 3] = sprite()
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgba[..., [0, 3]], mode="LA").save(tmp_path / "la.png")
    palette = Image.fromarray((sprite() > 0).astype(np.uint8), mode="P")
    palette.putpalette([255, 255, 255, 255, 255, 255])
    palette.save(tmp_path / "p.png", transparency=0)  # index 0, the background, is transparent
    for name in ("rgba.png", "la.png", "p.png"):
        assert np.array_equal(read(tmp_path / name), sprite() // 255), name


def test_half_transparent_white_is_mid_gray(tmp_path):
    rgba = np.full((8, 8, 4), 255, np.uint8)
    rgba[..., 3] = 128
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "half.png")
    assert set(np.unique(read(tmp_path / "half.png", pixels="gray"))) == {128}


def test_sixteen_bit_gray_scales_by_bit_depth_not_clipping(tmp_path):
    levels = np.array([[0, 300, 32896, 65535]], np.uint16)  # 300 is dark: 1 of 255, not clipped to 255
    Image.fromarray(levels).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert read(tmp_path / "g16.png", shape=(1, 4), pixels="gray").tolist() == [[0, 1, 128, 255]]
    assert read(tmp_path / "g16.png", shape=(1, 4)).tolist() == [[0, 0, 1, 1]]


def test_colour_reads_by_luminance(tmp_path):
    rgb = np.zeros((1, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "rgb.png")
    assert read(tmp_path / "rgb.png", shape=(1, 3), pixels="gray").tolist() == [[76, 150, 29]]  # 0.299, 0.587, 0.114


def test_wrong_size_names_the_file_and_both_sizes(tmp_path):
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(DataError, match=r"^q\.cq:4:7: .*small\.png: the image is 7x5 pixels; the model takes binary images 64 wide and 64 high") as e:
        read(tmp_path / "small.png", shape=(64, 64))
    assert e.value.detail.startswith(str(tmp_path / "small.png"))


@pytest.mark.parametrize("bad, message", [
    ("nul", "NUL byte"), ("long", "characters long"), ("missing", "no such image file"),
    ("folder", "is a folder"), ("fifo", "is a FIFO"), ("text", "not a PNG image"), ("jpeg", "not a PNG image"),
    ("truncated", "not a readable PNG"), ("animated", "animated PNG of 2 frames"),
])
def test_bad_paths_and_files_are_refused_at_once(tmp_path, bad, message):
    path = tmp_path / f"{bad}.png"
    if bad == "nul":
        path = f"{tmp_path}/a\0b.png"
    elif bad == "long":
        path = "x" * (pictures.MAX_PATH + 1)
    elif bad == "folder":
        path.mkdir()
    elif bad == "fifo":
        os.mkfifo(path)  # opening it for reading would block forever
    elif bad == "text":
        path.write_text("not a picture")
    elif bad == "jpeg":
        Image.fromarray(sprite()).save(path, format="JPEG")
    elif bad == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif bad == "animated":
        frames = [Image.fromarray(sprite()), Image.fromarray(255 - sprite())]
        frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(DataError, match=message) as e:
        read(path)
    assert str(e.value).startswith(f"{WHERE}: ")


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    # 100,000 x 100,000 1-bit pixels declared; the data would inflate to 1.25 GB
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 1, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(bomb)
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(DataError, match=r"more than 16,777,216 pixels"):
        read(tmp_path / "bomb.png")
    assert Image.MAX_IMAGE_PIXELS == before  # Pillow's own guard is as it was


def test_a_huge_text_chunk_is_refused(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (pictures.MAX_TEXT + 1), zip=True)
    Image.fromarray(sprite()).save(tmp_path / "text.png", pnginfo=info)
    with pytest.raises(DataError, match="not a readable PNG"):
        read(tmp_path / "text.png")


def test_an_image_without_a_sprite_cannot_have_its_labels_inferred():
    assert has_sprite(sprite() // 255) and has_sprite(sprite(), "gray")
    for image, what in [(np.zeros((8, 8), np.uint8), "nothing on"), (np.ones((8, 8), np.uint8), "everything on")]:
        assert not has_sprite(image)
        with pytest.raises(DataError, match=rf"^{WHERE}: blank\.png: has no sprite \({what}\) — labels cannot be inferred"):
            check_sprite(image, where=WHERE, path="blank.png")
    check_sprite(sprite() // 255, where=WHERE, path="fine.png")


def test_a_relative_path_is_also_looked_for_beside_the_query(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    Image.fromarray(sprite()).save(tmp_path / "data" / "heart.png")
    monkeypatch.chdir(tmp_path / "data")
    assert np.array_equal(read_image("heart.png", (8, 8), where=WHERE, beside="/nonexistent"), sprite() // 255)  # found here first
    monkeypatch.chdir("/")
    assert np.array_equal(read_image("data/heart.png", (8, 8), where=WHERE, beside=tmp_path), sprite() // 255)
    with pytest.raises(DataError, match=r"^q\.cq:4:7: nothing\.png: no such image file"):
        read_image("nothing.png", (8, 8), where=WHERE, beside=tmp_path)
