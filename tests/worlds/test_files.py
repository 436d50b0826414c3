"""The files world: npz and PNG-folder data, their labels encoded, and every malformed file refused.

    # shape -> img <- light, size     (shape: {a, b}; light: a grid of 5 on [0, 1]; size: real in [0, 10])
"""

import io
import json
import os
import struct
import tracemalloc
import zipfile
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from engine.errors import DagError, DataError
from engine.model.dag import parse_dag
from engine.worlds import files
from engine.worlds.files import Files
from engine.worlds.world import build_world, held_out

SHAPE = ["a", "b", "b", "a", "b", "a"]
LIGHT = [0.0, 0.26, 0.5, 0.74, 1.0, 0.1]  # snaps to 0, 0.25, 0.5, 0.75, 1, 0 -> classes 0, 1, 2, 3, 4, 0
SIZE = [0.0, 2.5, 10.0, 7.25, 1.0, 3.0]


def dag_text(world, image="{image: [8, 8]}", images=1) -> str:
    nodes = "\n".join(f"  img{k}: {{mechanism: vae_decoder, parents: [shape, light, size], domain: {image}, params: {{decoder: mlp}}}}"
                      for k in range(images))
    world = f"world: {{files: {json.dumps(world)}}}\n" if world is not None else "world: files\n"
    return world + f"""nodes:
  shape: {{mechanism: categorical, domain: [a, b], params: {{probs: [0.5, 0.5]}}}}
  light: {{mechanism: categorical, domain: {{linspace: [0, 1, 5]}}, params: {{probs: uniform}}}}
  size: {{mechanism: normal, domain: {{real: [0, 10]}}, params: {{loc: 5}}}}
{nodes}
"""


def world(tmp_path, where, **kw) -> Files:
    dag = parse_dag(dag_text(where, **kw), path=str(tmp_path / "dag.yaml"))
    return Files(dag, dag.world.options)


def pictures(n=len(SHAPE), scale=255) -> np.ndarray:
    """Image i has its first i + 1 pixels on (so rows are told apart), as 0/scale uint8."""
    out = np.zeros((n, 8 * 8), np.uint8)
    for i in range(n):
        out[i, : i + 1] = scale
    return out.reshape(n, 8, 8)


def write_npz(path, compressed=False, **override):
    arrays = {"images": pictures(), "shape": np.array(SHAPE), "light": np.array(LIGHT), "size": np.array(SIZE)} | override
    arrays = {k: v for k, v in arrays.items() if v is not None}
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def write_pngs(folder, rows=None, mode="L", size=(8, 8)):
    """A PNG folder: image i has its first i + 1 pixels at 200 (on), the rest at 100 (off)."""
    folder.mkdir(exist_ok=True)
    lines = ["file,shape,light,size"]
    for i, (s, l, z) in enumerate(rows or zip(SHAPE, LIGHT, SIZE)):
        pixels = np.full(size[0] * size[1], 100, np.uint8)
        pixels[: i + 1] = 200
        picture = Image.fromarray(pixels.reshape(size[1], size[0]))
        (picture.point(lambda v: 255 * (v > 150)).convert("1") if mode == "1" else picture.convert(mode)).save(folder / f"{i}.png")
        lines.append(f"{i}.png,{s},{l},{z}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


@contextmanager
def expect(error_type, *parts):
    """Like pytest.raises, and the one-line message must contain every part."""
    with pytest.raises(error_type) as info:
        yield info
    message = str(info.value)
    assert "\n" not in message and all(part in message for part in parts), (parts, message)


# -- loading ------------------------------------------------------------------------------------

@pytest.mark.parametrize("compressed", [False, True])
def test_npz_world_encodes_labels_and_serves_binary_images(tmp_path, compressed):
    write_npz(tmp_path / "data.npz", compressed=compressed)
    w = world(tmp_path, "data.npz")
    assert len(w) == 6 and not w.has_renderer
    units = w.units([1, 3])
    assert units.index.tolist() == [1, 3]
    assert units.labels["shape"].tolist() == [1, 0] and units.labels["shape"].dtype == np.int64
    assert units.labels["light"].tolist() == [1, 3] and units.labels["light"].dtype == np.int64
    assert units.labels["size"].tolist() == [2.5, 7.25] and units.labels["size"].dtype == np.float64
    images = w.images(units)
    assert images.dtype == np.uint8 and images.shape == (2, 8, 8)
    assert np.array_equal(images, pictures(scale=1)[[1, 3]])
    assert w.sample(4, seed=9).index.tolist() == [0, 1, 2, 3]
    assert np.array_equal(w.is_test(np.arange(6)), held_out(np.arange(6)))
    assert isinstance(w.images(units), np.ndarray) and not isinstance(w.images(units), np.memmap)


def test_stored_images_are_memory_mapped(tmp_path):
    write_npz(tmp_path / "data.npz")
    assert isinstance(world(tmp_path, "data.npz").source.array, np.memmap)


def test_binary_npz_takes_0_1_and_gray_keeps_levels(tmp_path):
    write_npz(tmp_path / "ones.npz", images=pictures(scale=1))
    assert np.array_equal(world(tmp_path, "ones.npz").images(world(tmp_path, "ones.npz").units(range(6))), pictures(scale=1))
    gray = pictures(scale=1) * np.arange(6, dtype=np.uint8)[:, None, None] * 40
    write_npz(tmp_path / "gray.npz", images=gray)
    w = world(tmp_path, "gray.npz", image="{image: [8, 8], pixels: gray}")
    assert np.array_equal(w.images(w.units(range(6))), gray)


def test_registered_and_built_from_the_dag(tmp_path):
    write_npz(tmp_path / "data.npz")
    dag = parse_dag(dag_text("data.npz"), path=str(tmp_path / "dag.yaml"))
    assert isinstance(build_world(dag), Files)


def test_paths_resolve_from_the_dag_folder(tmp_path, monkeypatch):
    (tmp_path / "dags").mkdir()
    write_npz(tmp_path / "data.npz")
    monkeypatch.chdir(tmp_path / "dags")  # the working folder plays no part
    dag = parse_dag(dag_text("../data.npz"), path=str(tmp_path / "dags" / "dag.yaml"))
    assert len(Files(dag, dag.world.options)) == 6
    assert len(world(tmp_path / "dags", str(tmp_path / "data.npz"))) == 6
    with expect(DagError, "dag.yaml:1", "no such file or folder", str(tmp_path / "dags" / "data.npz")):
        world(tmp_path / "dags", "data.npz")


@pytest.mark.parametrize("mode", ["L", "1"])
def test_png_folder_reads_labels_and_thresholds_binary_images(tmp_path, mode):
    write_pngs(tmp_path / "pngs", mode=mode)
    w = world(tmp_path, "pngs/")
    assert len(w) == 6
    units = w.units([0, 1, 5])
    assert units.labels["shape"].tolist() == [0, 1, 0] and units.labels["light"].tolist() == [0, 1, 0]
    assert units.labels["size"].tolist() == [0.0, 2.5, 3.0]
    images = w.images(units)
    assert images.dtype == np.uint8 and np.array_equal(images, pictures(scale=1)[[0, 1, 5]])


def test_png_folder_gray_and_read_per_batch(tmp_path):
    write_pngs(tmp_path / "pngs")
    w = world(tmp_path, "pngs", image="{image: [8, 8], pixels: gray}")
    first = w.images(w.units([2]))[0].reshape(-1)
    assert first[:3].tolist() == [200] * 3 and set(first[3:].tolist()) == {100}
    (tmp_path / "pngs" / "4.png").unlink()  # images are read when asked for, not at load
    assert w.images(w.units([3])).shape == (1, 8, 8)
    with expect(DataError, "4.png", "no such file"):
        w.images(w.units([4]))


def test_csv_angles_and_units(tmp_path):
    folder = write_pngs(tmp_path / "pngs")
    text = dag_text("pngs").replace("{linspace: [0, 1, 5]}", "{linspace: [0, 180, 5], unit: deg}")
    (folder / "labels.csv").write_text("file,shape,light,size\n0.png,a,45deg,1\n1.png,b,0.5pi,2\n2.png,b,90,3\n")
    dag = parse_dag(text, path=str(tmp_path / "dag.yaml"))
    assert Files(dag, dag.world.options).units(range(3)).labels["light"].tolist() == [1, 2, 2]


# -- malformed labels ---------------------------------------------------------------------------

@pytest.mark.parametrize("override, parts", [
    ({"shape": np.array(["a", "b", "cube", "a", "b", "a"])}, ["data.npz:3", "node 'shape'", "'shape'[2]", "'cube' is not a value", "valid: a, b"]),
    ({"light": np.array([0, 0, 0, 0, 1.2, 0])}, ["data.npz:5", "node 'light'", "outside the grid of 5 from 0 to 1"]),
    ({"size": np.array([0, 0, 0, np.nan, 1, 1])}, ["data.npz:4", "node 'size'", "not a finite number", "valid: real numbers in [0, 10]"]),
    ({"size": np.array([0, np.inf, 0, 0, 1, 1])}, ["data.npz:2", "node 'size'", "not a finite number"]),
    ({"size": np.array([0, 0, 0, 0, 1, 11])}, ["data.npz:6", "node 'size'", "11 is outside the real numbers in [0, 10]"]),
    ({"light": None, "size": None}, ["data.npz", "missing array(s) light, size", "present: images, shape"]),
    ({"shape": np.array([0, 1, 1, 0, 1, 0])}, ["data.npz", "'shape'", "needs strings"]),
    ({"size": np.array(SIZE[:5])}, ["data.npz", "'size' has shape (5,)", "shape (6,)"]),
    ({"images": np.zeros((6, 8, 9), np.uint8)}, ["data.npz", "'images' has shape (6, 8, 9)", "(N, 8, 8) uint8"]),
    ({"images": np.zeros((6, 8, 8), np.float32)}, ["data.npz", "float32", "(N, 8, 8) uint8"]),
])
def test_npz_errors_name_the_file_row_and_node(tmp_path, override, parts):
    write_npz(tmp_path / "data.npz", **override)
    with expect(DataError, *parts):
        world(tmp_path, "data.npz")


def test_binary_npz_refuses_other_levels_when_read(tmp_path):
    images = pictures()
    images[4, 7, 7] = 7
    write_npz(tmp_path / "data.npz", images=images)
    w = world(tmp_path, "data.npz")
    w.images(w.units([0, 1]))
    with expect(DataError, "data.npz:5", "'images'[4]", "pixel value 7", "0/1 or 0/255"):
        w.images(w.units([3, 4]))
    with expect(DataError, "no unit 6", "data[0] to data[5]"):
        w.units([6])


@pytest.mark.parametrize("line, parts", [
    ("2.png,cube,0.5,1", ["labels.csv:4", "node 'shape'", "file 2.png", "'cube' is not a value", "valid: a, b"]),
    ("2.png,a,bright,1", ["labels.csv:4", "node 'light'", "'bright' is not a number", "valid: grid of 5"]),
    ("2.png,a,0.5,nan", ["labels.csv:4", "node 'size'", "not a finite number", "valid: real numbers in [0, 10]"]),
    ("2.png,a,0.5,-inf", ["labels.csv:4", "node 'size'", "not a finite number"]),
    ("2.png,a,0.5,12", ["labels.csv:4", "node 'size'", "outside the real numbers in [0, 10]"]),
    ("2.png,a,2,1", ["labels.csv:4", "node 'light'", "outside the grid"]),
    ("2.png,a,30deg,1", ["labels.csv:4", "node 'light'", "this node is not an angle"]),
    ("2.png,a,0.5", ["labels.csv:4", "3 cells", "4 columns"]),
    ("../2.png,a,0.5,1", ["labels.csv:4", "not a name inside"]),
    ("9.png,a,0.5,1", ["labels.csv:4", "no such file", "9.png"]),
])
def test_csv_errors_name_the_line_and_node(tmp_path, line, parts):
    folder = write_pngs(tmp_path / "pngs")
    rows = (folder / "labels.csv").read_text().splitlines()
    rows[3] = line
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    with expect(DataError, str(folder / "labels.csv"), *parts):
        world(tmp_path, "pngs")


def test_csv_missing_columns_and_files(tmp_path):
    folder = write_pngs(tmp_path / "pngs")
    (folder / "labels.csv").write_text("file,shape,colour\n0.png,a,red\n")
    with expect(DataError, "labels.csv:1", "missing column(s) light, size", "present: file, shape, colour"):
        world(tmp_path, "pngs")
    (folder / "labels.csv").unlink()
    with expect(DataError, "no such file", "labels.csv"):
        world(tmp_path, "pngs")


def test_png_of_wrong_size_mode_or_kind_is_refused(tmp_path):
    w = world(tmp_path, write_pngs(tmp_path / "small", size=(8, 6)).name)
    with expect(DataError, "small/0.png", "8x6 pixels", "binary image 8x8"):
        w.images(w.units([0]))
    w = world(tmp_path, write_pngs(tmp_path / "rgb", mode="RGB").name)
    with expect(DataError, "rgb/2.png", "mode RGB", "mode L"):
        w.images(w.units([2]))
    folder = write_pngs(tmp_path / "odd")
    (folder / "3.png").unlink()
    (folder / "3.png").mkdir()
    with expect(DataError, "labels.csv:5", "3.png is not a regular file"):
        world(tmp_path, "odd")
    if hasattr(os, "mkfifo"):
        (folder / "3.png").rmdir()
        os.mkfifo(folder / "3.png")
        with expect(DataError, "3.png is not a regular file"):
            world(tmp_path, "odd")
    (folder / "3.png").unlink()
    (folder / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    w = world(tmp_path, "odd")
    with expect(DataError, "odd/3.png", "not a readable PNG"):
        w.images(w.units([3]))


# -- hostile and broken archives ----------------------------------------------------------------

def npy_header(shape, dtype) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_header_claiming_38_gib_is_refused_without_allocating(tmp_path, method):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        zf.writestr("images.npy", npy_header((38 * 2**30 // 64, 8, 8), np.uint8))
        for key, values in (("shape", np.array(SHAPE)), ("light", np.array(LIGHT)), ("size", np.array(SIZE))):
            buf = io.BytesIO()
            np.save(buf, values)
            zf.writestr(f"{key}.npy", buf.getvalue())
    assert path.stat().st_size < 2000
    tracemalloc.start()
    try:
        with expect(DataError, "bomb.npz", "'images' declares shape", "40,802,189,312 bytes", "truncated or corrupt"):
            world(tmp_path, "bomb.npz")
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()


def forge_sizes(path, sizes: dict):
    """Overwrite the sizes that the zip's central directory gives its members (stored: both; deflated: uncompressed)."""
    raw = bytearray(path.read_bytes())
    at = raw.find(b"PK\x01\x02")
    while at >= 0:
        method, = struct.unpack("<H", raw[at + 10:at + 12])
        name_len, = struct.unpack("<H", raw[at + 28:at + 30])
        name = raw[at + 46:at + 46 + name_len].decode()
        if name in sizes:
            raw[at + 24:at + 28] = struct.pack("<I", sizes[name])
            if method == zipfile.ZIP_STORED:
                raw[at + 20:at + 24] = struct.pack("<I", sizes[name])
        at = raw.find(b"PK\x01\x02", at + 46)
    path.write_bytes(bytes(raw))


def test_a_stored_member_running_past_the_end_is_refused(tmp_path):
    n, path = 2**24, tmp_path / "forged.npz"  # 1 GiB of images, declared consistently, none of it there
    arrays = {"images": ((n, 8, 8), np.uint8), "shape": ((n,), "<U1"), "light": ((n,), np.float64), "size": ((n,), np.float64)}
    with zipfile.ZipFile(path, "w") as zf:
        for key, (shape, dtype) in arrays.items():
            zf.writestr(f"{key}.npy", npy_header(shape, dtype))
    forge_sizes(path, {f"{k}.npy": len(npy_header(*v)) + int(np.prod(v[0])) * np.dtype(v[1]).itemsize for k, v in arrays.items()})
    with expect(DataError, "forged.npz", "'images' runs past the end of the file"):
        world(tmp_path, "forged.npz")


def test_a_deflated_member_claiming_more_than_deflate_can_hold_is_refused(tmp_path):
    path = write_npz(tmp_path / "data.npz", compressed=True)
    forge_sizes(path, {"images.npy": 2**31})
    with expect(DataError, "data.npz", "'images.npy' claims 2,147,483,648 bytes", "more than deflate can hold"):
        world(tmp_path, "data.npz")


def test_compressed_members_over_the_cap_are_refused(tmp_path, monkeypatch):
    write_npz(tmp_path / "data.npz", compressed=True)
    monkeypatch.setattr(files, "MAX_BYTES", 100)
    with expect(DataError, "data.npz", "'images' is compressed", "over the 100-byte cap", "numpy.savez"):
        world(tmp_path, "data.npz")


def test_a_corrupt_deflate_stream_is_a_data_error(tmp_path):
    images = (np.random.default_rng(0).random((6, 8, 8)) < 0.5).astype(np.uint8)
    path = write_npz(tmp_path / "data.npz", compressed=True, images=images)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("images.npy")
    raw = bytearray(path.read_bytes())
    name, extra = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name + extra
    raw[start + info.compress_size // 2:start + info.compress_size - 2] = b"\xff" * (info.compress_size - 2 - info.compress_size // 2)
    path.write_bytes(bytes(raw))
    with expect(DataError, "data.npz", "not a readable npz", "while decompressing"):  # zlib.error
        world(tmp_path, "data.npz")
    raw[start + info.compress_size // 2:start + info.compress_size - 2] = b"\x00" * (info.compress_size - 2 - info.compress_size // 2)
    path.write_bytes(bytes(raw))
    with expect(DataError, "data.npz", "not a readable npz"):  # a bad CRC or a bad stream, whichever zlib sees first
        world(tmp_path, "data.npz")


def test_a_truncated_zip_is_a_data_error(tmp_path):
    path = write_npz(tmp_path / "data.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with expect(DataError, "data.npz", "not a readable npz"):
        world(tmp_path, "data.npz")
    path.write_bytes(b"not a zip at all")
    with expect(DataError, "data.npz", "not a readable npz"):
        world(tmp_path, "data.npz")


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, images=pictures(), shape=np.array(SHAPE, dtype=object), light=np.array(LIGHT), size=np.array(SIZE))
    with expect(DataError, "data.npz", "'shape' holds Python objects", "never unpickled"):
        world(tmp_path, "data.npz")


# -- the DAG's side -----------------------------------------------------------------------------

def test_dag_checks(tmp_path):
    write_npz(tmp_path / "data.npz")
    with expect(DagError, "dag.yaml:1", "world 'files'", "world: {files: data.npz}", "world: {files: folder/}"):
        world(tmp_path, None)
    with expect(DagError, "world: {files: data.npz}"):
        world(tmp_path, {"npz": "data.npz"})
    with expect(DagError, "2 image nodes (img0, img1)", "exactly one"):
        world(tmp_path, "data.npz", images=2)
    with expect(DagError, "0 image nodes"):
        world(tmp_path, "data.npz", images=0)
