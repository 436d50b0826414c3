"""The files world: the user's own labelled images, from an npz or a folder of PNGs.

``world: {files: PATH}``, PATH relative to the DAG file's folder (or absolute), is either

- an ``.npz`` holding ``images``, (N, H, W) uint8 (binary image nodes: 0/1 or 0/255; gray:
  0..255), and one 1-D array of N values per label node, named like the node; or
- a folder of PNGs (mode L or 1; binary image nodes threshold at 128) with ``labels.csv``:
  a ``file`` column (names relative to the folder) and one column per label node.

Labels hold values as a user writes them: names as strings, numbers in the domain's units
(snapped to a grid, bounds-checked for real nodes; a CSV may write ``90deg`` for an angle).
They are encoded once, at load; images are read per batch. Unit ``i`` (``data[i]``) is row
``i``. The rows are the observational distribution, so ``sample(n)`` is the first n rows.

Nothing is unpickled, and no size a file declares is allocated before it is checked: an
npz's member headers (shape, dtype) are read first and must match the bytes its zip holds;
stored members are memory-mapped, deflated ones read in full up to ``MAX_BYTES``. A PNG's
size and mode are read from its header, and checked, before it is decoded.
"""

from __future__ import annotations

import csv
import io
import math
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from engine.errors import DataError
from engine.model.domains import ANGLE_UNITS, DomainError
from engine.worlds.world import Units, World, register_world

#: the largest compressed npz member read into memory (stored members are memory-mapped)
MAX_BYTES = 4 * 2**30
#: the largest labels.csv read
MAX_CSV_BYTES = 256 * 2**20
IMAGES_KEY, LABELS_CSV, FILE_COLUMN = "images", "labels.csv", "file"
_NUMBERS = "iuf"  # numpy kinds a numeric label array may have
_CHUNK = 64 * 2**20
_DEFLATE_RATIO = 1032  # the most bytes one compressed byte of deflate can expand to


@register_world("files")
class Files(World):
    """Labelled images from an npz or a PNG folder; the data are used as they are."""

    has_renderer = False

    def __init__(self, dag, options=None):
        super().__init__(dag, options)
        if not isinstance(options, str) or not options.strip():
            raise self.error(f"the option is the data's path: world: {{files: data.npz}} or world: {{files: folder/}}, got {options!r}")
        if len(dag.images) != 1:
            raise self.error(f"the DAG has {len(dag.images)} image nodes ({', '.join(dag.images) or 'none'}); "
                             "the files world takes exactly one")
        path = Path(options).expanduser()
        self.path = path if path.is_absolute() else Path(dag.path).parent / path
        if self.path.is_dir():
            self.source = _Pngs(self.path, dag)
        elif self.path.is_file():
            self.source = _Npz(self.path, dag)
        elif self.path.exists():
            raise DataError(f"{self.path}: not a regular file or folder; give an .npz file or a folder of PNGs with {LABELS_CSV}")
        else:
            raise self.error(f"no such file or folder {self.path} (a relative path starts at the DAG file's folder)")

    def __len__(self) -> int:
        return self.source.n

    def units(self, index) -> Units:
        index = self._rows(index)
        return Units(index, {node: codes[index] for node, codes in self.source.labels.items()})

    def images(self, units: Units) -> np.ndarray:
        return self.source.images(self._rows(units.index))

    def _rows(self, index) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        outside = (index < 0) | (index >= self.source.n)
        if outside.any():
            raise DataError(f"{self.path}: no unit {index[outside][0]}; the data hold {self.source.n} rows, data[0] to data[{self.source.n - 1}]")
        return index


class _Npz:
    """Images and label arrays from an npz, each member's header checked before it is read."""

    def __init__(self, path: Path, dag):
        self.path, self.node = path, dag.nodes[dag.images[0]]
        try:
            with zipfile.ZipFile(path) as zf:
                members = {i.filename.removesuffix(".npy"): i for i in zf.infolist() if i.filename.endswith(".npy")}
                missing = [k for k in (IMAGES_KEY, *dag.labels) if k not in members]
                if missing:
                    raise DataError(f"{path}: missing array(s) {', '.join(missing)}; present: {', '.join(members) or 'none'}; "
                                    f"the files world reads '{IMAGES_KEY}' and one 1-D array per label node ({', '.join(dag.labels)})")
                headers = {k: self._header(zf, members[k]) for k in (IMAGES_KEY, *dag.labels)}
                self.n = self._check(headers, dag)
                arrays = {k: self._read(zf, members[k], *headers[k]) for k in headers}
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError, NotImplementedError, struct.error) as e:
            raise DataError(f"{path}: not a readable npz archive ({_reason(e)}); write it with numpy.savez") from None
        self.array = arrays.pop(IMAGES_KEY)
        self.labels = {node: _encode(dag.nodes[node], arrays[node], lambda v: (v, None),
                                     lambda row, node=node: f"{path}:{row + 1}: node '{node}', array '{node}'[{row}]")
                       for node in dag.labels}

    def _header(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple:
        """(shape, dtype, fortran order, offset of the data in the member), from the member's npy header."""
        if info.flag_bits & 1:
            raise DataError(f"{self.path}: the member '{info.filename}' is encrypted; save the arrays with numpy.savez")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise DataError(f"{self.path}: the member '{info.filename}' uses zip compression method {info.compress_type}; "
                            "write the file with numpy.savez or numpy.savez_compressed")
        if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > _DEFLATE_RATIO * info.compress_size + 4096:
            raise DataError(f"{self.path}: the member '{info.filename}' claims {info.file_size:,} bytes from {info.compress_size:,} compressed, "
                            "more than deflate can hold; the file is corrupt")
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise DataError(f"{self.path}: the member '{info.filename}' has npy format {version}; this program reads 1.0 and 2.0")
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            start = f.tell()
        key = info.filename.removesuffix(".npy")
        if dtype.hasobject:
            raise DataError(f"{self.path}: the array '{key}' holds Python objects (dtype {dtype}), which are never unpickled; "
                            "save numbers or strings (e.g. np.array(['a', 'b']))")
        nbytes = math.prod(shape) * dtype.itemsize
        if start + nbytes != info.file_size:
            raise DataError(f"{self.path}: the array '{key}' declares shape {shape} of {dtype} ({nbytes:,} bytes) but the archive "
                            f"holds {max(info.file_size - start, 0):,} bytes for it; the file is truncated or corrupt")
        if info.compress_type == zipfile.ZIP_DEFLATED and nbytes > MAX_BYTES:
            raise DataError(f"{self.path}: the array '{key}' is compressed and {nbytes:,} bytes, over the {MAX_BYTES:,}-byte cap; "
                            "save it uncompressed (numpy.savez), which is read memory-mapped")
        return shape, dtype, fortran, start

    def _check(self, headers: dict, dag) -> int:
        """The number of rows, after checking each array's shape and dtype against the DAG."""
        (shape, dtype, _, _), want = headers[IMAGES_KEY], tuple(self.node.domain.shape)
        if len(shape) != 3 or shape[1:] != want or dtype != np.uint8 or shape[0] == 0:
            raise DataError(f"{self.path}: the array '{IMAGES_KEY}' has shape {shape} of {dtype}; the image node '{self.node.name}' "
                            f"({self.node.domain.describe()}) needs (N, {want[0]}, {want[1]}) uint8 with N > 0")
        for node in dag.labels:
            (shape, dtype, _, _), domain = headers[node], dag.nodes[node].domain
            kinds, what = ("U", "strings") if domain.kind == "names" else (_NUMBERS, "numbers")
            if shape != (headers[IMAGES_KEY][0][0],) or dtype.kind not in kinds:
                raise DataError(f"{self.path}: the array '{node}' has shape {shape} of {dtype}; the node '{node}' ({domain.describe()}) "
                                f"needs {what}, one per image: shape ({headers[IMAGES_KEY][0][0]},)")
        return headers[IMAGES_KEY][0][0]

    def _read(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, shape, dtype, fortran, start) -> np.ndarray:
        """A stored member memory-mapped in place; a compressed one decompressed in chunks (its size was capped)."""
        order, key = "F" if fortran else "C", info.filename.removesuffix(".npy")
        nbytes = math.prod(shape) * dtype.itemsize
        if info.compress_type == zipfile.ZIP_STORED:
            with open(self.path, "rb") as f:
                f.seek(info.header_offset)
                local = f.read(30)
                size = os.fstat(f.fileno()).st_size
            if local[:4] != b"PK\x03\x04":
                raise DataError(f"{self.path}: the zip entry of '{key}' is corrupt (no local header)")
            offset = info.header_offset + 30 + sum(struct.unpack("<HH", local[26:30])) + start
            if offset + nbytes > size:
                raise DataError(f"{self.path}: the array '{key}' runs past the end of the file; the file is truncated")
            return np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
        out = np.empty(nbytes, dtype=np.uint8)
        with zf.open(info) as f:
            f.seek(start)
            done = 0
            while done < nbytes:
                chunk = f.read(min(_CHUNK, nbytes - done))
                if not chunk:
                    raise DataError(f"{self.path}: the array '{key}' ends early; the file is truncated or corrupt")
                out[done:done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                done += len(chunk)
            f.read(1)  # reach the end, so that the zip checks the member's CRC
        return out.view(dtype).reshape(shape, order=order)

    def images(self, rows: np.ndarray) -> np.ndarray:
        batch = np.array(self.array[rows], dtype=np.uint8)
        if self.node.domain.pixels != "binary":
            return batch
        bad = (batch != 0) & (batch != 1) & (batch != 255)
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(len(batch), -1).any(1))[0])
            raise DataError(f"{self.path}:{rows[i] + 1}: '{IMAGES_KEY}'[{rows[i]}] holds the pixel value {batch[i][bad[i]][0]}; "
                            f"the binary image node '{self.node.name}' takes 0/1 or 0/255 (declare pixels: gray for 0..255)")
        return (batch > 0).astype(np.uint8)


class _Pngs:
    """A folder of PNGs named by ``labels.csv``; labels read at load, images per batch."""

    def __init__(self, folder: Path, dag):
        self.node, table = dag.nodes[dag.images[0]], folder / LABELS_CSV
        header, rows, lines = _read_csv(table)
        present = [c for c in header if c]
        missing = [c for c in (FILE_COLUMN, *dag.labels) if c not in header]
        if missing:
            raise DataError(f"{table}:1: missing column(s) {', '.join(missing)}; present: {', '.join(present) or 'none'}; "
                            f"labels.csv needs '{FILE_COLUMN}' and one column per label node ({', '.join(dag.labels)})")
        if not rows:
            raise DataError(f"{table}: no rows; write one row per image: {FILE_COLUMN},{','.join(dag.labels)}")
        column = {name: [row[i] for row in rows] for name in (FILE_COLUMN, *dag.labels) for i in [header.index(name)]}
        self.n, self.files = len(rows), []
        for name, line in zip(column[FILE_COLUMN], lines):
            if not name or Path(name).is_absolute() or ".." in Path(name).parts:
                raise DataError(f"{table}:{line}: the file {name!r} is not a name inside {folder}; write paths relative to the folder")
            self.files.append(_regular(folder / name, f"{table}:{line}"))
        self.labels = {node: _encode(dag.nodes[node], np.array(column[node]), lambda text, d=dag.nodes[node].domain: _written(text, d),
                                     lambda row, node=node: f"{table}:{lines[row]}: node '{node}', column '{node}' (file {column[FILE_COLUMN][row]})")
                       for node in dag.labels}

    def images(self, rows: np.ndarray) -> np.ndarray:
        return np.stack([_png(self.files[i], self.node) for i in rows]) if len(rows) else np.zeros((0, *self.node.domain.shape), np.uint8)


def _read_csv(table: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """labels.csv's header, its non-blank rows and their line numbers."""
    _regular(table, f"{table.parent}")
    if table.stat().st_size > MAX_CSV_BYTES:
        raise DataError(f"{table}: larger than {MAX_CSV_BYTES:,} bytes; keep labels.csv under that size")
    try:
        reader = csv.reader(io.StringIO(table.read_bytes().decode("utf-8-sig")))
        header = [c.strip() for c in next(reader, [])]
        rows, lines = [], []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{table}:{reader.line_num}: {len(row)} cells; the header has {len(header)} columns ({', '.join(header)})")
            rows.append(row)
            lines.append(reader.line_num)
    except UnicodeDecodeError as e:
        raise DataError(f"{table}: not UTF-8 text (byte {e.start}); save labels.csv as UTF-8") from None
    except csv.Error as e:
        raise DataError(f"{table}:{reader.line_num}: not valid CSV ({e})") from None
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise DataError(f"{table}:1: column(s) {', '.join(duplicated)} appear twice; each column name must be distinct")
    return header, rows, lines


def _regular(path: Path, where: str) -> Path:
    """``path`` if it is a regular file (following links); else a DataError."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{where}: no such file {path}") from None
    except OSError as e:
        raise DataError(f"{where}: cannot read {path} ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{where}: {path} is not a regular file")
    return path


def _png(path: Path, node) -> np.ndarray:
    """One PNG as (H, W) uint8: 0/1 for a binary node (thresholded at 128), 0..255 for a gray one."""
    (height, width), binary = node.domain.shape, node.domain.pixels == "binary"
    _regular(path, str(path.parent))
    try:
        with Image.open(path, formats=["PNG"]) as picture:
            if picture.size != (width, height):
                raise DataError(f"{path}: the image is {picture.width}x{picture.height} pixels; the image node '{node.name}' "
                                f"takes a {node.domain.describe()} ({width} wide, {height} high)")
            if picture.mode not in ("L", "1"):
                raise DataError(f"{path}: PNG mode {picture.mode}; the files world reads grayscale (mode L) or 1-bit (mode 1) PNGs")
            pixels = np.asarray(picture)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable PNG ({_reason(e)})") from None
    if pixels.dtype == np.bool_:
        return pixels.astype(np.uint8) * (1 if binary else 255)
    return (pixels >= 128).astype(np.uint8) if binary else pixels.astype(np.uint8)


def _written(text: str, domain) -> tuple:
    """A CSV cell as written: (name, None) for names; (number, angle unit or None) for numbers."""
    text = text.strip()
    if domain.kind == "names":
        return text, None
    unit = next((u for u in ANGLE_UNITS if text.endswith(u)), None)
    try:
        return float(text[:-len(unit)] if unit else text), unit
    except ValueError:
        raise DomainError(f"'{text}' is not a number") from None


def _encode(node, column: np.ndarray, written, where) -> np.ndarray:
    """The encoded labels of a column, each distinct value encoded once by the node's domain.

    ``written(value)`` gives (value, unit) as ``Domain.encode`` takes them; a value the domain
    does not hold is a DataError at ``where(row)``, the first row that holds one.
    """
    domain = node.domain
    distinct, inverse = np.unique(column, return_inverse=True)
    codes = np.zeros(len(distinct), dtype=np.int64 if domain.is_discrete else np.float64)
    errors = {}
    for j, value in enumerate(distinct.tolist()):
        try:
            codes[j] = domain.encode(*written(value))
        except DomainError as e:
            errors[j] = str(e)
    inverse = inverse.reshape(-1)
    if errors:
        row = int(np.flatnonzero(np.isin(inverse, list(errors)))[0])
        message = errors[int(inverse[row])]
        valid = "" if "valid" in message or domain.describe() in message else f"; valid: {domain.describe()}"
        raise DataError(f"{where(row)}: {message}{valid}")
    return codes[inverse]


def _reason(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__
