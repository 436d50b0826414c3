"""Files written atomically, and torch files read back without unpickling code.

Every file ``cq`` writes goes through ``write_atomic``: a temporary file in the same folder,
flushed to disk, given a normal file's mode, then renamed over the target, so a crash leaves
either the old file or the new one, never half of either.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, IO

import torch

from engine.errors import CheckpointError


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
