"""Output folders: what cq wrote where, so that a rerun replaces its own files and nothing else.

    check_writable("runs/answers")                    # before any work: a folder cq can write in
    with prepare_output("runs/answers", "query") as out:
        save_png(image, out.path("01_counterfactual.png"))
    # .cq-manifest.json now lists the file under the job "query"

The rule, for every command with ``--out``:

1. Before any work, ``check_writable``: ``--out`` is not empty, is (or will be made) a folder,
   not a file or under one, and cq can create files there.
2. Each folder cq writes into keeps a manifest, ``.cq-manifest.json``: for each job (a command
   and what it makes, e.g. ``"query"``, ``"train"``, ``"data resample labels.npz"``) the
   files that job wrote there last time.
3. ``Output.path(name)`` names a file the job is about to write. It may be a file the same
   job wrote last time or one that does not exist yet; any other existing file is never
   overwritten (a CqError names it), unless the user asked with ``--force``. So cq writes into
   a folder that it did not create only where none of its files exist yet.
4. ``Output.close()``, or leaving ``with``, writes the manifest atomically. When the job has
   completed, the files its previous run wrote and this one did not are removed: only files
   the manifest lists, only files and links inside the folder (never a folder, nothing a link
   leads to), and the folders that this leaves empty. After a failed job nothing is removed,
   and the manifest lists the files of both runs.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from engine.errors import CqError
from engine.files import write_atomic

MANIFEST = ".cq-manifest.json"
FORMAT = "cq-manifest"
VERSION = 1
#: the largest manifest read; a larger one is foreign, and its folder treated as not cq's
MAX_MANIFEST_BYTES = 64 * 2**20
#: the longest --out (Linux's PATH_MAX)
MAX_PATH = 4096


def check_writable(folder: str | Path, *, flag: str = "--out") -> Path:
    """``folder`` as a Path once it is known that cq can create files in it (it need not exist yet)."""
    text = os.fspath(folder)
    if not text.strip():
        raise CqError(f"{flag} is empty; give a folder to write into (e.g. {flag} runs/answers)")
    if "\0" in text or len(text) > MAX_PATH:
        raise CqError(f"{flag} {text[:60]!r}: not a usable path (a NUL byte, or over {MAX_PATH:,} characters)")
    path = Path(text)
    probe = path
    try:
        while not os.path.lexists(probe) and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            where = "is a file, not a folder" if probe == path else f"is under {probe}, which is a file, not a folder"
            raise CqError(f"{path}: {where}; give a folder for {flag}")
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".cq-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise CqError(f"{path}: cannot write into {probe} ({e.strerror}); choose another {flag}") from None
    return path


def check_writable_file(path: str | Path, *, flag: str = "--out") -> Path:
    """``path`` as a Path once it is known that cq can write a file there: not a folder, in a writable folder."""
    text = os.fspath(path)
    if not text.strip():
        raise CqError(f"{flag} is empty; give a file to write (e.g. {flag} runs/data/labels.npz)")
    path = Path(text)
    if path.is_dir():
        raise CqError(f"{path}: is a folder; give a file name for {flag}")
    check_writable(path.parent, flag=flag)
    return path


@dataclass
class Output:
    """One job's files in one folder: ``path(name)`` before writing each, ``close()`` after the last."""

    folder: Path
    job: str
    force: bool = False
    previous: dict[str, list[str]] = field(default_factory=dict)  # job -> files, as the manifest had them
    written: list[str] = field(default_factory=list)

    def path(self, name: str | Path) -> Path:
        """The path to write ``name`` (relative to the folder) at, recorded; CqError if it would replace a file not ours."""
        name = _relative(name, self.folder)
        target = self.folder / name
        mine = name in self.previous.get(self.job, ()) or name in self.written
        if target.is_dir() and not target.is_symlink():
            raise CqError(f"{target}: is a folder where cq would write a file; move it away, or choose another --out")
        if not mine and not self.force and os.path.lexists(target):
            owner = next((job for job, names in self.previous.items() if name in names), None)
            how = f"was written by 'cq {owner}'" if owner else "was not written by cq"
            raise CqError(f"{target}: already exists and {how}; cq does not replace it: move it away, or choose another --out")
        target.parent.mkdir(parents=True, exist_ok=True)
        if name not in self.written:
            self.written.append(name)
        return target

    def close(self, completed: bool = True) -> None:
        """Write the manifest; after a completed job, remove the files its previous run wrote and this one did not."""
        before = self.previous.get(self.job, [])
        stale = [n for n in before if n not in self.written]
        jobs = {job: [n for n in names if n not in self.written] for job, names in self.previous.items() if job != self.job}
        jobs[self.job] = self.written + ([] if completed else stale)
        jobs = {job: names for job, names in jobs.items() if names}
        if completed:
            for name in stale:
                _remove(self.folder, name)
        if jobs or self.previous:
            record = {"format": FORMAT, "version": VERSION, "jobs": jobs}
            write_atomic(self.folder / MANIFEST, lambda f: f.write((json.dumps(record, indent=1) + "\n").encode()))

    def __enter__(self) -> "Output":
        return self

    def __exit__(self, kind, error, trace) -> None:
        self.close(completed=kind is None)


def prepare_output(folder: str | Path, command: str, *, force: bool = False) -> Output:
    """The Output of job ``command`` in ``folder``, made if need be, with what its manifest says cq wrote there."""
    folder = check_writable(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return Output(folder, command, force=force, previous=read_manifest(folder))


def read_manifest(folder: str | Path) -> dict[str, list[str]]:
    """job -> files of the folder's manifest; {} when it has none, or one cq cannot read (the folder is then not cq's)."""
    path = Path(folder) / MANIFEST
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_MANIFEST_BYTES:
            return {}
        record = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("jobs"), dict):
        return {}
    jobs = {}
    for job, names in record["jobs"].items():
        if isinstance(job, str) and isinstance(names, list):
            jobs[job] = [n for n in names if isinstance(n, str) and _inside(n)]
    return jobs


def answer_folders(out: str | Path, files: list[str]) -> list[Path]:
    """A distinct answer folder under ``out`` for each query file: ``out`` itself for one file.

    Folders are named by the file's stem; stems that clash take their parent folders too
    (``a/q.cq``, ``b/q.cq`` -> ``a-q``, ``b-q``), and names still equal (the same file twice)
    are numbered (``q``, ``q-2``).
    """
    out = Path(out)
    if len(files) == 1:
        return [out]
    paths = [os.path.normpath(f) for f in files]
    parts = [_name_parts(Path(path)) for path in paths]
    depth = [1] * len(files)
    while True:
        names = ["-".join(p[-d:]) for p, d in zip(parts, depth)]
        grow = [i for i, name in enumerate(names) if depth[i] < len(parts[i])
                and any(names[j] == name and paths[j] != paths[i] for j in range(len(names)))]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    used, folders = set(), []
    for name in names:
        unique, k = name, 1
        while unique in used:
            k += 1
            unique = f"{name}-{k}"
        used.add(unique)
        folders.append(out / unique)
    return folders


def _name_parts(path: Path) -> tuple[str, ...]:
    """The folders and stem of a path as given, without '/', '.' and '..': ('a', 'q') for ../a/q.cq."""
    parts = tuple(p for p in (*path.parent.parts, path.stem) if p not in ("", "/", ".", ".."))
    return parts or ("query",)


def _relative(name: str | Path, folder: Path) -> str:
    text = PurePosixPath(os.fspath(name)).as_posix()
    if not _inside(text):
        raise ValueError(f"{name!r} is not a file name inside {folder}")
    return text


def _inside(name: str) -> bool:
    """Whether ``name`` is a relative path that stays inside its folder (no '..', not absolute, not empty)."""
    parts = PurePosixPath(name).parts
    return bool(parts) and not PurePosixPath(name).is_absolute() and ".." not in parts and name != MANIFEST and "\0" not in name


def _remove(folder: Path, name: str) -> None:
    """Unlink folder/name if it is a file or a link inside the folder, then the folders that leaves empty."""
    target = folder / name
    try:
        if not target.parent.resolve().is_relative_to(folder.resolve()):
            return  # a folder on the way is a link out of the folder: leave it alone
        if stat.S_ISDIR(os.lstat(target).st_mode):
            return
        os.unlink(target)
    except OSError:
        return
    parent = target.parent
    while parent != folder:
        try:
            os.rmdir(parent)  # only an empty folder
        except OSError:
            return
        parent = parent.parent
