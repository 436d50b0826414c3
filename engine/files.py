"""Files written atomically; torch files and npz archives read back without trusting them.

Every file ``cq`` writes goes through ``write_atomic``: a temporary file in the same folder,
flushed to disk, given a normal file's mode, then renamed over the target, so a crash leaves
either the old file or the new one, never half of either.

``read_marked`` loads a torch file without unpickling code; ``read_npz`` reads an npz without
allocating any size it declares before checking it: each member's zip entry and npy header
are read first, the declared bytes must be what the zip holds, at most ``MAX_NPZ_BYTES`` in
all, and deflated members are inflated in chunks, their CRC checked.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import struct
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Callable, IO

import numpy as np

from engine.errors import CheckpointError, DataError

#: the most bytes of arrays ``read_npz`` reads from one file (a 10,000,000-unit label set is 480 MB)
MAX_NPZ_BYTES = 2**30
_DEFLATE_RATIO = 1032  # the most bytes one compressed byte of deflate can expand to
_CHUNK = 64 * 2**20


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_marked(path: Path, fmt: str, version: int, *, kind: str, hint: str = "", map_location="cpu") -> dict:
    """The dict in a file written by ``save_checkpoint`` with ``fmt`` and ``version``, loaded without unpickling code.

    A truncated, foreign or other-version file is a CheckpointError naming the file, the
    ``kind`` of file expected and, when given, the ``hint`` (what to do about it).
    """
    import torch  # here, so that writing a file does not import torch

    tail = f"; {hint}" if hint else ""
    try:
        with warnings.catch_warnings():  # a foreign pickle draws warnings before it fails
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load fails in many ways on foreign bytes; each means "not ours"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable {kind} (truncated, corrupt or not a torch file: {reason}){tail}") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise CheckpointError(f"{path}: not a causal-query {kind} (it has no '{fmt}' format marker){tail}")
    if state.get("version") != version:
        raise CheckpointError(f"{path}: {kind} format version {state.get('version')!r}; this program reads version {version}{tail}")
    return state


def read_npz(path: str | Path, *, hint: str = "", max_bytes: int = MAX_NPZ_BYTES) -> dict[str, np.ndarray]:
    """Every array of the npz at ``path`` by name; a missing, corrupt, truncated or oversized file is a DataError.

    Nothing is unpickled, and no array is allocated before its header is checked against the
    bytes the zip holds for it. ``hint`` (what to do about a bad file) ends each message.
    """
    path, tail = Path(path), f"; {hint}" if hint else ""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file{tail}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror}){tail}") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: not a regular file (a folder, FIFO or device); give an .npz file{tail}")
    try:
        with zipfile.ZipFile(path) as zf:
            members = [i for i in zf.infolist() if i.filename.endswith(".npy")]
            headers = [_npy_header(path, zf, info) for info in members]
            total = sum(math.prod(shape) * dtype.itemsize for shape, dtype, _, _ in headers)
            if total > max_bytes:
                raise DataError(f"{path}: its arrays declare {total:,} bytes, more than the {max_bytes:,} read{tail}")
            return {info.filename.removesuffix(".npy"): _npy_data(path, zf, info, *header) for info, header in zip(members, headers)}
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError, NotImplementedError, struct.error) as e:
        raise DataError(f"{path}: not a readable npz archive ({' '.join(str(e).split()) or type(e).__name__}){tail}") from None


def _npy_header(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple:
    """(shape, dtype, fortran order, offset of the data in the member), checked against the zip entry."""
    key = info.filename.removesuffix(".npy")
    if info.flag_bits & 1:
        raise DataError(f"{path}: the array '{key}' is encrypted; save the arrays with numpy.savez")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise DataError(f"{path}: the array '{key}' uses zip compression method {info.compress_type}; write it with numpy.savez")
    if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > _DEFLATE_RATIO * info.compress_size + 4096:
        raise DataError(f"{path}: the array '{key}' claims {info.file_size:,} bytes from {info.compress_size:,} compressed, "
                        "more than deflate can hold; the file is corrupt")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise DataError(f"{path}: the array '{key}' has npy format {version}; this program reads 1.0 and 2.0")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        start = f.tell()
    if dtype.hasobject:
        raise DataError(f"{path}: the array '{key}' holds Python objects (dtype {dtype}), which are never unpickled")
    nbytes = math.prod(shape) * dtype.itemsize
    if start + nbytes != info.file_size:
        raise DataError(f"{path}: the array '{key}' declares shape {shape} of {dtype} ({nbytes:,} bytes) but the archive "
                        f"holds {max(info.file_size - start, 0):,} bytes for it; the file is truncated or corrupt")
    return shape, dtype, fortran, start


def _npy_data(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, shape, dtype, fortran, start) -> np.ndarray:
    """A member's array, read in chunks up to its declared size, its CRC checked at the end."""
    nbytes = math.prod(shape) * dtype.itemsize
    out = np.empty(nbytes, dtype=np.uint8)
    with zf.open(info) as f:
        f.read(start)
        done = 0
        while done < nbytes:
            chunk = f.read(min(_CHUNK, nbytes - done))
            if not chunk:
                raise DataError(f"{path}: the array '{info.filename.removesuffix('.npy')}' ends early; the file is truncated or corrupt")
            out[done:done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            done += len(chunk)
        f.read(1)  # reach the end, so that the zip checks the member's CRC
    return out.view(dtype).reshape(shape, order="F" if fortran else "C")


class NpzStream:
    """An npz archive written row block by row block, so that its arrays never sit in memory whole.

    ``columns`` names each array's dtype and the shape of one row; ``rows`` is the final length.
    Each array goes to its own .npy file beside ``path`` (a header, then blocks appended in
    order); ``close`` zips them into ``path`` through ``write_atomic`` (deflated: binary images
    packed by ``numpy.packbits`` are mostly zeros) and removes them. An archive left unclosed
    leaves no file at ``path``, and ``discard`` removes what it wrote.
    """

    def __init__(self, path: str | Path, columns: dict[str, tuple[np.dtype, tuple[int, ...]]], rows: int):
        self.path, self.rows, self.written = Path(path), rows, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".parts"))
        self.files = {}
        try:
            for name, (dtype, shape) in columns.items():
                f = open(self.folder / f"{name}.npy", "wb")
                self.files[name] = f
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (rows, *shape)}
                np.lib.format.write_array_header_2_0(f, header)
        except BaseException:
            self.discard()
            raise
        self.columns = {name: (np.dtype(dtype), tuple(shape)) for name, (dtype, shape) in columns.items()}

    def write(self, block: dict[str, np.ndarray]) -> None:
        """Append the next rows: one array per column, all of the same length."""
        n = {len(v) for v in block.values()}
        if set(block) != set(self.columns) or len(n) != 1:
            raise ValueError(f"a block needs the same number of rows of every column {sorted(self.columns)}")
        for name, values in block.items():
            dtype, shape = self.columns[name]
            self.files[name].write(np.ascontiguousarray(values, dtype=dtype).reshape(-1, *shape).tobytes())
        self.written += n.pop()

    def close(self, extra: dict[str, np.ndarray] | None = None) -> Path:
        """Zip every column (and the small ``extra`` arrays) into ``path``, atomically."""
        if self.written != self.rows:
            self.discard()
            raise ValueError(f"{self.path}: {self.written} rows written of {self.rows}")
        for f in self.files.values():
            f.close()

        def member(archive, name):  # a fixed date: the same arrays make the same bytes
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            return archive.open(info, "w", force_zip64=True)

        def zipped(out):
            with zipfile.ZipFile(out, "w", compresslevel=1) as archive:
                for name in self.columns:
                    with member(archive, name) as f, open(self.folder / f"{name}.npy", "rb") as part:
                        shutil.copyfileobj(part, f, _CHUNK)
                for name, value in (extra or {}).items():
                    with member(archive, name) as f:
                        np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)

        try:
            return write_atomic(self.path, zipped)
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the column files (the archive, if closed, stays)."""
        for f in self.files.values():
            f.close()
        for part in self.folder.glob("*.npy"):
            part.unlink()
        self.folder.rmdir()
